/* The LIF chip physics (surrogate/lif.c), its surrogates and the simulated
 * spiking device: input coding, the soft model's VJP against finite
 * differences (rate and latency coding), the hard surrogate-gradient
 * backward against an independent scalar BPTT, ST-RSBP against the slope
 * of the spike count (analytic IF case) and against finite differences of
 * the noise-averaged spike count, the device's noise reproducibility, row
 * splits, membrane-noise and mismatch statistics, weight quantisation,
 * limits and the ideal VJP on the soft truth. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "controller/surrogates.h"
#include "devices/device.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "gradcheck.h"
#include "surrogate/lif.h"
#include "surrogate/surrogate.h"

static void fill(float *v, long n, float lo, float hi, unsigned seed)
{
    for (long i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)gc_uniform(&seed);
}

/* ---- the physics ---- */

static void test_coding(void **state)
{
    (void)state;
    /* latency: two inputs, leak 0.5, W 0.6 each, gain 1: the neuron fires
     * only when both spikes fall on the same step */
    enum { T = 16 };
    lif_model m = lif_model_nominal(2, 1);
    m.steps = T, m.coding = LIF_LATENCY, m.leak = 0.5, m.gain = 1.0;
    lif_tape *t = lif_tape_alloc(&m, 4);
    float th[3] = {0.6f, 0.6f, 0.0f}, y[4];
    float x[8] = {1.0f, 1.0f - 0.4f / (T - 1),   /* tau 0 and 0.4: both at step 0 */
                  1.0f, 1.0f - 0.6f / (T - 1),   /* tau 0.6: step 1 */
                  0.5f, 0.5f,                    /* the same step 7.5 -> 8 */
                  0.5f, 0.04f};                  /* below the cutoff: no spike */
    assert_int_equal(lif_forward(&m, x, th, 4, y, t, NULL), 0);
    printf("  latency coincidences: %g %g %g %g (expected 1 0 1 0)\n", y[0], y[1], y[2], y[3]);
    assert_true(y[0] == 1 && y[1] == 0 && y[2] == 1 && y[3] == 0);
    /* rate, expectation: an IF neuron (leak 1) with current 0.25 per step
     * fires every 4th step: T / 4 spikes */
    m = lif_model_nominal(1, 1);
    m.steps = T, m.leak = 1.0, m.gain = 1.0, m.p_max = 0.5;
    lif_tape_free(t);
    t = lif_tape_alloc(&m, 1);
    float x1 = 1.0f, th1[2] = {0.5f, 0.0f};
    assert_int_equal(lif_forward(&m, &x1, th1, 1, y, t, NULL), 0);
    assert_float_equal(y[0], T / 4, 0);
    /* with uniforms: Bernoulli spikes, u < x p_max */
    float u[T];
    for (int k = 0; k < T; k++)
        u[k] = k % 2 ? 0.9f : 0.1f; /* a spike every other step */
    th1[0] = 1.0f;
    lif_noise nz = {.u_in = u, .n_mem = NULL};
    assert_int_equal(lif_forward(&m, &x1, th1, 1, y, t, &nz), 0);
    assert_float_equal(y[0], T / 2, 0); /* every input spike fires (W gain = 1 = theta) */
    lif_tape_free(t);
    char err[160];
    m.leak = 1.5;
    assert_int_equal(lif_check(&m, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_null(lif_tape_alloc(&m, 1));
}

enum { NI = 5, NO = 4, B = 3, TS = 16 };
#define NP (B * NI + NO * NI + NO)

/* p = [x (B*NI), W (NO*NI), b (NO)] */
typedef struct {
    lif_model m;
    lif_tape *t;
    const float *n_mem;
    int strsbp;
} ctx_t;
static void f_all(void *c, const float *p, float *y)
{
    ctx_t *k = c;
    lif_noise nz = {.u_in = NULL, .n_mem = k->n_mem};
    assert_int_equal(lif_forward(&k->m, p, p + B * NI, B, y, k->t, &nz), 0);
}
static void v_all(void *c, const float *p, const float *r, float *g)
{
    ctx_t *k = c;
    float y[B * NO];
    f_all(c, p, y);
    assert_int_equal(lif_backward(&k->m, k->t, r, g, g + B * NI), 0);
}

/* x away from the latency code's kinks: tau = (1 - x)(T - 1) with a
 * fractional part in [0.2, 0.8] */
static void latency_inputs(float *x, int n, int T, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        double k = floor(gc_uniform(&seed) * (T - 2)), f = 0.2 + 0.6 * gc_uniform(&seed);
        x[i] = (float)(1.0 - (k + f) / (T - 1));
    }
}

static lif_model small_model(lif_coding coding)
{
    lif_model m = lif_model_nominal(NI, NO);
    m.steps = TS, m.coding = coding, m.gain = 0.6, m.p_max = 0.8;
    return m;
}

static void test_soft_vjp(void **state)
{
    (void)state;
    double theta_i[NO] = {1.0, 0.9, 1.1, 1.05}, leak_i[NO] = {0.9, 0.8, 0.95, 0.85},
           gain_i[NO] = {0.6, 0.7, 0.5, 0.65};
    float n_mem[B * TS * NO];
    fill(n_mem, B * TS * NO, -0.1f, 0.1f, 91);
    const char *name[4] = {"lif soft rate x,W,b", "lif soft latency x,W,b", "lif soft rate mismatch+noise",
                           "lif soft latency mismatch+noise"};
    for (int k = 0; k < 4; k++) {
        lif_coding coding = k % 2 ? LIF_LATENCY : LIF_RATE;
        ctx_t c = {.m = small_model(coding)};
        c.m.spike = LIF_SOFT;
        if (k >= 2) {
            c.m.theta_i = theta_i, c.m.leak_i = leak_i, c.m.gain_i = gain_i;
            c.n_mem = n_mem;
        }
        c.t = lif_tape_alloc(&c.m, B);
        float p[NP];
        if (coding == LIF_LATENCY)
            latency_inputs(p, B * NI, TS, 3 + k);
        else
            fill(p, B * NI, 0, 1, 3 + k);
        fill(p + B * NI, NO * NI, -1, 1, 5 + k);
        fill(p + B * NI + NO * NI, NO, 0, 0.3f, 7 + k);
        double e = gradcheck(name[k], f_all, v_all, &c, p, NP, B * NO, 1e-3, 6, 11 + k);
        assert_true(e < 2e-3);
        lif_tape_free(c.t);
    }
}

/* an independent scalar reference of the hard forward and the surrogate-
 * gradient BPTT (no GEMMs, no shared code): gp = [gx, gW, gb] += ... */
static double ref_sd(const lif_model *m, double z)
{
    if (m->sg == LIF_SG_FAST)
        return 0.5 * m->beta / ((1 + m->beta * fabs(z)) * (1 + m->beta * fabs(z)));
    double q = 1 / (1 + exp(-m->beta * z));
    return m->beta * q * (1 - q);
}
static void ref_hard(const lif_model *m, const float *p, const float *gy, float *y, float *gp)
{
    int T = m->steps;
    const float *x = p, *W = p + B * NI, *bias = W + NO * NI;
    float *gx = gp, *gW = gp + B * NI, *gb = gW + NO * NI;
    for (int b = 0; b < B; b++) {
        double s_in[TS][NI], ds_in[TS][NI];
        memset(ds_in, 0, sizeof(ds_in));
        for (int tt = 0; tt < T; tt++)
            for (int j = 0; j < NI; j++) {
                double xj = x[b * NI + j];
                if (m->coding == LIF_RATE) {
                    s_in[tt][j] = xj * m->p_max;
                    ds_in[tt][j] = m->p_max;
                } else {
                    double tau = (1 - xj) * (T - 1);
                    int k = (int)floor(tau), r = (int)floor(tau + 0.5);
                    s_in[tt][j] = tt == r ? 1 : 0;
                    ds_in[tt][j] = tt == k ? T - 1 : tt == k + 1 ? -(T - 1) : 0;
                }
            }
        for (int i = 0; i < NO; i++) {
            double u[TS], s[TS], v = 0, cnt = 0;
            for (int tt = 0; tt < T; tt++) {
                double cur = bias[i];
                for (int j = 0; j < NI; j++)
                    cur += W[i * NI + j] * s_in[tt][j];
                u[tt] = m->leak * v + m->gain * cur;
                s[tt] = u[tt] >= m->theta;
                v = u[tt] * (1 - s[tt]);
                cnt += s[tt];
            }
            y[b * NO + i] = (float)cnt;
            double av = 0, g = gy[b * NO + i];
            for (int tt = T - 1; tt >= 0; tt--) {
                double du = av * (1 - s[tt]) + (g - av * u[tt]) * ref_sd(m, u[tt] - m->theta);
                double gc = du * m->gain;
                gb[i] += (float)gc;
                for (int j = 0; j < NI; j++) {
                    gW[i * NI + j] += (float)(gc * s_in[tt][j]);
                    gx[b * NI + j] += (float)(gc * W[i * NI + j] * ds_in[tt][j]);
                }
                av = du * m->leak;
            }
        }
    }
}

static void test_hard_surrogate_gradient(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        lif_model m = small_model(k % 2 ? LIF_LATENCY : LIF_RATE);
        m.sg = k < 2 ? LIF_SG_SIGMOID : LIF_SG_FAST;
        lif_tape *t = lif_tape_alloc(&m, B);
        float p[NP], gy[B * NO], y[B * NO], yr[B * NO], g[NP] = {0}, gr[NP] = {0};
        if (m.coding == LIF_LATENCY)
            latency_inputs(p, B * NI, TS, 21 + k);
        else
            fill(p, B * NI, 0, 1, 21 + k);
        fill(p + B * NI, NO * NI, -1, 1, 22 + k);
        fill(p + B * NI + NO * NI, NO, 0, 0.3f, 23 + k);
        fill(gy, B * NO, -1, 1, 24 + k);
        assert_int_equal(lif_forward(&m, p, p + B * NI, B, y, t, NULL), 0);
        assert_int_equal(lif_backward(&m, t, gy, g, g + B * NI), 0);
        ref_hard(&m, p, gy, yr, gr);
        double num = 0, den = 0, spikes = 0;
        for (int i = 0; i < B * NO; i++) {
            assert_float_equal(y[i], yr[i], 0);
            spikes += y[i];
        }
        for (int i = 0; i < NP; i++)
            num += (g[i] - gr[i]) * (g[i] - gr[i]), den += (double)gr[i] * gr[i];
        printf("  hard %s, sg %s: %g spikes; surrogate gradient vs scalar reference: rel. error %.2e\n",
               k % 2 ? "latency" : "rate", k < 2 ? "sigmoid" : "fast", spikes, sqrt(num / den));
        assert_true(spikes > 0 && den > 0);
        assert_true(sqrt(num / den) < 1e-5);
        lif_tape_free(t);
    }
    /* the soft forward tends to the hard one as beta grows */
    lif_model m = small_model(LIF_RATE);
    lif_tape *t = lif_tape_alloc(&m, B);
    float p[NP], yh[B * NO], ys[B * NO];
    fill(p, NP, 0, 1, 31);
    fill(p + B * NI, NO * NI, -1, 1, 32);
    assert_int_equal(lif_forward(&m, p, p + B * NI, B, yh, t, NULL), 0);
    double last = 1e9;
    for (double beta = 4; beta <= 4096; beta *= 8) {
        m.spike = LIF_SOFT, m.beta = beta;
        assert_int_equal(lif_forward(&m, p, p + B * NI, B, ys, t, NULL), 0);
        double d = 0;
        for (int i = 0; i < B * NO; i++)
            d += fabs(ys[i] - yh[i]) / (B * NO);
        printf("  beta %6g: mean |y_soft - y_hard| = %.4f spikes\n", beta, d);
        assert_true(d <= last + 1e-6);
        last = d;
    }
    assert_true(last < 0.05);
    /* ST-RSBP needs hard spikes */
    float gy[B * NO] = {0};
    assert_int_equal(lif_backward_strsbp(&m, t, gy, NULL, NULL), PATCTL_ERR_ARG);
    lif_tape_free(t);
}

