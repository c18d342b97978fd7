/* The nominal-vs-truth gap of every simulated device, measured as NRMSE, and
 * its noise floor.  For each device with its default hidden truth:
 *   gap   = rms(y_truth - y_nominal) / std(y_truth)   (noiseless truth vs surrogate)
 *   noise = rms(y_measured - y_truth) / std(y_truth)  (the measurement noise)
 * over random inputs (uniform over the given range) and parameter settings
 * (uniform over the driver's suggested initialisation range).  The numbers
 * in the drivers' documentation come from this test.  It asserts that each
 * gap is real (well above the noise floor) and that the nominal model is
 * still informative (gap < 1). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "controller/surrogates.h"
#include "devices/device.h"
#include "devices/options.h"
#include "gradcheck.h"

enum { BATCH = 128, SETTINGS = 4 };

static void quiet(void *u, const char *dev, int level, const char *msg)
{
    (void)u, (void)dev, (void)level, (void)msg;
}

static device *open_dev(const char *driver, const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, driver, driver, o, n, 1, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    device_set_logger(d, quiet, NULL);
    return d;
}

typedef struct {
    const char *driver;
    const char *geometry;   /* shape options shared by all three */
    const char *noiseless;  /* options that switch the measurement noise off */
    float x_lo, x_hi;       /* input distribution */
} gap_case;

static void measure(const gap_case *g, double *gap, double *noise)
{
    char o_noisy[512], o_clean[512];
    snprintf(o_noisy, sizeof(o_noisy), "%s", g->geometry);
    snprintf(o_clean, sizeof(o_clean), "%s,%s", g->geometry, g->noiseless);
    device *dn = open_dev(g->driver, o_noisy), *dc = open_dev(g->driver, o_clean);
    surrogate *s = NULL;
    char err[256];
    assert_int_equal(surrogate_for_device(&s, dn, o_noisy, err, sizeof(err)), 0);
    int ni = dn->desc.n_in, no = dn->desc.n_out;
    long nt = dn->n_theta;
    float *x = malloc(sizeof(float) * BATCH * (size_t)ni), *th = malloc(sizeof(float) * (size_t)nt);
    float *yn = malloc(sizeof(float) * BATCH * (size_t)no), *yc = malloc(sizeof(float) * BATCH * (size_t)no);
    float *ys = malloc(sizeof(float) * BATCH * (size_t)no);
    unsigned seed = 77;
    double s1 = 0, s2 = 0, eg = 0, en = 0;
    long n = 0;
    for (int k = 0; k < SETTINGS; k++) {
        for (long i = 0; i < BATCH * (long)ni; i++)
            x[i] = g->x_lo + (g->x_hi - g->x_lo) * (float)gc_uniform(&seed);
        long off = 0;
        for (int b = 0; b < dn->desc.n_blocks; b++) {
            const struct patctl_param_block *blk = &dn->desc.blocks[b];
            for (long i = 0; i < (long)blk->rows * blk->cols; i++)
                th[off + i] = blk->init_lo + (blk->init_hi - blk->init_lo) * (float)gc_uniform(&seed);
            off += (long)blk->rows * blk->cols;
        }
        assert_int_equal(device_run(dn, th, x, BATCH, yn), 0);
        assert_int_equal(device_run(dc, th, x, BATCH, yc), 0);
        assert_int_equal(surrogate_forward(s, th, x, BATCH, ys), 0);
        for (long i = 0; i < BATCH * (long)no; i++) {
            s1 += yc[i];
            s2 += (double)yc[i] * yc[i];
            eg += ((double)yc[i] - ys[i]) * ((double)yc[i] - ys[i]);
            en += ((double)yn[i] - yc[i]) * ((double)yn[i] - yc[i]);
            n++;
        }
    }
    double mean = s1 / n, sd = sqrt(fmax(s2 / n - mean * mean, 1e-30));
    *gap = sqrt(eg / n) / sd;
    *noise = sqrt(en / n) / sd;
    printf("  %-12s %-34s gap NRMSE %.4f   noise NRMSE %.4f   (output std %.4g %s)\n", g->driver,
           g->geometry, *gap, *noise, sd, dn->desc.out_unit);
    free(x), free(th), free(yn), free(yc), free(ys);
    surrogate_destroy(&s);
    device_close(&dn);
    device_close(&dc);
}

static void test_gaps(void **state)
{
    (void)state;
    const gap_case cases[] = {
        {"oscillators", "n=64", "sigma=0", 0.0f, 1.0f},
        {"shg", "n_in=32,n_par=32,bins=4,n_out=32", "photons=0,camera_bits=0", -3.14159f, 3.14159f},
        {"shg", "n_in=32,n_par=32,bins=4,n_out=32", "photons=0,camera_bits=0", -1.0f, 1.0f},
        {"circuit", "n_in=32", "temperature=0,adc_bits=0", -1.0f, 1.0f},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double gap, noise;
        measure(&cases[i], &gap, &noise);
        assert_true(gap > 2 * noise);
        assert_true(gap < 1.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
