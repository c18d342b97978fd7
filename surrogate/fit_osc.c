/* Grey-box fit of the oscillator model: forward-mode tangents, LM on the
 * calibration constants (gsl_multifit_nlinear), Adam on the coupling
 * correction with the exact VJP.  See fit_osc.h. */
#include "surrogate/fit_osc.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <gsl/gsl_multilarge_nlinear.h>
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

/* ---------------------------------------------------------------------- */
/* forward-mode tangent                                                    */

struct fit_osc_work {
    int n, cap, T;
    float *block;
    float *L, *M;                               /* [N,N] */
    float *q, *p, *qs, *ps, *sq, *sp, *a;       /* [cap,N] state, stage, sums */
    float *S, *Cs, *SL;                         /* [cap,N] sin, cos, sin L */
    float *dq, *dp, *dqs, *dps, *dsq, *dsp;     /* [T,cap,N] tangents */
    float *da, *U;                              /* [T,cap,N] */
};

fit_osc_work *fit_osc_work_alloc(int n, int cap, int T)
{
    if (n <= 0 || cap <= 0 || T < 0)
        return NULL;
    fit_osc_work *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    size_t nn = (size_t)n * n, row = (size_t)cap * n, trow = (size_t)(T ? T : 1) * row;
    w->block = malloc(sizeof(float) * (2 * nn + 10 * row + 8 * trow));
    if (!w->block) {
        free(w);
        return NULL;
    }
    w->n = n, w->cap = cap, w->T = T;
    float *p = w->block;
    w->L = p, p += nn;
    w->M = p, p += nn;
    float **rows[] = {&w->q, &w->p, &w->qs, &w->ps, &w->sq, &w->sp, &w->a, &w->S, &w->Cs, &w->SL};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        *rows[i] = p, p += row;
    float **trows[] = {&w->dq, &w->dp, &w->dqs, &w->dps, &w->dsq, &w->dsp, &w->da, &w->U};
    for (size_t i = 0; i < sizeof(trows) / sizeof(trows[0]); i++)
        *trows[i] = p, p += trow;
    return w;
}

void fit_osc_work_free(fit_osc_work *w)
{
    if (!w)
        return;
    free(w->block);
    free(w);
}

static int dir_dynamic(const osc_dir *d)
{
    return d->dk.eta != 0 || d->dk.coupling_gain != 0 || d->dk.in_gain != 0 ||
           d->dk.in_offset != 0 || d->dM != NULL;
}

/* One stage: a = sin(w qs) M + e, da_t = [cos(w qs) (w dqs_t + deta_t qs)] M
 * + sin(w qs) (dg_t L + dM_t), for the Td dynamic directions dyn[]. */
static void stage(const osc_model *m, fit_osc_work *w, const osc_dir *dirs, const int *dyn,
                  int Td, int B, const float *e, const float *qs, const float *dqs, float *a,
                  float *da)
{
    int n = m->n;
    long len = (long)B * n;
    float wv = 1.0f + m->k.eta;
    for (long i = 0; i < len; i++) {
        w->S[i] = sinf(wv * qs[i]);
        w->Cs[i] = cosf(wv * qs[i]);
    }
    for (int b = 0; b < B; b++)
        memcpy(a + (long)b * n, e, sizeof(float) * (size_t)n);
    blas_sgemm(0, 0, B, n, n, 1.0f, w->S, w->M, 1.0f, a);
    if (!Td)
        return;
    int need_sl = 0;
    for (int t = 0; t < Td; t++) {
        const osc_dir *d = &dirs[dyn[t]];
        float de = d->dk.eta;
        float *U = w->U + t * len;
        const float *dqt = dqs + t * len;
        for (long i = 0; i < len; i++)
            U[i] = w->Cs[i] * (wv * dqt[i] + de * qs[i]);
        need_sl |= d->dk.coupling_gain != 0;
    }
    blas_sgemm(0, 0, Td * B, n, n, 1.0f, w->U, w->M, 0.0f, da);
    if (need_sl)
        blas_sgemm(0, 0, B, n, n, 1.0f, w->S, w->L, 0.0f, w->SL);
    for (int t = 0; t < Td; t++) {
        const osc_dir *d = &dirs[dyn[t]];
        float *dat = da + t * len;
        if (d->dk.coupling_gain != 0)
            for (long i = 0; i < len; i++)
                dat[i] += d->dk.coupling_gain * w->SL[i];
        if (d->dM)
            blas_sgemm(0, 0, B, n, n, 1.0f, w->S, d->dM, 1.0f, dat);
    }
}

static void lin(float *dst, const float *src, float c, const float *v, long len)
{
    for (long i = 0; i < len; i++)
        dst[i] = src[i] + c * v[i];
}

static void acc(float *dst, float c, const float *v, long len)
{
    for (long i = 0; i < len; i++)
        dst[i] += c * v[i];
}