/* ST-RSBP, analytic case: integrate-and-fire neurons (leak 1) with constant
 * currents c = gain W x p_max fire floor(T / ceil(theta / c)) times; the
 * slope of that staircase over W is ~ T gain x p_max / theta, and ST-RSBP's
 * e / theta = gain x p_max (t_last + 1) / theta. */
static void test_strsbp_analytic(void **state)
{
    (void)state;
    enum { N = 64, T = 256 };
    lif_model m = lif_model_nominal(1, N);
    m.steps = T, m.leak = 1.0, m.gain = 1.0, m.p_max = 0.5;
    lif_tape *t = lif_tape_alloc(&m, 1);
    float th[2 * N], x = 0.8f, y[N], gy[N], g[2 * N] = {0}, gx = 0;
    for (int i = 0; i < N; i++)
        th[i] = 0.1f + 0.15f * i / (N - 1), th[N + i] = 0, gy[i] = 1;
    assert_int_equal(lif_forward(&m, &x, th, 1, y, t, NULL), 0);
    assert_int_equal(lif_backward_strsbp(&m, t, gy, &gx, g), 0);
    /* least-squares slope of y over W, mean ST-RSBP dy/dW */
    double mw = 0, my = 0, sww = 0, swy = 0, mg = 0;
    for (int i = 0; i < N; i++)
        mw += th[i] / N, my += y[i] / N, mg += g[i] / N;
    for (int i = 0; i < N; i++)
        sww += (th[i] - mw) * (th[i] - mw), swy += (th[i] - mw) * (y[i] - my);
    double slope = swy / sww, want = T * m.gain * x * m.p_max / m.theta;
    printf("  IF staircase: slope dy/dW %.2f, ST-RSBP mean %.2f, T gain x p / theta %.2f\n", slope, mg, want);
    assert_true(fabs(mg / slope - 1) < 0.1);
    assert_true(fabs(mg / want - 1) < 0.1);
    /* dy/dx = sum_i W_i e_i / (x theta) with the same kernel: the same slope */
    double gxw = 0;
    for (int i = 0; i < N; i++)
        gxw += th[i] * g[i] / x;
    printf("  dy/dx summed: ST-RSBP %.3f, from dy/dW %.3f\n", gx, gxw);
    assert_true(fabs(gx / gxw - 1) < 1e-4);
    /* the S-PSP identity with reset to zero: sum_j W e_j + b e_b = sum of
     * u at the firing times, >= theta y */
    float e[N], eb[N];
    assert_int_equal(lif_tape_spsp(&m, t, 0, e, eb), 0);
    for (int i = 0; i < N; i++) {
        double a = th[i] * e[i];
        assert_true(a >= m.theta * y[i] - 1e-4);
        assert_true(a < (m.theta + m.gain * th[i] * x * m.p_max) * y[i] + 1e-4);
    }
    lif_tape_free(t);
}

