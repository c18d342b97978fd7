/* Coupled nonlinear oscillators: RK4 forward and its exact hand-written VJP.
 * See oscillator.h for the equations.
 *
 * Performance layout (bench/RESULTS.md has the measurements):
 *  - one GEMM per RK4 stage over all B rows (a = e + S M, S = sin(w q));
 *  - each stage is one parallel region of the thread team (team.h): part p
 *    owns a block of oscillators (columns), computes its columns of the
 *    stage GEMM (one single-threaded OpenBLAS call) and then every
 *    elementwise operation of the stage for those columns, including the
 *    next stage's sin (vectorised, trig.c) -- one barrier per stage;
 *  - the VJP's dL/dM = sum_stages S^T GA as one stacked GEMM;
 *  - no allocation in forward/backward once a tape exists.
 * The column blocks depend only on the team size, so results are
 * reproducible for a given PATCTL_THREADS.
 * The arithmetic is the same, operation by operation, as the straightforward
 * implementation kept in tests/osc_ref.c: with exact_trig = 1 (libm sinf and
 * cosf) and one thread the results are bitwise identical to it; by default
 * the sin/cos evaluations differ (below 1e-7 absolute each, see trig.h) and,
 * with more threads, the rounding inside OpenBLAS's column blocks. */
#include "surrogate/oscillator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "surrogate/blas.h"
#include "surrogate/bigmem.h"
#include "surrogate/simd.h"
#include "surrogate/team.h"
#include "surrogate/trig.h"

enum { N_WORK = 10 };

struct osc_tape {
    int n, cap, steps;
    int B;              /* rows recorded by the last forward, 0 = none */
    float *block;       /* one allocation, split into the views below */
    float *M;           /* [N,N] coupling of the last forward */
    float *L;           /* [N,N] L(sym(C)) of the last forward */
    float *G;           /* [N,N] gradient of M (backward work) */
    float *S;           /* [4*steps, cap, N] sin(w q) at every stage */
    float *Qs;          /* [4*steps, cap, N] q at every stage */
    float *GA;          /* [4*steps, cap, N] gradient of the stage accelerations */
    float *x0;          /* [cap, N] input x as given */
    float *qT;          /* [cap, N] final q (before the output map) */
    float *w[N_WORK];   /* [cap, N] work vectors */
};

osc_model osc_model_nominal(int n)
{
    osc_model m = {
        .n = n, .steps = 5, .t_end = 0.5f,
        .k = {.eta = 0.0f, .coupling_gain = 1.0f, .in_gain = 1.0f,
              .in_offset = 0.0f, .out_gain = 1.0f, .out_offset = 0.0f},
        .q_noise = NULL,
        .exact_trig = 0,
    };
    return m;
}

osc_tape *osc_tape_alloc(int n, int cap, int steps)
{
    if (n <= 0 || cap <= 0 || steps <= 0)
        return NULL;
    osc_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    size_t nn = (size_t)n * n, row = (size_t)cap * n, st = (size_t)4 * steps;
    size_t total = 3 * nn + 3 * st * row + 2 * row + N_WORK * row;
    t->block = big_alloc(total * sizeof(float));
    if (!t->block) {
        free(t);
        return NULL;
    }
    t->n = n, t->cap = cap, t->steps = steps;
    float *p = t->block;
    t->M = p, p += nn;
    t->L = p, p += nn;
    t->G = p, p += nn;
    t->S = p, p += st * row;
    t->Qs = p, p += st * row;
    t->GA = p, p += st * row;
    t->x0 = p, p += row;
    t->qT = p, p += row;
    for (int i = 0; i < N_WORK; i++)
        t->w[i] = p, p += row;
    return t;
}

void osc_tape_free(osc_tape *t)
{
    if (!t)
        return;
    free(t->block);
    free(t);
}

int osc_tape_capacity(const osc_tape *t) { return t ? t->cap : 0; }

enum { TILE = 64 };     /* square tiles for transposed access */
enum { ALIGN = 16 };    /* column blocks start at multiples of this */
#define PAR_MIN_FLOPS 2e6  /* a stage GEMM below this stays one block */

