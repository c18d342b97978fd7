/* SHG physics (surrogate/shg.c) and the simulated SHG device:
 * the FFT pipeline against a direct autoconvolution, physical invariances,
 * the exact VJP (inputs, parameters, calibration constants) against finite
 * differences, the device's ideal VJP, shot noise and camera statistics. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/device.h"
#include "devices/options.h"
#include "gradcheck.h"
#include "surrogate/shg.h"
#include "surrogate/surrogate.h"

enum { NI = 6, NP = 5, BINS = 3, NO = 7, B = 3 };

static void fill(float *v, int n, float scale, unsigned seed)
{
    for (int i = 0; i < n; i++)
        v[i] = scale * (float)(2.0 * gc_uniform(&seed) - 1.0);
}

static shg_model truth_model(double *extra)
{
    shg_model m = shg_model_nominal(NI, NP, BINS, NO);
    m.k = (shg_consts){0.8, 0.4, 0.15, -0.3, 1.1};
    m.phase_scale = 1.7; /* drive -> rad */
    int M = shg_spec_bins(&m);
    for (int i = 0; i < M; i++)
        extra[i] = 0.05 * sin(0.7 * i);
    m.resp_extra = extra;
    return m;
}

/* y by brute force: S_m = (1/N) sum_k E_k E_{m-k}, no FFT */
static void brute_force(const shg_model *m, const float *x, const float *phi, float *y)
{
    int P = m->n_in + m->n_par, L = P * m->bins, N = shg_fft_len(m), M = shg_spec_bins(m);
    double *Er = calloc((size_t)L, sizeof(double)), *Ei = calloc((size_t)L, sizeof(double));
    double c = L - 1, hw = m->span * (L - 1);
    int m_lo = (int)ceil(c - hw - 1e-9);
    /* P0: transform-limited pulse, nominal constants */
    double P0 = 0;
    for (int pass = 0; pass < 2; pass++) {
        int ni = 0, np = 0;
        for (int p = 0; p < P; p++) {
            int par = ((p + 1) * m->n_par) / P > (p * m->n_par) / P;
            double ph = pass == 0 ? 0.0 : m->phase_scale * (par ? phi[np] : x[ni]);
            par ? np++ : ni++;
            for (int b = 0; b < m->bins; b++) {
                int k = p * m->bins + b;
                double v = (2.0 * k + 1) / L - 1, a = exp(-v * v / (2 * m->bandwidth * m->bandwidth));
                double ph2 = ph + (pass ? m->k.disp2 * v * v + m->k.disp3 * v * v * v : 0);
                Er[k] = a * cos(ph2), Ei[k] = a * sin(ph2);
            }
        }
        double acc[64] = {0};
        for (int i = 0; i < M; i++) {
            int mm = m_lo + i;
            double sr = 0, si = 0;
            for (int k = 0; k < L; k++) {
                int q = mm - k;
                if (q < 0 || q >= L)
                    continue;
                sr += Er[k] * Er[q] - Ei[k] * Ei[q];
                si += Er[k] * Ei[q] + Ei[k] * Er[q];
            }
            sr /= N, si /= N;
            double u = (double)(mm - (L - 1)) / (L - 1);
            double R = pass ? 1 + m->k.resp1 * u + m->k.resp2 * u * u + (m->resp_extra ? m->resp_extra[i] : 0) : 1;
            acc[(i * m->n_out) / M] += R * (sr * sr + si * si);
        }
        if (pass == 0) {
            for (int j = 0; j < m->n_out; j++)
                P0 = fmax(P0, acc[j]);
        } else {
            for (int j = 0; j < m->n_out; j++)
                y[j] = (float)(m->k.gain * acc[j] / P0);
        }
    }
    free(Er), free(Ei);
}

static void test_fft_pipeline_vs_direct(void **state)
{
    (void)state;
    double extra[512];
    shg_model m = truth_model(extra);
    shg_tape *t = shg_tape_alloc(&m, B);
    assert_non_null(t);
    float x[B * NI], phi[NP], y[B * NO], yb[NO];
    fill(x, B * NI, 3.0f, 1);
    fill(phi, NP, 3.0f, 2);
    assert_int_equal(shg_forward(&m, x, phi, B, y, t), 0);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        brute_force(&m, x + b * NI, phi, yb);
        for (int j = 0; j < NO; j++)
            worst = fmax(worst, fabs((double)y[b * NO + j] - yb[j]));
    }
    printf("  FFT pipeline vs direct autoconvolution: max |diff| %.3e\n", worst);
    assert_true(worst < 1e-5);
    shg_tape_free(t);
}