/* ST-RSBP against finite differences of the noise-averaged spike count of
 * leaky neurons (common random numbers for the two sides): the directions
 * agree (cosine over all weights) */
static void test_strsbp_smoothed(void **state)
{
    (void)state;
    enum { NIN = 8, N = 16, R = 400, T = 32 };
    lif_model m = lif_model_nominal(NIN, N);
    m.steps = T, m.gain = 0.5, m.p_max = 0.6;
    lif_tape *t = lif_tape_alloc(&m, R);
    float *x = malloc(sizeof(float) * R * NIN), *nm = malloc(sizeof(float) * R * T * N);
    float *y = malloc(sizeof(float) * R * N), *y2 = malloc(sizeof(float) * R * N);
    float *gy = malloc(sizeof(float) * R * N), th[N * NIN + N], g[N * NIN + N] = {0};
    float gs[N * NIN + N] = {0};
    fill(x, NIN, 0.2f, 1, 41);
    for (int r = 1; r < R; r++)
        memcpy(x + r * NIN, x, sizeof(float) * NIN); /* one input, R noise realisations */
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 5);
    for (long k = 0; k < (long)R * T * N; k++)
        nm[k] = (float)gsl_ran_gaussian(rng, 0.15);
    gsl_rng_free(rng);
    fill(th, N * NIN, -0.2f, 1, 42);
    fill(th + N * NIN, N, 0, 0.1f, 43);
    for (int k = 0; k < R * N; k++)
        gy[k] = 1.0f / R;
    lif_noise nz = {.u_in = NULL, .n_mem = nm};
    assert_int_equal(lif_forward(&m, x, th, R, y, t, &nz), 0);
    assert_int_equal(lif_backward_strsbp(&m, t, gy, NULL, g), 0);
    /* surrogate-gradient BPTT at the same point, for comparison */
    assert_int_equal(lif_backward(&m, t, gy, NULL, gs), 0);
    float fd[N * NIN];
    double h = 0.05, ab = 0, aa = 0, bb = 0, sb = 0, ss = 0, mean_y = 0;
    for (int k = 0; k < R * N; k++)
        mean_y += y[k] / (R * N);
    for (int k = 0; k < N * NIN; k++) {
        float w = th[k];
        double sp = 0, sm = 0;
        th[k] = w + (float)h;
        assert_int_equal(lif_forward(&m, x, th, R, y2, t, &nz), 0);
        for (int r = 0; r < R; r++)
            sp += y2[r * N + k / NIN];
        th[k] = w - (float)h;
        assert_int_equal(lif_forward(&m, x, th, R, y2, t, &nz), 0);
        for (int r = 0; r < R; r++)
            sm += y2[r * N + k / NIN];
        th[k] = w;
        fd[k] = (float)((sp - sm) / R / (2 * h));
        ab += (double)fd[k] * g[k], aa += (double)fd[k] * fd[k], bb += (double)g[k] * g[k];
        sb += (double)fd[k] * gs[k], ss += (double)gs[k] * gs[k];
    }
    double cos = ab / sqrt(aa * bb), cos_sg = sb / sqrt(aa * ss), scale = ab / bb;
    printf("  mean count %.2f; d E[y]/dW by FD of the noise-averaged count vs ST-RSBP: cosine %.3f, "
           "scale fd/strsbp %.3f (surrogate-gradient BPTT: cosine %.3f)\n", mean_y, cos, scale, cos_sg);
    assert_true(mean_y > 1 && mean_y < T / 2);
    assert_true(cos > 0.85);
    assert_true(scale > 0.5 && scale < 2);
    free(x), free(nm), free(y), free(y2), free(gy);
    lif_tape_free(t);
}