/* Parts for a region whose per-element results do not depend on how it is
 * split (transposes, sums along one index): as many as the team has. */
static int parts_for(double flops, int n)
{
    if (flops < PAR_MIN_FLOPS || team_inside())
        return 1;
    int t = team_threads();
    int by_cols = n / (2 * ALIGN); /* at least two aligned blocks per part */
    return t < by_cols ? t : by_cols < 1 ? 1 : by_cols;
}

/* The blocks of an RK4 stage: row blocks x column blocks of the [B, N]
 * state, each one OpenBLAS call plus the elementwise work on its values.
 * OpenBLAS rounds differently for different call shapes, so the blocks are
 * fixed by the shape alone -- never by the number of threads or by whether
 * the stage runs inside another parallel region -- and the results are the
 * same with any PATCTL_THREADS, in-process or behind a server.  Block counts
 * are divisors of 12 so that 1, 2, 3, 4 or 6 threads share them evenly. */
typedef struct {
    int nrb, ncb;   /* row and column blocks */
} blocks;

static int round_down_12(int k)
{
    static const int ok[] = {12, 6, 4, 3, 2, 1};
    for (int i = 0; i < 6; i++)
        if (k >= ok[i])
            return ok[i];
    return 1;
}

static blocks stage_blocks(int B, int n, int row_exact)
{
    blocks b = {1, 1};
    if (row_exact) {
        /* columns split by N only: every row sees the same GEMV shapes
         * whatever B is; rows are independent, so any row split is exact */
        b.ncb = n >= 256 ? round_down_12(n / 128) : 1;
        b.nrb = B >= 4 ? 2 : 1;
        return b;
    }
    if (2.0 * B * (double)n * n < PAR_MIN_FLOPS) {
        if (B >= 128 && 2.0 * B * (double)n * n >= PAR_MIN_FLOPS / 4)
            b.nrb = 2; /* many short rows (a shared layer's patches): halves */
        return b;
    }
    b.ncb = n >= 1024 ? 4 : round_down_12(n / 128); /* >= 128 columns each */
    b.nrb = B >= 512 ? 4 : B >= 256 ? 2 : 1;    /* >= 128 rows each */
    return b;
}

int osc_stage_blocks(int B, int n)
{
    blocks b = stage_blocks(B, n, 0);
    return b.nrb * b.ncb;
}

/* Rows [*r0, *r1) and columns [*c0, *c1) of part p. */
static void block_of(blocks bl, int B, int n, int p, int *r0, int *r1, int *c0, int *c1)
{
    team_split(B, bl.nrb, 1, p / bl.ncb, r0, r1);
    team_split(n, bl.ncb, ALIGN, p % bl.ncb, c0, c1);
}

/* L = L(sym(A)) and, when M != NULL, M = g L + Qn - I, row block by row
 * block: part p owns rows [lo, hi).  L may equal M (then only M is kept);
 * neither may overlap A. */
typedef struct {
    const float *A;
    float *L, *M;
    const osc_model *m;   /* for M */
    int n;
} lap_job;

/* acc[r - i0] += the off-diagonal entries L[r, j0:j1] of rows [i0, i1), in
 * ascending column order, in double: eight rows at a time (independent
 * sums; the diagonal entry adds 0.0, which changes no sum). */
static void row_sums_tile(const float *L, int n, int i0, int i1, int j0, int j1, double *acc)
{
    for (int r0 = i0; r0 < i1; r0 += 8) {
        int nr = i1 - r0 < 8 ? i1 - r0 : 8;
        double *a = acc + (r0 - i0);
        if (nr == 8 && (r0 + 8 <= j0 || r0 >= j1)) {
            /* no diagonal entry here: eight sums in registers */
            const float *l = L + (long)r0 * n;
            double a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
            double a4 = a[4], a5 = a[5], a6 = a[6], a7 = a[7];
            for (int c = j0; c < j1; c++) {
                a0 += l[c], a1 += l[n + c], a2 += l[2L * n + c], a3 += l[3L * n + c];
                a4 += l[4L * n + c], a5 += l[5L * n + c], a6 += l[6L * n + c], a7 += l[7L * n + c];
            }
            a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
            a[4] = a4, a[5] = a5, a[6] = a6, a[7] = a7;
            continue;
        }
        for (int c = j0; c < j1; c++)
            for (int r = 0; r < nr; r++)
                a[r] += c != r0 + r ? (double)L[(long)(r0 + r) * n + c] : 0.0;
    }
}

