/* Direct feedback alignment (controller/dfa.c), BEAN (surrogate/bean.c)
 * and pruning (controller/regularize.c):
 *   - DFA and aDFA never call a surrogate VJP (no surrogate is even made),
 *     query each physical layer once per step, and train on synthetic data;
 *   - the update: a digital head above the last device gets its exact
 *     gradient; a linear layer below a device gets (e B) (.) g through its
 *     exact backward; the local rules of the physical blocks are the
 *     formulas of dfa.h, checked against a direct computation;
 *   - the feedback matrices depend on the seed only;
 *   - roles: defaults, dfa_roles overrides, clear errors;
 *   - BEAN's gradient against finite differences; it shrinks the weights;
 *   - pruning zeroes the asked fraction (oscillator couplings as pairs). */
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
#include "controller/dfa.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/regularize.h"
#include "controller/train.h"
#include "gradcheck.h"
#include "surrogate/bean.h"
#include "surrogate/surrogate.h"

enum { B = 8 };

/* linear 26 -> tanh -> osc 26 (C, e) -> linear 12 -> circuit 12 -> readout 10 */
static void hybrid(run_config *c, train_mode mode)
{
    config_quickstart(c);
    c->mode = mode;
    c->n_devices = 2;
    c->devices[0] = (device_spec){.name = "osc", .driver = "oscillators", .options = "n=26,eta=0.1,j_noise=0.2",
                                  .limits = "clamp", .steps = "ramp"};
    c->devices[1] = (device_spec){.name = "circ", .driver = "circuit", .options = "n_in=12",
                                  .limits = "clamp", .steps = "ramp"};
    layer_spec L[] = {{LAYER_LINEAR, 26, ""},    {LAYER_TANH, 0, ""},      {LAYER_PHYSICAL, 0, "osc"},
                      {LAYER_LINEAR, 12, ""},    {LAYER_PHYSICAL, 0, "circ"}, {LAYER_READOUT, 10, ""}};
    c->n_layers = 6;
    memcpy(c->layers, L, sizeof(L));
}

typedef struct {
    model m;
    dfa_state s;
    dataset d;
    rng_streams rng;
    float dl[B * 10];
} fixture;

static void setup_fixture(fixture *f, const run_config *c)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(dataset_synthetic(&f->d, B, 14, 4), 0);
    rng_streams_init(&f->rng, 2);
    char err[512] = "";
    int rc = model_build(&f->m, c, 14, 14, B, &f->rng, err, sizeof(err));
    if (!rc)
        rc = dfa_init(&f->s, &f->m, c, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    /* the circuit's gain starts near 1 and is ramped from the safe 0 by the
     * boundary: run twice so the second batch is at the model's setting */
    for (int k = 0; k < 2; k++)
        assert_int_equal(model_forward(&f->m, f->d.x, B, PASS_DEVICE, err, sizeof(err)), 0);
    softmax_xent(model_logits(&f->m), f->d.y, B, f->m.classes, f->dl, NULL);
}

static void free_fixture(fixture *f)
{
    dfa_free(&f->s);
    model_free(&f->m);
    rng_streams_free(&f->rng);
    dataset_free(&f->d);
}

static double max_rel(const float *a, const float *b, long n)
{
    double num = 0, den = 0;
    for (long i = 0; i < n; i++)
        num = fmax(num, fabs((double)a[i] - b[i])), den = fmax(den, fabs((double)b[i]));
    return den > 0 ? num / den : num;
}

