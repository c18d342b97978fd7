/* The MLP surrogate: forward, exact VJP, training with early stopping.
 * See mlp.h for the equations and shapes. */
#include "surrogate/mlp.h"

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patctl/error.h"
#include "surrogate/blas.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mlp *mlp_new(const mlp_shape *sh)
{
    if (sh->n_x <= 0 || sh->n_theta < 0 || sh->n_out <= 0 || sh->depth < 1 ||
        sh->depth > MLP_MAX_DEPTH || sh->width <= 0)
        return NULL;
    mlp *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->sh = *sh;
    long nx = sh->n_x, nt = sh->n_theta, no = sh->n_out, w = sh->width;
    long np = w * nx + w * nt + w + (long)(sh->depth - 1) * (w * w + w) + no * w + no +
              (sh->skip ? no * nx : 0);
    m->n_params = np;
    m->n_norm = 2 * (nx + nt + no);
    m->params = calloc((size_t)np, sizeof(float));
    m->norm = malloc(sizeof(float) * (size_t)m->n_norm);
    if (!m->params || !m->norm) {
        mlp_free(m);
        return NULL;
    }
    float *p = m->params;
    m->W0x = p, p += w * nx;
    m->W0t = p, p += w * nt;
    m->b0 = p, p += w;
    for (int l = 1; l < sh->depth; l++) {
        m->W[l] = p, p += w * w;
        m->b[l] = p, p += w;
    }
    m->Wo = p, p += no * w;
    m->bo = p, p += no;
    m->Ws = sh->skip ? p : NULL;
    float *q = m->norm;
    m->mx = q, q += nx;
    m->sx = q, q += nx;
    m->mt = q, q += nt;
    m->st = q, q += nt;
    m->my = q, q += no;
    m->sy = q;
    for (long i = 0; i < nx; i++)
        m->mx[i] = 0, m->sx[i] = 1;
    for (long i = 0; i < nt; i++)
        m->mt[i] = 0, m->st[i] = 1;
    for (long i = 0; i < no; i++)
        m->my[i] = 0, m->sy[i] = 1;
    return m;
}

void mlp_free(mlp *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->norm);
    free(m->tape);
    free(m->grp);
    free(m);
}

void mlp_init(mlp *m, uint64_t seed)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r)
        return;
    gsl_rng_set(r, (unsigned long)(seed * 0x9E3779B97F4A7C15ULL + 1));
    const mlp_shape *s = &m->sh;
    memset(m->params, 0, sizeof(float) * (size_t)m->n_params);
    long w = s->width;
    /* Glorot for the x part; the theta part starts with a quarter of the x
     * part's pre-activation variance, so that many parameters (a 64-oscillator
     * device has 4160) do not drown the inputs and saturate the units */
    double a0 = sqrt(6.0 / (double)(s->n_x + w));
    double at = s->n_theta ? a0 * sqrt(0.25 * (double)s->n_x / (double)s->n_theta) : 0.0;
    for (long i = 0; i < w * s->n_x; i++)
        m->W0x[i] = (float)(a0 * (2 * gsl_rng_uniform(r) - 1));
    for (long i = 0; i < w * s->n_theta; i++)
        m->W0t[i] = (float)(at * (2 * gsl_rng_uniform(r) - 1));
    double a1 = sqrt(6.0 / (double)(2 * w));
    for (int l = 1; l < s->depth; l++)
        for (long i = 0; i < w * w; i++)
            m->W[l][i] = (float)(a1 * (2 * gsl_rng_uniform(r) - 1));
    double ao = sqrt(6.0 / (double)(w + s->n_out));
    for (long i = 0; i < (long)s->n_out * w; i++)
        m->Wo[i] = (float)(ao * (2 * gsl_rng_uniform(r) - 1));
    gsl_rng_free(r);
}