int fit_osc_jvp(const osc_model *m, const float *C, const float *e, const float *x, int B,
                const osc_dir *dirs, int T, float *y, float *dy, fit_osc_work *w)
{
    int n = m->n;
    if (!w || w->n != n || B < 0 || B > w->cap || T < 0 || T > w->T)
        return PATCTL_ERR_ARG;
    if (B == 0)
        return 0;
    int dyn[64], Td = 0;
    if (T > 64)
        return PATCTL_ERR_ARG;
    for (int t = 0; t < T; t++)
        if (dir_dynamic(&dirs[t]))
            dyn[Td++] = t;
    long len = (long)B * n, tl = (long)Td * len;
    float h = m->t_end / (float)m->steps;

    osc_laplacian_sym(w->L, C, n);
    osc_coupling(w->M, m, C);
    for (long i = 0; i < len; i++)
        w->q[i] = m->k.in_gain * x[i] + m->k.in_offset;
    memset(w->p, 0, sizeof(float) * (size_t)len);
    for (int t = 0; t < Td; t++) {
        const osc_dir *d = &dirs[dyn[t]];
        float *dq = w->dq + t * len;
        for (long i = 0; i < len; i++)
            dq[i] = d->dk.in_gain * x[i] + d->dk.in_offset;
    }
    memset(w->dp, 0, sizeof(float) * (size_t)(tl ? tl : 1));

    for (int s = 0; s < m->steps; s++) {
        /* stage 1 at (q, p) */
        stage(m, w, dirs, dyn, Td, B, e, w->q, w->dq, w->a, w->da);
        memcpy(w->sq, w->p, sizeof(float) * (size_t)len);
        memcpy(w->sp, w->a, sizeof(float) * (size_t)len);
        lin(w->qs, w->q, 0.5f * h, w->p, len);
        lin(w->ps, w->p, 0.5f * h, w->a, len);
        if (Td) {
            memcpy(w->dsq, w->dp, sizeof(float) * (size_t)tl);
            memcpy(w->dsp, w->da, sizeof(float) * (size_t)tl);
            lin(w->dqs, w->dq, 0.5f * h, w->dp, tl);
            lin(w->dps, w->dp, 0.5f * h, w->da, tl);
        }
        /* stages 2 and 3 */
        for (int k = 2; k <= 3; k++) {
            float c = k == 2 ? 0.5f * h : h;
            stage(m, w, dirs, dyn, Td, B, e, w->qs, w->dqs, w->a, w->da);
            acc(w->sq, 2.0f, w->ps, len);
            acc(w->sp, 2.0f, w->a, len);
            lin(w->qs, w->q, c, w->ps, len);
            lin(w->ps, w->p, c, w->a, len);
            if (Td) {
                acc(w->dsq, 2.0f, w->dps, tl);
                acc(w->dsp, 2.0f, w->da, tl);
                lin(w->dqs, w->dq, c, w->dps, tl);
                lin(w->dps, w->dp, c, w->da, tl);
            }
        }
        /* stage 4 */
        stage(m, w, dirs, dyn, Td, B, e, w->qs, w->dqs, w->a, w->da);
        acc(w->sq, 1.0f, w->ps, len);
        acc(w->sp, 1.0f, w->a, len);
        acc(w->q, h / 6.0f, w->sq, len);
        acc(w->p, h / 6.0f, w->sp, len);
        if (Td) {
            acc(w->dsq, 1.0f, w->dps, tl);
            acc(w->dsp, 1.0f, w->da, tl);
            acc(w->dq, h / 6.0f, w->dsq, tl);
            acc(w->dp, h / 6.0f, w->dsp, tl);
        }
    }
    if (y)
        for (long i = 0; i < len; i++)
            y[i] = m->k.out_gain * w->q[i] + m->k.out_offset;
    int td = 0;
    for (int t = 0; t < T; t++) {
        const osc_dir *d = &dirs[t];
        float *o = dy + (long)t * len;
        const float *dq = td < Td && dyn[td] == t ? w->dq + (long)(td++) * len : NULL;
        for (long i = 0; i < len; i++)
            o[i] = (dq ? m->k.out_gain * dq[i] : 0.0f) + d->dk.out_gain * w->q[i] + d->dk.out_offset;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* constants                                                               */

const char *fit_osc_const_name(int i)
{
    static const char *names[OSC_N_CONSTS] = {"eta", "coupling_gain", "in_gain",
                                              "in_offset", "out_gain", "out_offset"};
    return i >= 0 && i < OSC_N_CONSTS ? names[i] : "?";
}

float *fit_osc_const_ptr(osc_consts *k, int i)
{
    switch (i) {
    case 0: return &k->eta;
    case 1: return &k->coupling_gain;
    case 2: return &k->in_gain;
    case 3: return &k->in_offset;
    case 4: return &k->out_gain;
    case 5: return &k->out_offset;
    }
    return NULL;
}

void fit_osc_default_options(fit_osc_options *o)
{
    memset(o, 0, sizeof(*o));
    o->mask = OSC_K_ALL;
    o->max_iter = 100;
    o->max_resid = 4000000;
    o->method = FIT_COUPLING_GN;
    o->gn_iter = 30;
    o->cg_iter = 30;
    o->rounds = 3;
    o->epochs = 20;
    o->lr = 3e-3;
    o->batch_settings = 2;
    o->ls_iter = 15;
    o->ridge = 1e-3;
}

typedef struct {
    osc_model *m;
    const fit_set *d;
    long *g0, *g1, *gk;     /* groups used: sample range and setting */
    long ng;
    int np, idx[OSC_N_CONSTS];
    osc_tape *tape;
    fit_osc_work *w;
    float *y, *dy;
    osc_dir dirs[OSC_N_CONSTS];
    int failed;
} lm_ctx;

static void lm_set(lm_ctx *c, const gsl_vector *x)
{
    for (int j = 0; j < c->np; j++)
        *fit_osc_const_ptr(&c->m->k, c->idx[j]) = (float)gsl_vector_get(x, (size_t)j);
}

static int lm_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    lm_ctx *c = params;
    lm_set(c, x);
    const fit_set *d = c->d;
    int n = d->n_out;
    long nn = (long)c->m->n * c->m->n;
    size_t r = 0;
    for (long g = 0; g < c->ng; g++) {
        int B = (int)(c->g1[g] - c->g0[g]);
        const float *th = d->theta + c->gk[g] * d->n_theta;
        if (osc_forward(c->m, th, th + nn, d->x + c->g0[g] * d->n_in, NULL, B, c->y, c->tape))
            return GSL_EFAILED;
        const float *ym = d->y + c->g0[g] * n;
        for (long i = 0; i < (long)B * n; i++) {
            if (!isfinite(c->y[i])) {
                c->failed = 1;
                return GSL_EFAILED;
            }
            gsl_vector_set(f, r++, (double)c->y[i] - ym[i]);
        }
    }
    return GSL_SUCCESS;
}

static int lm_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    lm_ctx *c = params;
    lm_set(c, x);
    const fit_set *d = c->d;
    int n = d->n_out;
    long nn = (long)c->m->n * c->m->n;
    size_t r = 0;
    for (long g = 0; g < c->ng; g++) {
        int B = (int)(c->g1[g] - c->g0[g]);
        const float *th = d->theta + c->gk[g] * d->n_theta;
        if (fit_osc_jvp(c->m, th, th + nn, d->x + c->g0[g] * d->n_in, B, c->dirs, c->np, NULL,
                        c->dy, c->w))
            return GSL_EFAILED;
        long len = (long)B * n;
        for (long i = 0; i < len; i++, r++)
            for (int j = 0; j < c->np; j++)
                gsl_matrix_set(J, r, (size_t)j, c->dy[(long)j * len + i]);
    }
    return GSL_SUCCESS;
}

