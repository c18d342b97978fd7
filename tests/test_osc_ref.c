/* The optimised oscillator forward/VJP (surrogate/oscillator.c) against the
 * straightforward reference kept in tests/osc_ref.c, and the vectorised
 * sin/cos (surrogate/trig.c) against double precision.
 *
 *  - exact_trig = 1: the same arithmetic operation by operation, so y, gx,
 *    gC, ge and the calibration gradient must be bitwise equal;
 *  - exact_trig = 0 (the default): only the sin/cos evaluations differ
 *    (each below 1e-7 absolute); after 20 RK4 stages and their VJP the
 *    results must agree to 2e-6 relative to the largest magnitude (measured:
 *    about 2e-7, so about 1 float ulp per stage does not accumulate). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "osc_ref.h"
#include "surrogate/oscillator.h"
#include "surrogate/team.h"
#include "surrogate/trig.h"

static void fill(float *v, long n, float scale, unsigned seed)
{
    for (long i = 0; i < n; i++)
        v[i] = scale * (float)(2.0 * gc_uniform(&seed) - 1.0);
}

typedef struct {
    int n, B, cap;        /* cap > B exercises the per-stage gradient GEMMs */
    int gap;              /* truth constants + Q_noise + input noise */
    float cscale;         /* coupling magnitude */
} ref_case;

/* Max |a - b| / max(1, max |b|) over len values. */
static double rel_diff(const float *a, const float *b, long len)
{
    double mx = 1.0, d = 0.0;
    for (long i = 0; i < len; i++) {
        if (fabs(b[i]) > mx)
            mx = fabs(b[i]);
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) /* also catches NaN */
            d = e;
    }
    return d / mx;
}

/* Runs both implementations on one case, with libm sin/cos (exact = 1) or
 * the vectorised ones; tol = 0 compares bitwise, otherwise to tol relative.
 * Returns nonzero when y differs at all. */
static int compare(const ref_case *c, int exact, double tol)
{
    int n = c->n, B = c->B;
    long nn = (long)n * n, len = (long)B * n;
    float *C = malloc(sizeof(float) * (size_t)nn), *e = malloc(sizeof(float) * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)len), *noise = malloc(sizeof(float) * (size_t)len);
    float *gy = malloc(sizeof(float) * (size_t)len), *qn = malloc(sizeof(float) * (size_t)nn);
    float *y[2], *gx[2], *gC[2], *ge[2];
    for (int k = 0; k < 2; k++) {
        y[k] = malloc(sizeof(float) * (size_t)len);
        gx[k] = malloc(sizeof(float) * (size_t)len);
        gC[k] = malloc(sizeof(float) * (size_t)nn);
        ge[k] = malloc(sizeof(float) * (size_t)n);
    }
    fill(C, nn, c->cscale, 1u + (unsigned)n);
    fill(e, n, 0.5f, 2u + (unsigned)n);
    fill(x, len, 1.5f, 3u + (unsigned)n);
    fill(noise, len, 0.02f, 4u + (unsigned)n);
    fill(gy, len, 1.0f, 5u + (unsigned)n);
    osc_model m = osc_model_nominal(n);
    m.exact_trig = exact;
    if (c->gap) {
        float *raw = malloc(sizeof(float) * (size_t)nn);
        fill(raw, nn, 0.2f, 6u + (unsigned)n);
        osc_laplacian_sym(qn, raw, n);
        free(raw);
        m.q_noise = qn;
        m.k = (osc_consts){0.1f, 0.8f, 1.2f, 0.05f, 0.9f, -0.03f};
    }
    const float *nz = c->gap ? noise : NULL;

    osc_tape *t = osc_tape_alloc(n, c->cap, m.steps);
    osc_ref_tape *rt = osc_ref_tape_alloc(n, c->cap, m.steps);
    assert_non_null(t);
    assert_non_null(rt);
    osc_consts gk[2];
    memset(gk, 0, sizeof(gk));
    /* gradients accumulate: start both from the same non-zero values */
    for (int k = 0; k < 2; k++) {
        fill(gx[k], len, 0.1f, 7);
        fill(gC[k], nn, 0.1f, 8);
        fill(ge[k], n, 0.1f, 9);
        gk[k] = (osc_consts){0.01f, 0.02f, 0.03f, 0.04f, 0.05f, 0.06f};
    }
    assert_int_equal(osc_forward(&m, C, e, x, nz, B, y[0], t), 0);
    assert_int_equal(osc_backward(&m, t, gy, gx[0], gC[0], ge[0], &gk[0]), 0);
    assert_int_equal(osc_ref_forward(&m, C, e, x, nz, B, y[1], rt), 0);
    assert_int_equal(osc_ref_backward(&m, rt, gy, gx[1], gC[1], ge[1], &gk[1]), 0);

    double dy = rel_diff(y[0], y[1], len), dx = rel_diff(gx[0], gx[1], len);
    double dC = rel_diff(gC[0], gC[1], nn), de = rel_diff(ge[0], ge[1], n);
    double dk = rel_diff((float *)&gk[0], (float *)&gk[1], OSC_N_CONSTS);
    printf("  n=%d B=%d cap=%d gap=%d %s, %d thread(s): y %.2g  gx %.2g  gC %.2g  ge %.2g  gk %.2g\n",
           n, B, c->cap, c->gap, exact ? "exact trig" : "vector trig", team_threads(), dy, dx, dC,
           de, dk);
    if (tol == 0.0 && osc_stage_blocks(B, n) > 1)
        tol = 2e-6; /* several OpenBLAS calls per stage: their rounding */
    if (tol == 0.0) {
        assert_memory_equal(y[0], y[1], sizeof(float) * (size_t)len);
        assert_memory_equal(gx[0], gx[1], sizeof(float) * (size_t)len);
        assert_memory_equal(gC[0], gC[1], sizeof(float) * (size_t)nn);
        assert_memory_equal(ge[0], ge[1], sizeof(float) * (size_t)n);
        assert_memory_equal(&gk[0], &gk[1], sizeof(osc_consts));
    } else {
        assert_true(dy < tol && dx < tol && dC < tol && de < tol && dk < tol);
    }
    int differs = memcmp(y[0], y[1], sizeof(float) * (size_t)len) != 0;

    osc_tape_free(t);
    osc_ref_tape_free(rt);
    for (int k = 0; k < 2; k++) {
        free(y[k]);
        free(gx[k]);
        free(gC[k]);
        free(ge[k]);
    }
    free(C), free(e), free(x), free(noise), free(gy), free(qn);
    return differs;
}

