/* Training: loss and optimiser, the whole model's gradient against finite
 * differences, PAT == ideal when the device has no gap, end-to-end training
 * on synthetic data in every mode, reproducibility, interruption. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/optim.h"
#include "controller/train.h"
#include "gradcheck.h"
#include "surrogate/blas.h"

static void test_blas_is_openblas(void **state)
{
    (void)state;
    printf("  cblas_sgemm comes from %s\n", blas_library());
    assert_non_null(strstr(blas_library(), "openblas"));
}

/* softmax cross-entropy: p = logits [4, 5] */
static const uint8_t lab[4] = {0, 3, 4, 1};
static void xe_f(void *c, const float *p, float *y) { (void)c; y[0] = (float)softmax_xent(p, lab, 4, 5, NULL, NULL); }
static void xe_v(void *c, const float *p, const float *r, float *g)
{
    (void)c;
    float d[20];
    softmax_xent(p, lab, 4, 5, d, NULL);
    for (int i = 0; i < 20; i++)
        g[i] += r[0] * d[i];
}

static void test_softmax_xent(void **state)
{
    (void)state;
    float z[20];
    unsigned s = 3;
    for (int i = 0; i < 20; i++)
        z[i] = (float)(4 * gc_uniform(&s) - 2);
    assert_true(gradcheck("softmax xent", xe_f, xe_v, NULL, z, 20, 1, 1e-2, 4, 5) < 1e-3);
    float u[3] = {0, 0, 0};
    uint8_t l = 1;
    int hits;
    assert_float_equal(softmax_xent(u, &l, 1, 3, NULL, &hits), log(3.0), 1e-6);
}

static void test_adam_step(void **state)
{
    (void)state;
    optimizer o;
    assert_int_equal(optimizer_init(&o, OPT_ADAM, 2, 0.1, 0), 0);
    float p[2] = {1.0f, -1.0f}, g[2] = {0.5f, -2.0f};
    optimizer_step(&o, p, g); /* first step moves each by lr * sign(g) */
    assert_float_equal(p[0], 0.9f, 1e-6);
    assert_float_equal(p[1], -0.9f, 1e-6);
    optimizer_free(&o);
    assert_int_equal(optimizer_init(&o, OPT_SGD, 2, 0.1, 0), 0);
    optimizer_step(&o, p, g);
    assert_float_equal(p[0], 0.85f, 1e-6);
    assert_float_equal(p[1], -0.7f, 1e-6);
    optimizer_free(&o);
}

/* Adam over a long vector (vector body + tails) against a scalar loop of the
 * same operations: the optimiser may be compiled for AVX2 (PATCTL_HOT), and
 * must give the same bits as the plain C of PyTorch's update. */
static void test_adam_bitwise_scalar(void **state)
{
    (void)state;
    enum { N = 4099 };
    optimizer o;
    assert_int_equal(optimizer_init(&o, OPT_ADAM, N, 1e-3, 0), 0);
    float *p = malloc(sizeof(float) * N), *q = malloc(sizeof(float) * N);
    float *g = malloc(sizeof(float) * N), *m = calloc(N, sizeof(float)), *v = calloc(N, sizeof(float));
    assert_non_null(p), assert_non_null(q), assert_non_null(g), assert_non_null(m), assert_non_null(v);
    unsigned s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        p[i] = q[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < N; i++) {
            s = s * 1103515245u + 12345u;
            g[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * powf(10.0f, (float)((int)(s % 7u) - 3));
        }
        optimizer_step(&o, p, g);
        float b1 = (float)o.beta1, b2 = (float)o.beta2;
        double bc1 = 1.0 - pow(o.beta1, (double)t), bc2 = 1.0 - pow(o.beta2, (double)t);
        float step = (float)(o.lr / bc1), sbc2 = (float)sqrt(bc2), eps = (float)o.eps;
        for (int i = 0; i < N; i++) {
            volatile float mi = b1 * m[i] + (1.0f - b1) * g[i];
            volatile float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            m[i] = mi, v[i] = vi;
            volatile float d = step * m[i] / (sqrtf(v[i]) / sbc2 + eps);
            q[i] -= d;
        }
        assert_memory_equal(p, q, sizeof(float) * N);
    }
    optimizer_free(&o);
    free(p), free(q), free(g), free(m), free(v);
}