static long max_group(const fit_set *d)
{
    long s0, s1, best = 0;
    for (long s = 0; fit_next_group(d, s, &s0, &s1) >= 0; s = s1)
        if (s1 - s0 > best)
            best = s1 - s0;
    return best;
}

static int check_model(const osc_model *m, const fit_set *d, char *err, size_t errlen)
{
    long n = m->n;
    if (d->n_in != n || d->n_out != n || d->n_theta != n * n + n) {
        snprintf(err, errlen, "data has %d inputs, %d outputs and %ld parameters; the %ld-oscillator "
                 "model needs %ld, %ld and %ld", d->n_in, d->n_out, d->n_theta, n, n, n, n * n + n);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

int fit_osc_consts(osc_model *m, const fit_set *d, const uint8_t *role,
                   const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen)
{
    int rc = check_model(m, d, err, errlen);
    if (rc)
        return rc;
    double t0 = now_s();
    lm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m, c.d = d;
    for (int i = 0; i < OSC_N_CONSTS; i++)
        if (o->mask & (1u << i)) {
            c.idx[c.np] = i;
            *fit_osc_const_ptr(&c.dirs[c.np].dk, i) = 1.0f;
            c.np++;
        }
    if (c.np == 0) {
        snprintf(err, errlen, "no constants selected to fit");
        return PATCTL_ERR_ARG;
    }
    /* the training settings, whole, up to max_resid residuals */
    c.g0 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.g1 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.gk = malloc(sizeof(long) * (size_t)(d->K + 1));
    long B = max_group(d), n_res = 0;
    gsl_multifit_nlinear_workspace *w = NULL;
    gsl_vector *x0 = NULL;
    gsl_matrix *cov = NULL;
    if (!c.g0 || !c.g1 || !c.gk) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    long s0, s1, k;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (role && role[k] != FIT_TRAIN)
            continue;
        long add = (s1 - s0) * d->n_out;
        if (c.ng && n_res + add > o->max_resid)
            break;
        c.g0[c.ng] = s0, c.g1[c.ng] = s1, c.gk[c.ng] = k, c.ng++;
        n_res += add;
    }
    if (n_res <= c.np) {
        snprintf(err, errlen, "too little training data: %ld residuals for %d constants", n_res, c.np);
        rc = PATCTL_ERR_ARG;
        goto out;
    }
    c.tape = osc_tape_alloc(m->n, (int)B, m->steps);
    c.w = fit_osc_work_alloc(m->n, (int)B, c.np);
    c.y = malloc(sizeof(float) * (size_t)B * (size_t)m->n);
    c.dy = malloc(sizeof(float) * (size_t)B * (size_t)m->n * (size_t)c.np);
    x0 = gsl_vector_alloc((size_t)c.np);
    cov = gsl_matrix_alloc((size_t)c.np, (size_t)c.np);
    gsl_multifit_nlinear_parameters fp = gsl_multifit_nlinear_default_parameters();
    fp.trs = gsl_multifit_nlinear_trs_lm;
    fp.solver = gsl_multifit_nlinear_solver_qr;
    w = gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &fp, (size_t)n_res, (size_t)c.np);
    if (!c.tape || !c.w || !c.y || !c.dy || !x0 || !cov || !w) {
        snprintf(err, errlen, "out of memory for a fit of %ld residuals", n_res);
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (int j = 0; j < c.np; j++)
        gsl_vector_set(x0, (size_t)j, *fit_osc_const_ptr(&m->k, c.idx[j]));
    gsl_multifit_nlinear_fdf fdf = {
        .f = lm_f, .df = lm_df, .fvv = NULL, .n = (size_t)n_res, .p = (size_t)c.np, .params = &c,
    };
    int info = 0;
    int st = gsl_multifit_nlinear_init(x0, &fdf, w);
    if (!st)
        st = gsl_multifit_nlinear_driver((size_t)o->max_iter, 1e-7, 1e-9, 1e-12, NULL, NULL, &info, w);
    if (c.failed || (st && st != GSL_ENOPROG && st != GSL_EMAXITER)) {
        snprintf(err, errlen, "LM fit of the constants failed: %s%s", gsl_strerror(st),
                 c.failed ? " (the model diverged: NaN/Inf outputs)" : "");
        rc = PATCTL_ERR_NUMERIC;
        goto out;
    }
    lm_set(&c, w->x);
    gsl_vector *f = gsl_multifit_nlinear_residual(w);
    double chi2;
    gsl_blas_ddot(f, f, &chi2);
    gsl_matrix *J = gsl_multifit_nlinear_jac(w);
    gsl_multifit_nlinear_covar(J, 0.0, cov);
    memset(&r->se, 0, sizeof(r->se));
    r->dof = (double)(n_res - c.np);
    r->chi2 = chi2;
    r->chi2_dof = chi2 / r->dof;
    for (int j = 0; j < c.np; j++)
        *fit_osc_const_ptr(&r->se, c.idx[j]) =
            (float)sqrt(gsl_matrix_get(cov, (size_t)j, (size_t)j) * r->chi2_dof);
    r->k = m->k;
    r->mask = o->mask;
    r->n_resid = n_res;
    r->iters = (int)gsl_multifit_nlinear_niter(w);
    r->status = st;
    r->rms_train = sqrt(chi2 / (double)n_res);
    if (o->verbose)
        fprintf(stderr, "  LM constants: %d iterations, chi2/dof %.4g (rms %.4g) over %ld residuals, "
                "status %s (%.1f s)\n", r->iters, r->chi2_dof, r->rms_train, n_res,
                st ? gsl_strerror(st) : "converged", now_s() - t0);
out:
    r->seconds += now_s() - t0;
    gsl_multifit_nlinear_free(w);
    gsl_vector_free(x0);
    gsl_matrix_free(cov);
    osc_tape_free(c.tape);
    fit_osc_work_free(c.w);
    free(c.y), free(c.dy), free(c.g0), free(c.g1), free(c.gk);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* coupling correction                                                     */

/* RMS residual of the model over settings of role `which`. */
static int rms_of(const osc_model *m, const fit_set *d, const uint8_t *role, int which,
                  osc_tape *tape, float *y, double *rms)
{
    long nn = (long)m->n * m->n, s0, s1, k, cnt = 0;
    double sse = 0.0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (role && role[k] != which)
            continue;
        const float *th = d->theta + k * d->n_theta;
        int B = (int)(s1 - s0);
        int rc = osc_forward(m, th, th + nn, d->x + s0 * d->n_in, NULL, B, y, tape);
        if (rc)
            return rc;
        const float *ym = d->y + s0 * d->n_out;
        for (long i = 0; i < (long)B * m->n; i++) {
            double e = (double)y[i] - ym[i];
            sse += e * e;
        }
        cnt += (long)B * m->n;
    }
    *rms = cnt ? sqrt(sse / (double)cnt) : -1.0;
    if (!isfinite(*rms))
        return PATCTL_ERR_NUMERIC;
    return 0;
}

int fit_osc_coupling(osc_model *m, float *A, float *D, const fit_set *d, const uint8_t *role,
                     const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen)
{
    int rc = check_model(m, d, err, errlen);
    if (rc)
        return rc;
    if (fabsf(m->k.coupling_gain) < 1e-3f) {
        snprintf(err, errlen, "coupling gain %g too close to 0 for the coupling fit", m->k.coupling_gain);
        return PATCTL_ERR_NUMERIC;
    }
    double t0 = now_s();
    int n = m->n;
    long nn = (long)n * n, B = max_group(d);
    long *tr = malloc(sizeof(long) * (size_t)(d->K + 1));
    long *g0 = malloc(sizeof(long) * (size_t)(d->K + 1)), *g1 = malloc(sizeof(long) * (size_t)(d->K + 1));
    float *mom = calloc((size_t)(3 * nn + 1), sizeof(float));
    float *y = malloc(sizeof(float) * (size_t)(B * n + 1)), *gy = malloc(sizeof(float) * (size_t)(B * n + 1));
    float *best = malloc(sizeof(float) * (size_t)nn);
    osc_tape *tape = osc_tape_alloc(n, (int)(B ? B : 1), m->steps);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!tr || !g0 || !g1 || !mom || !y || !gy || !best || !tape || !rng) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    gsl_rng_set(rng, (unsigned long)(o->seed * 2654435761u + 17));
    float *mA = mom, *vA = mom + nn, *gA = mom + 2 * nn;
    long ntr = 0, s0, s1, k, rows_tr = 0;
    int have_val = 0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (!role || role[k] == FIT_TRAIN) {
            tr[ntr] = k, g0[ntr] = s0, g1[ntr] = s1, ntr++;
            rows_tr += s1 - s0;
        } else if (role[k] == FIT_VAL) {
            have_val = 1;
        }
    }
    if (!ntr) {
        snprintf(err, errlen, "no training settings for the coupling fit");
        rc = PATCTL_ERR_ARG;
        goto out;
    }
    long *order = malloc(sizeof(long) * (size_t)ntr);
    if (!order) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (long i = 0; i < ntr; i++)
        order[i] = i;
    osc_laplacian_sym(D, A, n);
    m->q_noise = D;
    double best_val = INFINITY;
    if (have_val && (rc = rms_of(m, d, role, FIT_VAL, tape, y, &best_val)))
        goto out_order;
    memcpy(best, A, sizeof(float) * (size_t)nn);
    int bs = o->batch_settings > 0 ? o->batch_settings : 1;
    long steps_per_epoch = (ntr + bs - 1) / bs, total = steps_per_epoch * (o->epochs > 0 ? o->epochs : 1);
    long step = 0;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    int ep;
    for (ep = 0; ep < o->epochs; ep++) {
        if (o->stop && *o->stop)
            break;
        gsl_ran_shuffle(rng, order, (size_t)ntr, sizeof(long));
        double sse = 0.0;
        long cnt = 0;
        for (long b0 = 0; b0 < ntr; b0 += bs) {
            long be = b0 + bs < ntr ? b0 + bs : ntr, rows = 0;
            for (long i = b0; i < be; i++)
                rows += g1[order[i]] - g0[order[i]];
            memset(gA, 0, sizeof(float) * (size_t)nn);
            float scale = 1.0f / ((float)rows * (float)n);
            for (long i = b0; i < be; i++) {
                long gi = order[i];
                const float *th = d->theta + tr[gi] * d->n_theta;
                int Bg = (int)(g1[gi] - g0[gi]);
                if ((rc = osc_forward(m, th, th + nn, d->x + g0[gi] * d->n_in, NULL, Bg, y, tape)))
                    goto out_order;
                const float *ym = d->y + g0[gi] * n;
                for (long j = 0; j < (long)Bg * n; j++) {
                    float e = y[j] - ym[j];
                    sse += (double)e * e;
                    gy[j] = e * scale;
                }
                cnt += (long)Bg * n;
                if ((rc = osc_backward(m, tape, gy, NULL, gA, NULL, NULL)))
                    goto out_order;
            }
            /* d loss / d A = gC / g; ridge; Adam with cosine decay */
            step++;
            double frac = (double)step / (double)total;
            float lr = (float)(o->lr * (0.05 + 0.95 * 0.5 * (1.0 + cos(M_PI * frac))));
            float ig = 1.0f / m->k.coupling_gain, l2 = (float)o->l2;
            float c1 = 1.0f / (1.0f - powf(b1, (float)step)), c2 = 1.0f / (1.0f - powf(b2, (float)step));
            for (long j = 0; j < nn; j++) {
                float g = gA[j] * ig + l2 * A[j];
                mA[j] = b1 * mA[j] + (1 - b1) * g;
                vA[j] = b2 * vA[j] + (1 - b2) * g * g;
                A[j] -= lr * (mA[j] * c1) / (sqrtf(vA[j] * c2) + eps);
            }
            for (int j = 0; j < n; j++)
                A[(long)j * n + j] = 0.0f;
            osc_laplacian_sym(D, A, n);
        }
        double tr_rms = sqrt(sse / (double)(cnt ? cnt : 1)), val = -1.0;
        if (!isfinite(tr_rms)) {
            snprintf(err, errlen, "coupling fit diverged (NaN/Inf residuals at epoch %d)", ep + 1);
            rc = PATCTL_ERR_NUMERIC;
            goto out_order;
        }
        if (have_val) {
            if ((rc = rms_of(m, d, role, FIT_VAL, tape, y, &val)))
                goto out_order;
            if (val < best_val) {
                best_val = val;
                memcpy(best, A, sizeof(float) * (size_t)nn);
            }
        } else {
            memcpy(best, A, sizeof(float) * (size_t)nn);
        }
        if (o->verbose)
            fprintf(stderr, "  coupling epoch %3d: train rms %.5f  val rms %.5f  (%.1f s)\n", ep + 1,
                    tr_rms, val, now_s() - t0);
        r->epochs_done++;
    }
    memcpy(A, best, sizeof(float) * (size_t)nn);
    osc_laplacian_sym(D, A, n);
    if ((rc = rms_of(m, d, role, FIT_TRAIN, tape, y, &r->rms_train)))
        goto out_order;
    r->rms_val = have_val ? best_val : -1.0;
    (void)rows_tr;
