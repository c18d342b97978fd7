/* The safety property of the device boundary (devices/device.c), tested
 * against a recording driver with >= 10^6 randomized parameter updates:
 * NaN, +-Inf, huge and tiny steps, out-of-limit values and inputs, random
 * driver faults, make-safe calls, and all four policy combinations
 * (clamp/reject x ramp/refuse).  The driver checks every value it receives:
 *   - every parameter and input is finite and inside its hard limits,
 *   - consecutive settings differ by at most the block's max_step per entry
 *     (exactly, in real arithmetic), across ramps, faults and make-safe,
 * and a successful batch ran at exactly the clamped target (clamp policy) or
 * at exactly the target (reject policy, values inside the limits). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "devices/device.h"

enum { NA = 12, NB = 5, NC = 2, NT = NA + NB + NC, NIN = 3 };

static const struct patctl_param_block blocks[3] = {
    {.name = "A", .unit = "V", .rows = 4, .cols = 3, .lo = -1.0f, .hi = 1.0f, .max_step = 0.25f,
     .safe = 0.0f},
    {.name = "B", .unit = "rad", .rows = NB, .cols = 1, .lo = 0.0f, .hi = 10.0f, .max_step = 0.0f,
     .safe = 5.0f},
    {.name = "C", .unit = "mA", .rows = 1, .cols = NC, .lo = -100.0f, .hi = -50.0f, .max_step = 3.7f,
     .safe = -100.0f},
};
static const float in_lo = -2.0f, in_hi = 0.5f;

typedef struct {
    uint64_t calls, batches, values, violations, step_violations;
    float last[NT];
    double worst_ratio;   /* largest |step| / max_step seen */
    uint32_t fault_state; /* xorshift for random faults */
    double fault_p;
} rec_t;
static rec_t rec;

static const struct patctl_param_block *blk_of(int i) { return i < NA ? &blocks[0] : i < NA + NB ? &blocks[1] : &blocks[2]; }

static uint32_t xs(uint32_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
    return *s;
}

static int r_open(void **st, const struct patctl_option *o, int n, struct patctl_device_desc *d,
                  char *err, size_t errlen)
{
    (void)o, (void)n, (void)err, (void)errlen;
    memset(d, 0, sizeof(*d));
    snprintf(d->model, sizeof(d->model), "recorder");
    d->n_in = NIN, d->n_out = 1;
    d->in_lo = in_lo, d->in_hi = in_hi;
    d->n_blocks = 3;
    memcpy(d->blocks, blocks, sizeof(blocks));
    *st = &rec;
    return 0;
}

static void record_theta(rec_t *r, const float *th)
{
    for (int i = 0; i < NT; i++) {
        const struct patctl_param_block *k = blk_of(i);
        float v = th[i];
        r->values++;
        if (!isfinite(v) || v < k->lo || v > k->hi)
            r->violations++;
        double st = fabs((double)v - (double)r->last[i]);
        if (k->max_step > 0) {
            if (st > k->max_step)
                r->step_violations++;
            if (st / k->max_step > r->worst_ratio)
                r->worst_ratio = st / k->max_step;
        }
        r->last[i] = v;
    }
}

static int r_run(void *st, const struct patctl_query *q, float *y)
{
    rec_t *r = st;
    r->calls++;
    record_theta(r, q->theta);
    for (int b = 0; b < q->batch; b++) {
        double s = 0;
        for (int j = 0; j < NIN; j++) {
            float v = q->x[b * NIN + j];
            r->values++;
            if (!isfinite(v) || v < in_lo || v > in_hi)
                r->violations++;
            s += v;
        }
        y[b] = (float)s;
    }
    /* random faults: an error, or (for batches) a NaN result */
    if (r->fault_p > 0 && (xs(&r->fault_state) >> 8) * 0x1p-24 < r->fault_p) {
        if (q->batch > 0 && (xs(&r->fault_state) & 1)) {
            y[0] = NAN;
            return 0; /* a bad result: not a completed batch */
        }
        return PATCTL_ERR_DEVICE;
    }
    if (q->batch > 0)
        r->batches++;
    return 0;
}

static int r_safe(void *st)
{
    rec_t *r = st;
    /* the safe setting: the driver is there now (make_safe may jump) */
    for (int i = 0; i < NT; i++)
        r->last[i] = blk_of(i)->safe;
    return 0;
}
static void r_close(void *st) { (void)st; }

