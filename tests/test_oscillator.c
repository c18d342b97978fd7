/* Oscillator physics: integrator accuracy, exact VJP against finite
 * differences (nominal and with the truth gap), the device's ideal VJP, and
 * device == surrogate when the gap is switched off. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "devices/device.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "gradcheck.h"
#include "surrogate/oscillator.h"
#include "surrogate/surrogate.h"

enum { N = 6, B = 3 };

typedef struct {
    osc_model m;
    osc_tape *t;
} ctx_t;

/* p = [x (B*N), C (N*N), e (N)] */
static void f_all(void *c, const float *p, float *y)
{
    ctx_t *x = c;
    osc_forward(&x->m, p + B * N, p + B * N + N * N, p, NULL, B, y, x->t);
}
static void v_all(void *c, const float *p, const float *r, float *g)
{
    ctx_t *x = c;
    float y[B * N];
    osc_forward(&x->m, p + B * N, p + B * N + N * N, p, NULL, B, y, x->t);
    osc_backward(&x->m, x->t, r, g, g + B * N, g + B * N + N * N, NULL);
}

static void fill(float *v, int n, float scale, unsigned seed)
{
    for (int i = 0; i < n; i++)
        v[i] = scale * (float)(2.0 * gc_uniform(&seed) - 1.0);
}

static void test_pendulum_accuracy(void **state)
{
    (void)state;
    /* one free pendulum q'' = -sin q: 5 RK4 steps vs 2000 steps */
    osc_model m = osc_model_nominal(1);
    float C = 0, e = 0, x = 0.5f, y5, yref;
    assert_int_equal(osc_forward(&m, &C, &e, &x, NULL, 1, &y5, NULL), 0);
    m.steps = 2000;
    assert_int_equal(osc_forward(&m, &C, &e, &x, NULL, 1, &yref, NULL), 0);
    printf("  pendulum q(0.5): 5 steps %.7f, 2000 steps %.7f\n", y5, yref);
    assert_float_equal(y5, yref, 2e-6);
    /* small-angle limit: q(t) ~ q0 cos t */
    assert_float_equal(yref, 0.5f * cosf(0.5f), 5e-3);
}

static void test_coupling_structure(void **state)
{
    (void)state;
    /* (Q s)_i = sum_j J_ij (s_j - s_i): a uniform s gives zero force */
    float C[N * N], M[N * N];
    fill(C, N * N, 1.0f, 3);
    osc_model m = osc_model_nominal(N);
    osc_coupling(M, &m, C);
    for (int i = 0; i < N; i++) {
        double row = 0;
        for (int j = 0; j < N; j++) {
            row += M[i * N + j];
            assert_float_equal(M[i * N + j], M[j * N + i], 1e-6);
        }
        assert_float_equal(row, -1.0, 1e-5); /* M = Q - I, rows of Q sum to 0 */
    }
}

static void check_all(osc_model m, const char *what)
{
    ctx_t c = {.m = m, .t = osc_tape_alloc(N, B, m.steps)};
    float p[B * N + N * N + N];
    fill(p, B * N, 0.8f, 1);
    fill(p + B * N, N * N, 0.5f, 2);
    fill(p + B * N + N * N, N, 0.5f, 3);
    double e = gradcheck(what, f_all, v_all, &c, p, B * N + N * N + N, B * N, 1e-2, 5, 17);
    osc_tape_free(c.t);
    assert_true(e < 2e-3);
}

static void test_grad_nominal(void **state)
{
    (void)state;
    check_all(osc_model_nominal(N), "osc nominal x,C,e");
}

static void test_grad_with_gap(void **state)
{
    (void)state;
    float raw[N * N], qn[N * N];
    fill(raw, N * N, 0.2f, 5);
    osc_laplacian_sym(qn, raw, N);
    osc_model m = osc_model_nominal(N);
    m.k = (osc_consts){0.1f, 0.8f, 1.2f, 0.05f, 0.9f, -0.03f};
    m.q_noise = qn;
    check_all(m, "osc truth x,C,e");
}

/* calibration constants: p = the 6 constants */
typedef struct {
    osc_model m;
    float x[B * N], C[N * N], e[N];
    osc_tape *t;
} kctx;
static void f_k(void *c, const float *p, float *y)
{
    kctx *k = c;
    osc_model m = k->m;
    memcpy(&m.k, p, sizeof(m.k));
    osc_forward(&m, k->C, k->e, k->x, NULL, B, y, k->t);
}
static void v_k(void *c, const float *p, const float *r, float *g)
{
    kctx *k = c;
    osc_model m = k->m;
    memcpy(&m.k, p, sizeof(m.k));
    float y[B * N];
    osc_forward(&m, k->C, k->e, k->x, NULL, B, y, k->t);
    osc_consts gk = {0};
    osc_backward(&m, k->t, r, NULL, NULL, NULL, &gk);
    float *gv = (float *)&gk;
    for (int i = 0; i < OSC_N_CONSTS; i++)
        g[i] += gv[i];
}