out_order:
    free(order);
out:
    if (rc == PATCTL_ERR_NUMERIC && !err[0])
        snprintf(err, errlen, "coupling fit: the model diverged");
    r->seconds += now_s() - t0;
    free(tr), free(g0), free(g1), free(mom), free(y), free(gy), free(best);
    osc_tape_free(tape);
    if (rng)
        gsl_rng_free(rng);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* joint constants + coupling: trust-region GN with matrix-free CG          */

typedef struct {
    osc_model *m;
    const fit_set *d;
    long *g0, *g1, *gk;
    long ng, n_res;
    int np, idx[OSC_N_CONSTS], n;
    long npair;
    float *A, *D, *dA, *dM, *gC;   /* [N,N] */
    double *gCd;                    /* [N,N] */
    osc_tape *tape;
    fit_osc_work *w;
    float *y, *dy, *gy;
    int failed;
} gn_ctx;

/* x = [constants (np), A upper triangle (npair, row-major i < j)] */
static void gn_set(gn_ctx *c, const gsl_vector *x)
{
    int n = c->n;
    for (int j = 0; j < c->np; j++)
        *fit_osc_const_ptr(&c->m->k, c->idx[j]) = (float)gsl_vector_get(x, (size_t)j);
    size_t k = (size_t)c->np;
    for (int i = 0; i < n; i++) {
        c->A[(long)i * n + i] = 0.0f;
        for (int j = i + 1; j < n; j++, k++)
            c->A[(long)i * n + j] = c->A[(long)j * n + i] = (float)gsl_vector_get(x, k);
    }
    osc_laplacian_sym(c->D, c->A, n);
}