static const struct patctl_driver r_drv = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION, .name = "recorder", .summary = "records",
    .open = r_open, .run = r_run, .make_safe = r_safe, .close = r_close,
};

static void count_log(void *user, const char *dev, int level, const char *msg)
{
    (void)dev, (void)level, (void)msg;
    (*(long *)user)++;
}

/* a random float of a random kind */
static float wild(uint32_t *s, float cur, const struct patctl_param_block *k)
{
    uint32_t u = xs(s) % 100;
    double f = (xs(s) >> 8) * 0x1p-24 * 2.0 - 1.0; /* [-1, 1) */
    if (u < 2) return NAN;
    if (u < 3) return INFINITY;
    if (u < 4) return -INFINITY;
    if (u < 10) return (float)(f * 1e30);                       /* huge */
    if (u < 20) return (float)(cur + f * 1e-6);                 /* tiny step */
    if (u < 25) return nextafterf(cur, f > 0 ? INFINITY : -INFINITY); /* one ulp */
    if (u < 30) return f > 0 ? k->hi : k->lo;                   /* exactly at a limit */
    if (u < 35) return nextafterf(f > 0 ? k->hi : k->lo, f > 0 ? INFINITY : -INFINITY); /* just out */
    if (u < 60) return (float)(cur + f * (k->max_step > 0 ? k->max_step : 1.0)); /* within a step */
    if (u < 75) return (float)(cur + f * 10.0 * (k->max_step > 0 ? k->max_step : 1.0)); /* ramp */
    return (float)(k->lo + (f + 1.0) * 0.5 * (k->hi - k->lo) * 1.4 - 0.2 * (k->hi - k->lo)); /* anywhere, some out */
}

static void test_boundary_property(void **state)
{
    (void)state;
    memset(&rec, 0, sizeof(rec));
    rec.fault_state = 12345u;
    rec.fault_p = 0.002;
    device *d = NULL;
    char err[256];
    assert_int_equal(device_open_driver(&d, "rec", &r_drv, NULL, 0, 1, err, sizeof(err)), 0);
    d->retries = 1;
    long logged = 0;
    device_set_logger(d, count_log, &logged); /* a million updates: count, do not print */

    uint32_t s = 2024u;
    float th[NT], x[2 * NIN], y[2];
    device_safe_theta(&d->desc, th);
    const long N = 1000000;
    long ok = 0, rejected = 0, failed = 0, with_nonfinite = 0, ramps_before = 0;
    for (long it = 0; it < N; it++) {
        if (it % 5000 == 0) {
            d->limits = (it / 5000) % 2 ? LIMIT_REJECT : LIMIT_CLAMP;
            d->steps = (it / 10000) % 2 ? STEP_REFUSE : STEP_RAMP;
        }
        /* mutate a random subset of entries */
        int nmut = 1 + (int)(xs(&s) % 4);
        for (int m = 0; m < nmut; m++) {
            int i = (int)(xs(&s) % NT);
            th[i] = wild(&s, th[i], blk_of(i));
        }
        int nonfinite = 0;
        for (int i = 0; i < NT; i++)
            nonfinite |= !isfinite(th[i]);
        with_nonfinite += nonfinite;
        int B = (int)(xs(&s) % 3);
        for (int j = 0; j < B * NIN; j++) {
            const struct patctl_param_block in = {.lo = in_lo, .hi = in_hi, .max_step = 0};
            x[j] = (xs(&s) % 4) ? (float)(in_lo + ((xs(&s) >> 8) * 0x1p-24) * (in_hi - in_lo))
                                : wild(&s, 0.0f, &in);
        }
        uint64_t batches0 = rec.batches;
        int rc = device_run(d, th, x, B, y);
        if (rc == 0) {
            ok++;
            /* the driver ran the batch at the checked target */
            for (int i = 0; i < NT; i++) {
                const struct patctl_param_block *k = blk_of(i);
                float want = th[i] < k->lo ? k->lo : th[i] > k->hi ? k->hi : th[i];
                if (rec.last[i] != want || d->sent_theta[i] != want)
                    rec.violations++;
            }
            if (B > 0 && rec.batches != batches0 + 1)
                rec.violations++;
        } else if (rc == PATCTL_ERR_LIMIT || rc == PATCTL_ERR_NONFINITE) {
            rejected++;
            if (nonfinite && rc != PATCTL_ERR_NONFINITE && rc != PATCTL_ERR_LIMIT)
                rec.violations++;
        } else {
            failed++;
        }
        if (nonfinite && rc == 0)
            rec.violations++; /* NaN/Inf must never pass */
        if (nonfinite || xs(&s) % 64 == 0) /* keep the target mostly finite */
            memcpy(th, d->last_theta, sizeof(th));
        if (xs(&s) % 20000 == 0) {
            assert_int_equal(device_make_safe(d), 0);
            device_safe_theta(&d->desc, th);
        }
    }
    ramps_before = (long)d->st.ramp_steps;
    printf("  %ld updates: %ld ran, %ld refused, %ld failed (driver faults), %ld with NaN/Inf\n",
           N, ok, rejected, failed, with_nonfinite);
    printf("  driver saw %llu calls (%ld ramp steps), %llu values; worst step %.9f x max_step\n",
           (unsigned long long)rec.calls, ramps_before, (unsigned long long)rec.values,
           rec.worst_ratio);
    printf("  violations: %llu out-of-limit/non-finite, %llu over max_step\n",
           (unsigned long long)rec.violations, (unsigned long long)rec.step_violations);
    assert_true(N >= 1000000);
    assert_int_equal(rec.violations, 0);
    assert_int_equal(rec.step_violations, 0);
    /* the test exercised what it claims to */
    assert_true(ok > N / 10 && rejected > N / 10 && failed > 100 && with_nonfinite > N / 100);
    assert_true(d->st.ramp_steps > 10000 && d->st.clamped > 10000);
    assert_true(rec.worst_ratio > 0.99);
    assert_true(logged > 0);
    device_close(&d);
}