static void test_update_formulas(void **state)
{
    (void)state;
    for (int aug = 0; aug < 2; aug++) {
        run_config c;
        hybrid(&c, aug ? MODE_ADFA : MODE_DFA);
        c.dfa_g = DFA_G_COS;
        fixture f;
        setup_fixture(&f, &c);
        model *m = &f.m;
        for (int i = 0; i < m->n_layers; i++)
            assert_null(m->L[i].sur); /* no surrogate exists */
        char err[256];
        model_zero_grad(m);
        long calls0 = atomic_load(&surrogate_backward_calls);
        assert_int_equal(dfa_gradient(&f.s, m, f.dl, B, err, sizeof(err)), 0);
        assert_int_equal(atomic_load(&surrogate_backward_calls), calls0);

        /* the readout (head) gets exactly its backpropagated gradient */
        const float *z_in = m->act[5];
        double ds = 0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < 10; j++)
                ds += (double)f.dl[b * 10 + j] * z_in[b * 12 + 2 + j];
        assert_true(fabs(m->grads[m->L[5].p_off] - ds) <= 1e-5 * fabs(ds) + 1e-9);

        /* circuit (layer 5): delta_out = readout backward: scale * dl on its 10 last outputs */
        const layer *Lc = &m->L[4];
        float scale = m->params[m->L[5].p_off];
        const float *xs = m->devices[1]->sent_x;
        float want[24] = {0};
        for (int b = 0; b < B; b++)
            for (int j = 0; j < 12; j++) {
                float dout = j >= 2 ? scale * f.dl[b * 10 + j - 2] : 0.0f;
                want[j] += dout * xs[b * 12 + j]; /* gain_diag (sps = 1) */
                want[12 + j] += dout;             /* bias_diag */
            }
        double e = max_rel(m->grads + Lc->p_off, want, 24);
        printf("  %s: circuit gain/bias local rules vs direct: %.2e\n", aug ? "adfa" : "dfa", e);
        assert_true(e < 1e-5);

        /* the linear 12 (layer 4) below the oscillators... is ABOVE them: it
         * gets delta = (e B_4) (.) g(x_circ) through its exact backward */
        const float *fb = f.s.fb[4];
        assert_non_null(fb);
        float *dpre = calloc(B * 12, sizeof(float));
        for (int b = 0; b < B; b++)
            for (int j = 0; j < 12; j++) {
                double acc = 0;
                for (int k = 0; k < 10; k++)
                    acc += (double)f.dl[b * 10 + k] * fb[k * 12 + j];
                dpre[b * 12 + j] = (float)acc * (aug ? cosf(m->act[4][b * 12 + j]) : 1.0f);
            }
        float *gW = calloc(12 * 26 + 12, sizeof(float));
        for (int o = 0; o < 12; o++)
            for (int i = 0; i < 26; i++)
                for (int b = 0; b < B; b++)
                    gW[o * 26 + i] += dpre[b * 12 + o] * m->act[3][b * 26 + i];
        for (int o = 0; o < 12; o++)
            for (int b = 0; b < B; b++)
                gW[12 * 26 + o] += dpre[b * 12 + o];
        e = max_rel(m->grads + m->L[3].p_off, gW, 12 * 26 + 12);
        printf("  %s: linear layer between the devices vs (e B) (.) g x^T: %.2e\n", aug ? "adfa" : "dfa", e);
        assert_true(e < 1e-5);

        /* the oscillators (layer 3): weight / bias_out from delta_out = W^T dpre
         * (the exact backward of the linear 12 above them) */
        const float *W4 = m->params + m->L[3].p_off;
        const float *xo = m->devices[0]->sent_x;
        float *dout = calloc(B * 26, sizeof(float)), *gC = calloc(26 * 26 + 26, sizeof(float));
        for (int b = 0; b < B; b++)
            for (int i = 0; i < 26; i++)
                for (int o = 0; o < 12; o++)
                    dout[b * 26 + i] += dpre[b * 12 + o] * W4[o * 26 + i];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < 26; i++) {
                for (int j = 0; j < 26; j++)
                    gC[i * 26 + j] += dout[b * 26 + i] * xo[b * 26 + j];
                gC[26 * 26 + i] += dout[b * 26 + i];
            }
        e = max_rel(m->grads + m->L[2].p_off, gC, 26 * 26 + 26);
        printf("  %s: oscillator C (weight) and e (bias_out) local rules vs direct: %.2e\n", aug ? "adfa" : "dfa", e);
        assert_true(e < 1e-4);
        /* the first linear layer learns too (through tanh, exactly) */
        double g0 = 0;
        for (long i = 0; i < m->L[0].p_len; i++)
            g0 = fmax(g0, fabs(m->grads[m->L[0].p_off + i]));
        assert_true(g0 > 0);
        free(dpre), free(gW), free(dout), free(gC);
        free_fixture(&f);
    }
}