static void test_grad_consts(void **state)
{
    (void)state;
    kctx k = {.m = osc_model_nominal(N), .t = osc_tape_alloc(N, B, 5)};
    fill(k.x, B * N, 0.8f, 21);
    fill(k.C, N * N, 0.5f, 22);
    fill(k.e, N, 0.5f, 23);
    float p[OSC_N_CONSTS] = {0.1f, 0.9f, 1.1f, 0.02f, 1.05f, 0.01f};
    double e = gradcheck("osc calibration consts", f_k, v_k, &k, p, OSC_N_CONSTS, B * N, 1e-2, 5, 9);
    osc_tape_free(k.t);
    assert_true(e < 2e-3);
}

/* ---- the device: ideal VJP at a fixed query id (same noise) ---- */
typedef struct {
    const struct patctl_driver *drv;
    void *st;
    struct patctl_device_desc desc;
} dctx;
static void f_dev(void *c, const float *p, float *y)
{
    dctx *d = c;
    struct patctl_query q = {.id = 42, .batch = B, .theta = p + B * N, .x = p};
    assert_int_equal(d->drv->run(d->st, &q, y), 0);
}
static void v_dev(void *c, const float *p, const float *r, float *g)
{
    dctx *d = c;
    struct patctl_query q = {.id = 42, .batch = B, .theta = p + B * N, .x = p};
    float gx[B * N], gt[N * N + N];
    assert_int_equal(d->drv->vjp(d->st, &q, r, gx, gt), 0);
    for (int i = 0; i < B * N; i++)
        g[i] += gx[i];
    for (int i = 0; i < N * N + N; i++)
        g[B * N + i] += gt[i];
}

static void test_device_ideal_vjp(void **state)
{
    (void)state;
    struct patctl_option *o;
    int no = options_parse("n=6,eta=0.1,j_noise=0.2,sigma=0.05,seed=9", &o);
    dctx d = {.drv = &patctl_driver_oscillators};
    char err[256];
    assert_int_equal(d.drv->open(&d.st, o, no, &d.desc, err, sizeof(err)), 0);
    float p[B * N + N * N + N];
    fill(p, B * N, 0.8f, 31);
    fill(p + B * N, N * N + N, 0.4f, 32);
    double e = gradcheck("device ideal VJP", f_dev, v_dev, &d, p, B * N + N * N + N, B * N, 1e-2, 5, 3);
    assert_true(e < 2e-3);
    /* the same query id gives the same noise; another id another */
    float y1[B * N], y2[B * N], y3[B * N];
    struct patctl_query q = {.id = 7, .batch = B, .theta = p + B * N, .x = p};
    d.drv->run(d.st, &q, y1);
    d.drv->run(d.st, &q, y2);
    q.id = 8;
    d.drv->run(d.st, &q, y3);
    assert_memory_equal(y1, y2, sizeof(y1));
    assert_memory_not_equal(y1, y3, sizeof(y1));
    d.drv->close(d.st);
    free(o);
}

/* Without a gap the device computes exactly what the surrogate computes,
 * with the batch GEMM (default) and with row_exact=1 (one GEMV per row, so
 * a row does not depend on its batch); the two paths agree to rounding. */
static void test_device_without_gap_is_surrogate(void **state)
{
    (void)state;
    static float yexact[B * N];
    for (int exact = 0; exact < 2; exact++) {
        struct patctl_option *o;
        int no = options_parse(exact ? "n=6,eta=0,j_noise=0,sigma=0,row_exact=1" : "n=6,eta=0,j_noise=0,sigma=0", &o);
        device *dev;
        char err[256];
        assert_int_equal(device_open(&dev, "osc", "oscillators", o, no, 1, err, sizeof(err)), 0);
        surrogate *s = surrogate_osc_new(&(osc_model){.n = N, .steps = 5, .t_end = 0.5f,
                                                      .k = {0, 1, 1, 0, 1, 0}, .row_exact = exact});
        float th[N * N + N], x[B * N], yd[B * N], ys[B * N];
        fill(th, N * N + N, 0.4f, 41);
        fill(x, B * N, 0.8f, 42);
        assert_int_equal(device_run(dev, th, x, B, yd), 0);
        assert_int_equal(surrogate_forward(s, th, x, B, ys), 0);
        assert_memory_equal(yd, ys, sizeof(yd));
        if (exact) {
            for (int i = 0; i < B * N; i++)
                assert_true(fabsf(ys[i] - yexact[i]) < 1e-5f);
        } else {
            memcpy(yexact, ys, sizeof(ys));
        }
        surrogate_destroy(&s);
        device_close(&dev);
        free(o);
    }
    /* with the default gap the outputs differ measurably */
    char err[256];
    device *gap;
    assert_int_equal(device_open(&gap, "gap", "oscillators", NULL, 0, 3, err, sizeof(err)), 0);
    assert_int_equal(gap->desc.n_in, 64);
    device_close(&gap);
    assert_null(gap);
    /* a bad row_exact is refused */
    struct patctl_option *bad;
    int nb = options_parse("n=6,row_exact=2", &bad);
    device *d2 = NULL;
    assert_int_not_equal(device_open(&d2, "bad", "oscillators", bad, nb, 1, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "row_exact"));
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pendulum_accuracy),
        cmocka_unit_test(test_coupling_structure),
        cmocka_unit_test(test_grad_nominal),
        cmocka_unit_test(test_grad_with_gap),
        cmocka_unit_test(test_grad_consts),
        cmocka_unit_test(test_device_ideal_vjp),
        cmocka_unit_test(test_device_without_gap_is_surrogate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
