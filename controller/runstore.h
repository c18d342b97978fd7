/* The run store: one SQLite database per run, <run dir>/run.sqlite, in WAL
 * mode, readable while a run writes it (sqlite3 shell, Python's sqlite3).
 * The schema is in runstore.c (SCHEMA) and documented in README.md ("Where
 * the data of a run lives").
 *
 * What it holds: the start record (run: uid, time, host, version, the
 * config; device: descriptions, units, limits; param_block, param_view: the
 * parameter layout), one session per process that worked on the run (train,
 * resume, eval) with its stop record, metrics per step and epoch,
 * evaluations, the device journal (query rows referencing setting rows:
 * every parameter setting is stored once), device log messages, and
 * checkpoints (parameters, optimiser state, RNG states, device query
 * counters, data position), each written in one transaction.
 *
 * Arrays are BLOBs of little-endian float32 (labels/orders: uint32, counts:
 * int32), row-major, shapes in the rows beside them.
 *
 * Writes go into an open transaction that runstore_commit() ends (the
 * training loop commits once per step); checkpoints, session records and
 * the start record commit at once.  Errors inside the journal callback are
 * kept and reported by runstore_failed(). */
#ifndef PATCTL_RUNSTORE_H
#define PATCTL_RUNSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "controller/config.h"
#include "devices/device.h"

#define RUNSTORE_FILE "run.sqlite"
/* 2: step rows of skipped steps (status, attempt, rc, error), checkpoint
 * failed_in_row; 3: evaluation pruned, pruned_entries, prunable_entries.
 * Older stores are read as they are and migrated in place when opened for
 * writing. */
#define RUNSTORE_SCHEMA_VERSION 3

struct model;
typedef struct runstore runstore;

/* Create <dir>/run.sqlite (the directory must exist; the file must not). */
int runstore_create(runstore **out, const char *dir, char *err, size_t errlen);
/* Open an existing run (dir, or the path of its run.sqlite). */
int runstore_open(runstore **out, const char *dir, int writable, char *err, size_t errlen);
/* Commit what is pending and close; sets *rs = NULL; accepts NULL. */
void runstore_close(runstore **rs);
sqlite3 *runstore_db(runstore *rs);
/* 0, or the first error of a write the caller could not see (journal
 * callback); message in runstore_error(). */
int runstore_failed(const runstore *rs);
const char *runstore_error(const runstore *rs);
/* End the open transaction (if any). */
int runstore_commit(runstore *rs);
/* Wall seconds this process spent writing the store (journal, metrics,
 * commits, checkpoints); also in the stop record as store_seconds. */
double runstore_seconds(const runstore *rs);

/* ---- start record ---- */
/* The run row: uid, time, host, version, mode, seed, the effective config
 * (config_format) and the original file text (may be NULL), the command. */
int runstore_write_run(runstore *rs, const run_config *c, const char *file_text, const char *argv);
/* Devices (description, units, limits, seeds) and the parameter layout of
 * the model (which slice of the flat parameter vector is which block). */
int runstore_write_model(runstore *rs, const run_config *c, const struct model *m);
/* The effective config text of the run (caller frees). */
char *runstore_config_text(runstore *rs);

/* ---- sessions (one per process) and the stop record ---- */
int runstore_session_begin(runstore *rs, const char *kind, const char *argv, int64_t resumed_from);
int64_t runstore_session(const runstore *rs);
/* The store's schema version: RUNSTORE_SCHEMA_VERSION, or 1 / 2 for an
 * older store opened read-only (2: evaluation has no pruning columns; 1
 * also: its step table has no status/attempt/rc/error and no rows for
 * skipped steps, its checkpoints no failed_in_row). */
int runstore_schema_version(const runstore *rs);
typedef struct runstore_stop {
    const char *status;     /* "success" | "abort" | "fail" */
    const char *reason;     /* NULL on success */
    long steps;             /* training steps done in the whole run */
    long skipped_steps;     /* training steps skipped after device faults (whole run) */
    int epochs_done;
    device_stats dev;       /* device counters over the whole run */
    double test_accuracy;   /* < 0: none */
    int devices_safe;       /* 1 if every device was put into its safe setting */
} runstore_stop;
int runstore_session_end(runstore *rs, const runstore_stop *s);
/* Sessions without a stop record (the process was killed) get one: status
 * "fail", reason "ended without a stop record (killed?)".  Returns how many. */
int runstore_close_dangling(runstore *rs);
/* 1 if the last training session ended with status success. */
int runstore_finished(runstore *rs);

/* ---- journal and log ---- */
/* What journal rows are attributed to: the training step and the phase
 * ("train", "spsa+", "spsa-", "eval", "resume"). */
void runstore_set_context(runstore *rs, long step, const char *phase);
/* Record device i's queries: every query (JOURNAL_ALL), every N-th
 * successful query plus every fault (JOURNAL_EVERY), none (JOURNAL_OFF).
 * Also routes the device's log messages into the log table (and stderr). */