PATCTL_HOT static void lap_part(void *arg, int p, int np)
{
    const lap_job *j = arg;
    int n = j->n, lo, hi;
    team_split(n, np, TILE, p, &lo, &hi);
    const float *A = j->A;
    float *L = j->L;
    float bt[TILE * TILE]; /* the transposed tile A[c, i] at [i - i0][c - j0] */
    double acc[TILE];      /* off-diagonal row sums of the tile rows */
    for (int i0 = lo; i0 < hi; i0 += TILE) {
        int i1 = i0 + TILE < hi ? i0 + TILE : hi;
        memset(acc, 0, sizeof(acc));
        /* symmetric part: out[i,c] = (A[i,c] + A[c,i]) / 2, and its row sums
         * while the tile is in cache */
        for (int j0 = 0; j0 < n; j0 += TILE) {
            int j1 = j0 + TILE < n ? j0 + TILE : n;
            for (int c = j0; c < j1; c++) {
                const float *ar = A + (long)c * n;
                for (int i = i0; i < i1; i++)
                    bt[(i - i0) * TILE + (c - j0)] = ar[i];
            }
            for (int i = i0; i < i1; i++) {
                const float *restrict a = A + (long)i * n + j0;
                const float *restrict b = bt + (i - i0) * TILE;
                float *restrict o = L + (long)i * n + j0;
                for (int c = 0; c < j1 - j0; c++)
                    o[c] = 0.5f * (a[c] + b[c]);
            }
            row_sums_tile(L, n, i0, i1, j0, j1, acc);
        }
        /* diagonal = -(off-diagonal column sum) = -(off-diagonal row sum):
         * the symmetric part is exactly symmetric, and the row is summed in
         * double in the same index order as the reference sums the column */
        for (int r = i0; r < i1; r++)
            L[(long)r * n + r] = (float)-acc[r - i0];
        if (!j->M)
            continue;
        /* M = g L + Qn - I on these rows */
        float g = j->m->k.coupling_gain;
        const float *qn = j->m->q_noise;
        for (int i = i0; i < i1; i++) {
            const float *restrict l = L + (long)i * n;
            float *restrict mr = j->M + (long)i * n;
            if (l == mr) {
                for (int c = 0; c < n; c++)
                    mr[c] = g * mr[c];
            } else {
                for (int c = 0; c < n; c++)
                    mr[c] = g * l[c];
            }
            if (qn)
                for (int c = 0; c < n; c++)
                    mr[c] += qn[(long)i * n + c];
            mr[i] -= 1.0f;
        }
    }
}

static void laplacian(float *L, float *M, const osc_model *m, const float *A, int n)
{
    lap_job j = {A, L, M, m, n};
    team_run(lap_part, &j, parts_for(8.0 * n * (double)n, n));
}

void osc_laplacian_sym(float *out, const float *A, int n) { laplacian(out, NULL, NULL, A, n); }

void osc_coupling(float *M, const osc_model *m, const float *C) { laplacian(M, M, m, C, m->n); }

/* out[len] = sin(w x) or cos(w x): vectorised, or libm (reference mode) */
static void sin_w(const osc_model *m, float *out, const float *x, float w, long len)
{
    if (m->exact_trig)
        for (long i = 0; i < len; i++)
            out[i] = sinf(w * x[i]);
    else
        trig_sin_scaled(out, x, w, len);
}

static void cos_w(const osc_model *m, float *out, const float *x, float w, long len)
{
    if (m->exact_trig)
        for (long i = 0; i < len; i++)
            out[i] = cosf(w * x[i]);
    else
        trig_cos_scaled(out, x, w, len);
}

