/* Plugins: the out-of-tree example (examples/plugin/) loads from its own .so
 * through device_open("path.so"), runs behind the safety boundary and its VJP
 * passes a finite-difference check; broken plugins (ABI version, missing
 * entry symbol, missing run) are refused with clear errors; and a plugin
 * device is made safe on shutdown, on Ctrl-C and on a device failure during
 * training (controller/train.c abort paths). */
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/train.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/registry.h"
#include "gradcheck.h"

static device *open_plugin(const char *path, const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "plug", path, o, n, 5, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    return d;
}

typedef struct {
    device *d;
    int B;
} pctx;
static void f_p(void *c, const float *p, float *y)
{
    pctx *k = c;
    assert_int_equal(device_run(k->d, p + k->B * k->d->desc.n_in, p, k->B, y), 0);
}
static void v_p(void *c, const float *p, const float *r, float *g)
{
    pctx *k = c;
    float y[64];
    f_p(c, p, y);
    assert_int_equal(device_vjp(k->d, r, g, g + k->B * k->d->desc.n_in), 0);
}

static void test_example_plugin(void **state)
{
    (void)state;
    device *d = open_plugin(EXAMPLE_PLUGIN, "n=4,visibility=0.8");
    printf("  loaded %s: %s\n", EXAMPLE_PLUGIN, d->desc.about);
    assert_non_null(d->dl);
    assert_string_equal(d->desc.model, "mzi-example");
    assert_int_equal(d->n_theta, 4 + 16);
    /* its VJP against finite differences, through the boundary */
    pctx c = {.d = d, .B = 2};
    float p[2 * 4 + 20];
    unsigned s = 3;
    for (int i = 0; i < 28; i++)
        p[i] = (float)(gc_uniform(&s) - 0.5);
    double e = gradcheck("plugin mzi", f_p, v_p, &c, p, 28, 8, 1e-3, 4, 9);
    assert_true(e < 2e-3);
    /* the boundary protects a plugin like any driver */
    p[8] = NAN;
    float y[8];
    assert_int_equal(device_run(d, p + 8, p, 2, y), PATCTL_ERR_NONFINITE);
    p[8] = 6.0f; /* phi 0.x -> 6: ramped in steps of 0.5 */
    uint64_t r0 = d->st.ramp_steps;
    assert_int_equal(device_run(d, p + 8, p, 2, y), 0);
    assert_true(d->st.ramp_steps - r0 >= 11);
    device_close(&d);
    /* unknown options name the key */
    struct patctl_option *o = NULL;
    int n = options_parse("colour=red", &o);
    char err[512];
    assert_int_equal(device_open(&d, "plug", EXAMPLE_PLUGIN, o, n, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_non_null(strstr(err, "colour"));
    free(o);
}

static void expect_refused(const char *path, int code, const char *needle)
{
    const struct patctl_driver *drv = NULL;
    void *h = NULL;
    char err[512] = "";
    assert_int_equal(registry_load_plugin(path, &drv, &h, err, sizeof(err)), code);
    printf("  %s\n", err);
    assert_null(drv);
    assert_null(h);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, needle));
    device *d = NULL;
    assert_int_equal(device_open(&d, "x", path, NULL, 0, 1, err, sizeof(err)), code);
    assert_null(d);
}

static void test_broken_plugins(void **state)
{
    (void)state;
    expect_refused(BAD_ABI_PLUGIN, PATCTL_ERR_ABI, "ABI version 999");
    expect_refused(NO_ENTRY_PLUGIN, PATCTL_ERR_ABI, "missing symbol patctl_driver_entry");
    expect_refused(NO_RUN_PLUGIN, PATCTL_ERR_ABI, "lacks required member 'run'");
    expect_refused("/nonexistent/libnothing.so", PATCTL_ERR_NOT_FOUND, "cannot load");
}

/* ---- make-safe on shutdown and abort, through train_run ---- */
typedef void (*counts_fn)(long *, long *, long *, long *);

static void counts(counts_fn f, long *c)
{
    f(&c[0], &c[1], &c[2], &c[3]);
}

static int train_with_recorder(const char *opts, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    run_config c;
    config_quickstart(&c);
    c.n_devices = 1;
    c.devices[0] = (device_spec){.name = "rec", .limits = "clamp", .steps = "ramp"};
    snprintf(c.devices[0].driver, sizeof(c.devices[0].driver), "%s", RECORDING_PLUGIN);
    snprintf(c.devices[0].options, sizeof(c.devices[0].options), "%s", opts);
    layer_spec L[] = {{LAYER_LINEAR, 8, ""}, {LAYER_PHYSICAL, 0, "rec"}, {LAYER_READOUT, 10, ""}};
    c.n_layers = 3;
    memcpy(c.layers, L, sizeof(L));
    c.mode = MODE_IDEAL; /* a plugin brings no surrogate: train on its exact VJP */
    c.epochs = 2;
    c.eval_batch = 100;
    c.lr = 1e-2;
    dataset tr, te;
    assert_int_equal(dataset_synthetic(&tr, 320, 14, 11), 0);
    assert_int_equal(dataset_synthetic(&te, 200, 14, 12), 0);
    train_options o = {.quiet = 1, .stop = stop};
    static train_result r;
    int rc = train_run(&c, &tr, &te, &o, &r, err, errlen);
    if (rc == 0)
        printf("  ideal training through the plugin: test accuracy %.3f\n", r.test_accuracy);
    else
        printf("  train_run: %s\n", err);
    if (rc == 0)
        assert_true(r.test_accuracy > 0.3); /* chance 0.1 */
    dataset_free(&tr);
    dataset_free(&te);
    return rc;
}

static void test_make_safe_on_abort(void **state)
{
    (void)state;
    /* keep our own reference so the counters survive the run's dlclose */
    void *h = dlopen(RECORDING_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    void *sym = dlsym(h, "patctl_recording_counts");
    assert_non_null(sym);
    counts_fn f;
    memcpy(&f, &sym, sizeof(f));
    long a[4], b[4];
    char err[512];

    /* normal run: safe after open, and before close */
    counts(f, a);
    assert_int_equal(train_with_recorder("", NULL, err, sizeof(err)), 0);
    counts(f, b);
    printf("  normal run: %ld open, %ld make-safe, %ld close\n", b[0] - a[0], b[1] - a[1], b[2] - a[2]);
    assert_int_equal(b[0] - a[0], 1);
    assert_int_equal(b[1] - a[1], 2);
    assert_int_equal(b[2] - a[2], 1);

    /* Ctrl-C: one more make-safe on the abort path */
    volatile sig_atomic_t stop = 1;
    counts(f, a);
    assert_int_equal(train_with_recorder("", &stop, err, sizeof(err)), PATCTL_ERR_INTERRUPTED);
    counts(f, b);
    printf("  interrupted run: %ld make-safe\n", b[1] - a[1]);
    assert_int_equal(b[1] - a[1], 3);
    assert_int_equal(b[2] - a[2], 1);

    /* the device dies mid-training: the failure path makes it safe too */
    counts(f, a);
    int rc = train_with_recorder("fail_after=5", NULL, err, sizeof(err));
    counts(f, b);
    printf("  device failure (rc %d): %ld make-safe\n", rc, b[1] - a[1]);
    assert_int_equal(rc, PATCTL_ERR_DEVICE);
    assert_int_equal(b[1] - a[1], 3);
    assert_int_equal(b[2] - a[2], 1);
    dlclose(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_plugin),
        cmocka_unit_test(test_broken_plugins),
        cmocka_unit_test(test_make_safe_on_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
