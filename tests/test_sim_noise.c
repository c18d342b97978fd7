/* The common noise/fault layer of the simulated drivers (devices/sim_noise.c)
 * and the oscillators' eta drift: configured statistics are reproduced
 * (output std within 5 %), faults are retried at the boundary, everything is
 * reproducible from the seed, and the ideal VJP is unaffected. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/device.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/sim_noise.h"
#include "gradcheck.h"

enum { N = 8, BIG = 500 };

static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_osc(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "osc", "oscillators", o, n, 7, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    device_set_logger(d, quiet, NULL);
    return d;
}

/* theta = small random setting, x = BIG copies of one input row */
static void setup(device *d, float *theta, float *x, int B)
{
    unsigned s = 9;
    for (long i = 0; i < d->n_theta; i++)
        theta[i] = 0.2f * (float)(2 * gc_uniform(&s) - 1);
    for (int j = 0; j < N; j++)
        x[j] = 0.5f * (float)(2 * gc_uniform(&s) - 1);
    for (int b = 1; b < B; b++)
        memcpy(x + b * N, x, sizeof(float) * N);
}

/* std of y - clean over `q` queries of BIG identical rows */
static double noise_std_of(const char *noisy, const char *clean, int q, double *frac_far, double far)
{
    device *dn = open_osc(noisy), *dc = open_osc(clean);
    float *theta = malloc(sizeof(float) * (size_t)dn->n_theta);
    float *x = malloc(sizeof(float) * BIG * N), *y = malloc(sizeof(float) * BIG * N);
    float yc[N];
    setup(dn, theta, x, BIG);
    assert_int_equal(device_run(dc, theta, x, 1, yc), 0);
    double ss = 0;
    long n = 0, nfar = 0;
    for (int k = 0; k < q; k++) {
        assert_int_equal(device_run(dn, theta, x, BIG, y), 0);
        for (int i = 0; i < BIG * N; i++) {
            double e = (double)y[i] - yc[i % N];
            ss += e * e;
            nfar += fabs(e) > far;
            n++;
        }
    }
    if (frac_far)
        *frac_far = (double)nfar / (double)n;
    free(theta), free(x), free(y);
    device_close(&dn);
    device_close(&dc);
    return sqrt(ss / (double)n);
}

static void test_gaussian_std(void **state)
{
    (void)state;
    const char *gap = "n=8,eta=0.1,j_noise=0.2,sigma=0";
    char opts[256];
    for (int k = 0; k < 2; k++) {
        double want = k ? 0.003 : 0.05;
        snprintf(opts, sizeof(opts), "%s,noise_std=%g", gap, want);
        double got = noise_std_of(opts, gap, 3, NULL, 1);
        printf("  noise_std=%g: measured %.5f (ratio %.4f)\n", want, got, got / want);
        assert_true(fabs(got / want - 1) < 0.05);
    }
    /* the physical input noise sigma propagates to the output: measured, > 0 */
    double phys = noise_std_of("n=8,eta=0.1,j_noise=0.2,sigma=0.02", gap, 2, NULL, 1);
    printf("  oscillator input noise sigma=0.02 rad -> output std %.5f rad\n", phys);
    assert_true(phys > 0.01 && phys < 0.03);
}

static void test_quantisation(void **state)
{
    (void)state;
    const char *gap = "n=8,eta=0.1,j_noise=0.2,sigma=0";
    device *d = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0,quant_step=0.01,noise_std=0.02");
    float theta[N * N + N], x[BIG * N], y[BIG * N];
    setup(d, theta, x, BIG);
    assert_int_equal(device_run(d, theta, x, BIG, y), 0);
    for (int i = 0; i < BIG * N; i++)
        assert_true(fabs(y[i] / 0.01 - nearbyint(y[i] / 0.01)) < 1e-3);
    device_close(&d);
    /* rounding adds step^2/12 to the variance */
    double want = sqrt(0.02 * 0.02 + 0.01 * 0.01 / 12.0);
    double got = noise_std_of("n=8,eta=0.1,j_noise=0.2,sigma=0,quant_step=0.01,noise_std=0.02", gap, 3, NULL, 1);
    printf("  noise 0.02 + quant 0.01: measured std %.5f, expected %.5f\n", got, want);
    assert_true(fabs(got / want - 1) < 0.05);
}