static void test_feedback_from_seed(void **state)
{
    (void)state;
    run_config c;
    hybrid(&c, MODE_DFA);
    fixture a, b;
    setup_fixture(&a, &c);
    setup_fixture(&b, &c);
    assert_memory_equal(a.s.fb[4], b.s.fb[4], sizeof(float) * 10 * 12);
    free_fixture(&b);
    c.seed = 9;
    setup_fixture(&b, &c);
    assert_true(memcmp(a.s.fb[4], b.s.fb[4], sizeof(float) * 10 * 12) != 0);
    /* feedback only where something below learns: none into the first layer's input */
    assert_null(a.s.fb[0]);
    free_fixture(&a);
    free_fixture(&b);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(dfa_default_role("oscillators", "C"), ROLE_WEIGHT);
    assert_int_equal(dfa_default_role("oscillators", "e"), ROLE_BIAS_OUT);
    assert_int_equal(dfa_default_role("circuit", "gain"), ROLE_GAIN_DIAG);
    assert_int_equal(dfa_default_role("shg", "phi"), ROLE_FIXED);
    run_config c;
    hybrid(&c, MODE_DFA);
    snprintf(c.devices[0].dfa_roles, sizeof(c.devices[0].dfa_roles), "C:fixed,e:fixed");
    fixture f;
    setup_fixture(&f, &c);
    char err[256];
    model_zero_grad(&f.m);
    assert_int_equal(dfa_gradient(&f.s, &f.m, f.dl, B, err, sizeof(err)), 0);
    for (long i = 0; i < f.m.L[2].p_len; i++)
        assert_true(f.m.grads[f.m.L[2].p_off + i] == 0.0f);
    free_fixture(&f);
    /* errors name the block, the role, and the config line when from a file */
    const char *bad[][2] = {{"C:sideways", "ROLE one of"}, {"X:weight", "BLOCK one of C, e"},
                            {"e:weight", "weight needs a [n_out, n_in] block"}, {"Cweight", "expected BLOCK:ROLE"}};
    for (int k = 0; k < 4; k++) {
        hybrid(&c, MODE_DFA);
        snprintf(c.devices[0].dfa_roles, sizeof(c.devices[0].dfa_roles), "%s", bad[k][0]);
        c.devices[0].n_keys = 1;
        snprintf(c.devices[0].keys[0].key, sizeof(c.devices[0].keys[0].key), "dfa_roles");
        c.devices[0].keys[0].line = 7;
        snprintf(c.source, sizeof(c.source), "x.ini");
        model m;
        rng_streams rng;
        rng_streams_init(&rng, 1);
        char e2[512] = "";
        assert_int_equal(model_build(&m, &c, 14, 14, B, &rng, e2, sizeof(e2)), 0);
        dfa_state s;
        assert_int_equal(dfa_init(&s, &m, &c, e2, sizeof(e2)), PATCTL_ERR_CONFIG);
        printf("  %s\n", e2);
        assert_non_null(strstr(e2, bad[k][1]));
        assert_non_null(strstr(e2, "x.ini:7: [device osc] dfa_roles"));
        dfa_free(&s);
        model_free(&m);
        rng_streams_free(&rng);
    }
}

/* DFA and aDFA train the tiny quickstart on synthetic images, one query per
 * device per step, no surrogate VJP at all (PAT, for contrast, makes some). */
static void test_train_dfa(void **state)
{
    (void)state;
    train_mode modes[] = {MODE_PAT, MODE_DFA, MODE_ADFA};
    for (int k = 0; k < 3; k++) {
        run_config c;
        config_quickstart(&c);
        c.mode = modes[k];
        c.epochs = 2;
        c.eval_batch = 100;
        c.lr = k ? 5e-3 : 1e-3;
        dataset tr, te;
        assert_int_equal(dataset_synthetic(&tr, 640, 14, 11), 0);
        assert_int_equal(dataset_synthetic(&te, 300, 14, 12), 0);
        train_options o = {.quiet = 1};
        static train_result r;
        char err[512] = "";
        long calls0 = atomic_load(&surrogate_backward_calls);
        int rc = train_run(&c, &tr, &te, &o, &r, err, sizeof(err));
        if (rc)
            printf("  %s\n", err);
        assert_int_equal(rc, 0);
        long calls = atomic_load(&surrogate_backward_calls) - calls0;
        printf("  %-4s: test accuracy %.3f, loss %.4f -> %.4f, %llu training queries, %ld surrogate VJPs\n",
               mode_name(modes[k]), r.test_accuracy, r.epochs[0].loss, r.epochs[1].loss,
               (unsigned long long)r.train_dev.queries, calls);
        assert_int_equal(r.train_dev.queries, 2 * 20 * 2); /* 2 devices x 20 steps x 2 epochs */
        if (modes[k] == MODE_PAT) {
            assert_true(calls > 0);
        } else {
            assert_int_equal(calls, 0);
            assert_true(r.test_accuracy > 0.3); /* chance 0.1 */
            assert_true(r.epochs[1].loss < r.epochs[0].loss);
        }
        dataset_free(&tr);
        dataset_free(&te);
    }
}

