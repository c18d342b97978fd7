/* The parallel training step: the thread team (surrogate/team.c), the PAT
 * forward that runs the device and the surrogate at the same time
 * (controller/model.c), and reproducibility for a given team size.
 *
 *  - team_run runs every part exactly once, serially when nested;
 *  - PAT: the surrogate's output and tape are those at exactly what the
 *    device was sent, also when the boundary clamped the inputs;
 *  - training steps give the same bits with one, two or three threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/optim.h"
#include "controller/rng.h"
#include "surrogate/team.h"

typedef struct {
    atomic_int hits[64];
    atomic_int nested_parallel;
} count_job;

static void inner(void *arg, int p, int np)
{
    (void)np, (void)p;
    count_job *j = arg;
    if (!team_inside())
        atomic_fetch_add(&j->nested_parallel, 1);
}

static void count_part(void *arg, int p, int np)
{
    count_job *j = arg;
    assert_true(np == 37);
    atomic_fetch_add(&j->hits[p], 1);
    team_run(inner, j, 3); /* nested: serial in this thread */
}

static void test_team_runs_every_part_once(void **state)
{
    (void)state;
    for (int size = 1; size <= 3; size++) {
        assert_int_equal(team_resize(size), size);
        for (int rep = 0; rep < 200; rep++) {
            count_job j;
            memset(&j, 0, sizeof(j));
            team_run(count_part, &j, 37);
            for (int p = 0; p < 37; p++)
                assert_int_equal(atomic_load(&j.hits[p]), 1);
            assert_int_equal(atomic_load(&j.nested_parallel), 0);
        }
    }
    team_resize(0);
    int lo, hi, covered = 0;
    for (int p = 0; p < 3; p++) {
        team_split(266, 3, 16, p, &lo, &hi);
        assert_true(lo % 16 == 0 && hi >= lo);
        covered += hi - lo;
    }
    assert_int_equal(covered, 266);
}

static void config_small(run_config *c)
{
    config_quickstart(c); /* the quickstart's graph and devices (with the gap) */
}

/* PAT forward at inputs inside and outside the device's input limits */
static void test_pat_surrogate_at_sent(void **state)
{
    (void)state;
    assert_int_equal(team_resize(2), 2); /* device and surrogate concurrently */
    run_config c;
    config_small(&c);
    enum { B = 6 };
    dataset d;
    assert_int_equal(dataset_synthetic(&d, B, 14, 4), 0);
    rng_streams rng;
    rng_streams_init(&rng, 2);
    model m;
    char err[256];
    assert_int_equal(model_build(&m, &c, 14, 14, B, &rng, err, sizeof(err)), 0);
    for (int scale = 1; scale <= 40; scale += 39) {
        float x[B * 196];
        for (int i = 0; i < B * 196; i++)
            x[i] = (float)scale * d.x[i]; /* 40: pixels up to 40 rad, limit 10 */
        uint64_t clamped0 = m.devices[0]->st.clamped;
        assert_int_equal(model_forward(&m, x, B, PASS_PAT, err, sizeof(err)), 0);
        printf("  pixel scale %d: %llu values clamped\n", scale,
               (unsigned long long)(m.devices[0]->st.clamped - clamped0));
        if (scale > 1)
            assert_true(m.devices[0]->st.clamped > clamped0);
        for (int i = 0; i < m.n_layers; i++) {
            layer *L = &m.L[i];
            if (L->spec.kind != LAYER_PHYSICAL)
                continue;
            int R = B * L->r_in;
            long len = (long)R * L->c_out;
            float *got = malloc(sizeof(float) * (size_t)len), *want = malloc(sizeof(float) * (size_t)len);
            memcpy(got, L->ysur, sizeof(float) * (size_t)len);
            /* the surrogate at what was sent, alone */
            surrogate *s = surrogate_osc_new(surrogate_osc_model(L->sur));
            assert_int_equal(surrogate_forward(s, L->dev->sent_theta, L->dev->sent_x, R, want), 0);
            assert_memory_equal(got, want, sizeof(float) * (size_t)len);
            /* and its tape is the one at the sent values: same VJP */
            float *gy = malloc(sizeof(float) * (size_t)len);
            for (long k = 0; k < len; k++)
                gy[k] = (float)((k * 37) % 11) * 0.1f - 0.5f;
            long nin = (long)R * L->c_in;
            float *g1 = calloc((size_t)nin, sizeof(float)), *g2 = calloc((size_t)nin, sizeof(float));
            float *t1 = calloc((size_t)L->sur->n_theta, sizeof(float));
            float *t2 = calloc((size_t)L->sur->n_theta, sizeof(float));
            assert_int_equal(surrogate_backward(L->sur, gy, g1, t1), 0);
            assert_int_equal(surrogate_backward(s, gy, g2, t2), 0);
            assert_memory_equal(g1, g2, sizeof(float) * (size_t)nin);
            assert_memory_equal(t1, t2, sizeof(float) * (size_t)L->sur->n_theta);
            surrogate_destroy(&s);
            free(got), free(want), free(gy), free(g1), free(g2), free(t1), free(t2);
        }
    }
    model_free(&m);
    rng_streams_free(&rng);
    dataset_free(&d);
    team_resize(0);
}

/* grads of one PAT step and params after three, for a given team size */
static void pat_steps(int threads, float **grad1, float **params3, long *np)
{
    assert_int_equal(team_resize(threads), threads);
    run_config c;
    config_small(&c);
    enum { B = 32 };
    dataset d;
    assert_int_equal(dataset_synthetic(&d, 3 * B, 14, 9), 0);
    rng_streams rng;
    rng_streams_init(&rng, 5);
    model m;
    optimizer o;
    char err[256];
    assert_int_equal(model_build(&m, &c, 14, 14, B, &rng, err, sizeof(err)), 0);
    assert_int_equal(optimizer_init(&o, OPT_ADAM, m.n_params, 1e-3, 0), 0);
    float dl[B * 10];
    for (int s = 0; s < 3; s++) {
        assert_int_equal(model_forward(&m, d.x + (long)s * B * 196, B, PASS_PAT, err, sizeof(err)), 0);
        softmax_xent(model_logits(&m), d.y + s * B, B, m.classes, dl, NULL);
        model_zero_grad(&m);
        assert_int_equal(model_backward(&m, dl, B, MODE_PAT, err, sizeof(err)), 0);
        if (s == 0) {
            *grad1 = malloc(sizeof(float) * (size_t)m.n_params);
            memcpy(*grad1, m.grads, sizeof(float) * (size_t)m.n_params);
        }
        optimizer_step(&o, m.params, m.grads);
        model_project(&m);
    }
    *params3 = malloc(sizeof(float) * (size_t)m.n_params);
    memcpy(*params3, m.params, sizeof(float) * (size_t)m.n_params);
    *np = m.n_params;
    optimizer_free(&o);
    model_free(&m);
    rng_streams_free(&rng);
    dataset_free(&d);
}

static void test_step_reproducible(void **state)
{
    (void)state;
    float *g[3], *p[3];
    long n;
    for (int t = 0; t < 3; t++)
        pat_steps(t + 1, &g[t], &p[t], &n);
    team_resize(0);
    for (int t = 1; t < 3; t++) {
        assert_memory_equal(g[0], g[t], sizeof(float) * (size_t)n);
        assert_memory_equal(p[0], p[t], sizeof(float) * (size_t)n);
    }
    for (int t = 0; t < 3; t++)
        free(g[t]), free(p[t]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_team_runs_every_part_once),
        cmocka_unit_test(test_pat_surrogate_at_sent),
        cmocka_unit_test(test_step_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
