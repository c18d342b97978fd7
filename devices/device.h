/* An open device and the safety boundary in front of its driver.
 *
 * Every query to every driver (built-in, plugin, remote) goes through
 * device_run(), which is the one place that enforces the description's hard
 * limits: NaN/Inf never reach a driver; out-of-limit values are clamped (and
 * counted and logged) or the batch is rejected, per policy; a parameter
 * change larger than a block's max_step is split into a ramp of allowed steps
 * (B = 0 queries) or refused, per policy.  Outputs are checked too: a NaN/Inf
 * result is a fault, retried up to `retries` times, never returned as data. */
#ifndef PATCTL_DEVICE_HANDLE_H
#define PATCTL_DEVICE_HANDLE_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/device.h"

typedef enum { LIMIT_CLAMP = 0, LIMIT_REJECT = 1 } limit_policy;
typedef enum { STEP_RAMP = 0, STEP_REFUSE = 1 } step_policy;

enum { DEVLOG_INFO = 0, DEVLOG_WARN = 1, DEVLOG_FAULT = 2 };
typedef void (*device_log_fn)(void *user, const char *device, int level, const char *msg);

struct device;

/* One driver call as a journal sees it: every run() call, including ramp
 * steps (B == 0), failed attempts and retries.  Arrays are owned by the
 * device and valid only during the callback. */
typedef struct device_journal_entry {
    uint64_t id;           /* query id (patctl_query.id) */
    int batch;             /* B; 0 = parameter-only (ramp step or apply) */
    int attempt;           /* 0 = first try, k = k-th retry */
    int ramp;              /* 1 = a step of a ramp towards a new setting */
    int rc;                /* 0 or the PATCTL_ERR_* of this call */
    int part_row;          /* a part of a query sent in parts (device_query_part):
                              its first row in the query (0 for the first part and
                              for every whole query); attempt 0 of a part > 0 keeps
                              the query's id */
    const float *theta;    /* [n_theta] as sent */
    const float *x;        /* [B, n_in] as sent (after the boundary), NULL when B == 0 */
    const float *y;        /* [B, n_out] as returned by the driver (may hold the
                              NaN/Inf of a fault), NULL when the driver failed or B == 0 */
    double t_start, t_end; /* wall clock, seconds since the Unix epoch */
} device_journal_entry;
typedef void (*device_journal_fn)(void *user, const struct device *d, const device_journal_entry *e);

typedef struct device_stats {
    uint64_t queries;     /* driver run() calls with B > 0 that succeeded */
    uint64_t samples;     /* sum of B over those */
    uint64_t ramp_steps;  /* B == 0 parameter-only steps of ramps */
    uint64_t clamped;     /* values clamped into limits */
    uint64_t rejected;    /* batches refused at the boundary */
    uint64_t faults;      /* driver errors and bad outputs */
    uint64_t retries;     /* queries repeated after a fault */
    double seconds;       /* wall time inside the driver */
} device_stats;

typedef struct device {
    char name[64];                    /* instance name, "osc64" */
    const struct patctl_driver *drv;
    void *state;                      /* driver-owned */
    void *dl;                         /* dlopen handle of a plugin, or NULL */
    struct patctl_device_desc desc;
    long n_theta;                     /* sum of block sizes */
    limit_policy limits;
    step_policy steps;
    int retries;                      /* extra attempts after a fault */
    long max_ramp;                    /* longest ramp (steps) allowed; longer is refused */
    uint64_t next_id;                 /* id of the next query */
    int64_t next_row0;                /* row0 of the next batch queries (patctl_query.row0):
                                         0, or set by a server running a part of a
                                         pooled query; stays until changed */
    int has_last;                     /* (always 1 after open: the safe setting) */
    float *last_theta;                /* [n_theta] the setting last sent to the driver */
    float *sent_theta;                /* [n_theta] setting of the last batch */
    float *sent_x;                    /* [sent_cap, n_in] inputs of the last batch */
    int sent_cap, sent_B;
    uint64_t sent_id;                 /* id of the last batch query */
    int64_t sent_row0;                /* its row0 */
    int q_open;                       /* a query in parts is under way (device_query_begin) */
    int q_B;                          /* its rows */
    uint64_t q_id;                    /* its id (every part's first attempt) */
    float *scratch;                   /* [n_theta] checked setting being sent */
    float *ramp_from;                 /* [n_theta] start of a ramp */
    float *gx_tmp;                    /* [sent_cap, n_in] */
    float *gt_tmp;                    /* [n_theta] */
    device_stats st;
    device_log_fn log;
    void *log_user;
    device_journal_fn journal;        /* NULL = no journal */
    void *journal_user;
    char err[256];                    /* last error message */
} device;