/* Forward stage updates after the acceleration a of stage k (0..3) is known,
 * on len values.  q, p: the state at the start of the step; sq, sp: running
 * sums of the k_q and k_p; ps: the p of the current stage; qn receives the q
 * of the next stage (stages 0..2) or, at stage 3, q and p advance in place.
 * Operation for operation the same as tests/osc_ref.c. */
PATCTL_HOT static void stage_update(int k, float h, long len, float *restrict q, float *restrict p,
                         float *restrict sq, float *restrict sp, float *restrict ps,
                         const float *restrict a, float *restrict qn)
{
    float hh = 0.5f * h, h6 = h / 6.0f;
    switch (k) {
    case 0:
        for (long i = 0; i < len; i++) {
            sq[i] = p[i];
            sp[i] = a[i];
            qn[i] = q[i] + hh * p[i];
            ps[i] = p[i] + hh * a[i];
        }
        break;
    case 1:
    case 2: {
        float c = k == 1 ? hh : h;
        for (long i = 0; i < len; i++) {
            sq[i] += 2.0f * ps[i];
            sp[i] += 2.0f * a[i];
            qn[i] = q[i] + c * ps[i];
            ps[i] = p[i] + c * a[i];
        }
        break;
    }
    default:
        for (long i = 0; i < len; i++) {
            sq[i] += ps[i];
            sp[i] += a[i];
            q[i] += h6 * sq[i];
            p[i] += h6 * sp[i];
        }
        break;
    }
}

/* One forward region: the input map (k < 0) or stage k of step s. */
typedef struct {
    const osc_model *m;
    osc_tape *t;
    const float *e, *x, *noise;
    int B, s, k;
    float h, w;
    blocks bl;
} fwd_job;

PATCTL_HOT static void fwd_part(void *arg, int p, int np)
{
    const fwd_job *j = arg;
    const osc_model *m = j->m;
    osc_tape *t = j->t;
    int n = m->n, r0, r1, lo, hi;
    (void)np;
    block_of(j->bl, j->B, n, p, &r0, &r1, &lo, &hi);
    long width = hi - lo, row = (long)t->cap * n;
    if (width <= 0 || r1 <= r0)
        return;
    float *q = t->w[0], *pp = t->w[1], *ps = t->w[3];
    float *a = t->w[4], *sq = t->w[5], *sp = t->w[6];
    float *S0 = t->S + (long)(4 * j->s) * row, *Q0 = t->Qs + (long)(4 * j->s) * row;
    if (j->k < 0) {
        /* q(0) = a_in x + b_in + noise, p(0) = 0; stage 1 of step 0 */
        float ig = m->k.in_gain, io = m->k.in_offset;
        for (int b = r0; b < r1; b++) {
            long o = (long)b * n + lo;
            if (j->noise)
                for (long i = o; i < o + width; i++)
                    q[i] = ig * j->x[i] + io + j->noise[i];
            else
                for (long i = o; i < o + width; i++)
                    q[i] = ig * j->x[i] + io + 0.0f;
            memset(pp + o, 0, sizeof(float) * (size_t)width);
            memcpy(t->x0 + o, j->x + o, sizeof(float) * (size_t)width);
            memcpy(Q0 + o, q + o, sizeof(float) * (size_t)width);
            sin_w(m, S0 + o, Q0 + o, j->w, width);
        }
        return;
    }
    int k = j->k;
    float *Sk = S0 + k * row, *Qk = Q0 + k * row;
    /* a[r0:r1, lo:hi] = e + S_k[r0:r1, :] M[:, lo:hi]  (the GEMM adds to
     * the broadcast e) */
    for (int b = r0; b < r1; b++)
        memcpy(a + (long)b * n + lo, j->e + lo, sizeof(float) * (size_t)width);
    if (m->row_exact)
        for (int b = r0; b < r1; b++)
            blas_sgemv_t_serial(n, (int)width, 1.0f, t->M + lo, n, Sk + (long)b * n, 1.0f, a + (long)b * n + lo);
    else
        blas_sgemm_serial(0, 0, r1 - r0, (int)width, n, 1.0f, Sk + (long)r0 * n, n, t->M + lo, n, 1.0f,
                          a + (long)r0 * n + lo, n);
    int last = j->s + 1 == m->steps;
    for (int b = r0; b < r1; b++) {
        long o = (long)b * n + lo;
        stage_update(k, j->h, width, q + o, pp + o, sq + o, sp + o, ps + o, a + o,
                     k < 3 ? Qk + row + o : NULL);
        if (k < 3) {
            sin_w(m, Sk + row + o, Qk + row + o, j->w, width);
        } else if (!last) {
            /* stage 1 of the next step */
            memcpy(Q0 + 4 * row + o, q + o, sizeof(float) * (size_t)width);
            sin_w(m, S0 + 4 * row + o, q + o, j->w, width);
        }
    }
}

