/* Keep the device busy: in PAT, while a physical layer's batch is on the
 * device, compute what does not depend on its result — the surrogate's
 * forward pass at the very values sent (for the backward pass). */
#ifndef PATCTL_OVERLAP_H
#define PATCTL_OVERLAP_H

#include "devices/device.h"
#include "surrogate/surrogate.h"

/* 1 (default): this thread drives the device while a thread of the team
 * (surrogate/team.h) runs the surrogate; 0, or a team of one thread: one
 * after the other.  Results are identical either way (tests/test_remote.c
 * and tests/test_parallel.c check). */
extern int pat_overlap;

/* y [R, n_out] = device_run(d, theta, x, R) and ysur = surrogate_forward at
 * d->sent_theta, d->sent_x (what the boundary let through).  Returns the
 * device's error (y and ysur then hold nothing to use) or the surrogate's. */
int pat_forward(device *d, surrogate *sur, const float *theta, const float *x, int R, float *y, float *ysur,
                int *surrogate_failed);

#endif
