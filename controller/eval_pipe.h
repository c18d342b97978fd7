/* Pipelined evaluation: K lanes (controller/lanes.h) keep several test
 * batches in flight, so that while batch k waits on device d, batch k+1
 * computes its digital layers and uses device d' != d ([train]
 * eval_inflight, --eval-inflight).
 *
 * Bit-identical to one batch after the other: every device is queried in
 * batch order (the lanes' per-device turn), so each device sees the same
 * queries with the same query ids (and a seeded simulator draws the same
 * noise); the confusion counts are sums, whatever the order they are added
 * in.  Used only when every physical device is a `remote` device
 * (eval_pipe_usable): in-process simulators compute on the controller's own
 * cores, so they gain nothing from it. */
#ifndef PATCTL_EVAL_PIPE_H
#define PATCTL_EVAL_PIPE_H

#include <signal.h>

#include "controller/data.h"
#include "controller/lanes.h"
#include "controller/model.h"

enum { EVAL_MAX_INFLIGHT = LANES_MAX };

/* rc is an error code a device fault produces (the caller still checks
 * that no batch was refused at the safety boundary). */
int eval_fault_code(int rc);

/* Nonzero when pipelining applies to m: it has a physical layer and every
 * physical layer's device is a `remote` device. */
int eval_pipe_usable(const model *m);

/* The test set d in batches of B0 over `lanes` lanes (2..EVAL_MAX_INFLIGHT).
 * Failures as the sequential evaluation in train.c: a batch failing with a
 * device fault is run again (max_tries tries in all), every failure goes to
 * note(user, msg), *retries counts the batches run again; the first batch
 * (in batch order) that fails for good fails the evaluation with its error.
 * *stop (may be NULL) stops it cleanly (PATCTL_ERR_INTERRUPTED).  All
 * threads are joined before it returns.  On success *hits = correct
 * predictions, conf[true][predicted] (classes < 10) filled. */
int eval_pipelined(model *m, const dataset *d, int B0, int lanes, int max_tries, fault_note_fn note, void *user,
                   long *retries, volatile sig_atomic_t *stop, long *hits, double *sse, int conf[10][10], char *err,
                   size_t errlen);

#endif
