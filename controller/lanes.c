/* Lanes (see lanes.h).
 *
 * Threads: one per lane (none with one lane); the caller only starts and
 * joins them.  Lane j takes the next item k (in order) and runs fn on it.
 * All shared state is in `lanes` under p->mu (one condition variable,
 * broadcast on every change):
 *   next       the next item to take
 *   turn[i]    the first item that has not yet used device i successfully;
 *              item k may call device i when turn[i] >= k (> k only for a
 *              retry of k) and nobody else is calling it (busy[i])
 *   cpu        a lane holds the CPU token while it computes digital layers
 *   fail_at    the smallest item that failed (LONG_MAX: none); lanes
 *              working on later items give up at their next wait
 * Progress: the smallest unfinished item k always may go on (every item
 * before it used every device, so turn[i] >= k for all i).
 *
 * A failed device call does not advance the device's turn, so when an
 * item retries after a fault on the FIRST device of the graph, the retry
 * still comes before item k+1 on it. */
#include "controller/lanes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The hooks of one device, called under lanes.hook_mu. */
typedef struct hook {
    struct lanes *p;
    device_journal_fn journal;
    void *journal_user;
    device_log_fn log;
    void *log_user;
} hook;

typedef struct lanes {
    model *m;
    long n;                         /* items */
    lanes_item_fn fn;
    void *user;
    fault_note_fn note;
    void *note_user;
    volatile sig_atomic_t *stop;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    long next, fail_at, done;
    int cpu, fail_rc;
    char fail_err[1024];
    long turn[CFG_MAX_DEVICES];
    int busy[CFG_MAX_DEVICES];

    pthread_mutex_t hook_mu;        /* device log/journal hooks and notes */
    hook hooks[CFG_MAX_DEVICES];
} lanes;

/* ---- hooks, serialised ---- */

static void journal_wrap(void *user, const device *d, const device_journal_entry *e)
{
    hook *h = user;
    pthread_mutex_lock(&h->p->hook_mu);
    h->journal(h->journal_user, d, e);
    pthread_mutex_unlock(&h->p->hook_mu);
}

static void log_wrap(void *user, const char *dev, int level, const char *msg)
{
    hook *h = user;
    pthread_mutex_lock(&h->p->hook_mu);
    h->log(h->log_user, dev, level, msg);
    pthread_mutex_unlock(&h->p->hook_mu);
}

static void hooks_install(lanes *p)
{
    for (int i = 0; i < p->m->n_devices; i++) {
        device *d = p->m->devices[i];
        hook *h = &p->hooks[i];
        *h = (hook){.p = p, .journal = d->journal, .journal_user = d->journal_user, .log = d->log,
                    .log_user = d->log_user};
        if (d->journal)
            d->journal = journal_wrap, d->journal_user = h;
        d->log = log_wrap, d->log_user = h;
    }
}

static void hooks_restore(lanes *p)
{
    for (int i = 0; i < p->m->n_devices; i++) {
        device *d = p->m->devices[i];
        const hook *h = &p->hooks[i];
        d->journal = h->journal, d->journal_user = h->journal_user;
        d->log = h->log, d->log_user = h->log_user;
    }
}

void lanes_note(lane_ctx *l, const char *msg)
{
    lanes *p = l->p;
    if (!p->note)
        return;
    pthread_mutex_lock(&p->hook_mu);
    p->note(p->note_user, msg);
    pthread_mutex_unlock(&p->hook_mu);
}

/* ---- turns (all under p->mu) ---- */

static int stopping(const lanes *p) { return p->stop && *p->stop; }

int lanes_stopping(const lane_ctx *l) { return stopping(l->p); }

/* Lane l must give up its item: a stop request, or an earlier item failed. */
static int must_abort(const lane_ctx *l) { return stopping(l->p) || l->k > l->p->fail_at; }

/* Wait on the condition variable, waking every 20 ms to see *stop (set by a
 * signal handler, which cannot signal the condition variable). */