/* ---- the whole model: loss(params) with a noiseless device ---- */
typedef struct {
    model m;
    const float *x;
    const uint8_t *y;
    int B;
    train_mode mode;
} mctx;

static void m_f(void *c, const float *p, float *out)
{
    mctx *k = c;
    char err[256];
    memcpy(k->m.params, p, sizeof(float) * (size_t)k->m.n_params);
    assert_int_equal(model_forward(&k->m, k->x, k->B, PASS_DEVICE, err, sizeof(err)), 0);
    out[0] = (float)softmax_xent(model_logits(&k->m), k->y, k->B, k->m.classes, NULL, NULL);
}
static void m_v(void *c, const float *p, const float *r, float *g)
{
    mctx *k = c;
    char err[256];
    memcpy(k->m.params, p, sizeof(float) * (size_t)k->m.n_params);
    pass_kind pass = k->mode == MODE_PAT ? PASS_PAT : PASS_DEVICE;
    assert_int_equal(model_forward(&k->m, k->x, k->B, pass, err, sizeof(err)), 0);
    float dl[8 * 10];
    softmax_xent(model_logits(&k->m), k->y, k->B, k->m.classes, dl, NULL);
    model_zero_grad(&k->m);
    assert_int_equal(model_backward(&k->m, dl, k->B, k->mode, err, sizeof(err)), 0);
    for (long i = 0; i < k->m.n_params; i++)
        g[i] += r[0] * k->m.grads[i];
}

static void small_config(run_config *c, const char *gap)
{
    config_quickstart(c);
    c->devices[0] = (device_spec){.name = "a", .driver = "oscillators", .limits = "clamp", .steps = "ramp"};
    c->devices[1] = (device_spec){.name = "b", .driver = "oscillators", .limits = "clamp", .steps = "ramp"};
    snprintf(c->devices[0].options, sizeof(c->devices[0].options), "n=52,%s", gap);
    snprintf(c->devices[1].options, sizeof(c->devices[1].options), "n=218,%s", gap);
    layer_spec L[] = {{LAYER_PATCHES, 7, ""}, {LAYER_PAD, 52, ""}, {LAYER_PHYSICAL, 0, "a"},
                      {LAYER_CONCAT, 4, ""}, {LAYER_PAD, 218, ""}, {LAYER_PHYSICAL, 0, "b"},
                      {LAYER_READOUT, 10, ""}};
    c->n_layers = 7;
    memcpy(c->layers, L, sizeof(L));
}

