/* IDX reading (through zlib), pooling, and clear errors on bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "controller/data.h"
#include "controller/loss.h"
#include "surrogate/series.h"
#include <math.h>
#include <gsl/gsl_rng.h>
#include "devices/sim_rng.h"
#include "patctl/error.h"

static char dir[256];

static void write_gz(const char *name, const unsigned char *bytes, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, bytes, (unsigned)n), (int)n);
    gzclose(f);
}

/* images: count x 4 x 4, pixel (s, i, j) = 16*s + 4*i + j (times 4) */
static void write_set(const char *prefix, int count, int labels, int truncate)
{
    size_t n = 16 + (size_t)count * 16;
    unsigned char *b = calloc(n, 1);
    b[2] = 0x08, b[3] = 3;
    b[7] = (unsigned char)count, b[11] = 4, b[15] = 4;
    for (int s = 0; s < count; s++)
        for (int p = 0; p < 16; p++)
            b[16 + s * 16 + p] = (unsigned char)(4 * (p + s));
    char name[128];
    snprintf(name, sizeof(name), "%s-images-idx3-ubyte.gz", prefix);
    write_gz(name, b, n - (size_t)truncate);
    free(b);
    unsigned char l[8 + 16] = {0, 0, 0x08, 1, 0, 0, 0, (unsigned char)labels};
    for (int s = 0; s < labels; s++)
        l[8 + s] = (unsigned char)(s % 10);
    snprintf(name, sizeof(name), "%s-labels-idx1-ubyte.gz", prefix);
    write_gz(name, l, 8 + (size_t)labels);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/patctl-test-data-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_read_and_pool(void **state)
{
    (void)state;
    write_set("good", 3, 3, 0);
    dataset d;
    char err[512];
    assert_int_equal(dataset_load_idx(&d, dir, "good", 1, 0, err, sizeof(err)), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.h, 4);
    assert_float_equal(d.x[16 + 5], 4.0f * 6 / 255.0f, 1e-6);
    assert_int_equal(d.y[2], 2);
    dataset_free(&d);
    /* 2x2 average pooling, limit 2 */
    assert_int_equal(dataset_load_idx(&d, dir, "good", 2, 2, err, sizeof(err)), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.h, 2);
    /* sample 0, pooled pixel (0,0) = mean of 0,1,4,5 (x4) = 10/255 */
    assert_float_equal(d.x[0], 10.0f / 255.0f, 1e-6);
    dataset_free(&d);
}

static void test_errors_name_the_file(void **state)
{
    (void)state;
    dataset d;
    char err[512];
    assert_int_equal(dataset_load_idx(&d, dir, "missing", 1, 0, err, sizeof(err)), PATCTL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "missing-images-idx3-ubyte.gz"));

    write_set("trunc", 3, 3, 10);
    assert_int_equal(dataset_load_idx(&d, dir, "trunc", 1, 0, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "trunc-images-idx3-ubyte.gz"));
    assert_non_null(strstr(err, "truncated"));

    write_set("mismatch", 3, 2, 0);
    assert_int_equal(dataset_load_idx(&d, dir, "mismatch", 1, 0, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "labels"));

    unsigned char junk[32] = "this is not an idx file at all";
    write_gz("junk-images-idx3-ubyte.gz", junk, sizeof(junk));
    write_gz("junk-labels-idx1-ubyte.gz", junk, sizeof(junk));
    assert_int_equal(dataset_load_idx(&d, dir, "junk", 1, 0, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "junk-images-idx3-ubyte.gz"));
    assert_non_null(strstr(err, "not an IDX"));

    write_set("pool3", 1, 1, 0);
    assert_int_equal(dataset_load_idx(&d, dir, "pool3", 3, 0, err, sizeof(err)), PATCTL_ERR_ARG);
    printf("  last error: %s\n", err);
}

static void test_synthetic(void **state)
{
    (void)state;
    dataset a, b;
    assert_int_equal(dataset_synthetic(&a, 200, 14, 5), 0);
    assert_int_equal(dataset_synthetic(&b, 200, 14, 5), 0);
    assert_int_equal(a.n, 200);
    assert_memory_equal(a.x, b.x, sizeof(float) * 200 * 196);
    int counts[10] = {0};
    for (int i = 0; i < 200; i++) {
        counts[a.y[i]]++;
        for (int p = 0; p < 196; p++)
            assert_true(a.x[i * 196 + p] >= 0 && a.x[i * 196 + p] <= 1);
    }
    for (int c = 0; c < 10; c++)
        assert_true(counts[c] > 5);
    dataset_free(&a);
    dataset_free(&b);
}