static const ref_case cases[] = {
    {6, 3, 3, 0, 0.5f},
    {6, 3, 5, 1, 0.5f},       /* B < cap, truth gap */
    {64, 128, 128, 1, 0.125f},  /* the quickstart's shared layer */
    {266, 32, 32, 0, 0.06f},  /* the quickstart's second layer (several tiles/blocks) */
    {300, 7, 9, 1, 0.06f},    /* > 256 columns, odd sizes, B < cap */
};

/* one thread, libm sin/cos: bitwise equal where a stage is one OpenBLAS call
 * (as in the reference), otherwise equal to OpenBLAS's rounding */
static void test_exact_trig_bitwise(void **state)
{
    (void)state;
    team_resize(1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        compare(&cases[i], 1, 0.0);
    team_resize(0);
}

/* y, gx, gC, ge of one forward + VJP (vector trig) into out (caller frees) */
static float *run_once(int n, int B, int nested);

typedef struct {
    int n, B;
    float *out;
} nest_job;

static void nest_part(void *arg, int p, int np)
{
    (void)np;
    nest_job *j = arg;
    if (p == 0)
        j->out = run_once(j->n, j->B, 0);
}

static float *run_once(int n, int B, int nested)
{
    if (nested) { /* the same, from inside a parallel region (PAT overlap) */
        nest_job j = {n, B, NULL};
        team_run(nest_part, &j, 2);
        return j.out;
    }
    long nn = (long)n * n, len = (long)B * n;
    float *C = malloc(sizeof(float) * (size_t)nn), *e = malloc(sizeof(float) * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)len), *gy = malloc(sizeof(float) * (size_t)len);
    float *out = calloc((size_t)(2 * len + nn + n), sizeof(float));
    fill(C, nn, 0.1f, 1), fill(e, n, 0.5f, 2), fill(x, len, 1.5f, 3), fill(gy, len, 1.0f, 4);
    osc_model m = osc_model_nominal(n);
    osc_tape *t = osc_tape_alloc(n, B, m.steps);
    assert_int_equal(osc_forward(&m, C, e, x, NULL, B, out, t), 0);
    assert_int_equal(osc_backward(&m, t, gy, out + len, out + 2 * len, out + 2 * len + nn, NULL), 0);
    osc_tape_free(t);
    free(C), free(e), free(x), free(gy);
    return out;
}

/* Several blocks per stage: the same bits with 1, 2 or 3 threads, and from
 * inside another parallel region -- the blocks are fixed by the shape. */
static void test_same_bits_any_threads(void **state)
{
    (void)state;
    const int shapes[][2] = {{266, 32}, {100, 512}, {1610, 8}};
    for (int s = 0; s < 3; s++) {
        int n = shapes[s][0], B = shapes[s][1];
        size_t bytes = sizeof(float) * (size_t)(2L * B * n + (long)n * n + n);
        team_resize(1);
        float *ref = run_once(n, B, 0);
        printf("  n=%d B=%d: %d blocks per stage\n", n, B, osc_stage_blocks(B, n));
        assert_true(osc_stage_blocks(B, n) > 1);
        for (int t = 1; t <= 3; t++) {
            team_resize(t);
            for (int nested = 0; nested <= 1; nested++) {
                float *got = run_once(n, B, nested);
                assert_memory_equal(got, ref, bytes);
                free(got);
            }
        }
        free(ref);
    }
    team_resize(0);
}