static void test_model_gradient(void **state)
{
    (void)state;
    run_config c;
    /* deterministic device with the eta / coupling gap (sigma = 0): the ideal
     * gradient of the whole graph must match finite differences */
    small_config(&c, "eta=0.1,j_noise=0.2,sigma=0");
    dataset d;
    assert_int_equal(dataset_synthetic(&d, 8, 14, 1), 0);
    rng_streams rng;
    rng_streams_init(&rng, 3);
    mctx k = {.x = d.x, .y = d.y, .B = 8, .mode = MODE_IDEAL};
    char err[256];
    assert_int_equal(model_build(&k.m, &c, 14, 14, 8, &rng, err, sizeof(err)), 0);
    assert_int_equal(k.m.classes, 10);
    float *p0 = malloc(sizeof(float) * (size_t)k.m.n_params);
    memcpy(p0, k.m.params, sizeof(float) * (size_t)k.m.n_params);
    double e = gradcheck("model ideal", m_f, m_v, &k, p0, (int)k.m.n_params, 1, 3e-3, 4, 77);
    assert_true(e < 5e-3);
    /* without any gap, PAT's surrogate gradient equals the ideal one */
    model_free(&k.m);
    small_config(&c, "eta=0,j_noise=0,sigma=0");
    assert_int_equal(model_build(&k.m, &c, 14, 14, 8, &rng, err, sizeof(err)), 0);
    float *gi = calloc((size_t)k.m.n_params, sizeof(float));
    float *gp = calloc((size_t)k.m.n_params, sizeof(float));
    float one = 1.0f;
    k.mode = MODE_IDEAL;
    m_v(&k, p0, &one, gi);
    k.mode = MODE_PAT;
    m_v(&k, p0, &one, gp);
    double num = 0, den = 0;
    for (long i = 0; i < k.m.n_params; i++) {
        num += (gi[i] - gp[i]) * (double)(gi[i] - gp[i]);
        den += (double)gi[i] * gi[i];
    }
    printf("  |g_pat - g_ideal| / |g_ideal| = %.3e (no gap)\n", sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-5);
    free(gi);
    free(gp);
    free(p0);
    model_free(&k.m);
    rng_streams_free(&rng);
    dataset_free(&d);
}

static double train_synthetic(train_mode mode, uint64_t seed, train_result *r)
{
    run_config c;
    config_quickstart(&c);
    c.mode = mode;
    c.seed = seed;
    c.epochs = 2;
    c.eval_batch = 100;
    dataset tr, te;
    assert_int_equal(dataset_synthetic(&tr, 640, 14, 11), 0);
    assert_int_equal(dataset_synthetic(&te, 300, 14, 12), 0);
    train_options o = {.quiet = 1};
    char err[512] = "";
    int rc = train_run(&c, &tr, &te, &o, r, err, sizeof(err));
    if (rc)
        printf("  train_run: %s\n", err);
    assert_int_equal(rc, 0);
    printf("  %-8s seed %llu: test accuracy %.3f, loss %.4f -> %.4f, %llu device queries\n",
           mode_name(mode), (unsigned long long)seed, r->test_accuracy, r->epochs[0].loss,
           r->epochs[1].loss, (unsigned long long)r->all_dev.queries);
    dataset_free(&tr);
    dataset_free(&te);
    return r->test_accuracy;
}

static void test_train_modes(void **state)
{
    (void)state;
    static train_result r, r2;
    train_mode modes[] = {MODE_PAT, MODE_INSILICO, MODE_IDEAL};
    for (int i = 0; i < 3; i++) {
        double acc = train_synthetic(modes[i], 1, &r);
        assert_true(acc > 0.5); /* chance is 0.1 */
        assert_true(r.epochs[1].loss < r.epochs[0].loss);
        assert_int_equal(r.all_dev.queries, (modes[i] == MODE_INSILICO ? 0 : 2 * 20 * 2) + 2 * 3);
    }
    /* the same seed reproduces the run exactly; another seed differs */
    train_synthetic(MODE_PAT, 5, &r);
    train_synthetic(MODE_PAT, 5, &r2);
    assert_true(r.test_accuracy == r2.test_accuracy);
    assert_true(r.epochs[1].loss == r2.epochs[1].loss);
    train_synthetic(MODE_PAT, 6, &r2);
    assert_true(r.epochs[1].loss != r2.epochs[1].loss);
}

static void test_interrupt(void **state)
{
    (void)state;
    run_config c;
    config_quickstart(&c);
    dataset tr, te;
    assert_int_equal(dataset_synthetic(&tr, 64, 14, 1), 0);
    assert_int_equal(dataset_synthetic(&te, 64, 14, 2), 0);
    volatile sig_atomic_t stop = 1;
    train_options o = {.quiet = 1, .stop = &stop};
    static train_result r;
    char err[256];
    assert_int_equal(train_run(&c, &tr, &te, &o, &r, err, sizeof(err)), PATCTL_ERR_INTERRUPTED);
    assert_true(r.interrupted);
    assert_int_equal(r.steps, 0);
    assert_non_null(strstr(err, "safe"));
    dataset_free(&tr);
    dataset_free(&te);
}