/* ---- BEAN ---- */
typedef struct {
    int O, I;
    double alpha;
    float *scratch;
} bctx;

static void bean_f(void *c, const float *p, float *y)
{
    bctx *k = c;
    y[0] = (float)bean_forward(p, k->O, k->I, k->alpha, k->scratch);
}
static void bean_v(void *c, const float *p, const float *r, float *g)
{
    bctx *k = c;
    float *G = calloc((size_t)k->O * k->I, sizeof(float));
    bean_backward(p, k->O, k->I, k->alpha, G, k->scratch);
    for (int i = 0; i < k->O * k->I; i++)
        g[i] += r[0] * G[i];
    free(G);
}

static void test_bean_gradient(void **state)
{
    (void)state;
    int shapes[][2] = {{5, 7}, {9, 4}, {12, 12}};
    for (int s = 0; s < 3; s++) {
        bctx k = {shapes[s][0], shapes[s][1], 0.7, NULL};
        k.scratch = malloc(sizeof(float) * bean_scratch_floats(k.O, k.I));
        float *W = malloc(sizeof(float) * (size_t)k.O * k.I);
        unsigned u = 11 + (unsigned)s;
        for (int i = 0; i < k.O * k.I; i++)
            W[i] = (float)(2 * gc_uniform(&u) - 1); /* never exactly 0: |W| is smooth there */
        double e = gradcheck("bean", bean_f, bean_v, &k, W, k.O * k.I, 1, 1e-3, 4, 5 + (unsigned)s);
        assert_true(e < 2e-3);
        /* R >= 0, 0 for identical columns, and the definition by its sum */
        double R = bean_forward(W, k.O, k.I, k.alpha, k.scratch), direct = 0;
        for (int i = 0; i < k.I; i++)
            for (int j = 0; j < k.I; j++) {
                double a = 0, d = 0;
                for (int o = 0; o < k.O; o++) {
                    a += tanh(fabs(W[o * k.I + i])) * tanh(fabs(W[o * k.I + j]));
                    d += pow(W[o * k.I + i] - W[o * k.I + j], 2);
                }
                direct += a * d;
            }
        direct *= k.alpha;
        printf("  bean %dx%d: R %.6f, by its definition %.6f\n", k.O, k.I, R, direct);
        assert_true(fabs(R - direct) < 1e-4 * direct);
        for (int o = 0; o < k.O; o++)
            for (int i = 0; i < k.I; i++)
                W[o * k.I + i] = W[o * k.I];
        assert_true(fabs(bean_forward(W, k.O, k.I, k.alpha, k.scratch)) < 1e-5 * R); /* float cancellation */
        free(W);
        free(k.scratch);
    }
}