static void test_vector_trig_close(void **state)
{
    (void)state;
    int differs = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        differs |= compare(&cases[i], 0, 2e-6);
    assert_true(differs); /* the vector path is not secretly the libm path */
}

/* L(sym(A)) and the coupling M: bitwise, for every team size (row blocks,
 * double sums in the reference's order) */
static void test_laplacian_bitwise(void **state)
{
    (void)state;
    enum { NL = 700 };
    float *A = malloc(sizeof(float) * NL * NL), *a = malloc(sizeof(float) * NL * NL),
          *b = malloc(sizeof(float) * NL * NL), *qn = malloc(sizeof(float) * NL * NL);
    fill(A, (long)NL * NL, 1.0f, 77);
    fill(qn, (long)NL * NL, 0.1f, 78);
    for (int t = 1; t <= 3; t++) {
        team_resize(t);
        for (int n = 5; n <= NL; n += NL - 5) {
            osc_laplacian_sym(a, A, n);
            osc_ref_laplacian_sym(b, A, n);
            assert_memory_equal(a, b, sizeof(float) * (size_t)n * n);
            osc_model m = osc_model_nominal(n);
            m.k.coupling_gain = 0.7f;
            m.q_noise = qn;
            osc_coupling(a, &m, A);
            osc_ref_coupling(b, &m, A);
            assert_memory_equal(a, b, sizeof(float) * (size_t)n * n);
        }
    }
    team_resize(0);
    free(A), free(a), free(b), free(qn);
}

/* sin/cos against double precision over several ranges */
static void test_trig_accuracy(void **state)
{
    (void)state;
    enum { NT = 200000 };
    float *x = malloc(sizeof(float) * NT), *s = malloc(sizeof(float) * NT),
          *c = malloc(sizeof(float) * NT);
    const float range[] = {1.0f, 10.0f, 100.0f, 8000.0f, 1e6f};
    const double bound = 1e-7;
    unsigned seed = 11;
    printf("  vector width %d lanes\n", trig_vector_width());
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < NT; i++)
            x[i] = range[r] * (float)(2.0 * gc_uniform(&seed) - 1.0);
        if (r == 4)
            for (int i = 0; i < NT; i += 2)
                x[i] = 9000.0f + (float)i; /* beyond the reduction's range */
        float w = 1.1f;
        trig_sin_scaled(s, x, w, NT - 3); /* odd length: tail lanes */
        trig_cos_scaled(c, x, w, NT - 3);
        double es = 0, ec = 0;
        for (int i = 0; i < NT - 3; i++) {
            double a = (double)(w * x[i]);
            es = fmax(es, fabs(s[i] - sin(a)));
            ec = fmax(ec, fabs(c[i] - cos(a)));
        }
        printf("  |x| <= %g: max error sin %.3g, cos %.3g\n", range[r], es, ec);
        assert_true(es < bound && ec < bound);
    }
    float sp[3] = {NAN, INFINITY, -INFINITY}, o[3];
    trig_sin_scaled(o, sp, 1.0f, 3);
    assert_true(isnan(o[0]) && isnan(o[1]) && isnan(o[2]));
    trig_cos_scaled(o, sp, 1.0f, 3);
    assert_true(isnan(o[0]) && isnan(o[1]) && isnan(o[2]));
    free(x), free(s), free(c);
}

/* four and eight lanes give the same bits (no FMA contraction, same ops) */
static void test_trig_widths_agree(void **state)
{
    (void)state;
    enum { NW = 4099 };
    float x[NW], a[NW], b[NW];
    unsigned seed = 5;
    for (int i = 0; i < NW; i++)
        x[i] = 50.0f * (float)(2.0 * gc_uniform(&seed) - 1.0);
    if (trig_set_width(8) != 8) {
        trig_set_width(0);
        skip();
    }
    trig_sin_scaled(a, x, 0.9f, NW);
    assert_int_equal(trig_set_width(4), 4);
    trig_sin_scaled(b, x, 0.9f, NW);
    assert_memory_equal(a, b, sizeof(a));
    trig_cos_scaled(b, x, 0.9f, NW);
    trig_set_width(8);
    trig_cos_scaled(a, x, 0.9f, NW);
    assert_memory_equal(a, b, sizeof(a));
    trig_set_width(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_trig_bitwise),
        cmocka_unit_test(test_same_bits_any_threads),
        cmocka_unit_test(test_vector_trig_close),
        cmocka_unit_test(test_laplacian_bitwise),
        cmocka_unit_test(test_trig_accuracy),
        cmocka_unit_test(test_trig_widths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
