/* Circuit physics (surrogate/circuit.c) and the simulated circuit device:
 * the integrator against the analytic RLC step response, diode clipping, the
 * exact VJP (inputs, gain/bias, component values) against finite
 * differences, the device's ideal VJP, Johnson noise and ADC statistics. */
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
#include "surrogate/circuit.h"
#include "surrogate/surrogate.h"

enum { N = 6, SPS = 2, B = 3 };

static void fill(float *v, int n, float lo, float hi, unsigned seed)
{
    for (int i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)gc_uniform(&seed);
}

static circuit_model truth_model(void)
{
    circuit_model m = circuit_model_nominal(N, SPS);
    m.k = (circuit_consts){52.5, 1.08e-3, 110e-9, 0.45, 25.0, 0.97, 1.03, 0.005};
    return m;
}

static void test_rlc_step_response(void **state)
{
    (void)state;
    /* a 1 mV step: the diodes stay off (leakage ~5 uS against omega C = 10 mS),
     * the circuit is a series RLC: v(t) = u [1 - e^{-at} (cos wt + a/w sin wt)] */
    enum { S = 20 };
    circuit_model m = circuit_model_nominal(S, 1);
    circuit_tape *t = circuit_tape_alloc(&m, 1);
    float x[S], th[2 * S], y[S];
    for (int s = 0; s < S; s++)
        x[s] = 1e-3f, th[s] = 1.0f, th[S + s] = 0.0f;
    assert_int_equal(circuit_forward(&m, x, th, 1, y, t), 0);
    double a = m.k.r / (2 * m.k.l), w0 = 1 / sqrt(m.k.l * m.k.c), w = sqrt(w0 * w0 - a * a);
    double worst = 0;
    for (int s = 0; s < S; s++) {
        double tt = (s + 1) * m.t_slot;
        double v = 1e-3 * (1 - exp(-a * tt) * (cos(w * tt) + a / w * sin(w * tt)));
        worst = fmax(worst, fabs(y[s] - v) / 1e-3);
    }
    printf("  RLC step response: max error %.2e of the step (RK4, 10 steps per slot)\n", worst);
    assert_true(worst < 2e-3);
    /* a large drive is clipped by the diode pair */
    for (int s = 0; s < S; s++)
        x[s] = (s / 3) % 2 ? 1.0f : -1.0f, th[s] = 2.0f;
    assert_int_equal(circuit_forward(&m, x, th, 1, y, t), 0);
    float vmax = 0;
    for (int s = 0; s < S; s++)
        vmax = fmaxf(vmax, fabsf(y[s]));
    printf("  +-2 V square drive: |v| <= %.3f V (diodes V_on 0.5 V, R_on 20 ohm)\n", vmax);
    assert_true(vmax > 0.5f && vmax < 1.2f);
    circuit_tape_free(t);
    char err[160];
    m.substeps = 7; /* not a multiple of sps = 2 */
    m.sps = 2;
    assert_int_equal(circuit_check(&m, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_null(circuit_tape_alloc(&m, 1));
}

/* p = [x (B*N), g (N), b (N)] */
typedef struct {
    circuit_model m;
    circuit_tape *t;
} ctx_t;
static void f_all(void *c, const float *p, float *y)
{
    ctx_t *k = c;
    assert_int_equal(circuit_forward(&k->m, p, p + B * N, B, y, k->t), 0);
}
static void v_all(void *c, const float *p, const float *r, float *g)
{
    ctx_t *k = c;
    float y[B * N * SPS];
    f_all(c, p, y);
    assert_int_equal(circuit_backward(&k->m, k->t, r, g, g + B * N, NULL), 0);
}

static void test_vjp(void **state)
{
    (void)state;
    circuit_model models[2] = {circuit_model_nominal(N, SPS), truth_model()};
    const char *name[2] = {"circuit nominal x,g,b", "circuit truth x,g,b"};
    for (int k = 0; k < 2; k++) {
        ctx_t c = {.m = models[k], .t = circuit_tape_alloc(&models[k], B)};
        float p[B * N + 2 * N];
        fill(p, B * N, -1, 1, 3 + k);
        fill(p + B * N, N, 0.5f, 2.0f, 5 + k);
        fill(p + B * N + N, N, -0.5f, 0.5f, 7 + k);
        double e = gradcheck(name[k], f_all, v_all, &c, p, B * N + 2 * N, B * N * SPS, 1e-3, 5, 11 + k);
        assert_true(e < 3e-3);
        circuit_tape_free(c.t);
    }
}

/* constants, in relative units: k_i = k0_i (1 + p_i) (offset: + p) */
typedef struct {
    circuit_model m;
    circuit_consts k0;
    circuit_tape *t;
    float x[B * N], th[2 * N];
} kctx_t;
static void set_k(kctx_t *c, const float *p)
{
    const double *k0 = &c->k0.r;
    double *k = &c->m.k.r;
    for (int i = 0; i < 7; i++)
        k[i] = k0[i] * (1.0 + p[i]);
    k[7] = k0[7] + p[7];
}
static void f_k(void *c, const float *p, float *y)
{
    kctx_t *k = c;
    set_k(k, p);
    assert_int_equal(circuit_forward(&k->m, k->x, k->th, B, y, k->t), 0);
}
static void v_k(void *c, const float *p, const float *r, float *g)
{
    kctx_t *k = c;
    float y[B * N * SPS];
    f_k(c, p, y);
    circuit_consts_grad gk = {0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(circuit_backward(&k->m, k->t, r, NULL, NULL, &gk), 0);
    const double *gv = &gk.r, *k0 = &k->k0.r;
    for (int i = 0; i < 7; i++)
        g[i] += (float)(gv[i] * k0[i]);
    g[7] += (float)gv[7];
}

static void test_vjp_constants(void **state)
{
    (void)state;
    kctx_t c = {.m = truth_model()};
    c.k0 = c.m.k;
    c.t = circuit_tape_alloc(&c.m, B);
    fill(c.x, B * N, -1, 1, 21);
    fill(c.th, N, 0.5f, 2.0f, 22);
    fill(c.th + N, N, -0.5f, 0.5f, 23);
    float p[8] = {0};
    double e = gradcheck("circuit constants", f_k, v_k, &c, p, 8, B * N * SPS, 1e-3, 6, 4);
    assert_true(e < 3e-3);
    circuit_tape_free(c.t);
}

/* ---- the device ---- */
static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_circ(const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "circ", "circuit", o, n, 3, err, sizeof(err));
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
    /* noiseless truth with tolerances and DAC mismatch: device_vjp is exact */
    device *d = open_circ("n_in=6,sps=2,temperature=0,adc_bits=0,dac_mismatch=0.05");
    dctx c = {.d = d, .nb = 2};
    float p[2 * N + 2 * N];
    fill(p, 2 * N, -1, 1, 31);
    fill(p + 2 * N, N, 0.5f, 1.5f, 32);
    fill(p + 3 * N, N, -0.1f, 0.1f, 33);
    double e = gradcheck("circuit device ideal", f_dev, v_dev, &c, p, 4 * N, 2 * N * SPS, 1e-3, 4, 5);
    assert_true(e < 3e-3);
    printf("  ramp steps from the safe setting: %llu\n", (unsigned long long)d->st.ramp_steps);
    assert_true(d->st.ramp_steps >= 5); /* gain 0 -> ~1.5 in steps of 0.25 */
    device_close(&d);
    /* with every tolerance off the device equals its nominal surrogate */
    circuit_model m = circuit_model_nominal(N, SPS);
    surrogate *s = surrogate_circuit_new(&m);
    d = open_circ("n_in=6,sps=2,temperature=0,adc_bits=0,dac_mismatch=0,r=50,l_mh=1,c_nf=100,"
                  "von=0.5,ron=20,in_gain=1,out_gain=1,out_offset=0");
    float ys[2 * N * SPS], yd[2 * N * SPS];
    assert_int_equal(surrogate_forward(s, p + 2 * N, p, 2, ys), 0);
    assert_int_equal(device_run(d, p + 2 * N, p, 2, yd), 0);
    for (int i = 0; i < 2 * N * SPS; i++)
        assert_float_equal(ys[i], yd[i], 1e-7);
    surrogate_destroy(&s);
    device_close(&d);
}

static void test_johnson_noise_and_adc(void **state)
{
    (void)state;
    enum { R = 500 };
    /* Johnson noise of 1 Mohm at 3000 K over 10 MHz, no ADC */
    double want = sqrt(4 * 1.380649e-23 * 3000 * 1e6 * 1e7);
    device *dn = open_circ("n_in=6,sps=2,temperature=3000,noise_r=1e6,noise_bw=1e7,adc_bits=0");
    device *dc = open_circ("n_in=6,sps=2,temperature=0,adc_bits=0");
    float th[2 * N], x[R * N], *y = malloc(sizeof(float) * R * N * SPS), yc[N * SPS];
    fill(th, N, 0.5f, 1.5f, 41);
    fill(th + N, N, -0.1f, 0.1f, 42);
    fill(x, N, -1, 1, 43);
    for (int b = 1; b < R; b++)
        memcpy(x + b * N, x, sizeof(float) * N);
    assert_int_equal(device_run(dc, th, x, 1, yc), 0);
    double ss = 0;
    long n = 0;
    for (int q = 0; q < 3; q++) {
        assert_int_equal(device_run(dn, th, x, R, y), 0);
        for (int i = 0; i < R * N * SPS; i++) {
            double e = (double)y[i] - yc[i % (N * SPS)];
            ss += e * e;
            n++;
        }
    }
    double got = sqrt(ss / (double)n);
    printf("  Johnson noise: expected %.4e V, measured %.4e V (ratio %.4f)\n", want, got, got / want);
    assert_true(fabs(got / want - 1) < 0.05);
    device_close(&dn);
    /* 12-bit ADC over +-2 V: codes are multiples of the LSB, error <= LSB/2 */
    dn = open_circ("n_in=6,sps=2,temperature=0,adc_bits=12,adc_range=2");
    assert_int_equal(device_run(dn, th, x, 1, y), 0);
    double lsb = 4.0 / 4096;
    for (int j = 0; j < N * SPS; j++) {
        double c = (y[j] + 2.0) / lsb;
        assert_true(fabs(c - nearbyint(c)) < 1e-2);
        assert_true(fabs((double)y[j] - yc[j]) <= lsb / 2 + 1e-6);
    }
    device_close(&dn);
    /* the default device: Johnson noise (0.41 mV) plus the ADC (LSB 0.98 mV) */
    dn = open_circ("n_in=6,sps=2");
    ss = 0, n = 0;
    for (int q = 0; q < 3; q++) {
        assert_int_equal(device_run(dn, th, x, R, y), 0);
        float ym[N * SPS] = {0};
        for (int i = 0; i < R * N * SPS; i++)
            ym[i % (N * SPS)] += y[i] / R;
        for (int i = 0; i < R * N * SPS; i++) {
            double e = (double)y[i] - ym[i % (N * SPS)];
            ss += e * e;
            n++;
        }
    }
    printf("  default device: repeat std %.3e V (Johnson %.3e V, ADC LSB %.3e V)\n",
           sqrt(ss / (double)n), sqrt(4 * 1.380649e-23 * 300 * 1e7 * 1e6), lsb);
    device_close(&dn);
    device_close(&dc);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rlc_step_response),
        cmocka_unit_test(test_vjp),
        cmocka_unit_test(test_vjp_constants),
        cmocka_unit_test(test_device_ideal_vjp),
        cmocka_unit_test(test_johnson_noise_and_adc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