static int gn_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    gn_ctx *c = params;
    gn_set(c, x);
    const fit_set *d = c->d;
    long nn = (long)c->n * c->n;
    size_t r = 0;
    for (long g = 0; g < c->ng; g++) {
        int B = (int)(c->g1[g] - c->g0[g]);
        const float *th = d->theta + c->gk[g] * d->n_theta;
        if (osc_forward(c->m, th, th + nn, d->x + c->g0[g] * d->n_in, NULL, B, c->y, c->tape))
            return GSL_EFAILED;
        const float *ym = d->y + c->g0[g] * d->n_out;
        for (long i = 0; i < (long)B * c->n; i++) {
            if (!isfinite(c->y[i])) {
                c->failed = 1;
                return GSL_EFAILED;
            }
            gsl_vector_set(f, r++, (double)c->y[i] - ym[i]);
        }
    }
    return GSL_SUCCESS;
}

static int gn_df(CBLAS_TRANSPOSE_t TransJ, const gsl_vector *x, const gsl_vector *u, void *params,
                 gsl_vector *v, gsl_matrix *JTJ)
{
    (void)JTJ; /* NULL with the CG method */
    gn_ctx *c = params;
    gn_set(c, x);
    const fit_set *d = c->d;
    int n = c->n;
    long nn = (long)n * n;
    if (TransJ == CblasNoTrans) {
        /* v = J u: one tangent with direction u */
        osc_dir dir;
        memset(&dir, 0, sizeof(dir));
        for (int j = 0; j < c->np; j++)
            *fit_osc_const_ptr(&dir.dk, c->idx[j]) = (float)gsl_vector_get(u, (size_t)j);
        size_t k = (size_t)c->np;
        for (int i = 0; i < n; i++) {
            c->dA[(long)i * n + i] = 0.0f;
            for (int j = i + 1; j < n; j++, k++)
                c->dA[(long)i * n + j] = c->dA[(long)j * n + i] = (float)gsl_vector_get(u, k);
        }
        osc_laplacian_sym(c->dM, c->dA, n);
        dir.dM = c->dM;
        size_t r = 0;
        for (long g = 0; g < c->ng; g++) {
            int B = (int)(c->g1[g] - c->g0[g]);
            const float *th = d->theta + c->gk[g] * d->n_theta;
            if (fit_osc_jvp(c->m, th, th + nn, d->x + c->g0[g] * d->n_in, B, &dir, 1, NULL, c->dy, c->w))
                return GSL_EFAILED;
            for (long i = 0; i < (long)B * n; i++)
                gsl_vector_set(v, r++, c->dy[i]);
        }
        return GSL_SUCCESS;
    }
    /* v = J^T u: the exact VJP, group by group */
    double gk[OSC_N_CONSTS] = {0};
    memset(c->gCd, 0, sizeof(double) * (size_t)nn);
    size_t r = 0;
    for (long g = 0; g < c->ng; g++) {
        int B = (int)(c->g1[g] - c->g0[g]);
        const float *th = d->theta + c->gk[g] * d->n_theta;
        if (osc_forward(c->m, th, th + nn, d->x + c->g0[g] * d->n_in, NULL, B, c->y, c->tape))
            return GSL_EFAILED;
        for (long i = 0; i < (long)B * n; i++)
            c->gy[i] = (float)gsl_vector_get(u, r++);
        osc_consts gkf = {0};
        memset(c->gC, 0, sizeof(float) * (size_t)nn);
        if (osc_backward(c->m, c->tape, c->gy, NULL, c->gC, NULL, &gkf))
            return GSL_EFAILED;
        for (int i = 0; i < OSC_N_CONSTS; i++)
            gk[i] += *fit_osc_const_ptr(&gkf, i);
        for (long i = 0; i < nn; i++)
            c->gCd[i] += c->gC[i];
    }
    for (int j = 0; j < c->np; j++)
        gsl_vector_set(v, (size_t)j, gk[c->idx[j]]);
    double ig = 1.0 / c->m->k.coupling_gain;
    size_t k = (size_t)c->np;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++, k++)
            gsl_vector_set(v, k, (c->gCd[(long)i * n + j] + c->gCd[(long)j * n + i]) * ig);
    return GSL_SUCCESS;
}

