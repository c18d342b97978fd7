/* The online oscillator surrogate (see fit_online.h). */
#include "surrogate/fit_online.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>

#include "patctl/error.h"
#include "surrogate/blas.h"

void fit_online_default_options(fit_online_options *o)
{
    o->refit_every = 100;
    o->window = 10;
    o->mask = OSC_K_ALL;
    o->coupling = 1;
    o->lr = 1e-3;
    o->ls = 0;
    o->ls_every = 25;
    o->forget = 0.99;
    o->ridge = 1e-2;
    o->denoise = 0;
    o->noise = 0.02;
    o->model_err = 0.01;
}

int fit_online_parse(const char *text, fit_online_options *o, char *err, size_t errlen)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        char *eq = strchr(t, '='), *end;
        if (!eq) {
            snprintf(err, errlen, "online option '%s': expected key=value", t);
            return PATCTL_ERR_ARG;
        }
        *eq = '\0';
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= 0)) {
            snprintf(err, errlen, "online option %s: expected a number >= 0, got '%s'", t, eq + 1);
            return PATCTL_ERR_ARG;
        }
        if (strcmp(t, "every") == 0) o->refit_every = (int)v;
        else if (strcmp(t, "window") == 0 && v >= 1) o->window = (int)v;
        else if (strcmp(t, "lr") == 0) o->lr = v;
        else if (strcmp(t, "coupling") == 0) o->coupling = v != 0;
        else if (strcmp(t, "consts") == 0) o->refit_every = v != 0 ? (o->refit_every ? o->refit_every : 100) : 0;
        else if (strcmp(t, "ls") == 0) o->ls = v != 0;
        else if (strcmp(t, "ls_every") == 0 && v >= 1) o->ls_every = (int)v;
        else if (strcmp(t, "forget") == 0 && v > 0 && v <= 1) o->forget = v;
        else if (strcmp(t, "ridge") == 0 && v > 0) o->ridge = v;
        else if (strcmp(t, "denoise") == 0) o->denoise = (int)v;
        else if (strcmp(t, "noise") == 0 && v > 0) o->noise = v;
        else if (strcmp(t, "model_err") == 0 && v > 0) o->model_err = v;
        else {
            snprintf(err, errlen, "online option '%s': expected every, window, lr, coupling, consts, ls, "
                     "ls_every (>= 1), forget (0 < f <= 1), ridge (> 0), denoise, noise (> 0) or model_err (> 0)", t);
            return PATCTL_ERR_ARG;
        }
    }
    return 0;
}

typedef struct {
    osc_model m;            /* current model; m.q_noise = D */
    fit_online_options o;
    float *A, *D, *mA, *vA; /* [N,N] */
    float *Dx;              /* [N,N] the part of the starting D that L(sym(A)) cannot hold
                               (e.g. the free diagonal of an LS fit); D = L(sym(A)) + Dx */
    float *gth;             /* [n_theta] backward scratch */
    float *ylast, *gy;      /* [cap,N] */
    osc_tape *tape;
    int cap, B_last;
    long steps, adam_t;
    /* the window: the last `window` batches */
    float *w_theta;         /* [window, n_theta] */
    float *w_x, *w_y;       /* [window, cap, N] */
    int *w_B;
    int w_n, w_head;
    /* ls: normal equations of the recursive least squares */
    double *G, *H;          /* [N,N] F^T F (lower triangle), F^T T */
    double *Fd, *Td;        /* [cap,N] */
    float *F, *T;           /* [cap,N] */
    long ls_batches;
    /* denoise */
    float *nh, *xn, *Jd;    /* [cap,N] noise estimate, x + n / a_in, self-sensitivity */
} online_impl;