static void test_invariances(void **state)
{
    (void)state;
    /* bins = 1: a linear spectral phase is a time delay, a constant phase a
     * global phase: neither changes the SHG spectrum */
    shg_model m = shg_model_nominal(8, 0, 1, 4);
    m.span = 1.0;
    shg_tape *t = shg_tape_alloc(&m, 3);
    float x[3 * 8], y[3 * 4];
    for (int i = 0; i < 8; i++) {
        x[i] = 0.0f;
        x[8 + i] = 0.7f * (float)i - 2.5f;
        x[16 + i] = 1.3f;
    }
    assert_int_equal(shg_forward(&m, x, NULL, 3, y, t), 0);
    float peak = 0;
    for (int j = 0; j < 4; j++) {
        assert_float_equal(y[4 + j], y[j], 1e-5);
        assert_float_equal(y[8 + j], y[j], 1e-5);
        peak = fmaxf(peak, y[j]);
    }
    assert_float_equal(peak, 1.0f, 1e-6); /* transform-limited pulse peaks at 1 */
    /* a quadratic phase (chirp) stretches the pulse: less SHG */
    for (int i = 0; i < 8; i++)
        x[i] = 0.3f * (float)((i - 3.5) * (i - 3.5));
    assert_int_equal(shg_forward(&m, x, NULL, 1, y, t), 0);
    double tot = 0;
    for (int j = 0; j < 4; j++)
        tot += y[j];
    printf("  chirped pulse: total SHG %.3f of the transform-limited pulse's pixel peak\n", tot);
    assert_true(tot < 1.0);
    shg_tape_free(t);
    /* bad geometry is refused with a message */
    char err[200];
    shg_model bad = shg_model_nominal(2, 0, 1, 50);
    assert_int_equal(shg_check(&bad, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "spectrometer"));
    assert_null(shg_tape_alloc(&bad, 1));
}

/* VJP against finite differences: p = [x (B*NI), phi (NP)] */
typedef struct {
    shg_model m;
    shg_tape *t;
} ctx_t;
static void f_all(void *c, const float *p, float *y)
{
    ctx_t *k = c;
    assert_int_equal(shg_forward(&k->m, p, p + B * NI, B, y, k->t), 0);
}
static void v_all(void *c, const float *p, const float *r, float *g)
{
    ctx_t *k = c;
    float y[B * NO];
    f_all(c, p, y);
    assert_int_equal(shg_backward(&k->m, k->t, r, g, g + B * NI, NULL), 0);
}

static void test_vjp(void **state)
{
    (void)state;
    double extra[512];
    shg_model models[2] = {shg_model_nominal(NI, NP, BINS, NO), truth_model(extra)};
    const char *name[2] = {"shg nominal x,phi", "shg truth x,phi"};
    for (int k = 0; k < 2; k++) {
        ctx_t c = {.m = models[k], .t = shg_tape_alloc(&models[k], B)};
        float p[B * NI + NP];
        fill(p, B * NI + NP, 2.0f, 5 + k);
        double e = gradcheck(name[k], f_all, v_all, &c, p, B * NI + NP, B * NO, 1e-3, 5, 11 + k);
        assert_true(e < 2e-3);
        shg_tape_free(c.t);
    }
}

/* VJP of the calibration constants: p = [d2, d3, r1, r2, g] */
typedef struct {
    shg_model m;
    shg_tape *t;
    float x[B * NI], phi[NP];
} kctx_t;
static void f_k(void *c, const float *p, float *y)
{
    kctx_t *k = c;
    k->m.k = (shg_consts){p[0], p[1], p[2], p[3], p[4]};
    assert_int_equal(shg_forward(&k->m, k->x, k->phi, B, y, k->t), 0);
}
static void v_k(void *c, const float *p, const float *r, float *g)
{
    kctx_t *k = c;
    float y[B * NO];
    f_k(c, p, y);
    shg_consts_grad gk = {0, 0, 0, 0, 0};
    assert_int_equal(shg_backward(&k->m, k->t, r, NULL, NULL, &gk), 0);
    g[0] += (float)gk.disp2, g[1] += (float)gk.disp3, g[2] += (float)gk.resp1;
    g[3] += (float)gk.resp2, g[4] += (float)gk.gain;
}

static void test_vjp_constants(void **state)
{
    (void)state;
    double extra[512];
    kctx_t c = {.m = truth_model(extra)};
    c.t = shg_tape_alloc(&c.m, B);
    fill(c.x, B * NI, 2.0f, 8);
    fill(c.phi, NP, 2.0f, 9);
    float p[5] = {0.8f, 0.4f, 0.15f, -0.3f, 1.1f};
    double e = gradcheck("shg constants", f_k, v_k, &c, p, 5, B * NO, 1e-3, 5, 3);
    assert_true(e < 2e-3);
    shg_tape_free(c.t);
}