int fit_osc_joint(osc_model *m, float *A, float *D, const fit_set *d, const uint8_t *role,
                  const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen)
{
    int rc = check_model(m, d, err, errlen);
    if (rc)
        return rc;
    if (fabsf(m->k.coupling_gain) < 1e-3f) {
        snprintf(err, errlen, "coupling gain %g too close to 0 for the coupling fit", m->k.coupling_gain);
        return PATCTL_ERR_NUMERIC;
    }
    double t0 = now_s();
    int n = m->n;
    long nn = (long)n * n, B = max_group(d);
    gn_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m, c.d = d, c.n = n, c.A = A, c.D = D;
    c.npair = (long)n * (n - 1) / 2;
    for (int i = 0; i < OSC_N_CONSTS; i++)
        if (o->mask & (1u << i))
            c.idx[c.np++] = i;
    c.g0 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.g1 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.gk = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.dA = malloc(sizeof(float) * (size_t)nn);
    c.dM = malloc(sizeof(float) * (size_t)nn);
    c.gC = malloc(sizeof(float) * (size_t)nn);
    c.gCd = malloc(sizeof(double) * (size_t)nn);
    c.tape = osc_tape_alloc(n, (int)(B ? B : 1), m->steps);
    c.w = fit_osc_work_alloc(n, (int)(B ? B : 1), 1);
    c.y = malloc(sizeof(float) * (size_t)(B * n + 1));
    c.dy = malloc(sizeof(float) * (size_t)(B * n + 1));
    c.gy = malloc(sizeof(float) * (size_t)(B * n + 1));
    gsl_multilarge_nlinear_workspace *w = NULL;
    gsl_vector *x = NULL;
    if (!c.g0 || !c.g1 || !c.gk || !c.dA || !c.dM || !c.gC || !c.gCd || !c.tape || !c.w || !c.y ||
        !c.dy || !c.gy) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    long s0, s1, k;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (role && role[k] != FIT_TRAIN)
            continue;
        c.g0[c.ng] = s0, c.g1[c.ng] = s1, c.gk[c.ng] = k, c.ng++;
        c.n_res += (s1 - s0) * n;
    }
    size_t p = (size_t)(c.np + c.npair);
    if (c.n_res <= (long)p) {
        snprintf(err, errlen, "too little training data for the coupling fit: %ld residuals for %zu "
                 "parameters (collect more samples)", c.n_res, p);
        rc = PATCTL_ERR_ARG;
        goto out;
    }
    gsl_multilarge_nlinear_parameters lp = gsl_multilarge_nlinear_default_parameters();
    lp.trs = gsl_multilarge_nlinear_trs_cgst;
    lp.max_iter = (size_t)(o->cg_iter > 0 ? o->cg_iter : 30);
    lp.tol = 1e-6;
    w = gsl_multilarge_nlinear_alloc(gsl_multilarge_nlinear_trust, &lp, (size_t)c.n_res, p);
    x = gsl_vector_alloc(p);
    if (!w || !x) {
        snprintf(err, errlen, "out of memory for a coupling fit of %ld residuals, %zu parameters",
                 c.n_res, p);
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (int j = 0; j < c.np; j++)
        gsl_vector_set(x, (size_t)j, *fit_osc_const_ptr(&m->k, c.idx[j]));
    size_t kk = (size_t)c.np;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++, kk++)
            gsl_vector_set(x, kk, 0.5 * (A[(long)i * n + j] + A[(long)j * n + i]));
    gsl_multilarge_nlinear_fdf fdf = {
        .f = gn_f, .df = gn_df, .fvv = NULL, .n = (size_t)c.n_res, .p = p, .params = &c,
    };
    m->q_noise = D;
    int st = gsl_multilarge_nlinear_init(x, &fdf, w);
    double f0 = gsl_blas_dnrm2(w->f);
    int it = 0, info = 0;
    double prev = f0;
    while (!st && it < o->gn_iter) {
        if (o->stop && *o->stop)
            break;
        st = gsl_multilarge_nlinear_iterate(w);
        it++;
        double cur = gsl_blas_dnrm2(w->f);
        if (o->verbose)
            fprintf(stderr, "  GN iteration %2d: rms %.6f  (%.1f s)%s\n", it, cur / sqrt((double)c.n_res),
                    now_s() - t0, st ? "  (no further progress)" : "");
        if (st)
            break;
        /* converged: GSL's tests, or less than 1e-4 relative decrease of |f| */
        if (gsl_multilarge_nlinear_test(1e-7, 1e-9, 1e-12, &info, w) == GSL_SUCCESS ||
            prev - cur < 1e-4 * prev)
            break;
        prev = cur;
    }
    if (c.failed || (st && st != GSL_ENOPROG && st != GSL_EMAXITER)) {
        snprintf(err, errlen, "coupling fit failed: %s%s", gsl_strerror(st),
                 c.failed ? " (the model diverged: NaN/Inf outputs)" : "");
        rc = PATCTL_ERR_NUMERIC;
        goto out;
    }
    gn_set(&c, w->x);
    r->rms_train = gsl_blas_dnrm2(w->f) / sqrt((double)c.n_res);
    r->epochs_done += it;
    r->status = st;
    if (o->verbose)
        fprintf(stderr, "  joint fit: %d iterations, rms %.6f -> %.6f over %ld residuals, %zu parameters\n",
                it, f0 / sqrt((double)c.n_res), r->rms_train, c.n_res, p);
    r->rms_val = -1.0;
    int have_val = 0;
    for (long q = 0; role && q < d->K; q++)
        have_val |= role[q] == FIT_VAL;
    if (have_val)
        rc = rms_of(m, d, role, FIT_VAL, c.tape, c.y, &r->rms_val);
