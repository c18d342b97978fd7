/* PAT forward with the device and the surrogate overlapped (see overlap.h).
 *
 * The boundary check is deterministic, so this thread applies it to private
 * copies of theta and x and runs the surrogate on them while a helper thread
 * runs device_run (which applies the same check, plus ramps and retries).
 * After both, the copies are compared with what the device was really sent
 * (d->sent_theta, d->sent_x); if they ever differed, the surrogate is run
 * again on the sent values, so the result is always the sequential one. */
#include "controller/overlap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int pat_overlap = 1;

typedef struct {
    device *d;
    const float *theta, *x;
    int R;
    float *y;
    int rc;
} dev_job;

static void *dev_main(void *arg)
{
    dev_job *j = arg;
    j->rc = device_run(j->d, j->theta, j->x, j->R, j->y);
    return NULL;
}

static int sequential(device *d, surrogate *sur, const float *theta, const float *x, int R, float *y,
                      float *ysur, int *sf)
{
    int rc = device_run(d, theta, x, R, y);
    if (rc)
        return rc;
    rc = surrogate_forward(sur, d->sent_theta, d->sent_x, R, ysur);
    *sf = rc != 0;
    return rc;
}

int pat_forward(device *d, surrogate *sur, const float *theta, const float *x, int R, float *y, float *ysur,
                int *surrogate_failed)
{
    *surrogate_failed = 0;
    if (!pat_overlap || R <= 0)
        return sequential(d, sur, theta, x, R, y, ysur, surrogate_failed);
    size_t nx = (size_t)R * (size_t)d->desc.n_in;
    float *th = malloc(sizeof(float) * ((size_t)d->n_theta + 1)), *xc = malloc(sizeof(float) * nx);
    if (!th || !xc || boundary_theta(&d->desc, theta, th, d->limits, NULL) ||
        boundary_inputs(&d->desc, x, xc, R, d->limits, NULL)) {
        /* no memory, or values the boundary will refuse: no overlap */
        free(th);
        free(xc);
        return sequential(d, sur, theta, x, R, y, ysur, surrogate_failed);
    }
    dev_job j = {d, theta, x, R, y, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, dev_main, &j)) {
        free(th);
        free(xc);
        return sequential(d, sur, theta, x, R, y, ysur, surrogate_failed);
    }
    int src = surrogate_forward(sur, th, xc, R, ysur);
    pthread_join(t, NULL);
    int same = j.rc == 0 && memcmp(th, d->sent_theta, sizeof(float) * (size_t)d->n_theta) == 0 &&
               memcmp(xc, d->sent_x, sizeof(float) * nx) == 0;
    free(th);
    free(xc);
    if (j.rc)
        return j.rc;
    if (!same)
        src = surrogate_forward(sur, d->sent_theta, d->sent_x, R, ysur);
    *surrogate_failed = src != 0;
    return src;
}