/* ---- the device ---- */
static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_shg(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "shg", "shg", o, n, 3, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    device_set_logger(d, quiet, NULL);
    return d;
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

static void test_device_ideal_vjp(void **state)
{
    (void)state;
    /* noiseless truth (dispersion, response, ripple): device_vjp is exact */
    device *d = open_shg("n_in=6,n_par=5,bins=3,n_out=7,photons=0,camera_bits=0");
    dctx c = {.d = d, .nb = 2};
    float p[2 * 6 + 5];
    fill(p, 17, 0.9f, 21); /* drives inside [-1, 1] */
    double e = gradcheck("shg device ideal", f_dev, v_dev, &c, p, 17, 2 * 7, 1e-3, 4, 5);
    assert_true(e < 2e-3);
    device_close(&d);
    /* the surrogate (nominal) differs from the device (truth) */
    shg_model m = shg_model_nominal(6, 5, 3, 7);
    m.phase_scale = M_PI; /* the driver's default drive -> rad */
    surrogate *s = surrogate_shg_new(&m);
    d = open_shg("n_in=6,n_par=5,bins=3,n_out=7,photons=0,camera_bits=0");
    float ys[14], yd[14];
    assert_int_equal(surrogate_forward(s, p + 12, p, 2, ys), 0);
    assert_int_equal(device_run(d, p + 12, p, 2, yd), 0);
    double diff = 0;
    for (int i = 0; i < 14; i++)
        diff = fmax(diff, fabs((double)ys[i] - yd[i]));
    printf("  nominal vs truth: max |diff| %.4f\n", diff);
    assert_true(diff > 1e-3);
    /* with the gap switched off the device equals its surrogate */
    device_close(&d);
    d = open_shg("n_in=6,n_par=5,bins=3,n_out=7,photons=0,camera_bits=0,disp2=0,disp3=0,"
                 "resp1=0,resp2=0,gain=1,ripple=0");
    assert_int_equal(device_run(d, p + 12, p, 2, yd), 0);
    for (int i = 0; i < 14; i++)
        assert_float_equal(ys[i], yd[i], 1e-7);
    device_close(&d);
    surrogate_destroy(&s);
}

/* shot noise: std of repeated measurements = sqrt(y / photons) within 5 % */
static void test_shot_noise_and_camera(void **state)
{
    (void)state;
    enum { R = 400 };
    const char *geo = "n_in=6,n_par=5,bins=3,n_out=7";
    char o1[256], o2[256];
    snprintf(o1, sizeof(o1), "%s,photons=2000,camera_bits=0", geo);
    snprintf(o2, sizeof(o2), "%s,photons=0,camera_bits=0", geo);
    device *dn = open_shg(o1), *dc = open_shg(o2);
    float phi[5], x[R * 6], *y = malloc(sizeof(float) * R * 7), yc[7];
    fill(phi, 5, 0.5f, 31);
    fill(x, 6, 0.5f, 32);
    for (int b = 1; b < R; b++)
        memcpy(x + b * 6, x, sizeof(float) * 6);
    assert_int_equal(device_run(dc, phi, x, 1, yc), 0);
    double z2 = 0;
    long n = 0;
    for (int q = 0; q < 4; q++) {
        assert_int_equal(device_run(dn, phi, x, R, y), 0);
        for (int b = 0; b < R; b++)
            for (int j = 0; j < 7; j++) {
                if (yc[j] * 2000 < 20)
                    continue; /* too few photons to matter */
                double sd = sqrt(yc[j] / 2000.0);
                double z = ((double)y[b * 7 + j] - yc[j]) / sd;
                z2 += z * z;
                n++;
            }
    }
    double ratio = sqrt(z2 / (double)n);
    printf("  shot noise (photons=2000): measured std / sqrt(y/photons) = %.4f over %ld values\n",
           ratio, n);
    assert_true(n > 1000);
    assert_true(fabs(ratio - 1) < 0.05);
    device_close(&dn);
    /* camera: 8 bits over [0, 1.5]: multiples of the LSB, saturating at the top */
    snprintf(o1, sizeof(o1), "%s,photons=0,camera_bits=8,camera_max=0.2", geo);
    dn = open_shg(o1);
    assert_int_equal(device_run(dn, phi, x, 1, y), 0);
    double lsb = 0.2 / 255.0, rms = 0;
    for (int j = 0; j < 7; j++) {
        double c = y[j] / lsb;
        assert_true(fabs(c - nearbyint(c)) < 1e-3);
        assert_true(y[j] >= 0 && y[j] <= 0.2f + 1e-6f);
        if (yc[j] < 0.2)
            assert_true(fabs((double)y[j] - yc[j]) <= lsb / 2 + 1e-6);
        rms += (y[j] - yc[j]) * (double)(y[j] - yc[j]);
    }
    printf("  camera 8 bits over [0, 0.2]: rms error %.2e (lsb %.2e)\n", sqrt(rms / 7), lsb);
    device_close(&dn);
    device_close(&dc);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fft_pipeline_vs_direct),
        cmocka_unit_test(test_invariances),
        cmocka_unit_test(test_vjp),
        cmocka_unit_test(test_vjp_constants),
        cmocka_unit_test(test_device_ideal_vjp),
        cmocka_unit_test(test_shot_noise_and_camera),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
