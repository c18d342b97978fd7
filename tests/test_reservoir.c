/* The delay reservoir (surrogate/reservoir.c), its simulated device
 * (devices/reservoir/) and the benchmark series (surrogate/series.c):
 *   - series: NARMA-10 against its recursion, bounded; Mackey-Glass:
 *     fourth-order convergence of the integrator, range, quasi-period,
 *     divergence of nearby trajectories; NRMSE and the ridge readout on
 *     known cases;
 *   - physics: the nonlinearities' derivatives, the exact VJP (inputs, mask,
 *     bias, gain, constants) against finite differences for out_steps 1 and
 *     T, the rest state;
 *   - device: noise reproducible per (seed, id) and different for another
 *     id, a batch in parts (row0) equal to one piece, configured noise
 *     statistics, limits, the DAC model, the ideal VJP (noiseless and along
 *     a noisy trajectory);
 *   - reservoir computing: ridge readouts on the device's states for
 *     NARMA-10 and Mackey-Glass prediction. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <gsl/gsl_rng.h>

#include "controller/surrogates.h"
#include "devices/device.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/reservoir/reservoir_dev.h"
#include "gradcheck.h"
#include "surrogate/reservoir.h"
#include "surrogate/series.h"
#include "surrogate/surrogate.h"

static void fill(float *v, long n, float lo, float hi, unsigned seed)
{
    for (long i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)gc_uniform(&seed);
}

/* ---------------------------------------------------------------- series */

static void test_narma10(void **state)
{
    (void)state;
    enum { L = 20000, W = 100 };
    double *u = malloc(sizeof(double) * L), *y = malloc(sizeof(double) * L);
    double *u2 = malloc(sizeof(double) * (L - W)), *y2 = malloc(sizeof(double) * (L - W));
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 5);
    assert_int_equal(series_narma10(r, L, 0, u, y), 0);
    /* the recursion, written out on whole arrays: Y[t] = y(t), Y[t+1] = y[t] */
    double *Y = calloc(L + 1, sizeof(double));
    double worst = 0, ymin = 1e9, ymax = -1e9;
    for (long t = 0; t < L; t++) {
        assert_true(u[t] >= 0 && u[t] < 0.5);
        if (t >= 9) {
            double s = 0;
            for (int i = 0; i < 10; i++)
                s += Y[t - i];
            Y[t + 1] = 0.3 * Y[t] + 0.05 * Y[t] * s + 1.5 * u[t - 9] * u[t] + 0.1;
        }
        worst = fmax(worst, fabs(Y[t + 1] - y[t]));
        ymin = fmin(ymin, y[t]), ymax = fmax(ymax, y[t]);
    }
    printf("  NARMA-10 over %d steps: max deviation from the recursion %.1e, y in [%.3f, %.3f]\n", L,
           worst, ymin, ymax);
    assert_true(worst < 1e-12);
    assert_true(ymin >= 0 && ymax < 1.5 && ymax > 0.5); /* bounded, and not trivial */
    /* with a washout: the tail of the same stream */
    gsl_rng_set(r, 5);
    assert_int_equal(series_narma10(r, L - W, W, u2, y2), 0);
    for (long t = 0; t < L - W; t++) {
        assert_true(u2[t] == u[t + W]);
        assert_true(y2[t] == y[t + W]);
    }
    assert_int_equal(series_narma10(r, 0, 0, u, y), PATCTL_ERR_ARG);
    assert_int_equal(series_narma10(NULL, 10, 0, u, y), PATCTL_ERR_ARG);
    gsl_rng_free(r);
    free(u), free(y), free(u2), free(y2), free(Y);
}