/* ---- the surrogates ---- */

static void test_surrogates(void **state)
{
    (void)state;
    const char *opts = "n_in=6,n_out=3,timesteps=20,coding=latency";
    surrogate *s = NULL, *s2 = NULL;
    char err[512] = "";
    /* the chip's own description (the surrogate must match its shape) */
    struct patctl_option *o = NULL;
    int no = options_parse(opts, &o);
    assert_true(no >= 0);
    device *d = NULL;
    assert_int_equal(device_open(&d, "chip", "spiking", o, no, 3, err, sizeof(err)), 0);
    free(o);
    struct patctl_device_desc desc = d->desc;
    device_close(&d);
    assert_int_equal(surrogate_make(&s, "chip", &desc, opts, "nominal", err, sizeof(err)), 0);
    assert_string_equal(s->ops->kind, "lif");
    assert_int_equal(s->n_theta, 3 * 7);
    lif_model *m = surrogate_lif_model(s);
    assert_non_null(m);
    assert_int_equal(m->steps, 20);
    assert_int_equal(m->coding, LIF_LATENCY);
    assert_int_equal(surrogate_make(&s2, "chip", &desc, opts, "strsbp", err, sizeof(err)), 0);
    assert_string_equal(s2->ops->kind, "lif-strsbp");
    surrogate_destroy(&s);
    surrogate_destroy(&s2);
    /* strsbp on another device model: a clear error */
    snprintf(desc.model, sizeof(desc.model), "circuit");
    assert_int_equal(surrogate_make(&s, "circ", &desc, "n_in=6", "strsbp", err, sizeof(err)),
                     PATCTL_ERR_CONFIG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "spiking"));
    assert_null(s);
}