static int ensure(online_impl *o, int B)
{
    if (B <= o->cap)
        return 0;
    int n = o->m.n, W = o->o.window;
    osc_tape *t = osc_tape_alloc(n, B, o->m.steps);
    float *yl = malloc(sizeof(float) * (size_t)B * (size_t)n);
    float *gy = malloc(sizeof(float) * (size_t)B * (size_t)n);
    float *wx = o->o.refit_every ? calloc((size_t)W * (size_t)B * (size_t)n, sizeof(float)) : NULL;
    float *wy = o->o.refit_every ? calloc((size_t)W * (size_t)B * (size_t)n, sizeof(float)) : NULL;
    if (!t || !yl || !gy || (o->o.refit_every && (!wx || !wy))) {
        osc_tape_free(t);
        free(yl), free(gy), free(wx), free(wy);
        return PATCTL_ERR_NOMEM;
    }
    /* the window restarts when the batch grows (rare: the first steps) */
    osc_tape_free(o->tape);
    free(o->ylast), free(o->gy), free(o->w_x), free(o->w_y);
    o->tape = t, o->ylast = yl, o->gy = gy, o->w_x = wx, o->w_y = wy;
    if (o->o.denoise) {
        free(o->nh), free(o->xn), free(o->Jd);
        o->nh = malloc(sizeof(float) * (size_t)B * (size_t)n);
        o->xn = malloc(sizeof(float) * (size_t)B * (size_t)n);
        o->Jd = malloc(sizeof(float) * (size_t)B * (size_t)n);
        if (!o->nh || !o->xn || !o->Jd) {
            o->cap = 0;
            return PATCTL_ERR_NOMEM;
        }
    }
    if (o->o.ls) {
        free(o->Fd), free(o->Td), free(o->F), free(o->T);
        o->Fd = malloc(sizeof(double) * (size_t)B * (size_t)n);
        o->Td = malloc(sizeof(double) * (size_t)B * (size_t)n);
        o->F = malloc(sizeof(float) * (size_t)B * (size_t)n);
        o->T = malloc(sizeof(float) * (size_t)B * (size_t)n);
        if (!o->Fd || !o->Td || !o->F || !o->T) {
            o->cap = 0;
            return PATCTL_ERR_NOMEM;
        }
    }
    o->cap = B;
    o->w_n = o->w_head = 0;
    return 0;
}

static int on_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    online_impl *o = s->impl;
    int rc = ensure(o, B);
    if (rc)
        return rc;
    long nn = (long)o->m.n * o->m.n;
    if ((rc = osc_forward(&o->m, theta, theta + nn, x, NULL, B, y, o->tape)))
        return rc;
    memcpy(o->ylast, y, sizeof(float) * (size_t)B * (size_t)o->m.n);
    o->B_last = B;
    return 0;
}

static int on_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    online_impl *o = s->impl;
    long nn = (long)o->m.n * o->m.n;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return osc_backward(&o->m, o->tape, gy, gx, gtheta, gtheta ? gtheta + nn : NULL, NULL);
}

static void on_destroy(surrogate *s)
{
    online_impl *o = s->impl;
    if (o) {
        osc_tape_free(o->tape);
        free(o->A), free(o->D), free(o->Dx), free(o->mA), free(o->vA), free(o->gth);
        free(o->ylast), free(o->gy), free(o->w_theta), free(o->w_x), free(o->w_y), free(o->w_B);
        free(o->G), free(o->H), free(o->Fd), free(o->Td), free(o->F), free(o->T);
        free(o->nh), free(o->xn), free(o->Jd);
    }
    free(o);
    free(s);
}

static const surrogate_ops online_ops = {
    .kind = "oscillators-online",
    .forward = on_forward,
    .backward = on_backward,
    .destroy = on_destroy,
};

surrogate *surrogate_osc_online_new(const osc_model *m, const float *D, const fit_online_options *opt)
{
    surrogate *s = calloc(1, sizeof(*s));
    online_impl *o = calloc(1, sizeof(*o));
    if (!s || !o)
        goto fail;
    int n = m->n;
    size_t nn = (size_t)n * (size_t)n, nt = nn + (size_t)n;
    o->m = *m;
    o->o = *opt;
    if (o->o.window < 1)
        o->o.window = 1;
    o->A = calloc(nn, sizeof(float));
    o->D = calloc(nn, sizeof(float));
    o->mA = calloc(nn, sizeof(float));
    o->vA = calloc(nn, sizeof(float));
    o->gth = malloc(sizeof(float) * nt);
    o->w_B = calloc((size_t)o->o.window, sizeof(int));
    o->w_theta = o->o.refit_every ? malloc(sizeof(float) * (size_t)o->o.window * nt) : NULL;
    if (!o->A || !o->D || !o->mA || !o->vA || !o->gth || !o->w_B || (o->o.refit_every && !o->w_theta))
        goto fail;
    if (o->o.ls) { /* the normal equations of the recursive least squares on D */
        o->G = calloc(nn, sizeof(double));
        o->H = calloc(nn, sizeof(double));
        if (!o->G || !o->H)
            goto fail;
    }
    if (D) /* A from D's off-diagonal: L(sym(A)) = D when D has that structure */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                o->A[(long)i * n + j] = i == j ? 0.0f : 0.5f * (D[(long)i * n + j] + D[(long)j * n + i]);
    osc_laplacian_sym(o->D, o->A, n);
    if (D) {
        if (!(o->Dx = malloc(sizeof(float) * nn)))
            goto fail;
        for (size_t j = 0; j < nn; j++)
            o->Dx[j] = D[j] - o->D[j];
        memcpy(o->D, D, sizeof(float) * nn);
    }
    o->m.q_noise = o->D;
    s->ops = &online_ops;
    s->impl = o;
    s->n_in = s->n_out = n;
    s->n_theta = (long)nt;
    return s;
fail:
    if (s && o) {
        s->impl = o;
        on_destroy(s);
        return NULL;
    }
    free(o);
    free(s);
    return NULL;
}