static void test_mackey_glass(void **state)
{
    (void)state;
    /* 1. fourth-order convergence: steps 0.1, 0.05 against 0.0125, 300 time units */
    enum { M = 300 };
    series_mg_params p = series_mg_default();
    p.washout = 0;
    double *ref = malloc(sizeof(double) * M), *a = malloc(sizeof(double) * M);
    p.dt = 0.0125;
    assert_int_equal(series_mackey_glass(&p, M, ref), 0);
    double err[2];
    const double dts[2] = {0.1, 0.05};
    for (int k = 0; k < 2; k++) {
        p.dt = dts[k];
        assert_int_equal(series_mackey_glass(&p, M, a), 0);
        err[k] = 0;
        for (int i = 0; i < M; i++)
            err[k] = fmax(err[k], fabs(a[i] - ref[i]));
    }
    printf("  Mackey-Glass RK4 over 300 time units: max error %.2e (dt 0.1), %.2e (dt 0.05) "
           "against dt 0.0125: ratio %.1f (fourth order: 16)\n", err[0], err[1], err[0] / err[1]);
    assert_true(err[0] < 1e-7);
    assert_true(err[0] / err[1] > 10 && err[0] / err[1] < 25);
    free(ref), free(a);

    /* 2. the attractor: range, mean, quasi-period (ACF) */
    enum { L = 5000 };
    double *x = malloc(sizeof(double) * L);
    p = series_mg_default();
    assert_int_equal(series_mackey_glass(&p, L, x), 0);
    double lo = 9, hi = -9, mean = 0, var = 0;
    for (int i = 0; i < L; i++)
        lo = fmin(lo, x[i]), hi = fmax(hi, x[i]), mean += x[i] / L;
    for (int i = 0; i < L; i++)
        var += (x[i] - mean) * (x[i] - mean) / L;
    double acf[80];
    int zero = -1, peak = -1;
    for (int lag = 0; lag < 80; lag++) {
        double s = 0;
        for (int i = 0; i + lag < L; i++)
            s += (x[i] - mean) * (x[i + lag] - mean);
        acf[lag] = s / (L - lag) / var;
        if (zero < 0 && acf[lag] < 0)
            zero = lag;
        if (lag > 30 && (peak < 0 || acf[lag] > acf[peak]))
            peak = lag;
    }
    printf("  Mackey-Glass tau 17 (5000 samples, step 1): range [%.3f, %.3f], mean %.3f, ACF first "
           "zero at lag %d, next maximum %.2f at lag %d\n", lo, hi, mean, zero, acf[peak], peak);
    assert_true(lo > 0.2 && lo < 0.5 && hi > 1.2 && hi < 1.4);
    assert_true(mean > 0.85 && mean < 1.0);
    assert_true(zero >= 10 && zero <= 14);     /* quasi-period ~50: a quarter of it */
    assert_true(peak >= 44 && peak <= 56 && acf[peak] > 0.4);

    /* 3. chaos: nearby histories diverge exponentially (the largest Lyapunov
     * exponent of tau 17 is ~0.006 per time unit) */
    enum { D = 4000, BLK = 200 };
    double *x1 = malloc(sizeof(double) * D), *x2 = malloc(sizeof(double) * D);
    p = series_mg_default();
    p.washout = 0;
    assert_int_equal(series_mackey_glass(&p, D, x1), 0);
    p.x0 += 1e-10;
    assert_int_equal(series_mackey_glass(&p, D, x2), 0);
    double st = 0, sl = 0, stt = 0, stl = 0;
    int nb = 0;
    for (int b = 5; b < 17; b++) { /* t = 1000 .. 3400 */
        double ss = 0;
        for (int i = b * BLK; i < (b + 1) * BLK; i++)
            ss += (x1[i] - x2[i]) * (x1[i] - x2[i]);
        double t = (b + 0.5) * BLK, l = 0.5 * log(ss / BLK);
        st += t, sl += l, stt += t * t, stl += t * l, nb++;
    }
    double lambda = (nb * stl - st * sl) / (nb * stt - st * st);
    printf("  Mackey-Glass divergence of histories 1e-10 apart: exponent %.4f per time unit\n",
           lambda);
    assert_true(lambda > 0.003 && lambda < 0.009);
    free(x), free(x1), free(x2);

    p = series_mg_default();
    p.dt = 0.3; /* tau / dt not an integer */
    double one;
    assert_int_equal(series_mackey_glass(&p, 1, &one), PATCTL_ERR_ARG);
}

static void test_nrmse_ridge(void **state)
{
    (void)state;
    enum { n = 400, d = 3 };
    double y[n], yh[n], X[n * d], w[d + 1];
    unsigned s = 9;
    double mean = 0, var = 0;
    for (int t = 0; t < n; t++) {
        for (int a = 0; a < d; a++)
            X[t * d + a] = 2 * gc_uniform(&s) - 1;
        y[t] = 1.0 * X[t * d] - 2.0 * X[t * d + 1] + 0.5 * X[t * d + 2] + 3.0;
        mean += y[t] / n;
    }
    for (int t = 0; t < n; t++)
        var += (y[t] - mean) * (y[t] - mean) / n;
    assert_float_equal(series_nrmse(y, y, n), 0.0, 1e-12);
    for (int t = 0; t < n; t++)
        yh[t] = mean;
    assert_float_equal(series_nrmse(y, yh, n), 1.0, 1e-12);
    for (int t = 0; t < n; t++)
        yh[t] = y[t] + 0.1;
    assert_float_equal(series_nrmse(y, yh, n), 0.1 / sqrt(var), 1e-12);
    for (int t = 0; t < n; t++)
        yh[t] = 2 * mean - y[t]; /* the mirror image: twice the error of the mean */
    assert_float_equal(series_nrmse(y, yh, n), 2.0, 1e-12);
    assert_true(isnan(series_nrmse(y, y, 0)));
    /* ridge: exact recovery without penalty, shrinkage with a large one */
    assert_int_equal(series_ridge_fit(X, n, d, y, 0.0, w), 0);
    assert_float_equal(w[0], 1.0, 1e-9);
    assert_float_equal(w[1], -2.0, 1e-9);
    assert_float_equal(w[2], 0.5, 1e-9);
    assert_float_equal(w[3], 3.0, 1e-9);
    series_ridge_predict(X, n, d, w, yh);
    assert_true(series_nrmse(y, yh, n) < 1e-9);
    assert_int_equal(series_ridge_fit(X, n, d, y, 1e6, w), 0);
    assert_true(fabs(w[0]) < 1e-2 && fabs(w[1]) < 1e-2);
    assert_float_equal(w[3], mean, 1e-2); /* the bias is not penalised */
    /* windows */
    double u[6] = {1, 2, 3, 4, 5, 6};
    float win[3 * 4];
    series_windows(u, 1, 3, 4, win);
    const float want[12] = {0, 0, 1, 2, 0, 1, 2, 3, 1, 2, 3, 4};
    for (int i = 0; i < 12; i++)
        assert_true(win[i] == want[i]);
}

/* --------------------------------------------------------------- physics */

static void test_nonlinearity(void **state)
{
    (void)state;
    reservoir_model m = reservoir_model_nominal(4, 3, 1);
    const double ps[3] = {1.0, 2.0, 3.5};
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        m.nonlin = k < 3 ? RES_NL_MG : RES_NL_SIN2;
        if (k < 3)
            m.k.p = ps[k];
        m.k.phi = 0.4;
        for (double z = -2.05; z < 2.1; z += 0.1) {
            double d, h = 1e-6;
            reservoir_f(&m, z, &d);
            double fd = (reservoir_f(&m, z + h, NULL) - reservoir_f(&m, z - h, NULL)) / (2 * h);
            worst = fmax(worst, fabs(fd - d));
        }
    }
    m.nonlin = RES_NL_MG, m.k.p = 2.0;
    double d;
    assert_float_equal(reservoir_f(&m, 1.0, &d), 0.5, 1e-15); /* the hump of z/(1+z^2) */
    assert_float_equal(d, 0.0, 1e-15);
    assert_float_equal(reservoir_f(&m, 0.0, &d), 0.0, 0);
    assert_float_equal(d, 1.0, 0);
    printf("  nonlinearities: max |dF/dz - central difference| %.1e\n", worst);
    assert_true(worst < 1e-8);
}