int osc_forward(const osc_model *m, const float *C, const float *e,
                const float *x, const float *noise, int B, float *y,
                osc_tape *tape)
{
    int n = m->n;
    if (B < 0 || (tape && (B > tape->cap || tape->n != n || tape->steps != m->steps)))
        return PATCTL_ERR_ARG;
    if (B == 0)
        return PATCTL_OK;

    osc_tape *own = NULL;
    if (!tape) {
        own = tape = osc_tape_alloc(n, B, m->steps);
        if (!tape)
            return PATCTL_ERR_NOMEM;
    }
    long len = (long)B * n;
    fwd_job j = {.m = m, .t = tape, .e = e, .x = x, .noise = noise, .B = B, .s = 0, .k = -1,
                 .h = m->t_end / (float)m->steps, .w = 1.0f + m->k.eta, .bl = stage_blocks(B, n, m->row_exact)};
    int np = j.bl.nrb * j.bl.ncb;

    laplacian(tape->L, tape->M, m, C, n);
    team_run(fwd_part, &j, np);
    for (j.s = 0; j.s < m->steps; j.s++)
        for (j.k = 0; j.k < 4; j.k++)
            team_run(fwd_part, &j, np);

    const float *q = tape->w[0];
    memcpy(tape->qT, q, sizeof(float) * (size_t)len);
    float og = m->k.out_gain, oo = m->k.out_offset;
    for (long i = 0; i < len; i++)
        y[i] = og * q[i] + oo;
    tape->B = B;
    osc_tape_free(own);
    return PATCTL_OK;
}

int osc_tape_coupling_input(const osc_tape *t, float *F)
{
    if (!t || t->B <= 0)
        return PATCTL_ERR_ARG;
    long len = (long)t->B * t->n, row = (long)t->cap * t->n;
    static const float wk[4] = {1.0f, 2.0f, 2.0f, 1.0f};
    float norm = 1.0f / (3.0f * (float)t->steps * (float)t->steps);
    memset(F, 0, sizeof(float) * (size_t)len);
    for (int s = 0; s < t->steps; s++)
        for (int k = 0; k < 4; k++) {
            float beta = ((k < 3 ? 1.0f : 0.0f) + (float)(t->steps - 1 - s) * wk[k]) * norm;
            const float *S = t->S + (long)(4 * s + k) * row;
            for (long i = 0; i < len; i++)
                F[i] += beta * S[i];
        }
    return PATCTL_OK;
}