static void test_prune(void **state)
{
    (void)state;
    run_config c;
    hybrid(&c, MODE_PAT);
    rng_streams rng;
    rng_streams_init(&rng, 1);
    model m;
    char err[256];
    assert_int_equal(model_build(&m, &c, 14, 14, B, &rng, err, sizeof(err)), 0);
    model_matrix mx[8];
    int n = model_matrices(&m, 1, mx, 8);
    assert_int_equal(n, 3); /* linear W, the oscillators' C, linear W (graph order) */
    assert_true(mx[1].physical && mx[1].symmetric_pairs && !mx[0].physical && !mx[2].physical);
    assert_int_equal(model_matrices(&m, 0, mx, 8), 2);
    float *p = malloc(sizeof(float) * (size_t)m.n_params);
    memcpy(p, m.params, sizeof(float) * (size_t)m.n_params);
    long pruned, total;
    assert_int_equal(model_prune(&m, p, 0.5, 1, &pruned, &total, NULL), 0);
    printf("  pruned %ld of %ld weights/couplings\n", pruned, total);
    assert_int_equal(total, 26 * 196 + 12 * 26 + 26 * 25 / 2);
    assert_int_equal(pruned, 26 * 196 / 2 + 12 * 26 / 2 + (26 * 25 / 2 + 1) / 2);
    /* C: pairs zeroed together, the diagonal untouched, the larger half kept */
    n = model_matrices(&m, 1, mx, 8);
    const float *C = p + mx[1].offset, *C0 = m.params + mx[1].offset;
    int zero_pairs = 0;
    for (int i = 0; i < 26; i++) {
        assert_true(C[i * 26 + i] == C0[i * 26 + i]);
        for (int j = i + 1; j < 26; j++) {
            assert_true((C[i * 26 + j] == 0) == (C[j * 26 + i] == 0));
            zero_pairs += C[i * 26 + j] == 0;
        }
    }
    assert_int_equal(zero_pairs, (26 * 25 / 2 + 1) / 2);
    /* the linear weights: what is kept is at least as large as what was cut */
    float kept_min = 1e30f, cut_max = 0;
    for (int k = 0; k < 26 * 196; k++) {
        float a = fabsf(m.params[mx[0].offset + k]);
        if (p[mx[0].offset + k] == 0)
            cut_max = fmaxf(cut_max, a);
        else
            kept_min = fminf(kept_min, a);
    }
    assert_true(kept_min >= cut_max);
    /* the mask marks exactly the zeroed entries (p from nonzero m.params),
     * and pruning the pruned parameters again finds the same mask (what a
     * resumed `train --prune` relies on) and changes nothing */
    unsigned char *mask = malloc((size_t)m.n_params), *mask2 = malloc((size_t)m.n_params);
    float *p2 = malloc(sizeof(float) * (size_t)m.n_params);
    memcpy(p, m.params, sizeof(float) * (size_t)m.n_params);
    assert_int_equal(model_prune(&m, p, 0.5, 1, &pruned, &total, mask), 0);
    long marked = 0;
    for (long i = 0; i < m.n_params; i++) {
        marked += mask[i];
        if (m.params[i] != 0)
            assert_int_equal(mask[i], p[i] == 0);
    }
    assert_int_equal(marked, 26 * 196 / 2 + 12 * 26 / 2 + 2 * ((26 * 25 / 2 + 1) / 2));
    memcpy(p2, p, sizeof(float) * (size_t)m.n_params);
    assert_int_equal(model_prune(&m, p2, 0.5, 1, &pruned, &total, mask2), 0);
    assert_memory_equal(mask, mask2, (size_t)m.n_params);
    assert_memory_equal(p, p2, sizeof(float) * (size_t)m.n_params);
    /* digital only: the coupling matrix is left alone */
    memcpy(p, m.params, sizeof(float) * (size_t)m.n_params);
    assert_int_equal(model_prune(&m, p, 0.5, 0, &pruned, &total, mask), 0);
    assert_int_equal(total, 26 * 196 + 12 * 26);
    for (int k = 0; k < 26 * 26; k++)
        assert_int_equal(mask[mx[1].offset + k], 0);
    free(mask);
    free(mask2);
    free(p2);
    assert_int_equal(model_prune(&m, p, 1.5, 1, &pruned, &total, NULL), PATCTL_ERR_ARG);
    free(p);
    model_free(&m);
    rng_streams_free(&rng);
}

/* BEAN in training: with a strong alpha the first linear layer's weights
 * come out smaller (and its pruning costs less) than without. */
typedef struct {
    float *p;
    long n;
} last_params;

static void keep_params(void *user, const train_step_view *v)
{
    last_params *lp = user;
    if (!lp->p)
        lp->p = malloc(sizeof(float) * (size_t)v->n_params);
    lp->n = v->n_params;
    memcpy(lp->p, v->params, sizeof(float) * (size_t)v->n_params);
}

