/* PAT forward with the device and the surrogate overlapped (see overlap.h).
 *
 * One parallel region of the thread team (surrogate/team.h): part 0, on the
 * calling thread, runs device_run (boundary check, ramps, retries); part 1,
 * on a team thread, runs the surrogate at theta and x as given.  The boundary
 * passes values within limits unchanged, so afterwards theta and x are
 * compared with what the device was really sent (d->sent_theta, d->sent_x);
 * if they differ (something was clamped), the surrogate is run again on the
 * sent values, so the result is always the sequential one.  No allocation,
 * no thread creation per call. */
#include "controller/overlap.h"

#include <string.h>

#include "surrogate/team.h"

int pat_overlap = 1;

typedef struct {
    device *d;
    surrogate *sur;
    const float *theta, *x;
    int R;
    float *y, *ysur;
    int rc[2];
} pat_job;

static void pat_part(void *arg, int p, int np)
{
    pat_job *j = arg;
    (void)np;
    if (p == 0)
        j->rc[0] = device_run(j->d, j->theta, j->x, j->R, j->y);
    else
        j->rc[1] = surrogate_forward(j->sur, j->theta, j->x, j->R, j->ysur);
}

int pat_forward(device *d, surrogate *sur, const float *theta, const float *x, int R, float *y, float *ysur,
                int *surrogate_failed)
{
    *surrogate_failed = 0;
    int rc;
    if (pat_overlap && R > 0 && !team_inside() && team_threads() > 1) {
        pat_job j = {d, sur, theta, x, R, y, ysur, {0, 0}};
        team_run(pat_part, &j, 2);
        if (j.rc[0])
            return j.rc[0];
        if (j.rc[1] == 0 && memcmp(theta, d->sent_theta, sizeof(float) * (size_t)d->n_theta) == 0 &&
            memcmp(x, d->sent_x, sizeof(float) * (size_t)R * (size_t)d->desc.n_in) == 0)
            return 0;
    } else if ((rc = device_run(d, theta, x, R, y))) {
        return rc;
    }
    rc = surrogate_forward(sur, d->sent_theta, d->sent_x, R, ysur);
    *surrogate_failed = rc != 0;
    return rc;
}
