/* The straightforward oscillator forward and VJP, kept verbatim from the
 * first implementation of surrogate/oscillator.c (scalar libm sinf/cosf, one
 * pass per RK4 operation).  The optimised surrogate/oscillator.c must match
 * it: bitwise with exact trigonometry (osc_model.exact_trig = 1), within a
 * few float ulps per sin/cos otherwise.  Test-only. */
#include "osc_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "surrogate/blas.h"

struct osc_ref_tape {
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
    float *w[12];       /* [cap, N] work vectors */
};

osc_ref_tape *osc_ref_tape_alloc(int n, int cap, int steps)
{
    if (n <= 0 || cap <= 0 || steps <= 0)
        return NULL;
    osc_ref_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    size_t nn = (size_t)n * n, row = (size_t)cap * n, st = (size_t)4 * steps;
    size_t total = 3 * nn + 3 * st * row + 2 * row + 12 * row;
    t->block = malloc(total * sizeof(float));
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
    for (int i = 0; i < 12; i++)
        t->w[i] = p, p += row;
    return t;
}

void osc_ref_tape_free(osc_ref_tape *t)
{
    if (!t)
        return;
    free(t->block);
    free(t);
}

int osc_ref_tape_capacity(const osc_ref_tape *t) { return t ? t->cap : 0; }

void osc_ref_laplacian_sym(float *out, const float *A, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            out[(long)i * n + j] = 0.5f * (A[(long)i * n + j] + A[(long)j * n + i]);
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++)
            if (i != j)
                s += out[(long)i * n + j];
        out[(long)j * n + j] = (float)-s;
    }
}

/* M = g L + Qn - I from L = L(sym(C)) */
static void ref_coupling_from_l(float *M, const osc_model *m, const float *L)
{
    int n = m->n;
    long nn = (long)n * n;
    float g = m->k.coupling_gain;
    for (long i = 0; i < nn; i++)
        M[i] = g * L[i];
    if (m->q_noise)
        for (long i = 0; i < nn; i++)
            M[i] += m->q_noise[i];
    for (int i = 0; i < n; i++)
        M[(long)i * n + i] -= 1.0f;
}

void osc_ref_coupling(float *M, const osc_model *m, const float *C)
{
    osc_ref_laplacian_sym(M, C, m->n);
    ref_coupling_from_l(M, m, M);
}

/* a[B,N] = S M + e, S = sin(w q) stored into S */
static void ref_accel(float *a, float *S, const float *q, const float *M,
                  const float *e, float w, int B, int n)
{
    long len = (long)B * n;
    for (long i = 0; i < len; i++)
        S[i] = sinf(w * q[i]);
    for (int b = 0; b < B; b++)
        memcpy(a + (long)b * n, e, sizeof(float) * (size_t)n);
    blas_sgemm(0, 0, B, n, n, 1.0f, S, M, 1.0f, a);
}

/* dst = src + c * v */
static void ref_axpy3(float *dst, const float *src, float c, const float *v, long len)
{
    for (long i = 0; i < len; i++)
        dst[i] = src[i] + c * v[i];
}

