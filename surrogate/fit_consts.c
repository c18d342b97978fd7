/* Generic grey-box constants fit (see fit_consts.h). */
#include "surrogate/fit_consts.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patctl/error.h"

int fit_consts_view_of(surrogate *s, fit_consts_view *v)
{
    memset(v, 0, sizeof(*v));
    shg_model *sm = surrogate_shg_model(s);
    circuit_model *cm = surrogate_circuit_model(s);
#define ADD(nm, p, sc) (v->name[v->n] = (nm), v->ptr[v->n] = (p), v->scale[v->n] = (sc), v->n++)
    if (sm) {
        ADD("disp2", &sm->k.disp2, 1.0);
        ADD("disp3", &sm->k.disp3, 1.0);
        ADD("resp1", &sm->k.resp1, 1.0);
        ADD("resp2", &sm->k.resp2, 1.0);
        ADD("gain", &sm->k.gain, 1.0);
        v->identifiable = (1u << v->n) - 1u;
        return 0;
    }
    if (cm) {
        ADD("r", &cm->k.r, 50.0);
        ADD("l", &cm->k.l, 1e-3);
        ADD("c", &cm->k.c, 1e-7);
        ADD("von", &cm->k.von, 0.5);
        ADD("ron", &cm->k.ron, 20.0);
        ADD("in_gain", &cm->k.in_gain, 1.0);
        ADD("out_gain", &cm->k.out_gain, 1.0);
        ADD("out_offset", &cm->k.out_offset, 0.01);
        v->identifiable = ((1u << v->n) - 1u) & ~(1u << 2);
        v->note = "C fixed at its nominal value: only R C, L C and R_on C are identifiable from voltages";
        return 0;
    }
#undef ADD
    return PATCTL_ERR_UNSUPPORTED;
}

typedef struct {
    surrogate *s;
    const fit_consts_view *v;
    const fit_set *d;
    long *g0, *g1, *gk;
    long ng;
    int np, idx[FIT_MAX_CONSTS];
    float *y, *yp, *ym;
    int failed;
} cx;

static void set_x(cx *c, const gsl_vector *x)
{
    for (int j = 0; j < c->np; j++)
        *c->v->ptr[c->idx[j]] = gsl_vector_get(x, (size_t)j) * c->v->scale[c->idx[j]];
}

static int fwd(cx *c, long g, float *y)
{
    const fit_set *d = c->d;
    int rc = surrogate_forward(c->s, d->theta + c->gk[g] * d->n_theta, d->x + c->g0[g] * d->n_in,
                               (int)(c->g1[g] - c->g0[g]), y);
    if (rc)
        return rc;
    for (long i = 0; i < (c->g1[g] - c->g0[g]) * d->n_out; i++)
        if (!isfinite(y[i])) {
            c->failed = 1;
            return PATCTL_ERR_NUMERIC;
        }
    return 0;
}

static int cf_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    cx *c = params;
    set_x(c, x);
    size_t r = 0;
    for (long g = 0; g < c->ng; g++) {
        if (fwd(c, g, c->y))
            return GSL_EFAILED;
        const float *ym = c->d->y + c->g0[g] * c->d->n_out;
        for (long i = 0; i < (c->g1[g] - c->g0[g]) * c->d->n_out; i++)
            gsl_vector_set(f, r++, (double)c->y[i] - ym[i]);
    }
    return GSL_SUCCESS;
}

/* J columns by central differences of each constant, step 1e-3 in scaled units */
static int cf_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    cx *c = params;
    const double h = 1e-3;
    for (int j = 0; j < c->np; j++) {
        double *p = c->v->ptr[c->idx[j]], sc = c->v->scale[c->idx[j]];
        set_x(c, x);
        double x0 = gsl_vector_get(x, (size_t)j);
        size_t r = 0;
        for (long g = 0; g < c->ng; g++) {
            *p = (x0 + h) * sc;
            if (fwd(c, g, c->yp))
                return GSL_EFAILED;
            *p = (x0 - h) * sc;
            if (fwd(c, g, c->ym))
                return GSL_EFAILED;
            for (long i = 0; i < (c->g1[g] - c->g0[g]) * c->d->n_out; i++)
                gsl_matrix_set(J, r++, (size_t)j, ((double)c->yp[i] - c->ym[i]) / (2.0 * h));
        }
        *p = x0 * sc;
    }
    set_x(c, x);
    return GSL_SUCCESS;
}

