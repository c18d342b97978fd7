/* Digital layers: forward on known cases and finite-difference VJP checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "surrogate/layers.h"

static void fill(float *x, int n, unsigned seed)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(2.0 * gc_uniform(&seed) - 1.0);
}

/* ---- linear: p = [x (R*I), W (O*I), b (O)] ---- */
enum { LR = 3, LI = 5, LO = 4 };
static void lin_f(void *ctx, const float *p, float *y)
{
    (void)ctx;
    linear_forward(y, p, p + LR * LI, p + LR * LI + LO * LI, LR, LI, LO);
}
static void lin_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx;
    linear_backward(g, g + LR * LI, g + LR * LI + LO * LI, r, p, p + LR * LI, LR, LI, LO);
}

static void test_linear_known(void **state)
{
    (void)state;
    float x[2] = {1, 2}, W[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0.5f, -1, 0}, y[3];
    linear_forward(y, x, W, b, 1, 2, 3);
    assert_float_equal(y[0], 1.5f, 1e-6);
    assert_float_equal(y[1], 1.0f, 1e-6);
    assert_float_equal(y[2], 3.0f, 1e-6);
}

static void test_linear_grad(void **state)
{
    (void)state;
    float p[LR * LI + LO * LI + LO];
    fill(p, (int)(sizeof(p) / sizeof(p[0])), 7);
    double e = gradcheck("linear", lin_f, lin_v, NULL, p, (int)(sizeof(p) / sizeof(p[0])), LR * LO,
                         1e-2, 4, 11);
    assert_true(e < 1e-3);
}

/* ---- patches: 2 images of 4x6, k = 2 ---- */
static void pat_f(void *ctx, const float *p, float *y) { (void)ctx; patches_forward(y, p, 2, 4, 6, 2); }
static void pat_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx, (void)p;
    patches_backward(g, r, 2, 4, 6, 2);
}

static void test_patches_known(void **state)
{
    (void)state;
    float img[16], out[16];
    for (int i = 0; i < 16; i++)
        img[i] = (float)i; /* 4x4 */
    patches_forward(out, img, 1, 4, 4, 2);
    /* patch (0,1) = pixels 2,3,6,7 */
    assert_float_equal(out[4], 2, 0);
    assert_float_equal(out[5], 3, 0);
    assert_float_equal(out[6], 6, 0);
    assert_float_equal(out[7], 7, 0);
    /* patch (1,0) = 8,9,12,13 */
    assert_float_equal(out[8], 8, 0);
    assert_float_equal(out[11], 13, 0);
}

static void test_patches_grad(void **state)
{
    (void)state;
    float p[48];
    fill(p, 48, 3);
    assert_true(gradcheck("patches", pat_f, pat_v, NULL, p, 48, 48, 1e-2, 3, 5) < 1e-4);
}

/* ---- pad, concat ---- */
static void pad_f(void *ctx, const float *p, float *y) { (void)ctx; pad_forward(y, p, 3, 5, 8); }
static void pad_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx, (void)p;
    pad_backward(g, r, 3, 5, 8);
}
static void cat_f(void *ctx, const float *p, float *y) { (void)ctx; concat_forward(y, p, 4, 3, 2); }
static void cat_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx, (void)p;
    concat_backward(g, r, 4, 3, 2);
}

static void test_pad_concat(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, y[8];
    pad_forward(y, x, 2, 3, 4);
    assert_float_equal(y[2], 3, 0);
    assert_float_equal(y[3], 0, 0);
    assert_float_equal(y[4], 4, 0);
    assert_float_equal(y[7], 0, 0);
    float p[15], q[12];
    fill(p, 15, 9);
    fill(q, 12, 10);
    assert_true(gradcheck("pad", pad_f, pad_v, NULL, p, 15, 24, 1e-2, 3, 1) < 1e-4);
    assert_true(gradcheck("concat", cat_f, cat_v, NULL, q, 12, 12, 1e-2, 3, 2) < 1e-4);
}

/* ---- readout: p = [in (R*c), s] ---- */
enum { RR = 3, RC = 7, RM = 3 };
static void ro_f(void *ctx, const float *p, float *y)
{
    (void)ctx;
    readout_forward(y, p, p[RR * RC], RR, RC, RM);
}
static void ro_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx;
    readout_backward(g, g + RR * RC, r, p, p[RR * RC], RR, RC, RM);
}

static void test_readout(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, y[2];
    readout_forward(y, x, 2.0f, 1, 4, 2);
    assert_float_equal(y[0], 6, 0);
    assert_float_equal(y[1], 8, 0);
    float p[RR * RC + 1];
    fill(p, RR * RC + 1, 4);
    assert_true(gradcheck("readout", ro_f, ro_v, NULL, p, RR * RC + 1, RR * RM, 1e-2, 4, 8) < 1e-3);
}

static void th_f(void *ctx, const float *p, float *y) { (void)ctx; tanh_forward(y, p, 10); }
static void th_v(void *ctx, const float *p, const float *r, float *g)
{
    (void)ctx;
    float y[10];
    tanh_forward(y, p, 10);
    tanh_backward(g, r, y, 10);
}

static void test_tanh(void **state)
{
    (void)state;
    float p[10];
    fill(p, 10, 12);
    assert_true(gradcheck("tanh", th_f, th_v, NULL, p, 10, 10, 1e-2, 3, 3) < 1e-3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_known), cmocka_unit_test(test_linear_grad),
        cmocka_unit_test(test_patches_known), cmocka_unit_test(test_patches_grad),
        cmocka_unit_test(test_pad_concat), cmocka_unit_test(test_readout),
        cmocka_unit_test(test_tanh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
