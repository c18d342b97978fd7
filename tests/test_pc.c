/* Predictive coding (controller/pc.c) against PAT on the same feedforward
 * pass (same device measurements, same surrogate tapes):
 *   - exact equals PAT's gradient;
 *   - fixedpred with eta = 1 equals it once iters >= the number of layers,
 *     and one iteration short the lowest trainable layer gets nothing (the
 *     prediction errors travel one layer per sweep): on the quickstart
 *     graph and on a graph of three physical layers;
 *   - fixedpred with eta < 1 gives each layer's gradient times a positive
 *     number (cosine 1 per parameter block);
 *   - strict: 1 iteration trains only the top; its extra queries are
 *     (iters - 1) per physical layer; on a noiseless device without a gap
 *     and small steps it approaches the PAT gradient. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/pc.h"

enum { B = 8 };

typedef struct {
    model m;
    pc_state pc;
    dataset d;
    rng_streams rng;
    float dl[B * 10];
    float *g_pat;      /* [n_params] PAT's gradient of the feedforward */
} fixture;

/* The quickstart graph on smaller devices (52 and 218 oscillators). */
static void quickstart_small(run_config *c, const char *gap)
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
    c->mode = MODE_PC;
}

/* linear 24 -> tanh -> osc 24 -> circuit (24 slots) -> osc 24 -> readout 10:
 * three physical layers of two kinds in series, a digital layer at the bottom */
static void three_physical(run_config *c)
{
    config_quickstart(c);
    c->n_devices = 3;
    c->devices[0] = (device_spec){.name = "o1", .driver = "oscillators", .options = "n=24,eta=0.1,j_noise=0.2",
                                  .limits = "clamp", .steps = "ramp"};
    c->devices[1] = (device_spec){.name = "c", .driver = "circuit", .options = "n_in=24",
                                  .limits = "clamp", .steps = "ramp"};
    c->devices[2] = (device_spec){.name = "o2", .driver = "oscillators", .options = "n=24,eta=0.1,j_noise=0.2",
                                  .limits = "clamp", .steps = "ramp"};
    layer_spec L[] = {{LAYER_LINEAR, 24, ""},  {LAYER_TANH, 0, ""},       {LAYER_PHYSICAL, 0, "o1"},
                      {LAYER_PHYSICAL, 0, "c"}, {LAYER_PHYSICAL, 0, "o2"}, {LAYER_READOUT, 10, ""}};
    c->n_layers = 6;
    memcpy(c->layers, L, sizeof(L));
    c->mode = MODE_PC;
}

/* Build, run one PAT feedforward on 8 synthetic images and keep PAT's gradient. */
static void setup_fixture(fixture *f, const run_config *c)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(dataset_synthetic(&f->d, B, 14, 4), 0);
    rng_streams_init(&f->rng, 2);
    char err[512] = "";
    int rc = model_build(&f->m, c, 14, 14, B, &f->rng, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(pc_init(&f->pc, &f->m), 0);
    assert_int_equal(model_forward(&f->m, f->d.x, B, PASS_PAT, err, sizeof(err)), 0);
    softmax_xent(model_logits(&f->m), f->d.y, B, f->m.classes, f->dl, NULL);
    model_zero_grad(&f->m);
    assert_int_equal(model_backward(&f->m, f->dl, B, MODE_PAT, err, sizeof(err)), 0);
    f->g_pat = malloc(sizeof(float) * (size_t)f->m.n_params);
    memcpy(f->g_pat, f->m.grads, sizeof(float) * (size_t)f->m.n_params);
}

static void free_fixture(fixture *f)
{
    free(f->g_pat);
    pc_free(&f->pc);
    model_free(&f->m);
    rng_streams_free(&f->rng);
    dataset_free(&f->d);
}

/* The PC gradient into f->m.grads. */
static int pc_grad(fixture *f, pc_variant_kind v, double eta, int iters)
{
    char err[512] = "";
    model_zero_grad(&f->m);
    int rc = pc_gradient(&f->pc, &f->m, f->dl, f->d.y, NULL, B, v, eta, iters, err, sizeof(err));
    if (rc)
        printf("  pc_gradient: %s\n", err);
    return rc;
}