static int ensure(mlp *m, int B, int G)
{
    if (B <= m->cap && G <= m->capG)
        return 0;
    int cap = B > m->cap ? B : m->cap, capG = G > m->capG ? G : m->capG;
    const mlp_shape *s = &m->sh;
    size_t nx = (size_t)s->n_x, nt = (size_t)s->n_theta, w = (size_t)s->width, no = (size_t)s->n_out;
    size_t rows = (size_t)cap, gs = (size_t)capG;
    size_t total = rows * nx * 2 + gs * nt * 2 + rows * w * ((size_t)s->depth + 2) +
                   gs * w * 2 + rows * no;
    float *t = malloc(sizeof(float) * total);
    int32_t *g = malloc(sizeof(int32_t) * rows);
    if (!t || !g) {
        free(t), free(g);
        return PATCTL_ERR_NOMEM;
    }
    free(m->tape), free(m->grp);
    m->tape = t, m->grp = g;
    m->cap = cap, m->capG = capG;
    float *p = t;
    m->xn = p, p += rows * nx;
    m->gxn = p, p += rows * nx;
    m->tn = p, p += gs * nt;
    m->gtn = p, p += gs * nt;
    for (int l = 0; l < s->depth; l++)
        m->h[l] = p, p += rows * w;
    m->gz = p, p += rows * w;
    m->gh = p, p += rows * w;
    m->t0 = p, p += gs * w;
    m->gt0 = p, p += gs * w;
    m->gzo = p;
    m->B = m->G = 0;
    return 0;
}

int mlp_forward(mlp *m, const float *theta, int G, const int32_t *grp, const float *x, int B,
                float *y)
{
    const mlp_shape *s = &m->sh;
    if (B < 0 || G < 1)
        return PATCTL_ERR_ARG;
    int rc = ensure(m, B ? B : 1, G);
    if (rc)
        return rc;
    int nx = s->n_x, no = s->n_out, w = s->width;
    long nt = s->n_theta;
    for (int b = 0; b < B; b++) {
        int g = grp ? grp[b] : 0;
        if (g < 0 || g >= G)
            return PATCTL_ERR_ARG;
        m->grp[b] = g;
        for (int i = 0; i < nx; i++)
            m->xn[(long)b * nx + i] = (x[(long)b * nx + i] - m->mx[i]) / m->sx[i];
    }
    for (int g = 0; g < G; g++)
        for (long i = 0; i < nt; i++)
            m->tn[g * nt + i] = (theta[g * nt + i] - m->mt[i]) / m->st[i];
    m->B = B, m->G = G;
    if (B == 0)
        return 0;
    if (nt > 0)
        blas_sgemm(0, 1, G, w, (int)nt, 1.0f, m->tn, m->W0t, 0.0f, m->t0);
    else
        memset(m->t0, 0, sizeof(float) * (size_t)G * (size_t)w);
    blas_sgemm(0, 1, B, w, nx, 1.0f, m->xn, m->W0x, 0.0f, m->h[0]);
    for (int b = 0; b < B; b++) {
        float *h = m->h[0] + (long)b * w;
        const float *t = m->t0 + (long)m->grp[b] * w;
        for (int j = 0; j < w; j++)
            h[j] = tanhf(h[j] + t[j] + m->b0[j]);
    }
    for (int l = 1; l < s->depth; l++) {
        blas_sgemm(0, 1, B, w, w, 1.0f, m->h[l - 1], m->W[l], 0.0f, m->h[l]);
        for (int b = 0; b < B; b++) {
            float *h = m->h[l] + (long)b * w;
            for (int j = 0; j < w; j++)
                h[j] = tanhf(h[j] + m->b[l][j]);
        }
    }
    for (int b = 0; b < B; b++)
        memcpy(y + (long)b * no, m->bo, sizeof(float) * (size_t)no);
    blas_sgemm(0, 1, B, no, w, 1.0f, m->h[s->depth - 1], m->Wo, 1.0f, y);
    if (m->Ws)
        blas_sgemm(0, 1, B, no, nx, 1.0f, m->xn, m->Ws, 1.0f, y);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < no; i++)
            y[(long)b * no + i] = m->my[i] + m->sy[i] * y[(long)b * no + i];
    return 0;
}

static void colsum_acc(float *out, const float *a, int B, int n)
{
    for (int b = 0; b < B; b++)
        for (int j = 0; j < n; j++)
            out[j] += a[(long)b * n + j];
}