static void test_outliers(void **state)
{
    (void)state;
    double far;
    double s = noise_std_of("n=8,eta=0.1,j_noise=0.2,sigma=0,outlier=0.02,outlier_scale=5",
                            "n=8,eta=0.1,j_noise=0.2,sigma=0", 3, &far, 2.5);
    printf("  outlier=0.02: fraction of |error| > 2.5: %.4f, rms %.3f (expected %.3f)\n", far, s,
           sqrt(0.02) * 5);
    assert_true(fabs(far - 0.02) < 0.004);
    assert_true(fabs(s / (sqrt(0.02) * 5) - 1) < 0.1);
}

static void test_dropout_retried(void **state)
{
    (void)state;
    device *d = open_osc("n=8,sigma=0,dropout=0.2");
    float theta[N * N + N], x[N], y[N];
    setup(d, theta, x, 1);
    d->retries = 0;
    int q = 2000, timeouts = 0;
    for (int k = 0; k < q; k++) {
        int rc = device_run(d, theta, x, 1, y);
        assert_true(rc == 0 || rc == PATCTL_ERR_TIMEOUT);
        timeouts += rc == PATCTL_ERR_TIMEOUT;
    }
    printf("  dropout=0.2: %d of %d queries timed out\n", timeouts, q);
    assert_true(fabs((double)timeouts / q - 0.2) < 0.03);
    /* with retries the boundary hides them (new id => new draw) */
    d->retries = 4;
    uint64_t r0 = d->st.retries;
    for (int k = 0; k < 200; k++)
        assert_int_equal(device_run(d, theta, x, 1, y), 0);
    printf("  with 4 retries: 200 of 200 succeeded after %llu retries\n",
           (unsigned long long)(d->st.retries - r0));
    assert_true(d->st.retries - r0 > 10);
    device_close(&d);
}

static void test_drift_and_latency(void **state)
{
    (void)state;
    device *d = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0,drift=0.3,drift_period=40,latency_ms=2");
    device *c = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0");
    float theta[N * N + N], x[N], y[N], yc[N];
    setup(d, theta, x, 1);
    assert_int_equal(device_run(c, theta, x, 1, yc), 0);
    sim_noise nz = {.drift = 0.3, .drift_period = 40, .seed = 7};
    double lo = 1e9, hi = -1e9;
    for (int k = 0; k < 40; k++) {
        uint64_t id = d->next_id;
        assert_int_equal(device_run(d, theta, x, 1, y), 0);
        for (int j = 0; j < N; j++) {
            double off = (double)y[j] - yc[j];
            assert_float_equal(off, sim_noise_drift(&nz, id, j), 1e-5);
            lo = fmin(lo, off), hi = fmax(hi, off);
        }
    }
    printf("  drift=0.3: offsets over one period span [%.3f, %.3f]; 40 queries took %.3f s "
           "in the driver (latency 2 ms each)\n", lo, hi, d->st.seconds);
    assert_true(lo < -0.25 && hi > 0.25);
    assert_true(d->st.seconds >= 40 * 0.002); /* nanosleep never returns early */
    /* per-row latency: a batch of 8 rows takes 8 x 1 ms more */
    device *r = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0,latency_row_ms=1");
    float x8[8 * N], y8[8 * N];
    for (int i = 0; i < 8 * N; i++)
        x8[i] = x[i % N];
    double s0 = r->st.seconds;
    assert_int_equal(device_run(r, theta, x8, 8, y8), 0);
    assert_true(r->st.seconds - s0 >= 0.008);
    device_close(&r);
    device_close(&d);
    device_close(&c);
}