typedef struct {
    reservoir_model m;
    reservoir_tape *t;
    int B;
} rctx;

/* p = [x (B * T*C), mask, bias, gain] */
static void f_all(void *c, const float *p, float *y)
{
    rctx *k = c;
    long nx = (long)k->B * reservoir_n_in(&k->m);
    assert_int_equal(reservoir_forward(&k->m, p, p + nx, k->B, y, k->t, NULL, NULL), 0);
}
static void v_all(void *c, const float *p, const float *r, float *g)
{
    rctx *k = c;
    long nx = (long)k->B * reservoir_n_in(&k->m);
    float *y = malloc(sizeof(float) * (size_t)k->B * (size_t)reservoir_n_out(&k->m));
    f_all(c, p, y);
    free(y);
    assert_int_equal(reservoir_backward(&k->m, k->t, r, g, g + nx, NULL), 0);
}

static void test_vjp(void **state)
{
    (void)state;
    /* nodes, window, channels, out_steps, out_stride, desync, nonlinearity */
    const int cfg[5][7] = {
        {7, 6, 1, 1, 1, 1, RES_NL_MG},  /* the last state */
        {7, 6, 1, 6, 1, 1, RES_NL_MG},  /* out_steps = T: the whole sequence */
        {5, 8, 3, 3, 2, 0, RES_NL_MG},  /* channels, stride, synchronous loop */
        {6, 5, 2, 5, 1, 2, RES_NL_SIN2},
        {6, 5, 2, 2, 3, 1, RES_NL_SIN2},
    };
    for (int k = 0; k < 5; k++) {
        rctx c = {.m = reservoir_model_nominal(cfg[k][0], cfg[k][1], cfg[k][2]), .B = 3};
        c.m.out_steps = cfg[k][3], c.m.out_stride = cfg[k][4], c.m.desync = cfg[k][5];
        c.m.nonlin = cfg[k][6];
        if (c.m.nonlin == RES_NL_SIN2)
            c.m.k.phi = 0.5, c.m.k.eta = 1.1;
        c.t = reservoir_tape_alloc(&c.m, c.B);
        assert_non_null(c.t);
        long nx = (long)c.B * reservoir_n_in(&c.m), nt = reservoir_n_theta(&c.m);
        long N = c.m.nodes, C = c.m.channels;
        float *p = malloc(sizeof(float) * (size_t)(nx + nt));
        fill(p, nx, -1, 1, 3 + k);
        fill(p + nx, N * C, -1, 1, 5 + k);
        fill(p + nx + N * C, N, -0.3f, 0.3f, 7 + k);
        p[nx + nt - 1] = 0.8f; /* gain: z of order 1, where F bends */
        char what[64];
        snprintf(what, sizeof(what), "reservoir cfg %d (K %d of T %d)", k, cfg[k][3], cfg[k][1]);
        double e = gradcheck(what, f_all, v_all, &c, p, (int)(nx + nt),
                             c.B * reservoir_n_out(&c.m), 1e-3, 5, 11 + k);
        assert_true(e < 3e-3);
        free(p);
        reservoir_tape_free(c.t);
    }
}

/* constants in relative units k_i = k0_i (1 + p_i); phi: k0 + p */
typedef struct {
    reservoir_model m;
    reservoir_consts k0;
    reservoir_tape *t;
    float x[3 * 5 * 2], th[6 * 2 + 6 + 1];
} kctx;
static void set_k(kctx *c, const float *p)
{
    c->m.k.eta = c->k0.eta * (1 + p[0]);
    c->m.k.p = c->k0.p * (1 + p[1]);
    c->m.k.phi = c->k0.phi + p[2];
    c->m.k.theta = c->k0.theta * (1 + p[3]);
    c->m.k.in_gain = c->k0.in_gain * (1 + p[4]);
    c->m.k.out_gain = c->k0.out_gain * (1 + p[5]);
}
static void f_k(void *c, const float *p, float *y)
{
    kctx *k = c;
    set_k(k, p);
    assert_int_equal(reservoir_forward(&k->m, k->x, k->th, 3, y, k->t, NULL, NULL), 0);
}
static void v_k(void *c, const float *p, const float *r, float *g)
{
    kctx *k = c;
    float y[3 * 6 * 5];
    f_k(c, p, y);
    reservoir_consts_grad gk = {0, 0, 0, 0, 0, 0};
    assert_int_equal(reservoir_backward(&k->m, k->t, r, NULL, NULL, &gk), 0);
    g[0] += (float)(gk.eta * k->k0.eta);
    g[1] += (float)(gk.p * k->k0.p);
    g[2] += (float)gk.phi;
    g[3] += (float)(gk.theta * k->k0.theta);
    g[4] += (float)(gk.in_gain * k->k0.in_gain);
    g[5] += (float)(gk.out_gain * k->k0.out_gain);
}