/* ---- the device ---- */

static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_spk(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "chip", "spiking", o, n, 3, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    device_set_logger(d, quiet, NULL);
    return d;
}

/* the driver without the boundary (fixed query ids) */
typedef struct {
    void *st;
    struct patctl_device_desc desc;
    long n_theta;
} drv_t;
static drv_t open_drv(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    drv_t d = {0};
    char err[512] = "";
    int rc = patctl_driver_spiking.open(&d.st, o, n, &d.desc, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    d.n_theta = (long)d.desc.n_out * (d.desc.n_in + 1);
    return d;
}
static void close_drv(drv_t *d) { patctl_driver_spiking.close(d->st); }
static void run_drv(drv_t *d, uint64_t id, int64_t row0, const float *th, const float *x, int Bq, float *y)
{
    struct patctl_query q = {.id = id, .batch = Bq, .theta = th, .x = x, .row0 = row0};
    assert_int_equal(patctl_driver_spiking.run(d->st, &q, y), 0);
}

static void test_options(void **state)
{
    (void)state;
    const char *bad[] = {"foo=1", "coding=morse", "sg=step", "spike=medium", "mismatch_leak=0.9",
                         "weight_bits=20", "timesteps=0", "leak=1.2", "bernoulli=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct patctl_option *o = NULL;
        int n = options_parse(bad[i], &o);
        void *st = NULL;
        struct patctl_device_desc desc;
        char err[512] = "";
        assert_int_equal(patctl_driver_spiking.open(&st, o, n, &desc, err, sizeof(err)), PATCTL_ERR_ARG);
        printf("  %-18s -> %s\n", bad[i], err);
        free(o);
    }
    drv_t d = open_drv("n_in=10,n_out=4");
    assert_string_equal(d.desc.model, "spiking");
    assert_int_equal(d.desc.n_blocks, 2);
    assert_int_equal(d.desc.blocks[0].rows * d.desc.blocks[0].cols, 40);
    assert_true(d.desc.blocks[0].lo == -1 && d.desc.blocks[0].hi == 1 && d.desc.in_lo == 0 &&
                d.desc.in_hi == 1);
    assert_true(d.desc.flags & PATCTL_DEV_HAS_VJP);
    assert_true(patctl_driver_spiking.flags & PATCTL_DRV_SEEDED);
    close_drv(&d);
}

static void test_noise_reproducible_and_split(void **state)
{
    (void)state;
    enum { R = 12 };
    drv_t d = open_drv("n_in=16,n_out=8,v_noise=0.1");
    float *th = malloc(sizeof(float) * (size_t)d.n_theta), x[R * 16];
    float y1[R * 8], y2[R * 8], y3[R * 8], yp[R * 8];
    fill(th, d.n_theta, -0.5f, 1, 51);
    fill(x, R * 16, 0, 1, 52);
    run_drv(&d, 7, 0, th, x, R, y1);
    run_drv(&d, 7, 0, th, x, R, y2);
    run_drv(&d, 8, 0, th, x, R, y3);
    assert_memory_equal(y1, y2, sizeof(y1));
    int differ = 0;
    double tot = 0;
    for (int i = 0; i < R * 8; i++)
        differ += y1[i] != y3[i], tot += y1[i];
    printf("  same id: identical; another id: %d of %d counts differ (mean count %.2f)\n", differ, R * 8,
           tot / (R * 8));
    assert_true(differ > R * 8 / 4);
    /* the same query in parts 0..4 and 5..11 (row0 = 5): the same numbers */
    run_drv(&d, 7, 0, th, x, 5, yp);
    run_drv(&d, 7, 5, th, x + 5 * 16, R - 5, yp + 5 * 8);
    assert_memory_equal(y1, yp, sizeof(y1));
    /* a part alone on another row0 draws other noise */
    run_drv(&d, 7, 0, th, x + 5 * 16, R - 5, y3);
    assert_true(memcmp(y3, y1 + 5 * 8, sizeof(float) * (R - 5) * 8) != 0);
    /* the same seed in another instance: the same truth and noise */
    drv_t d2 = open_drv("n_in=16,n_out=8,v_noise=0.1");
    run_drv(&d2, 7, 0, th, x, R, y2);
    assert_memory_equal(y1, y2, sizeof(y1));
    close_drv(&d2);
    d2 = open_drv("n_in=16,n_out=8,v_noise=0.1,seed=2");
    run_drv(&d2, 7, 0, th, x, R, y2);
    assert_true(memcmp(y1, y2, sizeof(y1)) != 0);
    close_drv(&d2);
    close_drv(&d);
    free(th);
}

static void test_membrane_noise_statistics(void **state)
{
    (void)state;
    /* no leak: u[t] = gain b + n[t], iid; spike probability Q((theta - gain b)/sigma) */
    enum { R = 500, N = 32, T = 32 };
    const double sigma = 0.4, bias = 0.6;
    drv_t d = open_drv("n_in=1,n_out=32,timesteps=32,leak=0,syn_gain=1,mismatch_theta=0,"
                       "mismatch_leak=0,mismatch_gain=0,v_noise=0.4");
    float th[2 * N], x[R], *y = malloc(sizeof(float) * R * N);
    for (int i = 0; i < N; i++)
        th[i] = 0, th[N + i] = (float)bias;
    for (int r = 0; r < R; r++)
        x[r] = 0.5f;
    run_drv(&d, 1, 0, th, x, R, y);
    double spikes = 0;
    for (int k = 0; k < R * N; k++)
        spikes += y[k];
    double p = spikes / ((double)R * N * T), got = (1.0 - bias) / gsl_cdf_ugaussian_Qinv(p);
    printf("  membrane noise: spike probability %.4f (expected %.4f), sigma %.4f from it (configured %.2f)\n",
           p, gsl_cdf_ugaussian_Q((1.0 - bias) / sigma), got, sigma);
    assert_true(fabs(got / sigma - 1) < 0.05);
    close_drv(&d);
    free(y);
}

/* the smallest x of a grid (rows x_r = (r + 0.5) / R) at which each neuron
 * fires; -1 when none */
static void threshold_x(drv_t *d, const float *th, int R, float *xs)
{
    int N = d->desc.n_out;
    float *x = malloc(sizeof(float) * R), *y = malloc(sizeof(float) * (size_t)R * N);
    for (int r = 0; r < R; r++)
        x[r] = (r + 0.5f) / R;
    run_drv(d, 1, 0, th, x, R, y);
    for (int i = 0; i < N; i++) {
        xs[i] = -1;
        for (int r = 0; r < R; r++)
            if (y[(long)r * N + i] > 0) {
                xs[i] = x[r];
                break;
            }
    }
    free(x), free(y);
}

static void mean_std(const double *v, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = sqrt(s2 / (n - 1));
}

static void test_mismatch_statistics(void **state)
{
    (void)state;
    /* deterministic probes (no noise, input spikes at their expectation,
     * one input of weight 0.5 into 256 neurons): the input x* at which each
     * neuron starts firing gives its threshold, gain or leak */
    enum { N = 256, R = 2000 };
    float th[2 * N], xs[N];
    double v[N], mean, sd;
    for (int i = 0; i < N; i++)
        th[i] = 0.5f, th[N + i] = 0;
    const char *base = "n_in=1,n_out=256,p_max=1,v_noise=0,bernoulli=0";
    char opts[512];
    const char *what[3] = {"theta", "gain", "leak rate"};
    for (int k = 0; k < 3; k++) {
        if (k == 0) /* no leak: fires iff gain 0.5 x >= theta_i */
            snprintf(opts, sizeof(opts), "%s,leak=0,syn_gain=3,mismatch_theta=0.1,mismatch_gain=0,"
                     "mismatch_leak=0", base);
        else if (k == 1)
            snprintf(opts, sizeof(opts), "%s,leak=0,syn_gain=3,mismatch_theta=0,mismatch_gain=0.1,"
                     "mismatch_leak=0", base);
        else /* leak 0.9: fires iff c (1 - l^T) / (1 - l) >= 1 by step T, c = gain 0.5 x */
            snprintf(opts, sizeof(opts), "%s,leak=0.9,syn_gain=0.3,timesteps=32,mismatch_theta=0,"
                     "mismatch_gain=0,mismatch_leak=0.1", base);
        drv_t d = open_drv(opts);
        threshold_x(&d, th, R, xs);
        for (int i = 0; i < N; i++) {
            assert_true(xs[i] > 0);
            double c = (k < 2 ? 3.0 : 0.3) * 0.5 * (xs[i] - 0.5 / R); /* nominal current, mid-cell */
            if (k == 0)
                v[i] = c;
            else if (k == 1)
                v[i] = 1.0 / c; /* gain_i / syn_gain */
            else {
                double lo = 0, hi = 1; /* leak l with c (1 - l^32)/(1 - l) = 1 */
                for (int it = 0; it < 60; it++) {
                    double l = 0.5 * (lo + hi);
                    if (c * (1 - pow(l, 32)) / (1 - l) >= 1)
                        hi = l;
                    else
                        lo = l;
                }
                v[i] = 1 - 0.5 * (lo + hi); /* the leak rate */
            }
        }
        mean_std(v, N, &mean, &sd);
        double nominal = k == 2 ? 0.1 : 1.0;
        printf("  mismatch of %-9s: mean %.4f (nominal %.2f), relative std %.4f (configured 0.10)\n",
               what[k], mean, nominal, sd / nominal);
        assert_true(fabs(mean / nominal - 1) < 0.03);
        assert_true(fabs(sd / nominal / 0.1 - 1) < 0.15);
        close_drv(&d);
    }
}

static void test_weight_quantisation(void **state)
{
    (void)state;
    /* 64 neurons with weights 0.5 .. 1 from one input, no leak, gain 2.2:
     * neuron i fires iff 2.2 W_q x >= 1, so W_q = 1 / (2.2 x*) */
    enum { N = 64, R = 8000 };
    float th[2 * N], xs[N];
    for (int i = 0; i < N; i++)
        th[i] = 0.5f + 0.5f * i / (N - 1), th[N + i] = 0;
    int bits_list[3] = {4, 6, 0};
    for (int kb = 0; kb < 3; kb++) {
        int bits = bits_list[kb];
        char opts[512];
        snprintf(opts, sizeof(opts), "n_in=1,n_out=64,p_max=1,v_noise=0,bernoulli=0,leak=0,syn_gain=2.2,"
                 "mismatch_theta=0,mismatch_gain=0,mismatch_leak=0,weight_bits=%d", bits);
        drv_t d = open_drv(opts);
        threshold_x(&d, th, R, xs);
        double levels[N], worst = 0;
        int nl = 0;
        for (int i = 0; i < N; i++) {
            assert_true(xs[i] > 0);
            double wq = 1.0 / (2.2 * (xs[i] - 0.5 / R)), want = th[i];
            if (bits) {
                double lsb = ldexp(1.0, -(bits - 1));
                want = fmin(floor(th[i] / lsb + 0.5), ldexp(1.0, bits - 1) - 1) * lsb;
            }
            worst = fmax(worst, fabs(wq - want));
            int seen = 0;
            for (int l = 0; l < nl; l++)
                seen |= fabs(levels[l] - wq) < 1e-3;
            if (!seen)
                levels[nl++] = wq;
        }
        printf("  weight_bits %d: %d distinct weights in [0.5, 1] from 64 settings, max |W_eff - "
               "expected| %.2e\n", bits, nl, worst);
        assert_true(worst < 2e-3);
        if (bits) /* 2^bits levels over [-1, 1): a quarter of them in [0.5, 1) */
            assert_int_equal(nl, 1 << (bits - 2));
        else
            assert_int_equal(nl, N);
        close_drv(&d);
    }
}

static void test_limits(void **state)
{
    (void)state;
    device *d = open_spk("n_in=4,n_out=3,v_noise=0,bernoulli=0,weight_bits=0");
    float th[15], th_c[15], x[8] = {0.2f, 1.5f, 0.7f, -0.3f, 1, 1, 0.5f, 0}, x_c[8];
    float y[6], yc[6];
    for (int i = 0; i < 15; i++)
        th[i] = i % 3 ? 2.5f : -3.0f;
    for (int i = 0; i < 15; i++)
        th_c[i] = th[i] > 1 ? 1.0f : th[i] < -1 ? -1.0f : th[i];
    for (int i = 0; i < 8; i++)
        x_c[i] = x[i] > 1 ? 1.0f : x[i] < 0 ? 0.0f : x[i];
    assert_int_equal(device_run(d, th, x, 2, y), 0);
    printf("  clamped values at the boundary: %llu\n", (unsigned long long)d->st.clamped);
    assert_int_equal(d->st.clamped, 15 + 2);
    assert_int_equal(device_run(d, th_c, x_c, 2, yc), 0);
    assert_memory_equal(y, yc, sizeof(y));
    device_close(&d);
    /* the counts stay within [0, T] */
    d = open_spk("n_in=4,n_out=3,timesteps=10,v_noise=1");
    for (int i = 0; i < 15; i++)
        th[i] = 1;
    assert_int_equal(device_run(d, th, x_c, 2, y), 0);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] >= 0 && y[i] <= 10 && y[i] == floorf(y[i]));
    assert_int_equal(device_make_safe(d), 0);
    device_close(&d);
}

