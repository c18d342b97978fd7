/* The safety boundary against a recording driver, the registry and options. */
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
#include "devices/registry.h"

/* ---- a recording driver: 2 inputs, 2 outputs, block "w" [3] in [-1, 1],
 * max_step 0.25 ---- */
typedef struct {
    long calls, ramp_calls, violations;
    float last[3];
    int have_last;
    float max_seen_step;
    int fail_next;     /* make the next N runs return NaN */
} rec_t;
static rec_t rec;

static int rec_open(void **st, const struct patctl_option *o, int n, struct patctl_device_desc *d,
                    char *err, size_t errlen)
{
    (void)o, (void)n, (void)err, (void)errlen;
    memset(d, 0, sizeof(*d));
    snprintf(d->model, sizeof(d->model), "recorder");
    d->n_in = d->n_out = 2;
    d->in_lo = -2, d->in_hi = 2;
    d->n_blocks = 1;
    d->blocks[0] = (struct patctl_param_block){.name = "w", .rows = 3, .cols = 1, .lo = -1, .hi = 1,
                                               .max_step = 0.25f, .safe = 0};
    *st = &rec;
    return 0;
}
static int rec_run(void *st, const struct patctl_query *q, float *y)
{
    rec_t *r = st;
    r->calls++;
    if (q->batch == 0)
        r->ramp_calls++;
    for (int i = 0; i < 3; i++) {
        float v = q->theta[i];
        if (!isfinite(v) || v < -1 || v > 1)
            r->violations++;
        if (r->have_last && fabsf(v - r->last[i]) > r->max_seen_step)
            r->max_seen_step = fabsf(v - r->last[i]);
        r->last[i] = v;
    }
    r->have_last = 1;
    for (int i = 0; i < 2 * q->batch; i++) {
        if (!isfinite(q->x[i]) || q->x[i] < -2 || q->x[i] > 2)
            r->violations++;
        y[i] = q->x[i] * 2;
    }
    if (r->fail_next > 0 && q->batch > 0) {
        r->fail_next--;
        y[0] = NAN;
    }
    return 0;
}
static int rec_safe(void *st)
{
    rec_t *r = st;
    memset(r->last, 0, sizeof(r->last));
    return 0;
}
static void rec_close(void *st) { (void)st; }

static const struct patctl_driver rec_drv = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION, .name = "recorder", .summary = "test",
    .open = rec_open, .run = rec_run, .make_safe = rec_safe, .close = rec_close,
};

static device *open_rec(void)
{
    memset(&rec, 0, sizeof(rec));
    device *d = NULL;
    char err[256];
    assert_int_equal(device_open_driver(&d, "rec", &rec_drv, NULL, 0, 1, err, sizeof(err)), 0);
    return d;
}

static void test_nan_never_reaches_driver(void **state)
{
    (void)state;
    device *d = open_rec();
    float th[3] = {0.1f, NAN, 0}, x[2] = {0, 0}, y[2];
    assert_int_equal(device_run(d, th, x, 1, y), PATCTL_ERR_NONFINITE);
    th[1] = INFINITY;
    assert_int_equal(device_run(d, th, x, 1, y), PATCTL_ERR_NONFINITE);
    th[1] = 0;
    x[1] = NAN;
    assert_int_equal(device_run(d, th, x, 1, y), PATCTL_ERR_NONFINITE);
    assert_int_equal(rec.calls, 0);
    assert_int_equal(d->st.rejected, 3);
    device_close(&d);
}

static void test_clamp_and_reject(void **state)
{
    (void)state;
    device *d = open_rec();
    float th[3] = {0.2f, -0.2f, 0.25f}, x[4] = {5, -1, 0, 1}, y[4];
    assert_int_equal(device_run(d, th, x, 2, y), 0);
    assert_float_equal(d->sent_x[0], 2.0f, 0); /* input clamped */
    assert_float_equal(y[0], 4.0f, 0);
    assert_int_equal(d->st.clamped, 1);
    d->limits = LIMIT_REJECT;
    long before = rec.calls;
    assert_int_equal(device_run(d, th, x, 2, y), PATCTL_ERR_LIMIT);
    assert_int_equal(rec.calls, before);
    assert_int_equal(rec.violations, 0);
    device_close(&d);
}