static void test_vjp_constants(void **state)
{
    (void)state;
    for (int nl = 0; nl < 2; nl++) {
        kctx c = {.m = reservoir_model_nominal(6, 5, 2)};
        c.m.out_steps = 5;
        c.m.nonlin = nl ? RES_NL_SIN2 : RES_NL_MG;
        c.m.k.p = 2.2, c.m.k.phi = 0.5, c.m.k.in_gain = 0.9, c.m.k.out_gain = 1.1;
        c.k0 = c.m.k;
        c.t = reservoir_tape_alloc(&c.m, 3);
        fill(c.x, 30, -1, 1, 21 + nl);
        fill(c.th, 12, -1, 1, 22);
        fill(c.th + 12, 6, -0.3f, 0.3f, 23);
        c.th[18] = 0.8f;
        float p[6] = {0};
        double e = gradcheck(nl ? "reservoir constants (sin2)" : "reservoir constants (mg)", f_k,
                             v_k, &c, p, 6, 3 * 30, 1e-3, 5, 4 + nl);
        assert_true(e < 3e-3);
        reservoir_tape_free(c.t);
    }
}

static void test_rest_and_check(void **state)
{
    (void)state;
    reservoir_model m = reservoir_model_nominal(8, 6, 2);
    m.out_steps = 6;
    reservoir_tape *t = reservoir_tape_alloc(&m, 2);
    float x[2 * 12], th[8 * 2 + 8 + 1], y[2 * 48];
    fill(x, 24, -1, 1, 1);
    fill(th, 24, -1, 1, 2);
    th[24] = 0.0f; /* gain 0 (the safe setting): no drive, the loop stays at rest */
    assert_int_equal(reservoir_forward(&m, x, th, 2, y, t, NULL, NULL), 0);
    for (int i = 0; i < 96; i++)
        assert_true(y[i] == 0.0f);
    /* with drive, the state carries the input: different windows differ */
    th[24] = 1.0f;
    assert_int_equal(reservoir_forward(&m, x, th, 2, y, t, NULL, NULL), 0);
    double diff = 0;
    for (int i = 0; i < 48; i++)
        diff += fabs(y[i] - y[48 + i]);
    assert_true(diff > 0.1);
    assert_int_equal(reservoir_forward(&m, x, th, 3, y, t, NULL, NULL), PATCTL_ERR_ARG);
    reservoir_tape_free(t);
    char err[160];
    m.out_steps = 4, m.out_stride = 2; /* (4 - 1) * 2 = 6 > T - 1 = 5 */
    assert_int_equal(reservoir_check(&m, err, sizeof(err)), PATCTL_ERR_ARG);
    printf("  %s\n", err);
    assert_null(reservoir_tape_alloc(&m, 1));
    m.out_stride = 1, m.k.p = 0;
    assert_int_equal(reservoir_check(&m, err, sizeof(err)), PATCTL_ERR_ARG);
    reservoir_tape *none = NULL;
    reservoir_tape_free(none);
}

/* ---------------------------------------------------------------- device */

static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_res(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "res", "reservoir", o, n, 3, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    device_set_logger(d, quiet, NULL);
    return d;
}

/* the driver itself, bypassing the boundary (row0, fixed ids) */
static void *open_drv(const char *opts, struct patctl_device_desc *desc)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    void *s = NULL;
    char err[512] = "";
    int rc = patctl_driver_reservoir.open(&s, o, n, desc, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    return s;
}

static void set_theta(const struct patctl_device_desc *desc, float *th, float gain, unsigned seed)
{
    long nm = (long)desc->blocks[0].rows * desc->blocks[0].cols, N = desc->blocks[1].rows;
    fill(th, nm, -1, 1, seed);
    fill(th + nm, N, -0.2f, 0.2f, seed + 1);
    th[nm + N] = gain;
}