int osc_tape_self_sensitivity(const osc_model *m, const osc_tape *t, float *J)
{
    if (!t || t->B <= 0 || t->n != m->n || t->steps != m->steps)
        return PATCTL_ERR_ARG;
    int n = t->n;
    long row = (long)t->cap * n;
    float h = m->t_end / (float)m->steps, w = 1.0f + m->k.eta;
    for (int b = 0; b < t->B; b++)
        for (int i = 0; i < n; i++) {
            long o = (long)b * n + i;
            float mii = w * t->M[(long)i * n + i];
            float dq = 1.0f, dp = 0.0f;
            for (int s = 0; s < m->steps; s++) {
                const float *Q = t->Qs + (long)(4 * s) * row + o;
                float c1 = mii * cosf(w * Q[0]), c2 = mii * cosf(w * Q[row]);
                float c3 = mii * cosf(w * Q[2 * row]), c4 = mii * cosf(w * Q[3 * row]);
                float a1 = c1 * dq;
                float p2 = dp + 0.5f * h * a1, a2 = c2 * (dq + 0.5f * h * dp);
                float p3 = dp + 0.5f * h * a2, a3 = c3 * (dq + 0.5f * h * p2);
                float p4 = dp + h * a3, a4 = c4 * (dq + h * p3);
                dq += h / 6.0f * (dp + 2.0f * p2 + 2.0f * p3 + p4);
                dp += h / 6.0f * (a1 + 2.0f * a2 + 2.0f * a3 + a4);
            }
            J[o] = m->k.out_gain * dq;
        }
    return PATCTL_OK;
}

enum { MAX_PARTS = 64 };

/* One backward region: stage k (3..0) of step s, or (k = 4) the output map
 * and the start of the last step. */
typedef struct {
    const osc_model *m;
    osc_tape *t;
    const float *gy;
    int B, s, k;
    float h, w;
    int want_eta;
    blocks bl;
    double geta[MAX_PARTS];     /* per-part sums, added in part order */
} bwd_job;

/* The start of step s's backward on [lo, hi) of every row:
 * ga_k and gp_k from the gradients gq, gp at the end of the step. */
PATCTL_HOT static void bwd_step_begin(const bwd_job *j, int s, long o, long width)
{
    osc_tape *t = j->t;
    long row = (long)t->cap * j->m->n;
    float h = j->h, h6 = h / 6.0f, h3 = h / 3.0f;
    float *GA = t->GA + (long)(4 * s) * row;
    float *restrict gq = t->w[0] + o, *restrict gp = t->w[1] + o;
    float *restrict gp1 = t->w[4] + o, *restrict gp2 = t->w[5] + o, *restrict gp3 = t->w[6] + o;
    float *restrict ga1 = GA + o, *restrict ga2 = GA + row + o, *restrict ga3 = GA + 2 * row + o,
          *restrict ga4 = GA + 3 * row + o;
    for (long i = 0; i < width; i++) {
        float gQ = gq[i], gP = gp[i];
        ga1[i] = h6 * gP;
        ga2[i] = h3 * gP;
        ga3[i] = h3 * gP;
        ga4[i] = h6 * gP;
        float gp4 = h6 * gQ;
        gp1[i] = h6 * gQ;
        gp2[i] = h3 * gQ;
        gp3[i] = h3 * gQ;
        /* p4 = p + h a3 */
        gp[i] += gp4;
        ga3[i] += h * gp4;
    }
}