int surrogate_is_online(surrogate *s) { return s && s->ops == &online_ops; }

const osc_model *surrogate_online_model(surrogate *s)
{
    return surrogate_is_online(s) ? &((online_impl *)s->impl)->m : NULL;
}

/* LM on the constants over the window */
static int refit(online_impl *o, char *err, size_t errlen)
{
    int n = o->m.n;
    long nt = (long)n * n + n, S = 0;
    for (int i = 0; i < o->w_n; i++)
        S += o->w_B[i];
    fit_set d;
    int rc = fit_set_alloc(&d, n, n, nt, S, o->w_n, 0, 0);
    if (rc)
        return rc;
    long row = 0;
    for (int i = 0; i < o->w_n; i++) {
        int B = o->w_B[i];
        memcpy(d.theta + (long)i * nt, o->w_theta + (long)i * nt, sizeof(float) * (size_t)nt);
        memcpy(d.x + row * n, o->w_x + (long)i * o->cap * n, sizeof(float) * (size_t)B * (size_t)n);
        memcpy(d.y + row * n, o->w_y + (long)i * o->cap * n, sizeof(float) * (size_t)B * (size_t)n);
        for (int b = 0; b < B; b++)
            d.setting[row + b] = i;
        row += B;
    }
    fit_osc_options fo;
    fit_osc_default_options(&fo);
    fo.mask = o->o.mask;
    fo.max_iter = 10;
    fit_osc_result r;
    memset(&r, 0, sizeof(r));
    osc_model trial = o->m;
    rc = fit_osc_consts(&trial, &d, NULL, &fo, &r, err, errlen);
    if (!rc)
        o->m.k = trial.k; /* keep the old constants if the refit failed */
    fit_set_free(&d);
    return rc == PATCTL_ERR_NUMERIC ? 0 : rc; /* a diverging trial is skipped, not fatal */
}

int surrogate_online_condition(surrogate *s, const float *theta, const float *x, const float *y_dev, int B,
                               float *y)
{
    if (!surrogate_is_online(s))
        return PATCTL_ERR_ARG;
    online_impl *o = s->impl;
    if (!o->o.denoise)
        return 0;
    int n = o->m.n, rc;
    long nn = (long)n * n, len = (long)B * n;
    if (B != o->B_last || B > o->cap || fabsf(o->m.k.in_gain) < 1e-6f)
        return PATCTL_ERR_STATE;
    for (long i = 0; i < len; i++)
        if (!isfinite(y_dev[i]))
            return 0; /* nothing to learn from: keep the noiseless trajectory */
    float lam = (float)(o->o.model_err * o->o.model_err / (o->o.noise * o->o.noise));
    float ia = 1.0f / o->m.k.in_gain;
    memset(o->nh, 0, sizeof(float) * (size_t)len);
    for (int it = 0; it < o->o.denoise; it++) {
        if ((rc = osc_tape_self_sensitivity(&o->m, o->tape, o->Jd)))
            return rc;
        for (long i = 0; i < len; i++) {
            float J = o->Jd[i], r = y_dev[i] - o->ylast[i];
            o->nh[i] += 0.5f * (J * r - lam * o->nh[i]) / (J * J + lam);
            o->xn[i] = x[i] + o->nh[i] * ia;
        }
        if ((rc = osc_forward(&o->m, theta, theta + nn, o->xn, NULL, B, o->ylast, o->tape)))
            return rc;
    }
    if (y)
        memcpy(y, o->ylast, sizeof(float) * (size_t)len);
    return 0;
}

/* ls: add the batch of the last forward (tape) with its measurement y_dev
 * to the normal equations; every ls_every batches, solve for D. */