int mlp_backward(mlp *m, const float *gy, float *gx, float *gtheta, float *gparams)
{
    const mlp_shape *s = &m->sh;
    int B = m->B, G = m->G, nx = s->n_x, no = s->n_out, w = s->width, D = s->depth;
    long nt = s->n_theta;
    if (G < 1 || !m->tape)
        return PATCTL_ERR_STATE;
    if (B == 0)
        return 0;
    float *gzo = m->gzo;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < no; i++)
            gzo[(long)b * no + i] = gy[(long)b * no + i] * m->sy[i];
    /* gradient views in gparams, same layout as params */
    float *gW0x = NULL, *gW0t = NULL, *gb0 = NULL, *gW[MLP_MAX_DEPTH] = {0}, *gb[MLP_MAX_DEPTH] = {0};
    float *gWo = NULL, *gbo = NULL, *gWs = NULL;
    if (gparams) {
        gW0x = gparams + (m->W0x - m->params);
        gW0t = gparams + (m->W0t - m->params);
        gb0 = gparams + (m->b0 - m->params);
        for (int l = 1; l < D; l++) {
            gW[l] = gparams + (m->W[l] - m->params);
            gb[l] = gparams + (m->b[l] - m->params);
        }
        gWo = gparams + (m->Wo - m->params);
        gbo = gparams + (m->bo - m->params);
        gWs = m->Ws ? gparams + (m->Ws - m->params) : NULL;
        blas_sgemm(1, 0, no, w, B, 1.0f, gzo, m->h[D - 1], 1.0f, gWo);
        colsum_acc(gbo, gzo, B, no);
        if (gWs)
            blas_sgemm(1, 0, no, nx, B, 1.0f, gzo, m->xn, 1.0f, gWs);
    }
    blas_sgemm(0, 0, B, w, no, 1.0f, gzo, m->Wo, 0.0f, m->gh);
    if (m->Ws)
        blas_sgemm(0, 0, B, nx, no, 1.0f, gzo, m->Ws, 0.0f, m->gxn);
    else
        memset(m->gxn, 0, sizeof(float) * (size_t)B * (size_t)nx);
    for (int l = D - 1; l >= 0; l--) {
        long len = (long)B * w;
        const float *h = m->h[l];
        for (long i = 0; i < len; i++)
            m->gz[i] = m->gh[i] * (1.0f - h[i] * h[i]);
        if (l > 0) {
            if (gparams) {
                blas_sgemm(1, 0, w, w, B, 1.0f, m->gz, m->h[l - 1], 1.0f, gW[l]);
                colsum_acc(gb[l], m->gz, B, w);
            }
            blas_sgemm(0, 0, B, w, w, 1.0f, m->gz, m->W[l], 0.0f, m->gh);
        }
    }
    /* first layer: gz holds d/d(pre-activation of h0) */
    if (gparams) {
        blas_sgemm(1, 0, w, nx, B, 1.0f, m->gz, m->xn, 1.0f, gW0x);
        colsum_acc(gb0, m->gz, B, w);
    }
    blas_sgemm(0, 0, B, nx, w, 1.0f, m->gz, m->W0x, 1.0f, m->gxn);
    if (nt > 0 && (gparams || gtheta)) {
        memset(m->gt0, 0, sizeof(float) * (size_t)G * (size_t)w);
        for (int b = 0; b < B; b++) {
            float *t = m->gt0 + (long)m->grp[b] * w;
            const float *z = m->gz + (long)b * w;
            for (int j = 0; j < w; j++)
                t[j] += z[j];
        }
        if (gparams)
            blas_sgemm(1, 0, w, (int)nt, G, 1.0f, m->gt0, m->tn, 1.0f, gW0t);
        if (gtheta) {
            blas_sgemm(0, 0, G, (int)nt, w, 1.0f, m->gt0, m->W0t, 0.0f, m->gtn);
            for (int g = 0; g < G; g++)
                for (long i = 0; i < nt; i++)
                    gtheta[g * nt + i] += m->gtn[g * nt + i] / m->st[i];
        }
    }
    if (gx)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < nx; i++)
                gx[(long)b * nx + i] += m->gxn[(long)b * nx + i] / m->sx[i];
    return 0;
}

/* ---------------------------------------------------------------------- */
/* training                                                                */

void mlp_default_train_options(mlp_train_options *o)
{
    memset(o, 0, sizeof(*o));
    o->depth = 2;
    o->width = 256;
    o->skip = 1;
    o->batch_settings = 8;
    o->max_epochs = 300;
    o->patience = 30;
    o->lr = 1e-3;
    o->weight_decay = 1e-4;
}

/* mean and std (floor: 1 when the column is constant) of n rows of width c
 * with stride c, selected rows only */