int fit_consts(surrogate *s, const fit_consts_view *v, unsigned mask, const fit_set *d,
               const uint8_t *role, int max_iter, long max_resid, int verbose,
               fit_consts_result *r, char *err, size_t errlen)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(r, 0, sizeof(*r));
    if (s->n_in != d->n_in || s->n_out != d->n_out || s->n_theta != d->n_theta) {
        snprintf(err, errlen, "the %s model has %d inputs, %d outputs, %ld parameters; the data %d, %d, %ld",
                 s->ops->kind, s->n_in, s->n_out, s->n_theta, d->n_in, d->n_out, d->n_theta);
        return PATCTL_ERR_ARG;
    }
    cx c;
    memset(&c, 0, sizeof(c));
    c.s = s, c.v = v, c.d = d;
    if (!mask)
        mask = v->identifiable ? v->identifiable : (1u << v->n) - 1u;
    for (int j = 0; j < v->n; j++)
        if (mask & (1u << j))
            c.idx[c.np++] = j;
    c.g0 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.g1 = malloc(sizeof(long) * (size_t)(d->K + 1));
    c.gk = malloc(sizeof(long) * (size_t)(d->K + 1));
    long n_res = 0, B = 0, s0, s1, k;
    int rc = 0;
    gsl_multifit_nlinear_workspace *w = NULL;
    gsl_vector *x0 = NULL;
    gsl_matrix *cov = NULL;
    if (!c.g0 || !c.g1 || !c.gk) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (long q = 0; (k = fit_next_group(d, q, &s0, &s1)) >= 0; q = s1) {
        if (role && role[k] != FIT_TRAIN)
            continue;
        long add = (s1 - s0) * d->n_out;
        if (c.ng && n_res + add > max_resid)
            break;
        c.g0[c.ng] = s0, c.g1[c.ng] = s1, c.gk[c.ng] = k, c.ng++;
        n_res += add;
        if (s1 - s0 > B)
            B = s1 - s0;
    }
    if (n_res <= c.np) {
        snprintf(err, errlen, "too little training data: %ld residuals for %d constants", n_res, c.np);
        rc = PATCTL_ERR_ARG;
        goto out;
    }
    c.y = malloc(sizeof(float) * (size_t)(B * d->n_out));
    c.yp = malloc(sizeof(float) * (size_t)(B * d->n_out));
    c.ym = malloc(sizeof(float) * (size_t)(B * d->n_out));
    x0 = gsl_vector_alloc((size_t)c.np);
    cov = gsl_matrix_alloc((size_t)c.np, (size_t)c.np);
    gsl_multifit_nlinear_parameters fp = gsl_multifit_nlinear_default_parameters();
    fp.trs = gsl_multifit_nlinear_trs_lm;
    w = gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &fp, (size_t)n_res, (size_t)c.np);
    if (!c.y || !c.yp || !c.ym || !x0 || !cov || !w) {
        snprintf(err, errlen, "out of memory for a fit of %ld residuals", n_res);
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (int j = 0; j < c.np; j++)
        gsl_vector_set(x0, (size_t)j, *v->ptr[c.idx[j]] / v->scale[c.idx[j]]);
    gsl_multifit_nlinear_fdf fdf = {
        .f = cf_f, .df = cf_df, .fvv = NULL, .n = (size_t)n_res, .p = (size_t)c.np, .params = &c,
    };
    int info = 0;
    int st = gsl_multifit_nlinear_init(x0, &fdf, w);
    if (!st)
        st = gsl_multifit_nlinear_driver((size_t)max_iter, 1e-7, 1e-9, 1e-12, NULL, NULL, &info, w);
    if (c.failed || (st && st != GSL_ENOPROG && st != GSL_EMAXITER)) {
        snprintf(err, errlen, "LM fit of the %s constants failed: %s%s", s->ops->kind, gsl_strerror(st),
                 c.failed ? " (the model produced NaN/Inf)" : "");
        rc = PATCTL_ERR_NUMERIC;
        goto out;
    }
    set_x(&c, w->x);
    gsl_vector *f = gsl_multifit_nlinear_residual(w);
    double chi2;
    gsl_blas_ddot(f, f, &chi2);
    gsl_multifit_nlinear_covar(gsl_multifit_nlinear_jac(w), 0.0, cov);
    r->n = v->n;
    r->mask = mask;
    r->n_resid = n_res;
    r->chi2 = chi2;
    r->dof = (double)(n_res - c.np);
    r->chi2_dof = chi2 / r->dof;
    r->iters = (int)gsl_multifit_nlinear_niter(w);
    r->status = st;
    for (int j = 0; j < v->n; j++)
        r->value[j] = *v->ptr[j];
    for (int j = 0; j < c.np; j++)
        r->se[c.idx[j]] = sqrt(gsl_matrix_get(cov, (size_t)j, (size_t)j) * r->chi2_dof) * v->scale[c.idx[j]];
    if (verbose)
        fprintf(stderr, "  LM %s constants: %d iterations, chi2/dof %.4g over %ld residuals, status %s\n",
                s->ops->kind, r->iters, r->chi2_dof, n_res, st ? gsl_strerror(st) : "converged");
out:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    gsl_multifit_nlinear_free(w);
    gsl_vector_free(x0);
    gsl_matrix_free(cov);
    free(c.g0), free(c.g1), free(c.gk), free(c.y), free(c.yp), free(c.ym);
    return rc;
}