out:
    r->seconds += now_s() - t0;
    gsl_multilarge_nlinear_free(w);
    gsl_vector_free(x);
    free(c.g0), free(c.g1), free(c.gk), free(c.dA), free(c.dM), free(c.gC), free(c.gCd);
    osc_tape_free(c.tape);
    fit_osc_work_free(c.w);
    free(c.y), free(c.dy), free(c.gy);
    return rc;
}

int fit_osc_greybox(osc_model *m, float **D_out, const fit_set *d, const uint8_t *role,
                    const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    *D_out = NULL;
    int rc = check_model(m, d, err, errlen);
    if (rc)
        return rc;
    if (!o->coupling || o->method != FIT_COUPLING_LS) {
        if (o->verbose)
            fprintf(stderr, "fit: oscillator constants by trust-region LM\n");
        if ((rc = fit_osc_consts(m, d, role, o, r, err, errlen)))
            return rc;
    }
    if (!o->coupling)
        return 0;
    long nn = (long)m->n * m->n;
    float *A = calloc((size_t)nn, sizeof(float)), *D = calloc((size_t)nn, sizeof(float));
    if (!A || !D) {
        free(A), free(D);
        return PATCTL_ERR_NOMEM;
    }
    m->q_noise = D;
    if (o->method == FIT_COUPLING_GN) {
        if (o->verbose)
            fprintf(stderr, "fit: constants + coupling correction by trust-region Gauss-Newton (CG)\n");
        if (!(rc = fit_osc_joint(m, A, D, d, role, o, r, err, errlen))) {
            if (o->verbose)
                fprintf(stderr, "fit: constants by LM with the coupling fixed\n");
            rc = fit_osc_consts(m, d, role, o, r, err, errlen);
        }
        r->rounds_done = 1;
    }
    for (int round = 0; !rc && o->method == FIT_COUPLING_ADAM && round < (o->rounds > 0 ? o->rounds : 1); round++) {
        if (o->stop && *o->stop)
            break;
        if (o->verbose)
            fprintf(stderr, "fit: round %d: coupling correction (Adam, %d epochs), then constants\n",
                    round + 1, o->epochs);
        if ((rc = fit_osc_coupling(m, A, D, d, role, o, r, err, errlen)) ||
            (rc = fit_osc_consts(m, d, role, o, r, err, errlen)))
            break;
        r->rounds_done++;
    }
    for (int round = 0; !rc && o->method == FIT_COUPLING_LS && round < (o->rounds > 0 ? o->rounds : 1); round++) {
        if (o->stop && *o->stop)
            break;
        if (o->verbose)
            fprintf(stderr, "fit: round %d: coupling correction (least squares), then constants\n", round + 1);
        if ((rc = fit_osc_coupling_ls(m, D, d, role, o, r, err, errlen)) ||
            (o->mask && (rc = fit_osc_consts(m, d, role, o, r, err, errlen))))
            break;
        r->rounds_done++;
    }
    free(A);
    if (rc) {
        m->q_noise = NULL;
        free(D);
        return rc;
    }
    *D_out = D;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* the fitted surrogate: an oscillator surrogate that owns its D           */

typedef struct {
    surrogate *inner;
    float *D;
} fitted_impl;

static int fo_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    fitted_impl *f = s->impl;
    return surrogate_forward(f->inner, theta, x, B, y);
}