int runstore_attach(runstore *rs, device *d, int device_index, journal_mode mode, long every);
/* One row into the log table (session, time, source, level DEVLOG_*, message),
 * in the open transaction; e.g. source "train" for a skipped step. */
void runstore_log(runstore *rs, const char *source, int level, const char *msg);

/* ---- metrics ---- */
typedef struct step_metrics {
    long step;              /* 1-based over the whole run; a skipped step: the number it would have had */
    long attempt;           /* 1-based over the run: applied + skipped steps, this one included
                               (0: = step, right for a run without skipped steps) */
    int epoch;              /* 1-based */
    int batch;
    double lr, loss, accuracy;  /* loss, accuracy: stored NULL for a skipped step */
    double device_seconds, compute_seconds;
    uint64_t device_queries;  /* cumulative over the run */
    int skipped;            /* 1: failed with a device fault, nothing applied (status 'skipped') */
    int rc;                 /* skipped: the fault's PATCTL_ERR_* code */
    const char *error;      /* skipped: the fault's message (NULL: patctl_strerror(rc)) */
} step_metrics;
int runstore_step(runstore *rs, const step_metrics *m);

typedef struct epoch_metrics {
    int epoch;
    long steps;
    double loss, train_accuracy, seconds, device_seconds, compute_seconds;
    uint64_t device_queries;
    double test_accuracy;   /* < 0: not evaluated */
} epoch_metrics;
int runstore_epoch(runstore *rs, const epoch_metrics *m);

typedef struct eval_record {
    long step;
    int epoch;
    int64_t checkpoint;     /* 0 = none */
    long n;
    double accuracy, seconds;
    uint64_t device_queries;  /* made by this evaluation */
    int classes;
    const int *confusion;   /* [classes, classes] [true][predicted] */
    double pruned;          /* patctl eval --prune: fraction asked (0 = none) */
    double nrmse;           /* regression tasks: the NRMSE (accuracy then NAN); NAN otherwise */
    long pruned_entries, prunable_entries;  /* weights/couplings zeroed, of how many */
} eval_record;
int runstore_evaluation(runstore *rs, const eval_record *e);

/* ---- checkpoints ---- */
typedef struct ckpt_device {
    uint64_t next_id;       /* the device's query counter */
    device_stats st;
    int has_last;
    long n_theta;
    float *last_theta;      /* [n_theta] setting the device held */
} ckpt_device;

typedef struct checkpoint {
    int64_t id;
    long step;              /* steps completed */
    int epoch;              /* epochs completed */
    long pos;               /* samples of the epoch in progress already used */
    int final;              /* 1 = training finished */
    double train_seconds;
    long n_params;
    float *params;          /* [n_params] */
    int opt_kind;           /* optimizer_kind */
    uint64_t opt_t;
    float *opt_m, *opt_v;   /* [n_params] each */
    size_t rng_len;
    unsigned char *rng;     /* every RNG stream's state, concatenated */
    long n_order;
    uint32_t *order;        /* [n_order] the training set's current permutation */
    /* accumulators of the epoch in progress */
    long epoch_steps, hits, seen;
    double loss_sum, dev_s, all_s;
    long skipped;           /* training steps skipped after device faults so far */
    int failed_in_row;      /* of them, the last ones in a row (max_failed_steps counts on from it) */
    /* device use of the evaluations so far (to tell training queries apart) */
    device_stats eval_dev;
    int n_devices;
    ckpt_device dev[CFG_MAX_DEVICES];
    int owned;              /* arrays allocated by runstore_checkpoint_load */
} checkpoint;

/* Write ck in one transaction (pending rows commit with it).  Mid-epoch
 * checkpoints beyond the newest `keep_mid` are deleted in the same
 * transaction (epoch-end and final checkpoints are kept).  ck->id is set. */
int runstore_checkpoint_save(runstore *rs, checkpoint *ck, int keep_mid);
/* Load checkpoint `id` (0 = the newest) into ck (arrays owned by ck). */
int runstore_checkpoint_load(runstore *rs, int64_t id, checkpoint *ck, char *err, size_t errlen);
void checkpoint_free(checkpoint *ck);
/* Before resuming from ck: forget derived rows past it (step rows with
 * attempt > step + skipped or applied ones numbered > step, epoch and
 * evaluation rows; they are recomputed) and mark journal rows of earlier
 * sessions that the resumed run will redo as superseded (raw measurements
 * are never deleted). */
int runstore_rewind(runstore *rs, const checkpoint *ck);
/* Epoch rows 1..n into out[] (loss, accuracy, seconds...) for a resumed
 * run's result. */
int runstore_epochs(runstore *rs, epoch_metrics *out, int n);

/* Little-endian float32 blob helpers for readers (export, tests). */
void runstore_f32_from_le(float *dst, const void *src, long n);

#endif
