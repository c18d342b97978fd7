/* Device handle and the safety boundary (see device.h). */
#include "devices/device.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/options.h"
#include "devices/registry.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void default_log(void *user, const char *dev, int level, const char *msg)
{
    (void)user;
    static const char *tag[] = {"info", "warning", "fault"};
    fprintf(stderr, "patctl: device %s: %s: %s\n", dev, tag[level < 0 || level > 2 ? 0 : level], msg);
}

static void devlog(device *d, int level, const char *fmt, ...)
{
    char msg[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level >= DEVLOG_WARN)
        snprintf(d->err, sizeof(d->err), "%s", msg);
    d->log(d->log_user, d->name, level, msg);
}

void device_set_logger(device *d, device_log_fn fn, void *user)
{
    d->log = fn ? fn : default_log;
    d->log_user = user;
}

void device_set_journal(device *d, device_journal_fn fn, void *user)
{
    d->journal = fn;
    d->journal_user = user;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long device_desc_n_theta(const struct patctl_device_desc *desc)
{
    long n = 0;
    for (int b = 0; b < desc->n_blocks; b++)
        n += (long)desc->blocks[b].rows * desc->blocks[b].cols;
    return n;
}

long device_block_offset(const struct patctl_device_desc *desc, int b)
{
    long off = 0;
    for (int i = 0; i < b && i < desc->n_blocks; i++)
        off += (long)desc->blocks[i].rows * desc->blocks[i].cols;
    return off;
}

static int check_desc(const struct patctl_device_desc *desc, char *err, size_t errlen)
{
    if (desc->n_in <= 0 || desc->n_out <= 0 || desc->n_blocks < 0 ||
        desc->n_blocks > PATCTL_MAX_BLOCKS || !isfinite(desc->in_lo) || !isfinite(desc->in_hi) ||
        !(desc->in_lo <= desc->in_hi)) {
        snprintf(err, errlen, "driver returned an invalid description (n_in %d, n_out %d, %d blocks)",
                 desc->n_in, desc->n_out, desc->n_blocks);
        return PATCTL_ERR_FORMAT;
    }
    for (int b = 0; b < desc->n_blocks; b++) {
        const struct patctl_param_block *k = &desc->blocks[b];
        if (k->rows <= 0 || k->cols <= 0 || !isfinite(k->lo) || !isfinite(k->hi) ||
            !(k->lo <= k->hi) || !(k->max_step >= 0) || !isfinite(k->max_step) ||
            !(k->safe >= k->lo && k->safe <= k->hi)) {
            snprintf(err, errlen, "driver returned an invalid parameter block %d (%.32s)", b, k->name);
            return PATCTL_ERR_FORMAT;
        }
        /* a ramp must make progress in float32 and stay a sane length */
        double mag = fmax(fmax(fabs(k->lo), fabs(k->hi)), 1e-30);
        if (k->max_step > 0 && (k->max_step < 1e-6 * mag || k->max_step < 1e-6 * (k->hi - k->lo))) {
            snprintf(err, errlen, "driver returned parameter block %d (%.32s) with max_step %g, "
                     "below 1e-6 of its range [%g, %g]", b, k->name, k->max_step, k->lo, k->hi);
            return PATCTL_ERR_FORMAT;
        }
    }
    return 0;
}

int device_open(device **out, const char *name, const char *driver,
                const struct patctl_option *opts, int n_opts, uint64_t default_seed,
                char *err, size_t errlen)
{
    *out = NULL;
    const struct patctl_driver *drv;
    void *dl = NULL;
    int rc = registry_resolve(driver, &drv, &dl, err, errlen);
    if (rc)
        return rc;
    rc = device_open_driver(out, name, drv, opts, n_opts, default_seed, err, errlen);
    if (rc) {
        if (dl)
            dlclose(dl);
        return rc;
    }
    (*out)->dl = dl;
    return 0;
}

int device_open_driver(device **out, const char *name, const struct patctl_driver *drv,
                       const struct patctl_option *opts, int n_opts, uint64_t default_seed,
                       char *err, size_t errlen)
{
    *out = NULL;
    int rc;
    device *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->drv = drv;
    d->retries = 2;
    d->max_ramp = 100000;
    snprintf(d->name, sizeof(d->name), "%s", name ? name : drv->name);
    device_set_logger(d, NULL, NULL);
    char derr[256] = "";
    struct patctl_option *all = malloc(sizeof(*all) * (size_t)(n_opts + 1));
    char seedtxt[24];
    if (!all) {
        device_close(&d);
        return PATCTL_ERR_NOMEM;
    }
    int na = 0;
    if ((drv->flags & PATCTL_DRV_SEEDED) && !options_get(opts, n_opts, "seed")) {
        snprintf(seedtxt, sizeof(seedtxt), "%llu", (unsigned long long)default_seed);
        all[na++] = (struct patctl_option){"seed", seedtxt};
    }
    for (int i = 0; i < n_opts; i++)
        all[na++] = opts[i];
    rc = drv->open(&d->state, all, na, &d->desc, derr, sizeof(derr));
    free(all);
    if (rc) {
        snprintf(err, errlen, "device %s (%s): %s", d->name, drv->name,
                 derr[0] ? derr : patctl_strerror(rc));
        d->state = NULL;
        device_close(&d);
        return rc;
    }
    if ((rc = check_desc(&d->desc, derr, sizeof(derr)))) {
        snprintf(err, errlen, "device %s (%s): %s", d->name, drv->name, derr);
        device_close(&d);
        return rc;
    }
    d->n_theta = device_desc_n_theta(&d->desc);
    d->last_theta = calloc((size_t)d->n_theta + 1, sizeof(float));
    d->sent_theta = calloc((size_t)d->n_theta + 1, sizeof(float));
    d->scratch = calloc((size_t)d->n_theta + 1, sizeof(float));
    d->gt_tmp = calloc((size_t)d->n_theta + 1, sizeof(float));
    d->ramp_from = calloc((size_t)d->n_theta + 1, sizeof(float));
    if (!d->last_theta || !d->sent_theta || !d->scratch || !d->gt_tmp || !d->ramp_from) {
        device_close(&d);
        return PATCTL_ERR_NOMEM;
    }
    if ((rc = device_make_safe(d))) {
        snprintf(err, errlen, "device %s (%s): make-safe failed: %s", d->name, drv->name,
                 patctl_strerror(rc));
        device_close(&d);
        return rc;
    }
    *out = d;
    return 0;
}

void device_close(device **dp)
{
    if (!dp || !*dp)
        return;
    device *d = *dp;
    if (d->state) {
        if (d->drv->make_safe(d->state))
            devlog(d, DEVLOG_FAULT, "make-safe on close failed");
        d->drv->close(d->state);
    }
    if (d->dl)
        dlclose(d->dl);
    free(d->last_theta);
    free(d->sent_theta);
    free(d->sent_x);
    free(d->scratch);
    free(d->gx_tmp);
    free(d->gt_tmp);
    free(d->ramp_from);
    free(d);
    *dp = NULL;
}

void device_safe_theta(const struct patctl_device_desc *desc, float *theta)
{
    long off = 0;
    for (int b = 0; b < desc->n_blocks; b++) {
        long len = (long)desc->blocks[b].rows * desc->blocks[b].cols;
        for (long i = 0; i < len; i++)
            theta[off + i] = desc->blocks[b].safe;
        off += len;
    }
}

int boundary_theta(const struct patctl_device_desc *desc, const float *theta, float *out,
                   limit_policy policy, uint64_t *nclamped)
{
    long off = 0;
    uint64_t clamped = 0;
    for (int b = 0; b < desc->n_blocks; b++) {
        const struct patctl_param_block *k = &desc->blocks[b];
        long len = (long)k->rows * k->cols;
        for (long i = 0; i < len; i++) {
            float v = theta[off + i];
            if (!isfinite(v))
                return PATCTL_ERR_NONFINITE;
            if (v < k->lo || v > k->hi) {
                if (policy == LIMIT_REJECT)
                    return PATCTL_ERR_LIMIT;
                v = v < k->lo ? k->lo : k->hi;
                clamped++;
            }
            out[off + i] = v;
        }
        off += len;
    }
    if (nclamped)
        *nclamped += clamped;
    return 0;
}

int boundary_inputs(const struct patctl_device_desc *desc, const float *x, float *out, int B,
                    limit_policy policy, uint64_t *nclamped)
{
    long len = (long)B * desc->n_in;
    uint64_t clamped = 0;
    for (long i = 0; i < len; i++) {
        float v = x[i];
        if (!isfinite(v))
            return PATCTL_ERR_NONFINITE;
        if (v < desc->in_lo || v > desc->in_hi) {
            if (policy == LIMIT_REJECT)
                return PATCTL_ERR_LIMIT;
            v = v < desc->in_lo ? desc->in_lo : desc->in_hi;
            clamped++;
        }
        out[i] = v;
    }
    if (nclamped)
        *nclamped += clamped;
    return 0;
}

long boundary_ramp_steps(const struct patctl_device_desc *desc, const float *from,
                         const float *to)
{
    double worst = 1.0;
    long off = 0;
    for (int b = 0; b < desc->n_blocks; b++) {
        const struct patctl_param_block *k = &desc->blocks[b];
        long len = (long)k->rows * k->cols;
        if (k->max_step > 0) {
            for (long i = 0; i < len; i++) {
                double r = fabs((double)to[off + i] - (double)from[off + i]) / k->max_step;
                if (r > worst)
                    worst = r;
            }
        }
        off += len;
    }
    return (long)ceil(worst); /* a step of exactly max_step is one step */
}

float boundary_step_toward(float cur, float want, float max_step)
{
    if (!(max_step > 0))
        return want;
    double dlt = (double)want - (double)cur;
    if (fabs(dlt) <= max_step)
        return want;
    float c = (float)((double)cur + (dlt > 0 ? (double)max_step : -(double)max_step));
    while (fabs((double)c - (double)cur) > max_step) /* undo rounding past max_step */
        c = nextafterf(c, cur);
    return c;
}

void device_project(const device *d, float *theta)
{
    long off = 0;
    for (int b = 0; b < d->desc.n_blocks; b++) {
        const struct patctl_param_block *k = &d->desc.blocks[b];
        long len = (long)k->rows * k->cols;
        for (long i = 0; i < len; i++) {
            float v = theta[off + i];
            if (!isfinite(v))
                v = k->safe;
            theta[off + i] = v < k->lo ? k->lo : v > k->hi ? k->hi : v;
        }
        off += len;
    }
}

static int ensure_batch(device *d, int B)
{
    if (B <= d->sent_cap)
        return 0;
    float *x = malloc(sizeof(float) * (size_t)B * (size_t)d->desc.n_in);
    float *g = malloc(sizeof(float) * (size_t)B * (size_t)d->desc.n_in);
    if (!x || !g) {
        free(x);
        free(g);
        return PATCTL_ERR_NOMEM;
    }
    free(d->sent_x);
    free(d->gx_tmp);
    d->sent_x = x, d->gx_tmp = g, d->sent_cap = B;
    return 0;
}

/* One driver call with fault accounting (and the journal, if any): query
 * id, absolute row0 of its first row, and part_row (its first row within a
 * query sent in parts, for the journal). */
static int driver_run(device *d, uint64_t id, int64_t row0, int part_row, const float *theta, const float *x,
                      int B, float *y, int attempt, int ramp)
{
    struct patctl_query q = {.id = id, .batch = B, .theta = theta, .x = x, .row0 = B > 0 ? row0 : 0};
    double w0 = d->journal ? wall_s() : 0.0;
    double t0 = now_s();
    int rc = d->drv->run(d->state, &q, y);
    double t1 = now_s();
    d->st.seconds += t1 - t0;
    int driver_rc = rc;
    if (rc == 0 && B > 0) {
        long len = (long)B * d->desc.n_out;
        for (long i = 0; i < len; i++)
            if (!isfinite(y[i])) {
                rc = PATCTL_ERR_NONFINITE;
                break;
            }
    }
    if (rc == 0 && B > 0) {
        d->sent_id = q.id;
        d->sent_row0 = q.row0;
    }
    if (d->journal) {
        device_journal_entry e = {.id = q.id, .batch = B, .attempt = attempt, .ramp = ramp, .rc = rc,
                                  .part_row = part_row, .theta = theta, .x = B > 0 ? x : NULL,
                                  .y = driver_rc == 0 && B > 0 ? y : NULL,
                                  .t_start = w0, .t_end = w0 + (t1 - t0)};
        d->journal(d->journal_user, d, &e);
    }
    return rc;
}

/* Ramp from the setting the driver was sent last to d->scratch (checked),
 * then sent_theta = scratch: every consecutive pair of settings a driver
 * receives differs by at most max_step per entry. */
static int ramp_to_scratch(device *d)
{
    int rc;
    long nramp = boundary_ramp_steps(&d->desc, d->last_theta, d->scratch);
    if (nramp > 1) {
        if (d->steps == STEP_REFUSE || nramp > d->max_ramp) {
            d->st.rejected++;
            devlog(d, DEVLOG_WARN, "parameter step larger than max_step refused (%ld steps needed%s)",
                   nramp, d->steps == STEP_REFUSE ? "" : ", more than the longest ramp allowed");
            return PATCTL_ERR_LIMIT;
        }
        memcpy(d->ramp_from, d->last_theta, sizeof(float) * (size_t)d->n_theta);
        for (long s = 1;; s++) {
            /* the next point of the straight line from ramp_from to scratch,
             * never more than max_step from the last point sent */
            int done = 1;
            long off = 0;
            for (int b = 0; b < d->desc.n_blocks; b++) {
                const struct patctl_param_block *k = &d->desc.blocks[b];
                long len = (long)k->rows * k->cols;
                for (long i = off; i < off + len; i++) {
                    float want = d->scratch[i];
                    if (s < nramp) {
                        double f = (double)s / (double)nramp;
                        want = (float)(d->ramp_from[i] + f * ((double)d->scratch[i] - d->ramp_from[i]));
                        want = want < k->lo ? k->lo : want > k->hi ? k->hi : want;
                    }
                    float c = boundary_step_toward(d->last_theta[i], want, k->max_step);
                    d->sent_theta[i] = c;
                    done &= (c == d->scratch[i]);
                }
                off += len;
            }
            if (done)
                break; /* the batch query itself takes the last step */
            if (s > 2 * nramp + 16) {
                devlog(d, DEVLOG_FAULT, "ramp makes no progress after %ld steps", s);
                return PATCTL_ERR_NUMERIC;
            }
            rc = driver_run(d, d->next_id++, 0, 0, d->sent_theta, NULL, 0, NULL, 0, 1);
            memcpy(d->last_theta, d->sent_theta, sizeof(float) * (size_t)d->n_theta);
            if (rc) {
                d->st.faults++;
                devlog(d, DEVLOG_FAULT, "ramp step %ld/%ld failed: %s", s, nramp, patctl_strerror(rc));
                return rc;
            }
            d->st.ramp_steps++;
        }
    }
    memcpy(d->sent_theta, d->scratch, sizeof(float) * (size_t)d->n_theta);
    return 0;
}

/* The query (or part) at sent_theta: attempt 0 under id, each retry under
 * a fresh id; x is inside sent_x (NULL when B == 0). */
static int send_retrying(device *d, uint64_t id, int64_t row0, int part_row, const float *x, int B, float *y)
{
    int rc = 0;
    for (int attempt = 0; attempt <= d->retries; attempt++) {
        if (attempt > 0) {
            d->st.retries++;
            devlog(d, DEVLOG_WARN, "retrying query (attempt %d of %d)", attempt + 1, d->retries + 1);
        }
        rc = driver_run(d, attempt ? d->next_id++ : id, row0, part_row, d->sent_theta, x, B, y, attempt, 0);
        /* the driver has seen this setting, whether or not it succeeded */
        memcpy(d->last_theta, d->sent_theta, sizeof(float) * (size_t)d->n_theta);
        if (rc == 0)
            break;
        d->st.faults++;
        const char *msg = d->drv->last_error ? d->drv->last_error(d->state) : NULL;
        devlog(d, DEVLOG_FAULT, "query failed: %s%s%s", patctl_strerror(rc), msg ? ": " : "",
               msg ? msg : "");
        if (rc == PATCTL_ERR_ARG || rc == PATCTL_ERR_NOMEM || rc == PATCTL_ERR_UNSUPPORTED)
            break; /* not transient */
    }
    return rc;
}

static void log_clamped(device *d, uint64_t clamped)
{
    if (clamped) {
        if (d->st.clamped == 0 || clamped > 1000)
            devlog(d, DEVLOG_WARN, "%llu value(s) clamped into limits", (unsigned long long)clamped);
        d->st.clamped += clamped;
    }
}

/* The start of every query: theta (and, when x != NULL, the B input rows
 * into sent_x) checked at the boundary, then the ramp to it; sent_theta
 * holds it on success.  No VJP until the query succeeds. */
static int open_query(device *d, const float *theta, const float *x, int B)
{
    int rc = ensure_batch(d, B);
    if (rc)
        return rc;
    d->q_open = 0;
    d->sent_B = 0; /* sent_x/sent_theta are rewritten below: no VJP until success */
    uint64_t clamped = 0;
    rc = boundary_theta(&d->desc, theta, d->scratch, d->limits, &clamped);
    if (rc == 0 && x && B > 0)
        rc = boundary_inputs(&d->desc, x, d->sent_x, B, d->limits, &clamped);
    if (rc) {
        d->st.rejected++;
        devlog(d, DEVLOG_WARN, "batch refused at the boundary: %s", patctl_strerror(rc));
        return rc;
    }
    log_clamped(d, clamped);
    return ramp_to_scratch(d);
}

int device_run(device *d, const float *theta, const float *x, int B, float *y)
{
    if (B < 0 || (B > 0 && (!x || !y)) || !theta)
        return PATCTL_ERR_ARG;
    int rc = open_query(d, theta, x, B);
    if (rc)
        return rc;
    rc = send_retrying(d, d->next_id++, d->next_row0, 0, B > 0 ? d->sent_x : NULL, B, y);
    if (rc) {
        d->sent_B = 0; /* nothing to take a VJP of */
        return rc;
    }
    d->sent_B = B;
    if (B > 0) {
        d->st.queries++;
        d->st.samples += (uint64_t)B;
    }
    return 0;
}

int device_query_begin(device *d, const float *theta, int B)
{
    if (B <= 0 || !theta)
        return PATCTL_ERR_ARG;
    int rc = open_query(d, theta, NULL, B); /* the parts check their rows */
    if (rc)
        return rc;
    d->q_id = d->next_id++; /* the id device_run would give the query */
    d->q_B = B;
    d->q_open = 1;
    return 0;
}

int device_query_part(device *d, const float *x, int r0, int R, float *y)
{
    if (!d->q_open)
        return PATCTL_ERR_STATE;
    if (R <= 0 || r0 < 0 || r0 + R > d->q_B || !x || !y) {
        d->q_open = 0;
        return PATCTL_ERR_ARG;
    }
    float *sx = d->sent_x + (size_t)r0 * (size_t)d->desc.n_in;
    uint64_t clamped = 0;
    int rc = boundary_inputs(&d->desc, x, sx, R, d->limits, &clamped);
    if (rc) {
        d->q_open = 0;
        d->st.rejected++;
        devlog(d, DEVLOG_WARN, "batch refused at the boundary: %s", patctl_strerror(rc));
        return rc;
    }
    log_clamped(d, clamped);
    rc = send_retrying(d, d->q_id, d->next_row0 + r0, r0, sx, R, y);
    if (rc) {
        d->q_open = 0;
        return rc;
    }
    d->st.samples += (uint64_t)R;
    return 0;
}

int device_query_end(device *d)
{
    if (!d->q_open)
        return PATCTL_ERR_STATE;
    d->q_open = 0;
    d->sent_B = d->q_B;
    d->sent_id = d->q_id;
    d->sent_row0 = d->next_row0;
    d->st.queries++;
    return 0;
}

int device_vjp(device *d, const float *gy, float *gx, float *gtheta)
{
    if (!d->drv->vjp || !(d->desc.flags & PATCTL_DEV_HAS_VJP))
        return PATCTL_ERR_UNSUPPORTED;
    if (d->sent_B <= 0)
        return PATCTL_ERR_STATE;
    struct patctl_query q = {.id = d->sent_id, .batch = d->sent_B, .theta = d->sent_theta,
                             .x = d->sent_x, .row0 = d->sent_row0};
    int rc = d->drv->vjp(d->state, &q, gy, gx ? d->gx_tmp : NULL, gtheta ? d->gt_tmp : NULL);
    if (rc)
        return rc;
    if (gx) {
        long len = (long)d->sent_B * d->desc.n_in;
        for (long i = 0; i < len; i++)
            gx[i] += d->gx_tmp[i];
    }
    if (gtheta)
        for (long i = 0; i < d->n_theta; i++)
            gtheta[i] += d->gt_tmp[i];
    return 0;
}

int device_make_safe(device *d)
{
    int rc = d->drv->make_safe(d->state);
    if (rc) {
        d->st.faults++;
        devlog(d, DEVLOG_FAULT, "make-safe failed: %s", patctl_strerror(rc));
        return rc;
    }
    device_safe_theta(&d->desc, d->last_theta);
    d->has_last = 1;
    return 0;
}