static void test_device_options(void **state)
{
    (void)state;
    struct patctl_option o[2] = {{"nodes", "8"}, {"bogus", "1"}};
    device *d = NULL;
    char err[512] = "";
    assert_int_equal(device_open(&d, "r", "reservoir", o, 2, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "bogus"));
    struct patctl_option o2[1] = {{"nonlin", "tanh"}};
    assert_int_equal(device_open(&d, "r", "reservoir", o2, 1, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "nonlin"));
    struct patctl_option o3[2] = {{"window", "4"}, {"out_steps", "5"}};
    assert_int_equal(device_open(&d, "r", "reservoir", o3, 2, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    /* the description: shapes, limits */
    d = open_res("nodes=12,window=7,channels=3,out_steps=2,noise_std=0.01");
    assert_string_equal(d->desc.model, "reservoir");
    assert_int_equal(d->desc.n_in, 21);
    assert_int_equal(d->desc.n_out, 24);
    assert_int_equal(d->n_theta, 12 * 3 + 12 + 1);
    assert_true(d->desc.flags & PATCTL_DEV_HAS_VJP);
    for (int b = 0; b < d->desc.n_blocks; b++) {
        const struct patctl_param_block *k = &d->desc.blocks[b];
        assert_true(k->lo <= k->safe && k->safe <= k->hi);
        assert_true(k->lo <= k->init_lo && k->init_hi <= k->hi);
    }
    /* the nominal surrogate: the device's shape, also when the options do not
     * give it (a remote device: the controller sees only the description) */
    surrogate *s = NULL;
    assert_int_equal(surrogate_for_device(&s, d, "", err, sizeof(err)), 0);
    assert_int_equal(s->n_in, 21);
    assert_int_equal(s->n_out, 24);
    assert_int_equal(s->n_theta, d->n_theta);
    surrogate_destroy(&s);
    reservoir_model m;
    struct patctl_option o4[2] = {{"eta", "0.7"}, {"out_stride", "3"}};
    assert_int_equal(reservoir_model_for_desc(&d->desc, o4, 2, &m, err, sizeof(err)), 0);
    assert_true(m.nodes == 12 && m.channels == 3 && m.window == 7 && m.out_steps == 2);
    assert_true(m.out_stride == 3 && m.k.eta == 0.7); /* (2 - 1) * 3 < 7 still fits */
    struct patctl_device_desc bad = d->desc;
    bad.n_in = 20; /* not a multiple of the 3 channels */
    assert_int_equal(reservoir_model_for_desc(&bad, NULL, 0, &m, err, sizeof(err)), PATCTL_ERR_ARG);
    device_close(&d);
}

static void test_device_noise_reproducible(void **state)
{
    (void)state;
    enum { B = 4 };
    struct patctl_device_desc desc;
    void *s = open_drv("nodes=10,window=9,channels=2,out_steps=3,seed=7", &desc);
    int ni = desc.n_in, no = desc.n_out;
    float th[10 * 2 + 10 + 1], x[B * 18], y1[B * 30], y2[B * 30], y3[B * 30];
    set_theta(&desc, th, 0.8f, 3);
    fill(x, B * ni, -1, 1, 4);
    struct patctl_query q = {.id = 5, .batch = B, .theta = th, .x = x, .row0 = 0};
    assert_int_equal(patctl_driver_reservoir.run(s, &q, y1), 0);
    assert_int_equal(patctl_driver_reservoir.run(s, &q, y2), 0);
    assert_memory_equal(y1, y2, sizeof(float) * B * (size_t)no);
    q.id = 6;
    assert_int_equal(patctl_driver_reservoir.run(s, &q, y3), 0);
    double d = 0;
    for (int i = 0; i < B * no; i++)
        d += fabs(y1[i] - y3[i]);
    printf("  same id: identical; another id: mean |difference| %.2e V\n", d / (B * no));
    assert_true(d / (B * no) > 1e-4);
    patctl_driver_reservoir.close(s);
    /* another device seed: another realisation for the same id */
    s = open_drv("nodes=10,window=9,channels=2,out_steps=3,seed=8", &desc);
    q.id = 5;
    assert_int_equal(patctl_driver_reservoir.run(s, &q, y3), 0);
    d = 0;
    for (int i = 0; i < B * no; i++)
        d += fabs(y1[i] - y3[i]);
    assert_true(d / (B * no) > 1e-4);
    patctl_driver_reservoir.close(s);
}

static void test_device_split_rows(void **state)
{
    (void)state;
    enum { B = 7 };
    struct patctl_device_desc desc;
    /* every kind of noise on: loop, detection, ADC, common output noise */
    void *s = open_drv("nodes=9,window=8,channels=2,out_steps=4,loop_noise=0.01,det_noise=0.01,"
                       "noise_std=0.01,seed=11", &desc);
    int ni = desc.n_in, no = desc.n_out;
    float th[9 * 2 + 9 + 1], x[B * 16], y[B * 36], yp[B * 36];
    set_theta(&desc, th, 0.8f, 5);
    fill(x, B * ni, -1, 1, 6);
    struct patctl_query q = {.id = 42, .batch = B, .theta = th, .x = x, .row0 = 0};
    assert_int_equal(patctl_driver_reservoir.run(s, &q, y), 0);
    const int cut[3] = {0, 3, B};
    for (int part = 0; part < 2; part++) {
        struct patctl_query qp = {.id = 42, .batch = cut[part + 1] - cut[part], .theta = th,
                                  .x = x + cut[part] * ni, .row0 = cut[part]};
        assert_int_equal(patctl_driver_reservoir.run(s, &qp, yp + cut[part] * no), 0);
    }
    assert_memory_equal(y, yp, sizeof(float) * B * (size_t)no);
    /* a part without row0 draws row 0's noise instead: differs */
    struct patctl_query q0 = {.id = 42, .batch = 4, .theta = th, .x = x + 3 * ni, .row0 = 0};
    assert_int_equal(patctl_driver_reservoir.run(s, &q0, yp), 0);
    assert_true(memcmp(yp, y + 3 * no, sizeof(float) * 4 * (size_t)no) != 0);
    patctl_driver_reservoir.close(s);
}

static void test_device_noise_statistics(void **state)
{
    (void)state;
    enum { R = 400 };
    struct patctl_device_desc desc;
    const char *geo = "nodes=20,window=10,out_steps=10,adc_bits=0";
    char o1[256], o2[256];
    /* 1. detection noise: y - the noiseless y, std det_noise */
    snprintf(o1, sizeof(o1), "%s,loop_noise=0,det_noise=0.01", geo);
    snprintf(o2, sizeof(o2), "%s,loop_noise=0,det_noise=0", geo);
    void *sn = open_drv(o1, &desc), *sc = open_drv(o2, &desc);
    int ni = desc.n_in, no = desc.n_out;
    float th[20 + 20 + 1];
    float *x = malloc(sizeof(float) * R * (size_t)ni), *yn = malloc(sizeof(float) * R * (size_t)no);
    float *yc = malloc(sizeof(float) * R * (size_t)no);
    set_theta(&desc, th, 0.8f, 7);
    fill(x, (long)R * ni, -1, 1, 8);
    struct patctl_query q = {.id = 1, .batch = R, .theta = th, .x = x};
    assert_int_equal(patctl_driver_reservoir.run(sn, &q, yn), 0);
    assert_int_equal(patctl_driver_reservoir.run(sc, &q, yc), 0);
    double ss = 0, sm = 0;
    for (long i = 0; i < (long)R * no; i++) {
        double e = (double)yn[i] - yc[i];
        ss += e * e, sm += e;
    }
    double got = sqrt(ss / ((double)R * no)), bias = sm / ((double)R * no);
    printf("  detection noise: configured 0.0100 V, measured %.4f V (mean %+.1e)\n", got, bias);
    assert_true(fabs(got / 0.01 - 1) < 0.05 && fabs(bias) < 1e-3);
    patctl_driver_reservoir.close(sn);
    patctl_driver_reservoir.close(sc);

    /* 2. loop noise without feedback or drive (eta 0, gain 0): the node
     * low-pass filters it, x[s] = c x[s-1] + n[s], an AR(1) from rest with
     * var x[s] = sigma^2 (1 - c^(2(s+1))) / (1 - c^2), c = exp(-theta_truth) */
    snprintf(o1, sizeof(o1), "%s,eta=0,loop_noise=0.02,det_noise=0,out_gain=1,tnode_err=0.1", geo);
    sn = open_drv(o1, &desc);
    th[40] = 0.0f;
    q.id = 2;
    assert_int_equal(patctl_driver_reservoir.run(sn, &q, yn), 0);
    double c = exp(-1.0 / 1.1), worst = 0, mean_ratio = 0;
    for (int j = 0; j < no; j++) {
        double v = 0;
        for (int b = 0; b < R; b++)
            v += (double)yn[(long)b * no + j] * yn[(long)b * no + j] / R;
        double want = 0.02 * 0.02 * (1 - pow(c, 2.0 * (j + 1))) / (1 - c * c);
        mean_ratio += sqrt(v / want) / no;
        worst = fmax(worst, fabs(sqrt(v / want) - 1));
    }
    printf("  loop noise through the node (eta 0): std / AR(1) prediction %.4f on average over %d "
           "slots, worst slot %.3f off\n", mean_ratio, no, worst);
    assert_true(fabs(mean_ratio - 1) < 0.02); /* 80 000 values */
    assert_true(worst < 0.2);                 /* 400 per slot: ~3.5 % std */
    patctl_driver_reservoir.close(sn);
    /* with feedback the loop recirculates the noise: larger than without */
    snprintf(o1, sizeof(o1), "%s,loop_noise=0.02,det_noise=0,out_gain=1", geo);
    sn = open_drv(o1, &desc);
    assert_int_equal(patctl_driver_reservoir.run(sn, &q, yn), 0);
    double v_late = 0;
    for (int b = 0; b < R; b++)
        for (int j = no - 20; j < no; j++)
            v_late += (double)yn[(long)b * no + j] * yn[(long)b * no + j] / (R * 20.0);
    double ar = 0.02 / sqrt(1 - c * c);
    printf("  loop noise with eta 0.945 (truth): std %.4f after 10 steps, %.4f without feedback\n",
           sqrt(v_late), ar);
    assert_true(sqrt(v_late) > 1.5 * ar);
    patctl_driver_reservoir.close(sn);
    free(x), free(yn), free(yc);
}

static void test_device_limits_and_dac(void **state)
{
    (void)state;
    enum { B = 5 };
    device *d = open_res("nodes=8,window=6,channels=2,out_steps=2,loop_noise=0,det_noise=0,"
                         "adc_bits=0");
    long nt = d->n_theta;
    int ni = d->desc.n_in, no = d->desc.n_out;
    float th[8 * 2 + 8 + 1], thc[8 * 2 + 8 + 1], x[B * 12], xc[B * 12], y[B * 16], yc[B * 16];
    set_theta(&d->desc, th, 0.8f, 9);
    fill(x, B * ni, -1, 1, 10);
    memcpy(thc, th, sizeof(th));
    memcpy(xc, x, sizeof(x));
    th[0] = 3.0f, thc[0] = 1.0f;       /* mask above its limit */
    th[nt - 1] = 9.0f, thc[nt - 1] = 4.0f; /* gain above its limit */
    x[1] = -2.5f, xc[1] = -1.0f;       /* an input below its limit */
    assert_int_equal(device_run(d, th, x, B, y), 0);
    assert_true(d->st.clamped == 3);
    assert_int_equal(device_run(d, thc, xc, B, yc), 0);
    assert_memory_equal(y, yc, sizeof(float) * B * (size_t)no);
    printf("  clamped %llu values; ramp steps so far %llu (max steps mask 0.5, gain 0.5)\n",
           (unsigned long long)d->st.clamped, (unsigned long long)d->st.ramp_steps);
    assert_true(d->st.ramp_steps >= 7); /* gain 0 -> 4 in steps of 0.5 */
    device_close(&d);
    /* the ADC saturates at +-adc_range and writes codes */
    d = open_res("nodes=8,window=6,channels=2,out_steps=2,adc_bits=6,adc_range=0.05");
    assert_int_equal(device_run(d, thc, xc, B, y), 0);
    double lsb = 0.1 / 64, top = 0;
    for (int i = 0; i < B * no; i++) {
        assert_true(y[i] >= -0.05f - 1e-6f && y[i] <= 0.05f - lsb + 1e-6);
        double code = (y[i] + 0.05) / lsb;
        assert_true(fabs(code - nearbyint(code)) < 1e-3);
        top = fmax(top, fabs(y[i]));
    }
    assert_true(top > 0.048); /* some values saturate */
    device_close(&d);
    /* the waveform generator: mask and bias rounded to mask_bits, nothing else:
     * the device equals the nominal surrogate at the rounded setting */
    const char *exact = "nodes=8,window=6,channels=2,out_steps=2,loop_noise=0,det_noise=0,"
                        "adc_bits=0,eta_err=0,p_err=0,phi_err=0,tnode_err=0,gain_err=0,out_gain=1,"
                        "mask_mismatch=0";
    char opts[512];
    snprintf(opts, sizeof(opts), "%s,mask_bits=3", exact);
    d = open_res(opts);
    reservoir_model m = reservoir_model_nominal(8, 6, 2);
    m.out_steps = 2;
    surrogate *s = surrogate_reservoir_new(&m);
    float thq[8 * 2 + 8 + 1];
    double lsb3 = 2.0 / 7.0;
    for (long i = 0; i < nt - 1; i++)
        thq[i] = (float)(floor((thc[i] + 1.0) / lsb3 + 0.5) * lsb3 - 1.0);
    thq[nt - 1] = thc[nt - 1];
    assert_int_equal(device_run(d, thc, xc, B, y), 0);
    assert_int_equal(surrogate_forward(s, thq, xc, B, yc), 0);
    for (int i = 0; i < B * no; i++)
        assert_float_equal(y[i], yc[i], 1e-6);
    device_close(&d);
    /* and with every error off the device is its nominal surrogate */
    snprintf(opts, sizeof(opts), "%s,mask_bits=0", exact);
    d = open_res(opts);
    assert_int_equal(device_run(d, thc, xc, B, y), 0);
    assert_int_equal(surrogate_forward(s, thc, xc, B, yc), 0);
    for (int i = 0; i < B * no; i++)
        assert_float_equal(y[i], yc[i], 1e-7);
    surrogate_destroy(&s);
    device_close(&d);
}

typedef struct {
    device *d;
    int nb;
} dctx;
static void f_dev(void *c, const float *p, float *y)
{
    dctx *k = c;
    assert_int_equal(device_run(k->d, p + k->nb * k->d->desc.n_in, p, k->nb, y), 0);
}
static void v_dev(void *c, const float *p, const float *r, float *g)
{
    dctx *k = c;
    float *y = malloc(sizeof(float) * (size_t)(k->nb * k->d->desc.n_out));
    f_dev(c, p, y);
    free(y);
    assert_int_equal(device_vjp(k->d, r, g, g + k->nb * k->d->desc.n_in), 0);
}

/* the driver at a fixed query id (the same loop noise every call) */
typedef struct {
    void *s;
    struct patctl_device_desc desc;
    int nb;
} drvctx;
static void f_drv(void *c, const float *p, float *y)
{
    drvctx *k = c;
    struct patctl_query q = {.id = 77, .batch = k->nb, .theta = p + k->nb * k->desc.n_in, .x = p};
    assert_int_equal(patctl_driver_reservoir.run(k->s, &q, y), 0);
}
static void v_drv(void *c, const float *p, const float *r, float *g)
{
    drvctx *k = c;
    long nx = (long)k->nb * k->desc.n_in;
    long nt = device_desc_n_theta(&k->desc);
    struct patctl_query q = {.id = 77, .batch = k->nb, .theta = p + nx, .x = p};
    float *y = malloc(sizeof(float) * (size_t)(k->nb * k->desc.n_out));
    float *gx = malloc(sizeof(float) * (size_t)nx), *gt = malloc(sizeof(float) * (size_t)nt);
    assert_int_equal(patctl_driver_reservoir.run(k->s, &q, y), 0);
    assert_int_equal(patctl_driver_reservoir.vjp(k->s, &q, r, gx, gt), 0);
    for (long i = 0; i < nx; i++)
        g[i] += gx[i];
    for (long i = 0; i < nt; i++)
        g[nx + i] += gt[i];
    free(y), free(gx), free(gt);
}

static void test_device_ideal_vjp(void **state)
{
    (void)state;
    /* the noiseless truth with its errors and mask mismatch: device_vjp is exact */
    device *d = open_res("nodes=7,window=6,channels=2,out_steps=3,loop_noise=0,det_noise=0,"
                         "adc_bits=0,mask_bits=0,mask_mismatch=0.1");
    dctx c = {.d = d, .nb = 2};
    int ni = d->desc.n_in;
    long nt = d->n_theta, n = 2L * ni + nt;
    float *p = malloc(sizeof(float) * (size_t)n);
    fill(p, 2 * ni, -0.9f, 0.9f, 31);
    set_theta(&d->desc, p + 2 * ni, 0.8f, 32);
    for (long i = 0; i < nt - 1; i++)
        p[2 * ni + i] *= 0.9f; /* inside the limits for every probe */
    double e = gradcheck("reservoir device ideal", f_dev, v_dev, &c, p, (int)n,
                         2 * d->desc.n_out, 1e-3, 5, 5);
    assert_true(e < 3e-3);
    device_close(&d);
    /* along a noisy trajectory: the same id gives the same loop noise, and the
     * VJP is that of the trajectory the forward pass took */
    drvctx k = {.nb = 2};
    k.s = open_drv("nodes=7,window=6,channels=2,out_steps=3,loop_noise=0.02,det_noise=0,"
                   "adc_bits=0,mask_bits=0", &k.desc);
    e = gradcheck("reservoir driver, loop noise", f_drv, v_drv, &k, p, (int)n, 2 * k.desc.n_out,
                  1e-3, 5, 6);
    assert_true(e < 3e-3);
    patctl_driver_reservoir.close(k.s);
    free(p);
}

/* ------------------------------------------------------ reservoir computing */

/* the device's states for one long input stream u[L] (one sample, the whole
 * sequence read out), in double: X [L, N] */
static double *stream_states(const char *geo, int N, const double *u, long L, float gain,
                             unsigned seed)
{
    char opts[256];
    snprintf(opts, sizeof(opts), "%s,nodes=%d,window=%ld,out_steps=%ld", geo, N, L, L);
    device *d = open_res(opts);
    float *th = malloc(sizeof(float) * (size_t)d->n_theta), *x = malloc(sizeof(float) * (size_t)L);
    float *y = malloc(sizeof(float) * (size_t)L * (size_t)N);
    fill(th, N, -1, 1, seed);           /* a random mask */
    memset(th + N, 0, sizeof(float) * (size_t)N);
    th[2 * N] = gain;
    for (long t = 0; t < L; t++)
        x[t] = (float)u[t];
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    double *X = malloc(sizeof(double) * (size_t)L * (size_t)N);
    for (long i = 0; i < L * N; i++)
        X[i] = y[i];
    device_close(&d);
    free(th), free(x), free(y);
    return X;
}

/* ridge readout trained on [wash, wash+ntr), tested on the next nte: the
 * test NRMSE; the ridge lambda chosen from a grid on the last quarter of the
 * training steps (fit on the first three quarters), then refit on all */
static double readout(const double *X, int N, const double *target, long wash, long ntr, long nte,
                      double *lambda_out)
{
    double *w = malloc(sizeof(double) * (size_t)(N + 1));
    long nfit = ntr * 3 / 4, nval = ntr - nfit, nmax = nval > nte ? nval : nte;
    double *yh = malloc(sizeof(double) * (size_t)nmax), best = INFINITY, lambda = 0;
    for (double lam = 1e-9; lam < 1.1; lam *= 100) {
        assert_int_equal(series_ridge_fit(X + wash * N, nfit, N, target + wash, lam, w), 0);
        series_ridge_predict(X + (wash + nfit) * N, nval, N, w, yh);
        double e = series_nrmse(target + wash + nfit, yh, nval);
        if (e < best)
            best = e, lambda = lam;
    }
    assert_int_equal(series_ridge_fit(X + wash * N, ntr, N, target + wash, lambda, w), 0);
    series_ridge_predict(X + (wash + ntr) * N, nte, N, w, yh);
    double e = series_nrmse(target + wash + ntr, yh, nte);
    free(w), free(yh);
    if (lambda_out)
        *lambda_out = lambda;
    return e;
}

static void test_rc_narma10(void **state)
{
    (void)state;
    enum { WASH = 200, NTR = 2000, NTE = 1000, L = WASH + NTR + NTE };
    double *u = malloc(sizeof(double) * L), *y = malloc(sizeof(double) * L);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 1);
    assert_int_equal(series_narma10(r, L, 50, u, y), 0);
    gsl_rng_free(r);
    /* the default device (hidden truth, loop and detection noise, 12-bit
     * ADC), and its noiseless truth (ADC off too) */
    const int Ns[2] = {50, 400};
    const char *dev[2] = {"seed=1", "seed=1,loop_noise=0,det_noise=0,adc_bits=0"};
    double e[2][2];
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 2; k++) {
            double lam, *X = stream_states(dev[v], Ns[k], u, L, 0.6f, 3);
            e[v][k] = readout(X, Ns[k], y, WASH, NTR, NTE, &lam);
            printf("  NARMA-10, ridge readout (lambda %.0e) on the %s device's states, %d virtual "
                   "nodes: test NRMSE %.3f (%d train / %d test steps)\n", lam,
                   v ? "noiseless" : "default", Ns[k], e[v][k], NTR, NTE);
            free(X);
        }
    assert_true(e[0][0] < 0.55 && e[0][1] < 0.5);   /* noise-limited */
    assert_true(e[1][0] < 0.45 && e[1][1] < 0.35);  /* the physics itself */
    assert_true(e[1][1] < e[1][0] - 0.05);          /* more virtual nodes help */
    assert_true(e[1][1] < e[0][1] - 0.05);          /* noise costs */
    /* control: without the delay feedback there is no memory, and NARMA-10 fails */
    double *X = stream_states("eta=0", 50, u, L, 0.6f, 3);
    double e0 = readout(X, 50, y, WASH, NTR, NTE, NULL);
    printf("  NARMA-10 without feedback (eta 0), 50 nodes: NRMSE %.3f\n", e0);
    assert_true(e0 > 0.7);
    free(X), free(u), free(y);
}