/* the ideal VJP: FD on the soft truth at one query id (same noise) */
typedef struct {
    drv_t *d;
    int nb, only_theta;
    const float *x;   /* fixed inputs when only_theta */
} vctx;
static void f_drv(void *c, const float *p, float *y)
{
    vctx *k = c;
    int ni = k->d->desc.n_in;
    const float *x = k->only_theta ? k->x : p, *th = k->only_theta ? p : p + k->nb * ni;
    run_drv(k->d, 42, 3, th, x, k->nb, y);
}
static void v_drv(void *c, const float *p, const float *r, float *g)
{
    vctx *k = c;
    int ni = k->d->desc.n_in;
    const float *x = k->only_theta ? k->x : p, *th = k->only_theta ? p : p + k->nb * ni;
    struct patctl_query q = {.id = 42, .batch = k->nb, .theta = th, .x = x, .row0 = 3};
    float *gx = k->only_theta ? NULL : g, *gt = k->only_theta ? g : g + k->nb * ni;
    float y[64];
    assert_int_equal(patctl_driver_spiking.run(k->d->st, &q, y), 0);
    assert_int_equal(patctl_driver_spiking.vjp(k->d->st, &q, r, gx, gt), 0);
}

static void test_device_ideal_vjp(void **state)
{
    (void)state;
    enum { DI = 6, DO = 4, DB = 2 };
    /* latency coding: inputs and parameters; mismatch and membrane noise on */
    drv_t d = open_drv("n_in=6,n_out=4,timesteps=16,coding=latency,spike=soft,weight_bits=0,"
                       "syn_gain=0.6,v_noise=0.1,mismatch_theta=0.1,mismatch_gain=0.1,mismatch_leak=0.1");
    vctx c = {.d = &d, .nb = DB};
    float p[DB * DI + DO * DI + DO];
    latency_inputs(p, DB * DI, 16, 61);
    fill(p + DB * DI, DO * DI, -1, 1, 62);
    fill(p + DB * DI + DO * DI, DO, 0, 0.3f, 63);
    double e = gradcheck("spiking ideal latency", f_drv, v_drv, &c, p, DB * DI + DO * DI + DO, DB * DO,
                         1e-3, 5, 64);
    assert_true(e < 2e-3);
    close_drv(&d);
    /* rate coding with Bernoulli input spikes: the parameters (the sampled
     * spikes of one id do not move with theta) */
    d = open_drv("n_in=6,n_out=4,timesteps=16,spike=soft,weight_bits=0,syn_gain=0.6,p_max=0.8,"
                 "v_noise=0.1");
    float x[DB * DI];
    fill(x, DB * DI, 0, 1, 65);
    vctx c2 = {.d = &d, .nb = DB, .only_theta = 1, .x = x};
    e = gradcheck("spiking ideal rate theta", f_drv, v_drv, &c2, p + DB * DI, DO * DI + DO, DB * DO, 1e-3, 5,
                  66);
    assert_true(e < 2e-3);
    close_drv(&d);
    /* hard truth through the boundary: device_vjp runs and matches a direct
     * recomputation at the same query */
    device *dv = open_spk("n_in=6,n_out=4,timesteps=16");
    float y[DB * DO], gy[DB * DO], gx[DB * DI] = {0}, gt[DO * DI + DO] = {0}, gx2[DB * DI] = {0},
          gt2[DO * DI + DO] = {0}; /* device_vjp accumulates */
    fill(gy, DB * DO, -1, 1, 67);
    assert_int_equal(device_run(dv, p + DB * DI, x, DB, y), 0);
    assert_int_equal(device_vjp(dv, gy, gx, gt), 0);
    assert_int_equal(device_vjp(dv, gy, gx2, gt2), 0);
    assert_memory_equal(gx, gx2, sizeof(gx));
    assert_memory_equal(gt, gt2, sizeof(gt));
    double n2 = 0;
    for (int i = 0; i < DO * DI + DO; i++)
        n2 += (double)gt[i] * gt[i];
    assert_true(n2 > 0);
    device_close(&dv);
}