static void test_reproducible(void **state)
{
    (void)state;
    const char *o = "n=8,sigma=0.02,noise_std=0.01,outlier=0.01,dropout=0.1,quant_step=0.001";
    device *a = open_osc(o), *b = open_osc(o);
    float theta[N * N + N], x[4 * N], ya[4 * N], yb[4 * N];
    setup(a, theta, x, 4);
    for (int k = 0; k < 20; k++) {
        assert_int_equal(device_run(a, theta, x, 4, ya), 0);
        assert_int_equal(device_run(b, theta, x, 4, yb), 0);
        assert_memory_equal(ya, yb, sizeof(ya));
    }
    assert_true(a->st.retries == b->st.retries);
    device_close(&b);
    b = open_osc("n=8,sigma=0.02,noise_std=0.01,outlier=0.01,dropout=0.1,quant_step=0.001,seed=99");
    assert_int_equal(device_run(b, theta, x, 4, yb), 0);
    assert_true(memcmp(ya, yb, sizeof(ya)) != 0);
    device_close(&a);
    device_close(&b);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct patctl_option *o = NULL;
    int n = options_parse("dropout=1.5", &o);
    device *d = NULL;
    char err[512] = "";
    assert_int_equal(device_open(&d, "x", "oscillators", o, n, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "dropout"));
    free(o);
    n = options_parse("noise_sdt=0.1", &o);
    assert_int_equal(device_open(&d, "x", "oscillators", o, n, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "noise_sdt"));
    assert_non_null(strstr(err, "noise_std")); /* the known list names the common keys too */
    free(o);
}

/* eta drift: query-count based, and the ideal VJP follows the eta of its id */
typedef struct {
    const struct patctl_driver *drv;
    void *st;
    uint64_t id;
    int B;
    long nt;
} vctx;
static void v_f(void *c, const float *p, float *y)
{
    vctx *v = c;
    struct patctl_query q = {.id = v->id, .batch = v->B, .theta = p + v->B * N, .x = p};
    assert_int_equal(v->drv->run(v->st, &q, y), 0);
}
static void v_v(void *c, const float *p, const float *r, float *g)
{
    vctx *v = c;
    struct patctl_query q = {.id = v->id, .batch = v->B, .theta = p + v->B * N, .x = p};
    float *gx = malloc(sizeof(float) * (size_t)(v->B * N)), *gt = malloc(sizeof(float) * (size_t)v->nt);
    assert_int_equal(v->drv->vjp(v->st, &q, r, gx, gt), 0);
    for (int i = 0; i < v->B * N; i++)
        g[i] += gx[i];
    for (long i = 0; i < v->nt; i++)
        g[v->B * N + i] += gt[i];
    free(gx), free(gt);
}

static void test_eta_drift(void **state)
{
    (void)state;
    device *d = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0,eta_drift=0.2,eta_drift_period=100");
    float theta[N * N + N], x[N], y0[N], y1[N];
    setup(d, theta, x, 1);
    assert_int_equal(device_run(d, theta, x, 1, y0), 0);
    for (int k = 0; k < 24; k++)
        assert_int_equal(device_run(d, theta, x, 1, y1), 0);
    double dmax = 0;
    for (int j = 0; j < N; j++)
        dmax = fmax(dmax, fabs((double)y1[j] - y0[j]));
    printf("  eta drift 0.2: output change after 25 queries (quarter period) %.4f rad\n", dmax);
    assert_true(dmax > 1e-3);
    /* the ideal VJP at query id 25 (eta = 0.1 + 0.2 sin(pi/2) = 0.3) */
    vctx v = {.drv = d->drv, .st = d->state, .id = 25, .B = 2, .nt = d->n_theta};
    float p[2 * N + N * N + N];
    memcpy(p, x, sizeof(x));
    memcpy(p + N, x, sizeof(x));
    p[N] = -0.3f;
    memcpy(p + 2 * N, theta, sizeof(theta));
    double e = gradcheck("osc eta drift id 25", v_f, v_v, &v, p, 2 * N + N * N + N, 2 * N, 1e-2, 3, 4);
    assert_true(e < 5e-3);
    device_close(&d);
    /* without drift and noise, the same input gives the same output at any id */
    d = open_osc("n=8,eta=0.1,j_noise=0.2,sigma=0");
    assert_int_equal(device_run(d, theta, x, 1, y0), 0);
    for (int k = 0; k < 5; k++)
        assert_int_equal(device_run(d, theta, x, 1, y1), 0);
    assert_memory_equal(y0, y1, sizeof(y0));
    device_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_std),
        cmocka_unit_test(test_quantisation),
        cmocka_unit_test(test_outliers),
        cmocka_unit_test(test_dropout_retried),
        cmocka_unit_test(test_drift_and_latency),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_eta_drift),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