static void test_ramp_and_refuse(void **state)
{
    (void)state;
    device *d = open_rec();
    float th[3] = {1.0f, -1.0f, 0.5f}, x[2] = {0, 0}, y[2];
    /* from the safe setting 0: largest step 1.0 = 4 x max_step -> 3 ramp steps + the batch */
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    assert_int_equal(rec.ramp_calls, 3);
    assert_int_equal(d->st.ramp_steps, 3);
    printf("  largest step seen by the driver: %g\n", rec.max_seen_step);
    assert_true(rec.max_seen_step <= 0.25f + 1e-6f);
    assert_float_equal(rec.last[0], 1.0f, 0);
    d->steps = STEP_REFUSE;
    float back[3] = {0, 0, 0};
    long before = rec.calls;
    assert_int_equal(device_run(d, back, x, 1, y), PATCTL_ERR_LIMIT);
    assert_int_equal(rec.calls, before);
    /* a small step passes */
    float small[3] = {0.8f, -0.8f, 0.5f};
    assert_int_equal(device_run(d, small, x, 1, y), 0);
    assert_int_equal(rec.violations, 0);
    device_close(&d);
}

static void test_bad_output_is_retried(void **state)
{
    (void)state;
    device *d = open_rec();
    float th[3] = {0, 0, 0}, x[2] = {0.5f, 0.5f}, y[2];
    rec.fail_next = 1; /* one NaN, then good */
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    assert_int_equal(d->st.faults, 1);
    assert_int_equal(d->st.retries, 1);
    assert_float_equal(y[0], 1.0f, 0);
    rec.fail_next = 10; /* never good: error after 1 + retries attempts */
    long before = rec.calls;
    assert_int_equal(device_run(d, th, x, 1, y), PATCTL_ERR_NONFINITE);
    assert_int_equal(rec.calls - before, 3);
    device_close(&d);
}

static void test_project(void **state)
{
    (void)state;
    device *d = open_rec();
    float th[3] = {3.0f, NAN, -7.0f};
    device_project(d, th);
    assert_float_equal(th[0], 1.0f, 0);
    assert_float_equal(th[1], 0.0f, 0);
    assert_float_equal(th[2], -1.0f, 0);
    device_close(&d);
}

static void test_registry_and_options(void **state)
{
    (void)state;
    char err[512];
    device *d = NULL;
    assert_int_equal(device_open(&d, "x", "no-such-driver", NULL, 0, 1, err, sizeof(err)),
                     PATCTL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no-such-driver"));
    assert_non_null(strstr(err, "oscillators"));
    assert_int_equal(device_open(&d, "x", "/nonexistent/plugin.so", NULL, 0, 1, err, sizeof(err)),
                     PATCTL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "/nonexistent/plugin.so"));
    struct patctl_option *o;
    int n = options_parse("n=8,frobnicate=1", &o);
    assert_int_equal(n, 2);
    assert_int_equal(device_open(&d, "x", "oscillators", o, n, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "frobnicate"));
    free(o);
    n = options_parse("n=eight", &o);
    assert_int_equal(device_open(&d, "x", "oscillators", o, n, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "option n"));
    free(o);
    assert_true(options_parse("novalue", &o) < 0);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_never_reaches_driver),
        cmocka_unit_test(test_clamp_and_reject),
        cmocka_unit_test(test_ramp_and_refuse),
        cmocka_unit_test(test_bad_output_is_retried),
        cmocka_unit_test(test_project),
        cmocka_unit_test(test_registry_and_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