PATCTL_HOT static void bwd_part(void *arg, int p, int np)
{
    bwd_job *j = arg;
    const osc_model *m = j->m;
    osc_tape *t = j->t;
    int n = m->n, r0, r1, lo, hi, s = j->s, k = j->k;
    (void)np;
    block_of(j->bl, j->B, n, p, &r0, &r1, &lo, &hi);
    long width = hi - lo, row = (long)t->cap * n;
    j->geta[p] = 0.0;
    if (width <= 0 || r1 <= r0)
        return;
    float h = j->h, hh = 0.5f * h, w = j->w;
    if (k == 4) {
        float og = m->k.out_gain;
        for (int b = r0; b < r1; b++) {
            long o = (long)b * n + lo;
            for (long i = o; i < o + width; i++)
                t->w[0][i] = og * j->gy[i];
            memset(t->w[1] + o, 0, sizeof(float) * (size_t)width);
            bwd_step_begin(j, s, o, width);
        }
        return;
    }
    float *GA = t->GA + (long)(4 * s) * row;
    const float *Qk = t->Qs + (long)(4 * s + k) * row;
    float *gS = t->w[2], *c = t->w[3];
    /* gS[r0:r1, lo:hi] = ga_k[r0:r1, :] M[:, lo:hi]  (M symmetric) */
    blas_sgemm_serial(0, 0, r1 - r0, (int)width, n, 1.0f, GA + k * row + (long)r0 * n, n, t->M + lo, n,
                      0.0f, gS + (long)r0 * n + lo, n);
    double acc = 0.0;
    for (int b = r0; b < r1; b++) {
        long o = (long)b * n + lo;
        cos_w(m, c + o, Qk + o, w, width);
        if (j->want_eta)
            for (long i = o; i < o + width; i++)
                acc += (double)gS[i] * Qk[i] * c[i];
        float *restrict gq = t->w[0] + o, *restrict gp = t->w[1] + o;
        const float *restrict gSr = gS + o, *restrict cr = c + o;
        float *restrict gp1 = t->w[4] + o, *restrict gp2 = t->w[5] + o, *restrict gp3 = t->w[6] + o;
        float *restrict ga1 = GA + o, *restrict ga2 = GA + row + o;
        switch (k) {
        case 3: /* a4 = a(q4), q4 = q + h p3;  p3 = p + h/2 a2 */
            for (long i = 0; i < width; i++) {
                float gqs = gSr[i] * w * cr[i];
                gq[i] += gqs;
                gp3[i] += h * gqs;
                gp[i] += gp3[i];
                ga2[i] += hh * gp3[i];
            }
            break;
        case 2: /* a3 = a(q3), q3 = q + h/2 p2;  p2 = p + h/2 a1 */
            for (long i = 0; i < width; i++) {
                float gqs = gSr[i] * w * cr[i];
                gq[i] += gqs;
                gp2[i] += hh * gqs;
                gp[i] += gp2[i];
                ga1[i] += hh * gp2[i];
            }
            break;
        case 1: /* a2 = a(q2), q2 = q + h/2 p1;  p1 = p */
            for (long i = 0; i < width; i++) {
                float gqs = gSr[i] * w * cr[i];
                gq[i] += gqs;
                gp1[i] += hh * gqs;
                gp[i] += gp1[i];
            }
            break;
        default: /* a1 = a(q) */
            for (long i = 0; i < width; i++)
                gq[i] += gSr[i] * w * cr[i];
            if (s > 0)
                bwd_step_begin(j, s - 1, o, width);
            break;
        }
    }
    j->geta[p] = acc;
}

typedef struct {
    const osc_model *m;
    osc_tape *t;
    int B;
    float *gC, *ge;
} grad_job;

/* ge[lo:hi] += sum over stages (forward order) and rows of GA */
PATCTL_HOT static void ge_part(void *arg, int p, int np)
{
    const grad_job *j = arg;
    int n = j->m->n, lo, hi;
    team_split(n, np, ALIGN, p, &lo, &hi);
    long row = (long)j->t->cap * n;
    int ns = 4 * j->m->steps;
    for (int st = 0; st < ns; st++) {
        const float *ga = j->t->GA + (long)st * row;
        for (int b = 0; b < j->B; b++) {
            const float *restrict gr = ga + (long)b * n;
            float *restrict ger = j->ge;
            for (int c = lo; c < hi; c++)
                ger[c] += gr[c];
        }
    }
}

/* gC rows [lo,hi): M = g L(sym(C)) + ... gives
 * dC_ij = g/2 (G_ij + G_ji - G_ii - G_jj)  (i != j), tile by tile with the
 * transposed tile of G copied first so that every loop runs along rows */