static void test_bean_in_training(void **state)
{
    (void)state;
    double mean_abs[2];
    for (int k = 0; k < 2; k++) {
        run_config c;
        hybrid(&c, MODE_PAT);
        c.epochs = 1;
        c.eval_batch = 100;
        c.bean = k ? 0.03 : 0.0;
        dataset tr, te;
        assert_int_equal(dataset_synthetic(&tr, 320, 14, 11), 0);
        assert_int_equal(dataset_synthetic(&te, 100, 14, 12), 0);
        last_params lp = {NULL, 0};
        train_options o = {.quiet = 1, .on_step = keep_params, .on_step_user = &lp};
        static train_result r;
        char err[512] = "";
        assert_int_equal(train_run(&c, &tr, &te, &o, &r, err, sizeof(err)), 0);
        assert_non_null(lp.p);
        double s = 0;
        for (int i = 0; i < 26 * 196; i++) /* layer 1's W starts the parameter vector */
            s += fabs(lp.p[i]);
        mean_abs[k] = s / (26 * 196);
        printf("  bean %g: mean |W| of the first linear layer %.5f, test accuracy %.3f\n", c.bean, mean_abs[k],
               r.test_accuracy);
        free(lp.p);
        dataset_free(&tr);
        dataset_free(&te);
    }
    assert_true(mean_abs[1] < 0.9 * mean_abs[0]);
}

/* A reservoir read out at every step: its input mask [N, C] is one weight
 * shared over the T steps (y_k ~ M x_k): G = sum_k delta_k^T x_k; read out at
 * the last step only, the default does not fit and the mask stays fixed. */
static void test_shared_weight_role(void **state)
{
    (void)state;
    for (int all = 1; all >= 0; all--) {
        run_config c;
        config_quickstart(&c);
        c.mode = MODE_DFA;
        c.n_devices = 1;
        c.devices[0] = (device_spec){.name = "res", .driver = "reservoir", .limits = "clamp", .steps = "ramp"};
        snprintf(c.devices[0].options, sizeof(c.devices[0].options), "nodes=6,window=14,channels=14,out_steps=%d",
                 all ? 14 : 1);
        layer_spec L[] = {{LAYER_PHYSICAL, 0, "res"}, {LAYER_LINEAR, 10, ""}};
        c.n_layers = 2;
        memcpy(c.layers, L, sizeof(L));
        fixture f;
        setup_fixture(&f, &c);
        model *m = &f.m;
        const struct patctl_device_desc *d = &m->devices[0]->desc;
        int mb = -1;
        for (int b = 0; b < d->n_blocks; b++)
            if (strcmp(d->blocks[b].name, "mask") == 0)
                mb = b;
        assert_true(mb >= 0);
        assert_int_equal(f.s.role[0][mb], all ? ROLE_WEIGHT : ROLE_FIXED);
        char err[256];
        model_zero_grad(m);
        assert_int_equal(dfa_gradient(&f.s, m, f.dl, B, err, sizeof(err)), 0);
        const float *G = m->grads + m->L[0].p_off + device_block_offset(d, mb);
        int N = 6, C = 14, K = all ? 14 : 1, no = K * N;
        /* delta at the reservoir's output: the head's exact backward W^T dl */
        const float *W = m->params + m->L[1].p_off;
        float *want = calloc((size_t)N * C, sizeof(float));
        const float *x = m->devices[0]->sent_x;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++)
                for (int i = 0; i < N; i++) {
                    double dlt = 0;
                    for (int o = 0; o < 10; o++)
                        dlt += (double)f.dl[b * 10 + o] * W[o * no + k * N + i];
                    for (int ch = 0; ch < C; ch++)
                        want[i * C + ch] += (float)(dlt * x[b * 14 * C + k * C + ch]);
                }
        if (all) {
            double e = max_rel(G, want, N * C);
            printf("  reservoir mask as a weight shared over %d steps vs direct: %.2e\n", K, e);
            assert_true(e < 1e-4);
        } else {
            for (int j = 0; j < N * C; j++)
                assert_true(G[j] == 0.0f);
        }
        free(want);
        free_fixture(&f);
    }
}

/* BP-STDP (rate form): at a physical layer the error is gated by the
 * neurons that fired (outputs > 0), its weight rule takes the gated error,
 * and the error below is carried through the layer's own weights: on
 * linear 26 -> tanh -> osc 26 (C weight) -> ... the first linear layer's
 * gradient is the exact backward of xi C. */