/* max_step not representable in float: ramps still never exceed it */
static void test_ramp_exact(void **state)
{
    (void)state;
    memset(&rec, 0, sizeof(rec));
    device *d = NULL;
    char err[256];
    assert_int_equal(device_open_driver(&d, "rec", &r_drv, NULL, 0, 1, err, sizeof(err)), 0);
    float th[NT], x[NIN] = {0, 0, 0}, y[1];
    device_safe_theta(&d->desc, th);
    for (int i = 0; i < NA; i++)
        th[i] = (i % 2) ? 1.0f : -1.0f;          /* 4 max steps of 0.25 from 0 */
    th[NA + NB] = -50.0f;                        /* 50 / 3.7 = 13.5 -> 14 steps */
    th[NA + NB + 1] = nextafterf(-100.0f + 3.7f, 0.0f);
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    printf("  ramp of %llu steps, worst step %.9f x max_step\n",
           (unsigned long long)d->st.ramp_steps, rec.worst_ratio);
    assert_int_equal(d->st.ramp_steps, 13);
    assert_true(rec.worst_ratio <= 1.0);
    assert_int_equal(rec.step_violations, 0);
    for (int i = 0; i < NT; i++)
        assert_true(rec.last[i] == th[i]);
    /* boundary_step_toward: exact under rounding */
    float c = boundary_step_toward(0.3f, 5.0f, 0.1f);
    assert_true(fabs((double)c - (double)0.3f) <= (double)0.1f && c > 0.39f);
    assert_true(boundary_step_toward(1.0f, 1.05f, 0.1f) == 1.05f);
    assert_true(boundary_step_toward(1.0f, 9.0f, 0.0f) == 9.0f);
    device_close(&d);
}

/* drivers with unusable limits are refused at open */
static int bad_open(void **st, const struct patctl_option *o, int n, struct patctl_device_desc *d,
                    char *err, size_t errlen)
{
    int rc = r_open(st, o, n, d, err, errlen);
    d->blocks[0].max_step = 1e-9f; /* 2 / 1e-9 = 2e9 ramp steps, below float resolution */
    return rc;
}
static void test_bad_desc(void **state)
{
    (void)state;
    struct patctl_driver drv = r_drv;
    drv.open = bad_open;
    device *d = NULL;
    char err[256] = "";
    assert_int_equal(device_open_driver(&d, "bad", &drv, NULL, 0, 1, err, sizeof(err)),
                     PATCTL_ERR_FORMAT);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "max_step"));
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ramp_exact),
        cmocka_unit_test(test_bad_desc),
        cmocka_unit_test(test_boundary_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
