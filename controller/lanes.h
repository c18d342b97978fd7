/* Lanes: several work items in flight over a model's devices, so that
 * while item k waits on device d, item k+1 computes its digital layers and
 * uses device d' != d.  The machinery behind pipelined evaluation
 * (eval_pipe.c: an item = a test batch) and training micro-batches
 * (microbatch.c: an item = a row slice of the training batch).
 *
 * Every device is called in item order (a per-device turn: item k calls
 * device d only after item k-1 has finished its call to d), so each device
 * sees the same queries in the same order as items run one after the other.
 * Only the device waits overlap: the digital work of all lanes runs one
 * lane at a time (a CPU token), and every device's log and journal hook
 * (the run store's SQLite connection) and notes are called under one mutex.
 * With one lane the items run one after the other on the calling thread. */
#ifndef PATCTL_LANES_H
#define PATCTL_LANES_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "controller/model.h"

enum { LANES_MAX = 8 };

typedef void (*fault_note_fn)(void *user, const char *msg);

struct lanes;

/* What an item function sees of its lane. */
typedef struct lane_ctx {
    struct lanes *p;        /* the engine */
    int lane;               /* 0 .. lanes-1: index for per-lane storage of the caller */
    long k;                 /* the item in hand */
    device_gate gate;       /* bracket every device call of the item with it
                               (model_forward_lane, model_forward_slice) */
    int refused;            /* the gate saw a call of this lane refused at the
                               safety boundary (the caller resets it per try) */
    int aborted;            /* the gate refused entry: stop request or an earlier
                               item failed; the item must return */
    /* engine-private */
    int has_cpu;
    uint64_t rej0;
    pthread_t th;
    char err[1024];         /* the item's error message */
} lane_ctx;

/* Item l->k on lane l->lane, with the CPU token held; 0 or an error code
 * with its message in l->err. */
typedef int (*lanes_item_fn)(void *user, lane_ctx *l);

/* Runs items 0 .. n-1 over `lanes` lanes (1..LANES_MAX).  The first item (in
 * item order) that fails makes later items give up at their next device
 * call, and its error (code, message into err) is returned.  *stop (may be
 * NULL) stops it cleanly: PATCTL_ERR_INTERRUPTED with err empty.  *done =
 * items completed.  note (may be NULL) is what lanes_note calls.  All
 * threads are joined before it returns. */
int lanes_run(model *m, long n, int lanes, lanes_item_fn fn, void *user, volatile sig_atomic_t *stop,
              fault_note_fn note, void *note_user, long *done, char *err, size_t errlen);

/* note(note_user, msg) under the hook mutex. */
void lanes_note(lane_ctx *l, const char *msg);
/* Nonzero once a stop was requested. */
int lanes_stopping(const lane_ctx *l);

#endif