int osc_ref_forward(const osc_model *m, const float *C, const float *e,
                const float *x, const float *noise, int B, float *y,
                osc_ref_tape *tape)
{
    int n = m->n;
    if (B < 0 || (tape && (B > tape->cap || tape->n != n || tape->steps != m->steps)))
        return PATCTL_ERR_ARG;
    if (B == 0)
        return PATCTL_OK;

    osc_ref_tape *own = NULL;
    if (!tape) {
        own = tape = osc_ref_tape_alloc(n, B, m->steps);
        if (!tape)
            return PATCTL_ERR_NOMEM;
    }
    long len = (long)B * n, row = (long)tape->cap * n;
    float h = m->t_end / (float)m->steps, w = 1.0f + m->k.eta;
    float *q = tape->w[0], *p = tape->w[1], *qs = tape->w[2], *ps = tape->w[3];
    float *a = tape->w[4], *sq = tape->w[5], *sp = tape->w[6];

    osc_ref_laplacian_sym(tape->L, C, n);
    ref_coupling_from_l(tape->M, m, tape->L);
    memcpy(tape->x0, x, sizeof(float) * (size_t)len);
    for (long i = 0; i < len; i++)
        q[i] = m->k.in_gain * x[i] + m->k.in_offset + (noise ? noise[i] : 0.0f);
    memset(p, 0, sizeof(float) * (size_t)len);

    for (int s = 0; s < m->steps; s++) {
        float *S0 = tape->S + (long)(4 * s) * row, *Q0 = tape->Qs + (long)(4 * s) * row;
        /* stage 1: (q, p) */
        memcpy(Q0, q, sizeof(float) * (size_t)len);
        ref_accel(a, S0, q, tape->M, e, w, B, n);
        for (long i = 0; i < len; i++) {
            sq[i] = p[i];            /* running sum of k_q */
            sp[i] = a[i];            /* running sum of k_p */
        }
        ref_axpy3(qs, q, 0.5f * h, p, len);
        ref_axpy3(ps, p, 0.5f * h, a, len);
        /* stage 2 */
        memcpy(Q0 + row, qs, sizeof(float) * (size_t)len);
        ref_accel(a, S0 + row, qs, tape->M, e, w, B, n);
        for (long i = 0; i < len; i++) {
            sq[i] += 2.0f * ps[i];
            sp[i] += 2.0f * a[i];
        }
        ref_axpy3(qs, q, 0.5f * h, ps, len);
        ref_axpy3(ps, p, 0.5f * h, a, len);
        /* stage 3 */
        memcpy(Q0 + 2 * row, qs, sizeof(float) * (size_t)len);
        ref_accel(a, S0 + 2 * row, qs, tape->M, e, w, B, n);
        for (long i = 0; i < len; i++) {
            sq[i] += 2.0f * ps[i];
            sp[i] += 2.0f * a[i];
        }
        ref_axpy3(qs, q, h, ps, len);
        ref_axpy3(ps, p, h, a, len);
        /* stage 4 */
        memcpy(Q0 + 3 * row, qs, sizeof(float) * (size_t)len);
        ref_accel(a, S0 + 3 * row, qs, tape->M, e, w, B, n);
        for (long i = 0; i < len; i++) {
            sq[i] += ps[i];
            sp[i] += a[i];
        }
        for (long i = 0; i < len; i++) {
            q[i] += (h / 6.0f) * sq[i];
            p[i] += (h / 6.0f) * sp[i];
        }
    }
    memcpy(tape->qT, q, sizeof(float) * (size_t)len);
    for (long i = 0; i < len; i++)
        y[i] = m->k.out_gain * q[i] + m->k.out_offset;
    tape->B = B;
    osc_ref_tape_free(own);
    return PATCTL_OK;
}

/* Backprop through a = S M + e at one stage: ga given; returns gq (+= into
 * gq_acc scaled copy in gqs), and accumulates d eta. */
static void ref_accel_backward(float *gqs, double *geta, const float *ga,
                           const float *Qst, const float *M, float w, float *gS,
                           int B, int n)
{
    long len = (long)B * n;
    blas_sgemm(0, 0, B, n, n, 1.0f, ga, M, 0.0f, gS); /* M symmetric */
    double acc = 0.0;
    for (long i = 0; i < len; i++) {
        float c = cosf(w * Qst[i]);
        gqs[i] = gS[i] * w * c;
        acc += (double)gS[i] * Qst[i] * c;
    }
    *geta += acc;
}