static void test_bpstdp(void **state)
{
    (void)state;
    run_config c;
    config_quickstart(&c);
    c.mode = MODE_BPSTDP;
    c.n_devices = 1;
    c.devices[0] = (device_spec){.name = "osc", .driver = "oscillators", .options = "n=26,eta=0.1,j_noise=0.2",
                                 .limits = "clamp", .steps = "ramp"};
    layer_spec L[] = {{LAYER_LINEAR, 26, ""}, {LAYER_TANH, 0, ""}, {LAYER_PHYSICAL, 0, "osc"},
                      {LAYER_LINEAR, 10, ""}};
    c.n_layers = 4;
    memcpy(c.layers, L, sizeof(L));
    fixture f;
    setup_fixture(&f, &c);
    model *m = &f.m;
    assert_null(f.s.fb[2]); /* no feedback matrix */
    char err[256];
    model_zero_grad(m);
    long calls0 = atomic_load(&surrogate_backward_calls);
    assert_int_equal(dfa_gradient(&f.s, m, f.dl, B, err, sizeof(err)), 0);
    assert_int_equal(atomic_load(&surrogate_backward_calls), calls0);
    /* xi = (W_head^T dl) (.) [y > 0] */
    const float *Wh = m->params + m->L[3].p_off, *y = m->act[3], *C = m->params + m->L[2].p_off;
    float xi[B * 26], gin[B * 26];
    int gated = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 26; i++) {
            double d = 0;
            for (int o = 0; o < 10; o++)
                d += (double)f.dl[b * 10 + o] * Wh[o * 26 + i];
            xi[b * 26 + i] = y[b * 26 + i] > 0 ? (float)d : 0.0f;
            gated += y[b * 26 + i] <= 0;
        }
    assert_true(gated > 0);
    const float *x = m->devices[0]->sent_x;
    float gC[26 * 26] = {0};
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 26; i++)
            for (int j = 0; j < 26; j++)
                gC[i * 26 + j] += xi[b * 26 + i] * x[b * 26 + j];
    double e = max_rel(m->grads + m->L[2].p_off, gC, 26 * 26);
    /* below: gin = xi C, through tanh (1 - h^2), then the linear layer's dW = gpre^T x_img */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < 26; j++) {
            double d = 0;
            for (int i = 0; i < 26; i++)
                d += (double)xi[b * 26 + i] * C[i * 26 + j];
            float h = m->act[2][b * 26 + j];
            gin[b * 26 + j] = (float)d * (1 - h * h);
        }
    float *gW = calloc(26 * 196, sizeof(float));
    for (int b = 0; b < B; b++)
        for (int o = 0; o < 26; o++)
            for (int i = 0; i < 196; i++)
                gW[o * 196 + i] += gin[b * 26 + o] * f.d.x[b * 196 + i];
    double e2 = max_rel(m->grads, gW, 26 * 196);
    printf("  bpstdp: %d of %d outputs gated; C rule %.2e, first layer through xi C %.2e\n", gated, B * 26, e, e2);
    assert_true(e < 1e-4 && e2 < 1e-4);
    free(gW);
    free_fixture(&f);
    /* a device without a weight block with learning below it is refused */
    hybrid(&c, MODE_BPSTDP);
    rng_streams rng;
    rng_streams_init(&rng, 1);
    model mm;
    assert_int_equal(model_build(&mm, &c, 14, 14, B, &rng, err, sizeof(err)), 0);
    dfa_state s;
    char e3[512];
    assert_int_equal(dfa_init(&s, &mm, &c, e3, sizeof(e3)), PATCTL_ERR_CONFIG);
    printf("  %s\n", e3);
    assert_non_null(strstr(e3, "device circ (circuit) has none"));
    dfa_free(&s);
    model_free(&mm);
    rng_streams_free(&rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_formulas),
        cmocka_unit_test(test_feedback_from_seed),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_shared_weight_role),
        cmocka_unit_test(test_bpstdp),
        cmocka_unit_test(test_train_dfa),
        cmocka_unit_test(test_bean_gradient),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_bean_in_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