static int ls_observe(online_impl *o, const float *y_dev, int B, char *err, size_t errlen)
{
    int n = o->m.n, rc;
    long nn = (long)n * n, len = (long)B * n;
    double c = (double)o->m.k.out_gain * o->m.t_end * o->m.t_end / 2.0, rho = o->o.forget;
    if (fabs(c) < 1e-9)
        return 0;
    if ((rc = osc_tape_coupling_input(o->tape, o->F)))
        return rc;
    /* T = F D + R / c */
    blas_sgemm(0, 0, B, n, n, 1.0f, o->F, o->D, 0.0f, o->T);
    for (long i = 0; i < len; i++) {
        o->Fd[i] = o->F[i];
        o->Td[i] = o->T[i] + ((double)y_dev[i] - o->ylast[i]) / c;
    }
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, n, B, 1.0, o->Fd, n, rho, o->G, n);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, B, 1.0, o->Fd, n, o->Td, n, rho, o->H, n);
    if (++o->ls_batches % o->o.ls_every)
        return 0;
    /* (G + lambda I) Dnew = H + lambda D */
    gsl_matrix *A = gsl_matrix_alloc((size_t)n, (size_t)n), *Bm = gsl_matrix_alloc((size_t)n, (size_t)n);
    gsl_matrix *X = gsl_matrix_alloc((size_t)n, (size_t)n);
    if (!A || !Bm || !X) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    memcpy(A->data, o->G, sizeof(double) * (size_t)nn);
    double lambda = fit_ridge(A->data, n, o->o.ridge);
    for (long j = 0; j < nn; j++)
        Bm->data[j] = o->H[j] + lambda * o->D[j];
    int gs = fit_cholesky_solve(A->data, Bm->data, X->data, n);
    if (gs) {
        snprintf(err, errlen, "online surrogate: coupling solve failed (%s); D kept", gsl_strerror(gs));
        goto out; /* not fatal: keep the current D */
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double v = 0.5 * (X->data[(long)i * n + j] + X->data[(long)j * n + i]);
            if (!isfinite(v))
                goto out; /* never install a bad model */
            X->data[(long)i * n + j] = X->data[(long)j * n + i] = v;
        }
    for (long j = 0; j < nn; j++)
        o->D[j] = (float)X->data[j];
out:
    if (A) gsl_matrix_free(A);
    if (Bm) gsl_matrix_free(Bm);
    if (X) gsl_matrix_free(X);
    return rc;
}

int surrogate_online_observe(surrogate *s, const float *theta, const float *x, const float *y_dev,
                             int B, char *err, size_t errlen)
{
    if (!surrogate_is_online(s))
        return PATCTL_ERR_ARG;
    online_impl *o = s->impl;
    int n = o->m.n;
    long nn = (long)n * n, nt = nn + n, len = (long)B * n;
    if (B != o->B_last || B > o->cap) {
        snprintf(err, errlen, "online surrogate: observe() must follow the forward of the same batch");
        return PATCTL_ERR_STATE;
    }
    for (long i = 0; i < len; i++)
        if (!isfinite(y_dev[i]))
            return 0; /* never learn from a bad measurement */
    o->steps++;
    if (o->o.refit_every) {
        int slot = o->w_head;
        memcpy(o->w_theta + (long)slot * nt, theta, sizeof(float) * (size_t)nt);
        memcpy(o->w_x + (long)slot * o->cap * n, x, sizeof(float) * (size_t)len);
        memcpy(o->w_y + (long)slot * o->cap * n, y_dev, sizeof(float) * (size_t)len);
        o->w_B[slot] = B;
        o->w_head = (slot + 1) % o->o.window;
        if (o->w_n < o->o.window)
            o->w_n++;
    }
    if (o->o.ls) {
        int rc = ls_observe(o, y_dev, B, err, errlen);
        if (rc)
            return rc;
    } else if (o->o.coupling && fabsf(o->m.k.coupling_gain) > 1e-3f) {
        float sc = 1.0f / (float)len;
        for (long i = 0; i < len; i++)
            o->gy[i] = (o->ylast[i] - y_dev[i]) * sc;
        memset(o->gth, 0, sizeof(float) * (size_t)nt);
        int rc = osc_backward(&o->m, o->tape, o->gy, NULL, o->gth, NULL, NULL);
        if (rc)
            return rc;
        o->adam_t++;
        const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, ig = 1.0f / o->m.k.coupling_gain;
        float c1 = 1.0f / (1.0f - powf(b1, (float)o->adam_t)), c2 = 1.0f / (1.0f - powf(b2, (float)o->adam_t));
        float lr = (float)o->o.lr;
        for (long j = 0; j < nn; j++) {
            float g = o->gth[j] * ig;
            o->mA[j] = b1 * o->mA[j] + (1 - b1) * g;
            o->vA[j] = b2 * o->vA[j] + (1 - b2) * g * g;
            o->A[j] -= lr * (o->mA[j] * c1) / (sqrtf(o->vA[j] * c2) + eps);
        }
        for (int i = 0; i < n; i++)
            o->A[(long)i * n + i] = 0.0f;
        osc_laplacian_sym(o->D, o->A, n);
        if (o->Dx)
            for (long j = 0; j < nn; j++)
                o->D[j] += o->Dx[j];
    }
    if (o->o.refit_every && o->steps % o->o.refit_every == 0)
        return refit(o, err, errlen);
    return 0;
}