/* the device with every imperfection off is its nominal surrogate */
static void test_device_equals_nominal(void **state)
{
    (void)state;
    const char *codings[2] = {"rate", "latency"};
    for (int k = 0; k < 2; k++) {
        char opts[512], nom[256];
        snprintf(nom, sizeof(nom), "n_in=12,n_out=5,timesteps=24,coding=%s", codings[k]);
        snprintf(opts, sizeof(opts), "%s,mismatch_theta=0,mismatch_gain=0,mismatch_leak=0,v_noise=0,"
                 "weight_bits=0,bernoulli=0", nom);
        device *d = open_spk(opts);
        surrogate *s = NULL;
        char err[256];
        assert_int_equal(surrogate_for_device(&s, d, nom, err, sizeof(err)), 0);
        float th[5 * 13], x[4 * 12], yd[20], ys[20];
        fill(th, 5 * 12, -1, 1, 71 + k);
        fill(th + 60, 5, 0, 0.2f, 72 + k);
        fill(x, 48, 0, 1, 73 + k);
        assert_int_equal(device_run(d, th, x, 4, yd), 0);
        assert_int_equal(surrogate_forward(s, th, x, 4, ys), 0);
        assert_memory_equal(yd, ys, sizeof(yd));
        /* and its ideal VJP is the surrogate's backward */
        float gy[20], gxd[48] = {0}, gtd[65] = {0}, gxs[48] = {0}, gts[65] = {0};
        fill(gy, 20, -1, 1, 74 + k);
        assert_int_equal(device_vjp(d, gy, gxd, gtd), 0);
        assert_int_equal(surrogate_backward(s, gy, gxs, gts), 0);
        for (int i = 0; i < 48; i++)
            assert_float_equal(gxd[i], gxs[i], 1e-6);
        for (int i = 0; i < 65; i++)
            assert_float_equal(gtd[i], gts[i], 1e-6);
        surrogate_destroy(&s);
        device_close(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coding),
        cmocka_unit_test(test_soft_vjp),
        cmocka_unit_test(test_hard_surrogate_gradient),
        cmocka_unit_test(test_strsbp_analytic),
        cmocka_unit_test(test_strsbp_smoothed),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_noise_reproducible_and_split),
        cmocka_unit_test(test_membrane_noise_statistics),
        cmocka_unit_test(test_mismatch_statistics),
        cmocka_unit_test(test_weight_quantisation),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_device_ideal_vjp),
        cmocka_unit_test(test_device_equals_nominal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