/* max |a - b| / max |b| over [off, off+n) */
static double rel_diff(const float *a, const float *b, long off, long n)
{
    double num = 0, den = 0;
    for (long i = off; i < off + n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

static double cosine(const float *a, const float *b, long off, long n)
{
    double ab = 0, aa = 0, bb = 0;
    for (long i = off; i < off + n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static double max_abs(const float *a, long off, long n)
{
    double m = 0;
    for (long i = off; i < off + n; i++)
        m = fmax(m, fabs((double)a[i]));
    return m;
}

/* exact and fixedpred (eta 1, iters = depth) equal PAT; the lowest
 * trainable layer `low` gets exactly nothing one sweep short of what it needs */
static void check_equal_pat(fixture *f, const char *what, int low)
{
    model *m = &f->m;
    int L = m->n_layers;
    assert_int_equal(pc_grad(f, PC_EXACT, 0.1, 1), 0);
    double e = rel_diff(m->grads, f->g_pat, 0, m->n_params);
    int bitwise = memcmp(m->grads, f->g_pat, sizeof(float) * (size_t)m->n_params) == 0;
    printf("  %s: exact vs PAT: max rel diff %.2e%s\n", what, e, bitwise ? " (bit for bit)" : "");
    assert_true(e < 1e-6);
    assert_true(max_abs(f->g_pat, 0, m->n_params) > 0);

    assert_int_equal(pc_grad(f, PC_FIXEDPRED, 1.0, L), 0);
    e = rel_diff(m->grads, f->g_pat, 0, m->n_params);
    printf("  %s: fixedpred eta 1, %d iterations (= layers) vs PAT: max rel diff %.2e\n", what, L, e);
    assert_true(e < 1e-6);
    for (long i = 0; i < m->n_params; i++)
        assert_true(isfinite(m->grads[i]));

    /* layer `low` uses eps_(low+1), exact after L - low sweeps */
    int need = L - low;
    assert_int_equal(pc_grad(f, PC_FIXEDPRED, 1.0, need), 0);
    double at = rel_diff(m->grads, f->g_pat, m->L[low].p_off, m->L[low].p_len);
    assert_int_equal(pc_grad(f, PC_FIXEDPRED, 1.0, need - 1), 0);
    double short_by_one = max_abs(m->grads, m->L[low].p_off, m->L[low].p_len);
    /* ... while the top layer already has its exact gradient */
    long top = m->L[L - 1].p_off, ntop = m->L[L - 1].p_len;
    double top_e = rel_diff(m->grads, f->g_pat, top, ntop);
    printf("  %s: layer %d (lowest trainable): %d sweeps rel diff %.2e; %d sweeps max |g| %.2e (top layer "
           "rel diff %.2e)\n", what, low + 1, need, at, need - 1, short_by_one, top_e);
    assert_true(at < 1e-6);
    assert_true(short_by_one == 0.0);
    assert_true(top_e < 1e-6);
}

static void test_quickstart_graph(void **state)
{
    (void)state;
    run_config c;
    quickstart_small(&c, "eta=0.1,j_noise=0.2,sigma=0.02");
    fixture f;
    setup_fixture(&f, &c);
    check_equal_pat(&f, "quickstart graph", 2);
    /* eta < 1: every parameter block gets a positive multiple of PAT's
     * gradient (the errors are sums of the same backpropagated vector) */
    assert_int_equal(pc_grad(&f, PC_FIXEDPRED, 0.3, 30), 0);
    for (int i = 0; i < f.m.n_layers; i++) {
        if (!f.m.L[i].p_len)
            continue;
        double cs = cosine(f.m.grads, f.g_pat, f.m.L[i].p_off, f.m.L[i].p_len);
        double ratio = max_abs(f.m.grads, f.m.L[i].p_off, f.m.L[i].p_len) /
                       max_abs(f.g_pat, f.m.L[i].p_off, f.m.L[i].p_len);
        printf("  fixedpred eta 0.3, 30 sweeps, layer %d: cosine %.9f with PAT, scale %.4f\n", i + 1, cs, ratio);
        assert_true(cs > 1 - 1e-5);
        assert_true(ratio > 0.01 && ratio <= 1.0 + 1e-5);
    }
    free_fixture(&f);
}

static void test_three_physical_layers(void **state)
{
    (void)state;
    run_config c;
    three_physical(&c);
    fixture f;
    setup_fixture(&f, &c);
    check_equal_pat(&f, "3 physical layers", 0);
    free_fixture(&f);
}

static void test_strict(void **state)
{
    (void)state;
    run_config c;
    quickstart_small(&c, "eta=0.1,j_noise=0.2,sigma=0.02");
    fixture f;
    setup_fixture(&f, &c);
    model *m = &f.m;
    /* one iteration: predictions = the feedforward, hidden errors 0: only the
     * top (readout) layer learns, with PAT's gradient; no extra query */
    uint64_t q0 = m->devices[0]->st.queries + m->devices[1]->st.queries;
    assert_int_equal(pc_grad(&f, PC_STRICT, 0.1, 1), 0);
    assert_true(rel_diff(m->grads, f.g_pat, m->L[6].p_off, 1) < 1e-6);
    assert_true(max_abs(m->grads, m->L[2].p_off, m->L[2].p_len) == 0.0);
    assert_true(max_abs(m->grads, m->L[5].p_off, m->L[5].p_len) == 0.0);
    assert_int_equal(m->devices[0]->st.queries + m->devices[1]->st.queries, q0);
    /* iters = 6: 5 more measurements per physical layer */
    assert_int_equal(pc_grad(&f, PC_STRICT, 0.1, 6), 0);
    assert_int_equal(m->devices[0]->st.queries + m->devices[1]->st.queries - q0, 2 * 5);
    assert_int_equal(f.pc.extra_queries, 2 * 5);
    double cs = cosine(m->grads, f.g_pat, 0, m->n_params);
    printf("  strict eta 0.1, 6 iterations on the noisy device: cosine %.4f with PAT\n", cs);
    free_fixture(&f);

    /* a noiseless device without a gap: strict relaxes towards the
     * backpropagated errors; its cosine with PAT grows with the iterations */
    quickstart_small(&c, "eta=0,j_noise=0,sigma=0");
    setup_fixture(&f, &c);
    double prev = -2;
    int iters[] = {2, 10, 60};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(pc_grad(&f, PC_STRICT, 0.2, iters[k]), 0);
        double lo = cosine(f.m.grads, f.g_pat, f.m.L[2].p_off, f.m.L[2].p_len);
        cs = cosine(f.m.grads, f.g_pat, 0, f.m.n_params);
        printf("  strict eta 0.2, %2d iterations, noiseless device: cosine %.4f with PAT (first device's "
               "block %.4f)\n", iters[k], cs, lo);
        assert_true(lo > prev);
        prev = lo;
    }
    assert_true(prev > 0.9);
    /* at its fixed point strict satisfies eps_k = J_k(v_k)^T eps_k+1 at the
     * beliefs (the stationarity of the energy): check the residual (the
     * digital layers' J at the beliefs; the physical layers' tapes are back at
     * the feedforward for the parameter gradients, a few 1e-4 away) */
    assert_int_equal(pc_grad(&f, PC_STRICT, 0.2, 1000), 0);
    float *g = malloc(sizeof(float) * (size_t)B * 218 * 4);
    char err[256];
    for (int k = f.m.n_layers - 1; k >= 1; k--) {
        layer *Ly = &f.m.L[k];
        long n = (long)B * Ly->r_in * Ly->c_in;
        memset(g, 0, sizeof(float) * (size_t)n);
        assert_int_equal(model_layer_backward(&f.m, k, B, f.pc.v[k], f.pc.p[k + 1], f.pc.eps[k + 1], g, NULL,
                                              MODE_PC, err, sizeof(err)), 0);
        double r = rel_diff(f.pc.eps[k], g, 0, n);
        printf("  strict, 1000 iterations: layer %d: |eps_k - J_k^T eps_k+1| / |J_k^T eps_k+1| = %.2e\n", k + 1, r);
        assert_true(r < 1e-3);
    }
    for (int i = 0; i < f.m.n_layers; i++)
        if (f.m.L[i].p_len)
            printf("  strict, 1000 iterations: layer %d: cosine %.4f with PAT\n", i + 1,
                   cosine(f.m.grads, f.g_pat, f.m.L[i].p_off, f.m.L[i].p_len));
    free(g);
    free_fixture(&f);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    run_config c;
    quickstart_small(&c, "eta=0.1,j_noise=0.2,sigma=0.02");
    fixture f;
    setup_fixture(&f, &c);
    char err[128];
    assert_int_equal(pc_gradient(&f.pc, &f.m, f.dl, f.d.y, NULL, B, PC_FIXEDPRED, 0.0, 5, err, sizeof(err)),
                     PATCTL_ERR_ARG);
    assert_int_equal(pc_gradient(&f.pc, &f.m, f.dl, f.d.y, NULL, B, PC_FIXEDPRED, 0.5, 0, err, sizeof(err)),
                     PATCTL_ERR_ARG);
    assert_int_equal(pc_gradient(&f.pc, &f.m, f.dl, f.d.y, NULL, B + 1, PC_EXACT, 0.5, 1, err, sizeof(err)),
                     PATCTL_ERR_ARG);
    free_fixture(&f);
    /* pc needs every physical layer's surrogate: a plugin-less model without
     * a nominal surrogate is refused with the reason */
    quickstart_small(&c, "eta=0.1");
    snprintf(c.devices[1].surrogate, sizeof(c.devices[1].surrogate), "fitted:/nonexistent.json");
    model m;
    rng_streams rng;
    rng_streams_init(&rng, 1);
    char e2[1024] = "";
    assert_int_not_equal(model_build(&m, &c, 14, 14, B, &rng, e2, sizeof(e2)), 0);
    printf("  %s\n", e2);
    assert_non_null(strstr(e2, "mode pc needs"));
    model_free(&m);
    rng_streams_free(&rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quickstart_graph),
        cmocka_unit_test(test_three_physical_layers),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
