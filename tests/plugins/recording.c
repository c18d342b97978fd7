/* A recording plugin for tests/test_plugin.c: y = W x (n_in -> n_out), with
 * an exact VJP, counting its calls in process-wide counters the test reads
 * through patctl_recording_counts() (dlopen of the same file shares them).
 * Option fail_after=K makes every run() after the K-th fail (a dead device);
 * fail_runs=A-B makes the A-th to B-th run() with a batch since open fail
 * (1-based; A- : from the A-th on). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/device.h"

static long n_open, n_safe, n_close, n_run;
static long fail_after = -1;
static long fail_from = -1, fail_to = -1, n_batch_runs; /* fail_runs; fail_to < 0: forever */

__attribute__((visibility("default"))) void patctl_recording_counts(long *opens, long *safes,
                                                                    long *closes, long *runs)
{
    *opens = n_open, *safes = n_safe, *closes = n_close, *runs = n_run;
}

enum { NI = 8, NO = 10 };

static int r_open(void **s, const struct patctl_option *o, int n, struct patctl_device_desc *d,
                  char *e, size_t el)
{
    fail_after = -1;
    fail_from = fail_to = -1;
    n_batch_runs = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(o[i].key, "fail_after") == 0)
            fail_after = atol(o[i].value);
        else if (strcmp(o[i].key, "fail_runs") == 0) {
            char *end;
            fail_from = strtol(o[i].value, &end, 10);
            fail_to = *end == '-' && end[1] ? atol(end + 1) : -1;
        }
        else if (strcmp(o[i].key, "seed") != 0) {
            snprintf(e, el, "recording: unknown option '%s'", o[i].key);
            return PATCTL_ERR_ARG;
        }
    }
    memset(d, 0, sizeof(*d));
    snprintf(d->model, sizeof(d->model), "recording");
    d->n_in = NI, d->n_out = NO;
    d->in_lo = -10, d->in_hi = 10;
    d->n_blocks = 1;
    d->blocks[0] = (struct patctl_param_block){.name = "W", .rows = NO, .cols = NI, .lo = -3,
                                               .hi = 3, .safe = 0, .init_lo = -0.3f,
                                               .init_hi = 0.3f};
    d->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *s = &n_open;
    n_open++;
    return 0;
}
static int r_run(void *s, const struct patctl_query *q, float *y)
{
    (void)s;
    n_run++;
    if (fail_after >= 0 && n_run > fail_after)
        return PATCTL_ERR_DEVICE;
    if (q->batch > 0 && ++n_batch_runs >= fail_from && fail_from > 0 && (fail_to < 0 || n_batch_runs <= fail_to))
        return PATCTL_ERR_DEVICE;
    for (int b = 0; b < q->batch; b++)
        for (int j = 0; j < NO; j++) {
            float a = 0;
            for (int i = 0; i < NI; i++)
                a += q->theta[j * NI + i] * q->x[b * NI + i];
            y[b * NO + j] = a;
        }
    return 0;
}
static int r_vjp(void *s, const struct patctl_query *q, const float *gy, float *gx, float *gt)
{
    (void)s;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)(q->batch * NI));
    if (gt)
        memset(gt, 0, sizeof(float) * NO * NI);
    for (int b = 0; b < q->batch; b++)
        for (int j = 0; j < NO; j++)
            for (int i = 0; i < NI; i++) {
                if (gx)
                    gx[b * NI + i] += q->theta[j * NI + i] * gy[b * NO + j];
                if (gt)
                    gt[j * NI + i] += q->x[b * NI + i] * gy[b * NO + j];
            }
    return 0;
}
static int r_safe(void *s)
{
    (void)s;
    n_safe++;
    return 0;
}
static void r_close(void *s)
{
    (void)s;
    n_close++;
}

static const struct patctl_driver table = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION, .name = "recording", .summary = "test recorder",
    .flags = PATCTL_DRV_SEEDED,
    .open = r_open, .run = r_run, .vjp = r_vjp, .make_safe = r_safe, .close = r_close,
};

__attribute__((visibility("default"))) const struct patctl_driver *patctl_driver_entry(void)
{
    return &table;
}