static int fo_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    fitted_impl *f = s->impl;
    return surrogate_backward(f->inner, gy, gx, gtheta);
}

static void fo_destroy(surrogate *s)
{
    fitted_impl *f = s->impl;
    if (f) {
        surrogate_destroy(&f->inner);
        free(f->D);
    }
    free(f);
    free(s);
}

static const surrogate_ops fitted_ops = {
    .kind = "oscillators-greybox",
    .forward = fo_forward,
    .backward = fo_backward,
    .destroy = fo_destroy,
};

surrogate *surrogate_osc_fitted_new(const osc_model *m, const float *D)
{
    surrogate *s = calloc(1, sizeof(*s));
    fitted_impl *f = calloc(1, sizeof(*f));
    if (!s || !f)
        goto fail;
    osc_model mm = *m;
    mm.q_noise = NULL;
    if (D) {
        size_t nn = (size_t)m->n * (size_t)m->n;
        if (!(f->D = malloc(sizeof(float) * nn)))
            goto fail;
        memcpy(f->D, D, sizeof(float) * nn);
        mm.q_noise = f->D;
    }
    if (!(f->inner = surrogate_osc_new(&mm)))
        goto fail;
    s->ops = &fitted_ops;
    s->impl = f;
    s->n_in = f->inner->n_in, s->n_out = f->inner->n_out, s->n_theta = f->inner->n_theta;
    return s;
fail:
    if (f)
        free(f->D);
    free(f);
    free(s);
    return NULL;
}

int surrogate_osc_parts(surrogate *s, osc_model *m, const float **D)
{
    if (s && s->ops == &fitted_ops) {
        fitted_impl *f = s->impl;
        *m = *surrogate_osc_model(f->inner);
        *D = f->D;
        return 0;
    }
    osc_model *p = surrogate_osc_model(s);
    if (!p)
        return PATCTL_ERR_UNSUPPORTED;
    *m = *p;
    *D = p->q_noise;
    return 0;
}