static void col_stats(const float *v, long rows, long c, const uint8_t *use, float *mean, float *sd)
{
    for (long j = 0; j < c; j++) {
        double s = 0, ss = 0;
        long n = 0;
        for (long r = 0; r < rows; r++) {
            if (use && !use[r])
                continue;
            double x = v[r * c + j];
            s += x, ss += x * x, n++;
        }
        double mu = n ? s / (double)n : 0.0, var = n ? ss / (double)n - mu * mu : 0.0;
        double sdv = var > 0 ? sqrt(var) : 0.0;
        mean[j] = (float)mu;
        sd[j] = sdv > 1e-6 * (1.0 + fabs(mu)) ? (float)sdv : 1.0f;
    }
}

/* The linear shortcut by ridge regression on the training rows, in
 * normalised units: Ws = Z^T X (X^T X + lambda I)^-1 (X = xn, Z = zn, both
 * centred), bo = 0.  The hidden layers then start on the residual. */
static int skip_least_squares(mlp *m, const fit_set *d, const uint8_t *use_s)
{
    int nx = m->sh.n_x, no = m->sh.n_out;
    gsl_matrix *A = gsl_matrix_calloc((size_t)nx, (size_t)nx);
    gsl_matrix *Bm = gsl_matrix_calloc((size_t)nx, (size_t)no);
    double *xr = malloc(sizeof(double) * (size_t)(nx + no));
    int rc = PATCTL_ERR_NOMEM;
    if (!A || !Bm || !xr)
        goto out;
    long n = 0;
    for (long s = 0; s < d->S; s++) {
        if (!use_s[s])
            continue;
        n++;
        for (int i = 0; i < nx; i++)
            xr[i] = (d->x[s * nx + i] - m->mx[i]) / m->sx[i];
        for (int j = 0; j < no; j++)
            xr[nx + j] = (d->y[s * no + j] - m->my[j]) / m->sy[j];
        for (int i = 0; i < nx; i++) {
            double xi = xr[i];
            double *arow = gsl_matrix_ptr(A, (size_t)i, 0), *brow = gsl_matrix_ptr(Bm, (size_t)i, 0);
            for (int k = 0; k <= i; k++)
                arow[k] += xi * xr[k];
            for (int j = 0; j < no; j++)
                brow[j] += xi * xr[nx + j];
        }
    }
    for (int i = 0; i < nx; i++) {
        for (int k = 0; k < i; k++)
            gsl_matrix_set(A, (size_t)k, (size_t)i, gsl_matrix_get(A, (size_t)i, (size_t)k));
        *gsl_matrix_ptr(A, (size_t)i, (size_t)i) += 1e-3 * (double)(n ? n : 1);
    }
    rc = PATCTL_ERR_NUMERIC;
    if (gsl_linalg_cholesky_decomp1(A))
        goto out;
    gsl_vector_view col;
    for (int j = 0; j < no; j++) {
        col = gsl_matrix_column(Bm, (size_t)j);
        if (gsl_linalg_cholesky_svx(A, &col.vector))
            goto out;
        for (int i = 0; i < nx; i++)
            m->Ws[(long)j * nx + i] = (float)gsl_vector_get(&col.vector, (size_t)i);
        m->bo[j] = 0.0f;
    }
    rc = 0;
out:
    gsl_matrix_free(A);
    gsl_matrix_free(Bm);
    free(xr);
    return rc;
}

/* RMS error in output units over settings of role `which` */
static int mlp_rms(mlp *m, const fit_set *d, const uint8_t *role, int which, float *ybuf, double *out)
{
    long s0, s1, k, cnt = 0;
    double sse = 0.0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (role && role[k] != which)
            continue;
        int rc = mlp_forward(m, d->theta + k * d->n_theta, 1, NULL, d->x + s0 * d->n_in,
                             (int)(s1 - s0), ybuf);
        if (rc)
            return rc;
        const float *ym = d->y + s0 * d->n_out;
        for (long i = 0; i < (s1 - s0) * d->n_out; i++) {
            double e = (double)ybuf[i] - ym[i];
            sse += e * e;
        }
        cnt += (s1 - s0) * d->n_out;
    }
    *out = cnt ? sqrt(sse / (double)cnt) : -1.0;
    return isfinite(*out) ? 0 : PATCTL_ERR_NUMERIC;
}