static void test_rc_mackey_glass(void **state)
{
    (void)state;
    enum { WASH = 200, NTR = 2000, NTE = 1000, L = WASH + NTR + NTE + 84, N = 50 };
    double *s = malloc(sizeof(double) * L), *u = malloc(sizeof(double) * L);
    double *t1 = malloc(sizeof(double) * L), *t84 = malloc(sizeof(double) * L);
    series_mg_params p = series_mg_default();
    assert_int_equal(series_mackey_glass(&p, L, s), 0);
    for (long t = 0; t < L; t++)
        u[t] = (s[t] - 0.9) / 0.5;  /* into the device's [-1, 1] */
    for (long t = 0; t + 84 < L; t++)
        t1[t] = s[t + 1], t84[t] = s[t + 84];
    double *X = stream_states("seed=1", N, u, L - 84, 0.6f, 5);
    double e1 = readout(X, N, t1, WASH, NTR, NTE, NULL), e84 = readout(X, N, t84, WASH, NTR, NTE, NULL);
    /* the trivial predictor x(t+1) = x(t) */
    double *hold = malloc(sizeof(double) * NTE);
    for (long t = 0; t < NTE; t++)
        hold[t] = s[WASH + NTR + t];
    double eh = series_nrmse(t1 + WASH + NTR, hold, NTE);
    printf("  Mackey-Glass (tau 17, step 1), %d virtual nodes: one-step prediction NRMSE %.4f "
           "(persistence x(t+1) = x(t): %.4f), 84 steps ahead %.3f\n", N, e1, eh, e84);
    assert_true(e1 < 0.05 && e1 < eh / 3);
    assert_true(e84 < 0.9);
    free(X), free(s), free(u), free(t1), free(t84), free(hold);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_narma10),
        cmocka_unit_test(test_mackey_glass),
        cmocka_unit_test(test_nrmse_ridge),
        cmocka_unit_test(test_nonlinearity),
        cmocka_unit_test(test_vjp),
        cmocka_unit_test(test_vjp_constants),
        cmocka_unit_test(test_rest_and_check),
        cmocka_unit_test(test_device_options),
        cmocka_unit_test(test_device_noise_reproducible),
        cmocka_unit_test(test_device_split_rows),
        cmocka_unit_test(test_device_noise_statistics),
        cmocka_unit_test(test_device_limits_and_dac),
        cmocka_unit_test(test_device_ideal_vjp),
        cmocka_unit_test(test_rc_narma10),
        cmocka_unit_test(test_rc_mackey_glass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
