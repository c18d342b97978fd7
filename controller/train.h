/* The training loop: PAT, in-silico and ideal training of a model, then
 * evaluation on the device. */
#ifndef PATCTL_TRAIN_H
#define PATCTL_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "controller/config.h"
#include "controller/data.h"
#include "devices/device.h"

#define TRAIN_MAX_EPOCHS 1000

typedef struct epoch_record {
    double loss;          /* mean training loss */
    double train_acc;     /* running accuracy on the training batches */
    double seconds;       /* wall time of the epoch */
    double device_seconds;
} epoch_record;

typedef struct train_result {
    int epochs_done;
    int interrupted;          /* stopped by SIGINT/SIGTERM */
    double test_accuracy;     /* on the device, fraction 0..1 (-1 = not evaluated) */
    double train_seconds;
    double eval_seconds;
    long steps;
    device_stats train_dev;   /* device counters during training */
    device_stats all_dev;     /* ... and including evaluation */
    int confusion[10][10];    /* [true][predicted] of the evaluation */
    epoch_record epochs[TRAIN_MAX_EPOCHS];
} train_result;

typedef struct train_options {
    int tty;                  /* draw a progress bar */
    int quiet;
    volatile sig_atomic_t *stop;  /* set asynchronously to stop cleanly; may be NULL */
} train_options;

int train_run(const run_config *c, const dataset *train, const dataset *test,
              const train_options *o, train_result *res, char *err, size_t errlen);

#endif