int mlp_train(mlp **out, const fit_set *d, const uint8_t *role, const mlp_train_options *o,
              mlp_train_result *r, char *err, size_t errlen)
{
    *out = NULL;
    memset(r, 0, sizeof(*r));
    double t0 = now_s();
    mlp_shape sh = {.n_x = d->n_in, .n_theta = d->n_theta, .n_out = d->n_out, .depth = o->depth,
                    .width = o->width, .skip = o->skip};
    mlp *m = mlp_new(&sh);
    if (!m) {
        snprintf(err, errlen, "MLP: bad shape (depth %d, width %d) or out of memory", o->depth, o->width);
        return PATCTL_ERR_ARG;
    }
    mlp_init(m, o->seed);
    int rc = 0;
    long K = d->K, S = d->S, nx = d->n_in, no = d->n_out, nt = d->n_theta;
    /* training settings and their sample ranges */
    long *tr = malloc(sizeof(long) * (size_t)(K + 1)), *g0 = malloc(sizeof(long) * (size_t)(K + 1));
    long *g1 = malloc(sizeof(long) * (size_t)(K + 1)), *order = malloc(sizeof(long) * (size_t)(K + 1));
    uint8_t *use_s = calloc((size_t)(S + 1), 1), *use_k = calloc((size_t)(K + 1), 1);
    float *adam = calloc((size_t)(3 * m->n_params), sizeof(float)), *best = malloc(sizeof(float) * (size_t)m->n_params);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    float *X = NULL, *Y = NULL, *T = NULL, *P = NULL, *GY = NULL;
    int32_t *grp = NULL;
    if (!tr || !g0 || !g1 || !order || !use_s || !use_k || !adam || !best || !rng) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    gsl_rng_set(rng, (unsigned long)(o->seed + 12345));
    long ntr = 0, maxg = 0, s0, s1, k;
    int have_val = 0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        int rl = role ? role[k] : FIT_TRAIN;
        if (rl == FIT_VAL)
            have_val = 1;
        if (rl != FIT_TRAIN)
            continue;
        tr[ntr] = k, g0[ntr] = s0, g1[ntr] = s1, ntr++;
        use_k[k] = 1;
        for (long i = s0; i < s1; i++)
            use_s[i] = 1;
        if (s1 - s0 > maxg)
            maxg = s1 - s0;
    }
    if (!ntr) {
        snprintf(err, errlen, "MLP: no training settings");
        rc = PATCTL_ERR_ARG;
        goto out;
    }
    for (long i = 0; i < ntr; i++)
        order[i] = i;
    col_stats(d->x, S, nx, use_s, m->mx, m->sx);
    col_stats(d->y, S, no, use_s, m->my, m->sy);
    col_stats(d->theta, K, nt, use_k, m->mt, m->st);
    if (m->Ws && skip_least_squares(m, d, use_s)) {
        snprintf(err, errlen, "MLP: the linear least-squares start failed (singular inputs?)");
        rc = PATCTL_ERR_NUMERIC;
        goto out;
    }

    int bs = o->batch_settings > 0 ? o->batch_settings : 1;
    long cap = maxg * bs;
    X = malloc(sizeof(float) * (size_t)(cap * nx));
    Y = malloc(sizeof(float) * (size_t)(cap * no));
    P = malloc(sizeof(float) * (size_t)(cap * no));
    GY = malloc(sizeof(float) * (size_t)(cap * no));
    T = malloc(sizeof(float) * (size_t)(bs * nt + 1));
    grp = malloc(sizeof(int32_t) * (size_t)cap);
    if (!X || !Y || !P || !GY || !T || !grp) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    float *ma = adam, *va = adam + m->n_params, *ga = adam + 2 * m->n_params;
    long steps_ep = (ntr + bs - 1) / bs, total = steps_ep * (long)o->max_epochs, step = 0;
    double best_val = INFINITY;
    int since = 0;
    memcpy(best, m->params, sizeof(float) * (size_t)m->n_params);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (int ep = 0; ep < o->max_epochs; ep++) {
        if (o->stop && *o->stop)
            break;
        gsl_ran_shuffle(rng, order, (size_t)ntr, sizeof(long));
        double sse = 0.0;
        long cnt = 0;
        for (long b0 = 0; b0 < ntr; b0 += bs) {
            long be = b0 + bs < ntr ? b0 + bs : ntr, rows = 0;
            int G = 0;
            for (long i = b0; i < be; i++, G++) {
                long kk = tr[order[i]], a = g0[order[i]], e = g1[order[i]];
                memcpy(X + rows * nx, d->x + a * nx, sizeof(float) * (size_t)((e - a) * nx));
                memcpy(Y + rows * no, d->y + a * no, sizeof(float) * (size_t)((e - a) * no));
                memcpy(T + (long)G * nt, d->theta + kk * nt, sizeof(float) * (size_t)nt);
                for (long q = a; q < e; q++)
                    grp[rows++] = G;
            }
            if ((rc = mlp_forward(m, T, G, grp, X, (int)rows, P)))
                goto out;
            float sc = 2.0f / ((float)rows * (float)no);
            for (long i = 0; i < rows * no; i++) {
                float e = P[i] - Y[i];
                sse += (double)e * e;
                float isy = 1.0f / m->sy[i % no];
                GY[i] = sc * e * isy * isy;
            }
            cnt += rows * no;
            memset(ga, 0, sizeof(float) * (size_t)m->n_params);
            if ((rc = mlp_backward(m, GY, NULL, NULL, ga)))
                goto out;
            step++;
            double frac = (double)step / (double)(total ? total : 1);
            float lr = (float)(o->lr * (0.05 + 0.95 * 0.5 * (1.0 + cos(M_PI * frac))));
            float c1 = 1.0f / (1.0f - powf(b1, (float)step)), c2 = 1.0f / (1.0f - powf(b2, (float)step));
            float wd = (float)o->weight_decay;
            for (long i = 0; i < m->n_params; i++) {
                float g = ga[i];
                ma[i] = b1 * ma[i] + (1 - b1) * g;
                va[i] = b2 * va[i] + (1 - b2) * g * g;
                m->params[i] -= lr * ((ma[i] * c1) / (sqrtf(va[i] * c2) + eps) + wd * m->params[i]);
            }
        }
        double trm = sqrt(sse / (double)(cnt ? cnt : 1)), val = -1.0;
        if (!isfinite(trm)) {
            snprintf(err, errlen, "MLP training diverged at epoch %d", ep + 1);
            rc = PATCTL_ERR_NUMERIC;
            goto out;
        }
        r->epochs = ep + 1;
        if (have_val) {
            if ((rc = mlp_rms(m, d, role, FIT_VAL, P, &val)))
                goto out;
        }
        int better = have_val ? val < best_val : 1;
        if (better) {
            best_val = have_val ? val : trm;
            r->best_epoch = ep + 1;
            r->val_rmse = val;
            memcpy(best, m->params, sizeof(float) * (size_t)m->n_params);
            since = 0;
        } else {
            since++;
        }
        if (o->verbose && (ep < 5 || (ep + 1) % 10 == 0 || better))
            fprintf(stderr, "  mlp epoch %3d: train rms %.5f  val rms %.5f%s  (%.1f s)\n", ep + 1, trm,
                    val, better ? " *" : "", now_s() - t0);
        if (have_val && since >= o->patience)
            break;
    }
    memcpy(m->params, best, sizeof(float) * (size_t)m->n_params);
    if ((rc = mlp_rms(m, d, role, FIT_TRAIN, P, &r->train_rmse)))
        goto out;
    if (!have_val)
        r->val_rmse = -1.0;
out:
    r->seconds = now_s() - t0;
    free(tr), free(g0), free(g1), free(order), free(use_s), free(use_k), free(adam), free(best);
    free(X), free(Y), free(T), free(P), free(GY), free(grp);
    if (rng)
        gsl_rng_free(rng);
    if (rc) {
        mlp_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* surrogate                                                               */

static int ms_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    return mlp_forward(s->impl, theta, 1, NULL, x, B, y);
}

static int ms_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    return mlp_backward(s->impl, gy, gx, gtheta, NULL);
}

static void ms_destroy(surrogate *s)
{
    mlp_free(s->impl);
    free(s);
}

static const surrogate_ops mlp_ops = {
    .kind = "mlp",
    .forward = ms_forward,
    .backward = ms_backward,
    .destroy = ms_destroy,
};

surrogate *surrogate_mlp_new(mlp *m)
{
    if (!m)
        return NULL;
    surrogate *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->ops = &mlp_ops;
    s->impl = m;
    s->n_in = m->sh.n_x;
    s->n_out = m->sh.n_out;
    s->n_theta = m->sh.n_theta;
    return s;
}

mlp *surrogate_mlp(surrogate *s)
{
    return s && s->ops == &mlp_ops ? s->impl : NULL;
}
