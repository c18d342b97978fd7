/* The training loop: PAT, in-silico, ideal and SPSA training of a model,
 * evaluation on the device, checkpoints and resume through the run store. */
#ifndef PATCTL_TRAIN_H
#define PATCTL_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/runstore.h"
#include "devices/device.h"

#define TRAIN_MAX_EPOCHS 1000

struct model;

typedef struct epoch_record {
    double loss;          /* mean training loss */
    double train_acc;     /* running accuracy on the training batches */
    double seconds;       /* wall time of the epoch */
    double device_seconds;
    double test_acc;      /* on the device after this epoch, -1 = not evaluated */
} epoch_record;

typedef struct train_result {
    int epochs_done;
    int interrupted;          /* stopped by SIGINT/SIGTERM */
    int resumed;              /* continued from a checkpoint */
    double test_accuracy;     /* on the device, fraction 0..1 (-1 = not evaluated or a regression task) */
    double test_nrmse;        /* regression tasks: NRMSE on the device (-1 = not evaluated) */
    double train_seconds;     /* over all sessions of the run */
    double eval_seconds;
    long steps;               /* applied optimiser steps over the whole run */
    long skipped_steps;       /* steps skipped after a device fault (whole run): their
                                 batch dropped, nothing applied */
    long eval_retries;        /* evaluation batches run again after a device fault */
    device_stats train_dev;   /* device counters during training (whole run) */
    device_stats all_dev;     /* ... and including evaluation */
    int devices_safe;         /* every device put into its safe setting at the end */
    int64_t last_checkpoint;  /* id in the run store, 0 = none */
    int confusion[10][10];    /* [true][predicted] of the evaluation */
    epoch_record epochs[TRAIN_MAX_EPOCHS];
} train_result;

/* What an observer sees after every training step, applied or skipped. */
typedef struct train_step_view {
    int skipped;              /* 1 = this step failed with a device fault and was skipped */
    int rc;                   /* its PATCTL_ERR_* (0 when applied) */
    long steps;               /* applied steps so far (whole run) */
    long skipped_steps;       /* skipped so far (whole run) */
    int epoch;                /* epochs completed */
    long pos;                 /* samples of the epoch in progress used (the skipped batch counts) */
    long n_params;
    const float *params, *opt_m, *opt_v;  /* [n_params]: parameters, optimiser moments */
    uint64_t opt_t;           /* the optimiser's step counter */
} train_step_view;

typedef struct train_options {
    int tty;                  /* draw a progress bar */
    int quiet;
    volatile sig_atomic_t *stop;  /* set asynchronously to stop cleanly; may be NULL */
    runstore *store;          /* record into this run store; NULL = record nothing */
    const checkpoint *resume; /* continue from this checkpoint (needs store); NULL = fresh */
    /* called after every training step, applied or skipped; may be NULL */
    void (*on_step)(void *user, const train_step_view *v);
    void *on_step_user;
} train_options;

/* Train per c (mode, optimiser, schedule, epochs), evaluate on the device.
 * With a store: writes the device descriptions (fresh runs), the journal,
 * step/epoch metrics, evaluations and checkpoints (every checkpoint_every
 * steps, at epoch ends, at the end, and when stopped by *o->stop).  Returns
 * PATCTL_ERR_INTERRUPTED when stopped; devices are made safe on every exit.
 *
 * Device faults (a query that still fails after the device's and the
 * link's retries: timeout, I/O, malformed/NaN/wrong-sized reply, device
 * error, disconnected; not refusals at the safety boundary, nor config,
 * numeric or run-store errors): with c->max_failed_steps > 0 the step is
 * skipped — parameters, optimiser moments and step counter stay exactly as
 * they were, the batch is dropped (the data position and the RNG streams
 * advance as if it had been used), the fault is logged (run store log
 * table, source "train"; a step row with status 'skipped', the number of
 * the step it would have been, rc and error) and counted in
 * res->skipped_steps.  The max_failed_steps-th failed step in a row stops
 * the run with that error after writing a checkpoint; checkpoints keep the
 * count of failed steps in a row, so a resumed run counts on from it.  An evaluation batch that fails is run again,
 * up to max_failed_steps tries in all, then the evaluation (and the run)
 * fails; it is never counted from a bad or missing result.  With
 * max_failed_steps = 0 the first device fault stops the run. */
int train_run(const run_config *c, const dataset *train, const dataset *test,
              const train_options *o, train_result *res, char *err, size_t errlen);

/* Accuracy and confusion matrix [true][predicted] (classes <= 10 counted)
 * of the model on d, physical layers on the device; for a regression task
 * (d->n_targets > 0) *acc is the NRMSE instead.  Checks *stop between
 * batches (PATCTL_ERR_INTERRUPTED).  The first failing batch fails it. */
int train_evaluate(struct model *m, const dataset *d, int eval_batch, volatile sig_atomic_t *stop,
                   double *acc, int conf[10][10], char *err, size_t errlen);

/* The same with `inflight` batches in flight (eval_pipe.h; 1 = one after
 * the other; identical results) and a batch failing with a device fault run
 * again, max_tries tries in all; *retries (may be NULL) += batches run again. */
int train_evaluate_inflight(struct model *m, const dataset *d, int eval_batch, int inflight, int max_tries,
                            long *retries, volatile sig_atomic_t *stop, double *acc, int conf[10][10], char *err,
                            size_t errlen);

/* Put a checkpoint's device state back: the setting each device held
 * (ramped to, when a block limits its step), then the query counters and
 * statistics (a seeded simulator then continues the same noise stream). */
int train_restore_devices(struct model *m, const checkpoint *ck, char *err, size_t errlen);

/* The learning rate at step t (0-based) of total steps. */
double train_lr(const run_config *c, long t, long total);

#endif