static void test_bad_graph(void **state)
{
    (void)state;
    run_config c;
    config_quickstart(&c);
    c.layers[1].arg = 40; /* pad 40 < 49 */
    rng_streams rng;
    rng_streams_init(&rng, 0);
    model m;
    char err[256];
    assert_int_equal(model_build(&m, &c, 14, 14, 4, &rng, err, sizeof(err)), PATCTL_ERR_CONFIG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "layer 2"));
    model_free(&m);
    config_quickstart(&c);
    snprintf(c.layers[2].device, sizeof(c.layers[2].device), "nosuch");
    assert_int_equal(model_build(&m, &c, 14, 14, 4, &rng, err, sizeof(err)), PATCTL_ERR_CONFIG);
    assert_non_null(strstr(err, "nosuch"));
    model_free(&m);
    rng_streams_free(&rng);
}

/* A regression task (NARMA-10 windows through a small reservoir, linear 1
 * readout): the loss is the mean squared error, the evaluation the NRMSE on
 * the device; PAT and DFA learn (NRMSE well below 1 = predicting the mean),
 * a model with the wrong number of outputs is refused. */
static void test_regression_task(void **state)
{
    (void)state;
    train_mode modes[] = {MODE_PAT, MODE_DFA};
    for (int k = 0; k < 3; k++) {
        run_config c;
        config_defaults(&c);
        snprintf(c.data_set, sizeof(c.data_set), "narma10");
        c.window = 16;
        c.n_devices = 1;
        c.devices[0] = (device_spec){.name = "res", .driver = "reservoir",
                                     .options = "nodes=20,window=16,channels=1,out_steps=1",
                                     .limits = "clamp", .steps = "ramp"};
        layer_spec L[] = {{LAYER_PHYSICAL, 0, "res"}, {LAYER_LINEAR, k == 2 ? 2 : 1, ""}};
        c.n_layers = 2;
        memcpy(c.layers, L, sizeof(L));
        c.mode = modes[k % 2];
        c.epochs = 8;
        c.lr = 0.01;
        c.eval_batch = 100;
        dataset tr, te;
        char err[512] = "";
        assert_int_equal(dataset_series(&tr, "narma10", 400, 16, 1, 1, 0, err, sizeof(err)), 0);
        assert_int_equal(dataset_series(&te, "narma10", 200, 16, 1, 1, 1, err, sizeof(err)), 0);
        train_options o = {.quiet = 1};
        static train_result r;
        int rc = train_run(&c, &tr, &te, &o, &r, err, sizeof(err));
        if (k == 2) {
            printf("  %s\n", err);
            assert_int_equal(rc, PATCTL_ERR_CONFIG);
            assert_non_null(strstr(err, "end the model with linear 1"));
        } else {
            if (rc)
                printf("  %s\n", err);
            assert_int_equal(rc, 0);
            printf("  narma10 %s: MSE %.5f -> %.5f, test NRMSE %.4f on the device\n", mode_name(c.mode),
                   r.epochs[0].loss, r.epochs[7].loss, r.test_nrmse);
            assert_true(r.test_accuracy == -1.0);
            assert_true(r.epochs[7].loss < r.epochs[0].loss);
            assert_true(r.test_nrmse > 0 && r.test_nrmse < 0.9);
        }
        dataset_free(&tr);
        dataset_free(&te);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blas_is_openblas),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_adam_step),
        cmocka_unit_test(test_adam_bitwise_scalar),
        cmocka_unit_test(test_model_gradient),
        cmocka_unit_test(test_train_modes),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_bad_graph),
        cmocka_unit_test(test_regression_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