PATCTL_HOT static void gc_part(void *arg, int p, int np)
{
    const grad_job *j = arg;
    int n = j->m->n, lo, hi;
    team_split(n, np, TILE, p, &lo, &hi);
    float hg = 0.5f * j->m->k.coupling_gain;
    const float *G = j->t->G;
    float *gC = j->gC;
    float bt[TILE * TILE], dj[TILE];
    for (int i0 = lo; i0 < hi; i0 += TILE) {
        int i1 = i0 + TILE < hi ? i0 + TILE : hi;
        for (int j0 = 0; j0 < n; j0 += TILE) {
            int j1 = j0 + TILE < n ? j0 + TILE : n, w = j1 - j0;
            for (int c = j0; c < j1; c++) {
                const float *gr = G + (long)c * n;
                dj[c - j0] = gr[c];
                for (int i = i0; i < i1; i++)
                    bt[(i - i0) * TILE + (c - j0)] = gr[i];
            }
            for (int i = i0; i < i1; i++) {
                float gii = G[(long)i * n + i];
                float *restrict o = gC + (long)i * n + j0;
                const float *restrict a = G + (long)i * n + j0;
                const float *restrict b = bt + (i - i0) * TILE;
                int diag = i >= j0 && i < j1;
                float keep = diag ? o[i - j0] : 0.0f;
                for (int c = 0; c < w; c++)
                    o[c] += hg * (a[c] + b[c] - gii - dj[c]);
                if (diag)
                    o[i - j0] = keep; /* no diagonal term */
            }
        }
    }
}

int osc_backward(const osc_model *m, osc_tape *t, const float *gy,
                 float *gx, float *gC, float *ge, osc_consts_grad *gk)
{
    int n = m->n, B = t->B;
    if (B <= 0 || t->n != n || t->steps != m->steps)
        return PATCTL_ERR_STATE;
    long len = (long)B * n, row = (long)t->cap * n;
    bwd_job j = {.m = m, .t = t, .gy = gy, .B = B, .s = m->steps - 1, .k = 4,
                 .h = m->t_end / (float)m->steps, .w = 1.0f + m->k.eta, .want_eta = gk != NULL,
                 .bl = stage_blocks(B, n, 0)};
    int np = j.bl.nrb * j.bl.ncb;
    const float *gq = t->w[0];
    double geta = 0.0;

    /* output map (and the start of the last step) */
    team_run(bwd_part, &j, np);
    for (j.s = m->steps - 1; j.s >= 0; j.s--)
        for (j.k = 3; j.k >= 0; j.k--) {
            team_run(bwd_part, &j, np);
            for (int p = 0; p < np; p++)
                geta += j.geta[p];
        }

    /* input map: q0 = a_in x + b_in + noise */
    if (gx) {
        float ig = m->k.in_gain;
        for (long i = 0; i < len; i++)
            gx[i] += ig * gq[i];
    }

    grad_job gj = {m, t, B, gC, ge};
    if (ge)
        team_run(ge_part, &gj, parts_for(2.0 * B * (double)n * n, n));

    /* M: dL/dM = sum over stages S^T ga, one GEMM over the whole tape */
    if (gC || gk) {
        int ns = 4 * m->steps;
        if (B == t->cap) {
            blas_sgemm(1, 0, n, n, ns * B, 1.0f, t->S, t->GA, 0.0f, t->G);
        } else {
            memset(t->G, 0, sizeof(float) * (size_t)n * n);
            for (int st = 0; st < ns; st++)
                blas_sgemm(1, 0, n, n, B, 1.0f, t->S + (long)st * row,
                           t->GA + (long)st * row, 1.0f, t->G);
        }
        if (gC)
            team_run(gc_part, &gj, parts_for(8.0 * n * (double)n, n));
        if (gk) {
            /* dM/dg = L(sym(C)) */
            double acc = 0.0;
            long nn = (long)n * n;
            for (long i = 0; i < nn; i++)
                acc += (double)t->G[i] * t->L[i];
            gk->coupling_gain += (float)acc;
        }
    }
    if (gk) {
        double g_og = 0.0, g_oo = 0.0, g_ig = 0.0, g_io = 0.0;
        for (long i = 0; i < len; i++) {
            g_og += (double)gy[i] * t->qT[i];
            g_oo += gy[i];
        }
        for (long i = 0; i < len; i++) {
            g_ig += (double)gq[i] * t->x0[i];
            g_io += gq[i];
        }
        gk->eta += (float)geta;
        gk->in_gain += (float)g_ig;
        gk->in_offset += (float)g_io;
        gk->out_gain += (float)g_og;
        gk->out_offset += (float)g_oo;
    }
    return PATCTL_OK;
}

double osc_forward_flops(int n, int steps, int B)
{
    return 2.0 * B * (double)n * n * 4.0 * steps;
}