int osc_ref_backward(const osc_model *m, osc_ref_tape *t, const float *gy,
                 float *gx, float *gC, float *ge, osc_consts_grad *gk)
{
    int n = m->n, B = t->B;
    if (B <= 0 || t->n != n || t->steps != m->steps)
        return PATCTL_ERR_STATE;
    long len = (long)B * n, row = (long)t->cap * n;
    float h = m->t_end / (float)m->steps, w = 1.0f + m->k.eta;
    float *gq = t->w[0], *gp = t->w[1], *gS = t->w[2], *gqs = t->w[3];
    float *gp1 = t->w[4], *gp2 = t->w[5], *gp3 = t->w[6], *gp4 = t->w[7];
    double geta = 0.0;

    /* output map */
    double g_og = 0.0, g_oo = 0.0;
    for (long i = 0; i < len; i++) {
        gq[i] = m->k.out_gain * gy[i];
        g_og += (double)gy[i] * t->qT[i];
        g_oo += gy[i];
    }
    memset(gp, 0, sizeof(float) * (size_t)len);

    for (int s = m->steps - 1; s >= 0; s--) {
        float *GA = t->GA + (long)(4 * s) * row;
        const float *Q0 = t->Qs + (long)(4 * s) * row;
        float *ga1 = GA, *ga2 = GA + row, *ga3 = GA + 2 * row, *ga4 = GA + 3 * row;
        for (long i = 0; i < len; i++) {
            float gQ = gq[i], gP = gp[i];
            ga1[i] = (h / 6.0f) * gP;
            ga2[i] = (h / 3.0f) * gP;
            ga3[i] = (h / 3.0f) * gP;
            ga4[i] = (h / 6.0f) * gP;
            gp1[i] = (h / 6.0f) * gQ;
            gp2[i] = (h / 3.0f) * gQ;
            gp3[i] = (h / 3.0f) * gQ;
            gp4[i] = (h / 6.0f) * gQ;
            /* p4 = p + h a3 */
            gp[i] += gp4[i];
            ga3[i] += h * gp4[i];
        }
        /* a4 = a(q4), q4 = q + h p3 */
        ref_accel_backward(gqs, &geta, ga4, Q0 + 3 * row, t->M, w, gS, B, n);
        for (long i = 0; i < len; i++) {
            gq[i] += gqs[i];
            gp3[i] += h * gqs[i];
            /* p3 = p + h/2 a2 */
            gp[i] += gp3[i];
            ga2[i] += 0.5f * h * gp3[i];
        }
        /* a3 = a(q3), q3 = q + h/2 p2 */
        ref_accel_backward(gqs, &geta, ga3, Q0 + 2 * row, t->M, w, gS, B, n);
        for (long i = 0; i < len; i++) {
            gq[i] += gqs[i];
            gp2[i] += 0.5f * h * gqs[i];
            /* p2 = p + h/2 a1 */
            gp[i] += gp2[i];
            ga1[i] += 0.5f * h * gp2[i];
        }
        /* a2 = a(q2), q2 = q + h/2 p1 */
        ref_accel_backward(gqs, &geta, ga2, Q0 + row, t->M, w, gS, B, n);
        for (long i = 0; i < len; i++) {
            gq[i] += gqs[i];
            gp1[i] += 0.5f * h * gqs[i];
            /* p1 = p */
            gp[i] += gp1[i];
        }
        /* a1 = a(q) */
        ref_accel_backward(gqs, &geta, ga1, Q0, t->M, w, gS, B, n);
        for (long i = 0; i < len; i++)
            gq[i] += gqs[i];
    }

    /* input map: q0 = a_in x + b_in + noise */
    double g_ig = 0.0, g_io = 0.0;
    for (long i = 0; i < len; i++) {
        g_ig += (double)gq[i] * t->x0[i];
        g_io += gq[i];
        if (gx)
            gx[i] += m->k.in_gain * gq[i];
    }

    /* e: every stage acceleration has +e */
    if (ge) {
        int ns = 4 * m->steps;
        for (int st = 0; st < ns; st++) {
            const float *ga = t->GA + (long)st * row;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < n; j++)
                    ge[j] += ga[(long)b * n + j];
        }
    }

    /* M: dL/dM = sum over stages S^T ga, one GEMM per stage over the tape */
    if (gC || gk) {
        memset(t->G, 0, sizeof(float) * (size_t)n * n);
        int ns = 4 * m->steps;
        if (B == t->cap) {
            blas_sgemm(1, 0, n, n, ns * B, 1.0f, t->S, t->GA, 0.0f, t->G);
        } else {
            for (int st = 0; st < ns; st++)
                blas_sgemm(1, 0, n, n, B, 1.0f, t->S + (long)st * row,
                           t->GA + (long)st * row, 1.0f, t->G);
        }
        float g = m->k.coupling_gain;
        if (gC) {
            /* M = g L(sym(C)) + ...:  dC_ij = g/2 (G_ij + G_ji - G_ii - G_jj) */
            for (int i = 0; i < n; i++) {
                float gii = t->G[(long)i * n + i];
                for (int j = 0; j < n; j++) {
                    if (i == j)
                        continue;
                    gC[(long)i * n + j] += 0.5f * g *
                        (t->G[(long)i * n + j] + t->G[(long)j * n + i] - gii -
                         t->G[(long)j * n + j]);
                }
            }
        }
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
        gk->eta += (float)geta;
        gk->in_gain += (float)g_ig;
        gk->in_offset += (float)g_io;
        gk->out_gain += (float)g_og;
        gk->out_offset += (float)g_oo;
    }
    return PATCTL_OK;
}