static void wait_a_while(lanes *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000L;
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void cpu_take(lane_ctx *l)
{
    lanes *p = l->p;
    while (p->cpu)
        pthread_cond_wait(&p->cv, &p->mu); /* a holder always gives it back */
    p->cpu = 1;
    l->has_cpu = 1;
}

static void cpu_give(lane_ctx *l)
{
    if (l->has_cpu) {
        l->p->cpu = 0;
        l->has_cpu = 0;
        pthread_cond_broadcast(&l->p->cv);
    }
}

static int dev_index(const model *m, const device *d)
{
    for (int i = 0; i < m->n_devices; i++)
        if (m->devices[i] == d)
            return i;
    return -1;
}

static int gate_enter(void *user, device *d)
{
    lane_ctx *l = user;
    lanes *p = l->p;
    int i = dev_index(p->m, d);
    if (i < 0)
        return PATCTL_ERR_STATE;
    pthread_mutex_lock(&p->mu);
    cpu_give(l);
    while (!(p->turn[i] >= l->k && !p->busy[i]) && !must_abort(l))
        wait_a_while(p);
    if (must_abort(l)) {
        l->aborted = 1;
        pthread_mutex_unlock(&p->mu);
        return PATCTL_ERR_INTERRUPTED;
    }
    p->busy[i] = 1;
    l->rej0 = d->st.rejected; /* the device is ours until gate_leave */
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void gate_leave(void *user, device *d, int rc)
{
    lane_ctx *l = user;
    lanes *p = l->p;
    int i = dev_index(p->m, d);
    pthread_mutex_lock(&p->mu);
    if (d->st.rejected != l->rej0)
        l->refused = 1;
    p->busy[i] = 0;
    if (!rc && p->turn[i] < l->k + 1)
        p->turn[i] = l->k + 1;
    pthread_cond_broadcast(&p->cv);
    cpu_take(l);
    pthread_mutex_unlock(&p->mu);
}

/* ---- a lane ---- */

static void *lane_main(void *arg)
{
    lane_ctx *l = arg;
    lanes *p = l->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->next >= p->n || p->next > p->fail_at || stopping(p))
            break;
        l->k = p->next++;
        cpu_take(l);
        pthread_mutex_unlock(&p->mu);

        l->err[0] = 0;
        int rc = p->fn(p->user, l);

        pthread_mutex_lock(&p->mu);
        cpu_give(l);
        if (l->aborted)
            break;
        if (rc) {
            if (l->k < p->fail_at) {
                p->fail_at = l->k;
                p->fail_rc = rc;
                snprintf(p->fail_err, sizeof(p->fail_err), "%s", l->err[0] ? l->err : patctl_strerror(rc));
            }
            pthread_cond_broadcast(&p->cv);
            break;
        }
        p->done++;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int lanes_run(model *m, long n, int nl, lanes_item_fn fn, void *user, volatile sig_atomic_t *stop,
              fault_note_fn note, void *note_user, long *done, char *err, size_t errlen)
{
    if (nl < 1 || nl > LANES_MAX || n < 0)
        return PATCTL_ERR_ARG;
    if (errlen)
        err[0] = 0;
    lanes *p = calloc(1, sizeof(*p));
    lane_ctx *L = calloc((size_t)nl, sizeof(*L));
    if (!p || !L) {
        free(p);
        free(L);
        return PATCTL_ERR_NOMEM;
    }
    p->m = m, p->n = n, p->fn = fn, p->user = user, p->stop = stop;
    p->note = note, p->note_user = note_user;
    p->fail_at = LONG_MAX;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->hook_mu, NULL);
    for (int j = 0; j < nl; j++) {
        L[j].p = p;
        L[j].lane = j;
        L[j].gate = (device_gate){.enter = gate_enter, .leave = gate_leave, .user = &L[j]};
    }
    if (nl == 1) {
        lane_main(&L[0]);
    } else {
        hooks_install(p);
        int started = 0;
        for (; started < nl; started++)
            if (pthread_create(&L[started].th, NULL, lane_main, &L[started])) {
                /* stop the lanes already running: every item is > -1 */
                pthread_mutex_lock(&p->mu);
                p->fail_at = -1;
                p->fail_rc = PATCTL_ERR_NOMEM;
                snprintf(p->fail_err, sizeof(p->fail_err), "cannot start lane %d of %d: %s", started + 1, nl,
                         strerror(errno));
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
                break;
            }
        for (int j = 0; j < started; j++)
            pthread_join(L[j].th, NULL);
        hooks_restore(p);
    }
    int rc = 0;
    if (p->fail_at != LONG_MAX) {
        rc = p->fail_rc;
        snprintf(err, errlen, "%s", p->fail_err);
    } else if (p->done < n) {
        rc = PATCTL_ERR_INTERRUPTED;
    }
    if (done)
        *done = p->done;
    pthread_mutex_destroy(&p->hook_mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(L);
    free(p);
    return rc;
}