static void test_fashion_mnist_if_installed(void **state)
{
    (void)state;
    const char *d0 = "/usr/share/datasets/fashion-mnist";
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        skip();
    }
    dataset d;
    char err[512];
    assert_int_equal(dataset_load_idx(&d, d0, "t10k", 2, 0, err, sizeof(err)), 0);
    assert_int_equal(d.n, 10000);
    assert_int_equal(d.h, 14);
    assert_int_equal(d.w, 14);
    double mean = 0;
    for (long i = 0; i < d.n * 196; i++)
        mean += d.x[i];
    mean /= (double)(d.n * 196);
    printf("  fashion-mnist t10k pooled mean pixel %.4f\n", mean);
    assert_true(mean > 0.2 && mean < 0.4); /* the known mean is about 0.286 */
    dataset_free(&d);
}

/* The regression tasks: windows of the series, targets aligned, train and
 * test parts different, everything reproducible from the seed. */
static void test_series_tasks(void **state)
{
    (void)state;
    char err[256];
    dataset a, b, t;
    /* NARMA-10 against the generator itself: window j = 4u - 1 of the inputs
     * ending at step first + j, target y there */
    assert_int_equal(dataset_series(&a, "narma10", 50, 12, 1, 7, 0, err, sizeof(err)), 0);
    assert_int_equal(a.h, 1);
    assert_int_equal(a.w, 12);
    assert_int_equal(a.n_targets, 1);
    assert_int_equal(a.classes, 0);
    long len = 11 + 50 + 2;
    double *u = malloc(sizeof(double) * (size_t)len), *y = malloc(sizeof(double) * (size_t)len);
    gsl_rng *r = sim_rng(7, 0, 0x5E41u);
    assert_int_equal(series_narma10(r, len, 200, u, y), 0);
    gsl_rng_free(r);
    for (int j = 0; j < 50; j += 7) {
        for (int k = 0; k < 12; k++)
            assert_float_equal(a.x[j * 12 + k], (float)(4 * u[j + k] - 1), 1e-6);
        assert_float_equal(a.t[j], (float)y[11 + j], 1e-7);
    }
    free(u), free(y);
    assert_true(a.t_var > 0);
    /* the same seed gives the same set, the test part another sequence */
    assert_int_equal(dataset_series(&b, "narma10", 50, 12, 1, 7, 0, err, sizeof(err)), 0);
    assert_memory_equal(a.x, b.x, sizeof(float) * 50 * 12);
    assert_int_equal(dataset_series(&t, "narma10", 50, 12, 1, 7, 1, err, sizeof(err)), 0);
    assert_true(memcmp(a.x, t.x, sizeof(float) * 50 * 12) != 0);
    dataset_free(&a), dataset_free(&b), dataset_free(&t);
    /* Mackey-Glass: the target is `horizon` samples after the window's end:
     * with window 1 the inputs are the series itself, (x - 0.85) / 0.5 */
    assert_int_equal(dataset_series(&a, "mackey-glass", 200, 1, 5, 0, 0, err, sizeof(err)), 0);
    for (int j = 0; j + 5 < 200; j++)
        assert_float_equal(a.t[j], a.x[j + 5] * 0.5f + 0.85f, 1e-5);
    assert_int_equal(dataset_series(&t, "mackey-glass", 200, 1, 5, 0, 1, err, sizeof(err)), 0);
    assert_true(memcmp(a.x, t.x, sizeof(float) * 200) != 0);
    /* NRMSE: the mean predicts 1.0, the truth 0 */
    float *z = malloc(sizeof(float) * 200);
    double mean = 0;
    for (int j = 0; j < 200; j++)
        mean += a.t[j] / 200.0;
    long hits = 0;
    double sse = 0;
    for (int j = 0; j < 200; j++)
        z[j] = (float)mean;
    score_batch(z, a.y, a.t, 200, 1, &hits, &sse, NULL);
    assert_float_equal(score_final(200, 1, hits, sse, a.t_var, 1), 1.0, 1e-4);
    sse = 0;
    score_batch(a.t, a.y, a.t, 200, 1, &hits, &sse, NULL);
    assert_float_equal(score_final(200, 1, hits, sse, a.t_var, 1), 0.0, 1e-12);
    free(z);
    dataset_free(&a), dataset_free(&t);
    assert_int_equal(dataset_series(&a, "lorenz", 10, 3, 1, 0, 0, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_int_equal(dataset_series(&a, "narma10", 0, 3, 1, 0, 0, err, sizeof(err)), PATCTL_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_pool),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_series_tasks),
        cmocka_unit_test(test_fashion_mnist_if_installed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