/* Open driver `driver` (built-in name or plugin path) as instance `name`.
 * A driver flagged PATCTL_DRV_SEEDED gets seed=default_seed unless opts has
 * a seed.  The device is put into its safe setting.  Caller owns *out. */
int device_open(device **out, const char *name, const char *driver,
                const struct patctl_option *opts, int n_opts, uint64_t default_seed,
                char *err, size_t errlen);
/* The same for a driver table at hand (tests, remote and pooled devices). */
int device_open_driver(device **out, const char *name, const struct patctl_driver *drv,
                       const struct patctl_option *opts, int n_opts, uint64_t default_seed,
                       char *err, size_t errlen);
/* Make safe, close the driver, unload a plugin; sets *d = NULL.  Accepts NULL. */
void device_close(device **d);

long device_desc_n_theta(const struct patctl_device_desc *desc);
/* Offset of block b in theta. */
long device_block_offset(const struct patctl_device_desc *desc, int b);

/* The boundary check of one parameter setting, usable on its own:
 * out = theta checked against desc's block limits.  NaN/Inf -> NONFINITE;
 * out of limits -> clamped into out (count in *nclamped) or LIMIT when
 * policy is LIMIT_REJECT.  out may equal theta. */
int boundary_theta(const struct patctl_device_desc *desc, const float *theta, float *out,
                   limit_policy policy, uint64_t *nclamped);
/* The same for inputs x[B, n_in]. */
int boundary_inputs(const struct patctl_device_desc *desc, const float *x, float *out, int B,
                    limit_policy policy, uint64_t *nclamped);
/* Number of ramp steps needed to go from `from` to `to` (1 = direct):
 * ceil(max_i |to_i - from_i| / max_step_i). */
long boundary_ramp_steps(const struct patctl_device_desc *desc, const float *from,
                         const float *to);
/* `want`, or the float nearest to it that is at most max_step from cur
 * (max_step <= 0: unlimited).  Exact: |result - cur| <= max_step in real
 * arithmetic, despite float rounding. */
float boundary_step_toward(float cur, float want, float max_step);

/* Clamp theta[n_theta] into the limits in place (for optimisers: keeps the
 * model's parameters equal to what the device can be sent).  NaN -> safe. */
void device_project(const device *d, float *theta);
/* The safe setting [n_theta]. */
void device_safe_theta(const struct patctl_device_desc *desc, float *theta);

/* Run a batch through the boundary: y [B, n_out] for x [B, n_in] under theta.
 * Keeps the checked (sent) theta and x for device_vjp and for surrogates:
 * d->sent_theta, d->sent_x.  Returns 0 or a PATCTL_ERR_* code; on error y
 * holds no data to use. */
int device_run(device *d, const float *theta, const float *x, int B, float *y);

/* The same query sent in parts (training micro-batches, controller/microbatch.c):
 * one logical query of B rows, the same as device_run(d, theta, x, B, y),
 * sent as consecutive row ranges in order:
 *   device_query_begin(d, theta, B)      boundary check of theta, ramp, the query id
 *   device_query_part(d, x, r0, R, y)    rows [r0, r0+R) (r0 = the rows sent so far):
 *                                        inputs checked into sent_x + r0, driver run
 *                                        with the query's id and row0 = next_row0 + r0,
 *                                        retried as device_run retries
 *   device_query_end(d)                  after the last part (r0 + R == B): sent_B = B,
 *                                        the query counted once
 * so a device whose rows depend only on (seed, id, absolute row) gives
 * exactly device_run's result, and sent_theta/sent_x/sent_id/sent_row0 (for
 * device_vjp and surrogates) hold the whole query.  A failed call leaves no
 * query open; the caller must not send further parts (PATCTL_ERR_STATE). */
int device_query_begin(device *d, const float *theta, int B);
int device_query_part(device *d, const float *x, int r0, int R, float *y);
int device_query_end(device *d);

/* Exact VJP of the simulation at the last batch (drivers with
 * PATCTL_DEV_HAS_VJP only).  ACCUMULATES into gx [B, n_in] and gtheta. */
int device_vjp(device *d, const float *gy, float *gx, float *gtheta);

/* Put the device into its safe setting. */
int device_make_safe(device *d);

/* Hook for messages (clamps, faults, retries); default prints to stderr. */
void device_set_logger(device *d, device_log_fn fn, void *user);
/* Hook called after every driver run() call (see device_journal_entry);
 * NULL switches the journal off.  devices/ stores nothing itself. */
void device_set_journal(device *d, device_journal_fn fn, void *user);

#endif
