/* Pipelined evaluation (see eval_pipe.h).
 *
 * Threads: one per lane; the caller only starts and joins them.  Lane j
 * takes the next batch index k (in order), gathers it into its own x/y and
 * runs model_forward_lane into its own activations.  All shared state is in
 * `pipe` under p->mu (one condition variable, broadcast on every change):
 *   next       the next batch to take
 *   turn[i]    the first batch that has not yet used device i successfully;
 *              batch k may call device i when turn[i] >= k (> k only for a
 *              retry of k) and nobody else is calling it (busy[i])
 *   cpu        a lane holds the CPU token while it computes digital layers
 *   fail_at    the smallest batch that failed for good (LONG_MAX: none);
 *              lanes working on later batches give up at their next wait
 * Progress: the smallest unfinished batch k always may go on (every batch
 * before it used every device, so turn[i] >= k for all i).
 *
 * A failed device call does not advance the device's turn, so when the
 * FIRST device of the graph faults, the retry of batch k still comes before
 * batch k+1 on it and the queries stay exactly as sequential; a retry after
 * a fault on a later device re-queries the earlier devices after batch k+1
 * did (new query ids: its noise differs, as any retry's does). */
#include "controller/eval_pipe.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/loss.h"

/* The hooks of one device, called under pipe.hook_mu. */
typedef struct hook {
    struct pipe *p;
    device_journal_fn journal;
    void *journal_user;
    device_log_fn log;
    void *log_user;
} hook;

typedef struct pipe {
    model *m;
    const dataset *d;
    int B0, max_tries;
    long nb;                        /* batches */
    fault_note_fn note;
    void *user;
    volatile sig_atomic_t *stop;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    long next, fail_at, images_done, retries;
    int cpu, fail_rc;
    char fail_err[1024];
    long turn[CFG_MAX_DEVICES];
    int busy[CFG_MAX_DEVICES];

    pthread_mutex_t hook_mu;        /* device log/journal hooks and note() */
    hook hooks[CFG_MAX_DEVICES];
} pipe;

typedef struct lane {
    pipe *p;
    model_lane ml;
    float *x;                       /* [B0, h*w] */
    uint8_t *y;                     /* [B0] */
    long k;                         /* batch in hand */
    int has_cpu, aborted, refused;
    uint64_t rej0;                  /* rejected counter of the device being called */
    long hits;
    int conf[10][10];
    pthread_t th;
    char err[1024];
} lane;

int eval_fault_code(int rc)
{
    switch (rc) {
    case PATCTL_ERR_IO:
    case PATCTL_ERR_FORMAT:
    case PATCTL_ERR_DEVICE:
    case PATCTL_ERR_TIMEOUT:
    case PATCTL_ERR_NONFINITE:
    case PATCTL_ERR_PROTOCOL:
    case PATCTL_ERR_DISCONNECTED:
        return 1;
    default:
        return 0;
    }
}

int eval_pipe_usable(const model *m)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const layer *L = &m->L[i];
        if (L->spec.kind != LAYER_PHYSICAL)
            continue;
        if (!L->dev || strcmp(L->dev->drv->name, "remote") != 0)
            return 0;
        n++;
    }
    return n > 0;
}

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

static void hooks_install(pipe *p)
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

static void hooks_restore(pipe *p)
{
    for (int i = 0; i < p->m->n_devices; i++) {
        device *d = p->m->devices[i];
        const hook *h = &p->hooks[i];
        d->journal = h->journal, d->journal_user = h->journal_user;
        d->log = h->log, d->log_user = h->log_user;
    }
}

static void note(pipe *p, const char *msg)
{
    if (!p->note)
        return;
    pthread_mutex_lock(&p->hook_mu);
    p->note(p->user, msg);
    pthread_mutex_unlock(&p->hook_mu);
}

/* ---- turns (all under p->mu) ---- */

static int stopping(const pipe *p) { return p->stop && *p->stop; }

/* Lane l must give up its batch: a stop request, or an earlier batch failed. */
static int must_abort(const lane *l) { return stopping(l->p) || l->k > l->p->fail_at; }

/* Wait on the condition variable, waking every 20 ms to see *stop (set by a
 * signal handler, which cannot signal the condition variable). */
static void wait_a_while(pipe *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000L;
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void cpu_take(lane *l)
{
    pipe *p = l->p;
    while (p->cpu)
        pthread_cond_wait(&p->cv, &p->mu); /* a holder always gives it back */
    p->cpu = 1;
    l->has_cpu = 1;
}

static void cpu_give(lane *l)
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
    lane *l = user;
    pipe *p = l->p;
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
    lane *l = user;
    pipe *p = l->p;
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

/* Batch k through the graph, tried up to max_tries times; 0, an error (in
 * l->err), or PATCTL_ERR_INTERRUPTED with l->aborted set. */
static int run_batch(lane *l, long s, int B)
{
    pipe *p = l->p;
    device_gate g = {.enter = gate_enter, .leave = gate_leave, .user = l};
    int rc = 0;
    for (int tries = 1;; tries++) {
        pthread_mutex_lock(&p->mu);
        cpu_take(l);
        pthread_mutex_unlock(&p->mu);
        l->refused = 0;
        rc = model_forward_lane(p->m, &l->ml, l->x, B, &g, l->err, sizeof(l->err));
        pthread_mutex_lock(&p->mu);
        cpu_give(l);
        pthread_mutex_unlock(&p->mu);
        if (l->aborted)
            return PATCTL_ERR_INTERRUPTED;
        int fault = eval_fault_code(rc) && !l->refused;
        if (!rc || !fault || tries >= p->max_tries || stopping(p))
            break;
        char msg[1200];
        snprintf(msg, sizeof(msg), "evaluation batch of images %ld-%ld failed (try %d of %d): %s; "
                 "running it again", s, s + B - 1, tries, p->max_tries, l->err);
        note(p, msg);
        pthread_mutex_lock(&p->mu);
        p->retries++;
        pthread_mutex_unlock(&p->mu);
    }
    if (rc && p->max_tries > 1 && eval_fault_code(rc)) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", l->err);
        snprintf(l->err, sizeof(l->err), "evaluation failed: images %ld-%ld failed %d times in a row "
                 "(max_failed_steps): %.900s", s, s + B - 1, p->max_tries, why);
    }
    return rc;
}

static void *lane_main(void *arg)
{
    lane *l = arg;
    pipe *p = l->p;
    const model *m = p->m;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->next >= p->nb || p->next > p->fail_at)
            break;
        if (stopping(p))
            break;
        l->k = p->next++;
        pthread_mutex_unlock(&p->mu);

        long s = l->k * p->B0;
        int B = (int)((p->d->n - s) < p->B0 ? (p->d->n - s) : p->B0);
        long px = (long)p->d->h * p->d->w;
        for (int b = 0; b < B; b++) {
            memcpy(l->x + b * px, p->d->x + (s + b) * px, sizeof(float) * (size_t)px);
            l->y[b] = p->d->y[s + b];
        }
        int rc = run_batch(l, s, B);

        pthread_mutex_lock(&p->mu);
        if (l->aborted)
            break;
        if (rc) {
            if (l->k < p->fail_at) {
                p->fail_at = l->k;
                p->fail_rc = rc;
                snprintf(p->fail_err, sizeof(p->fail_err), "%s", l->err);
            }
            pthread_cond_broadcast(&p->cv);
            break;
        }
        const float *z = model_lane_logits(m, &l->ml);
        for (int b = 0; b < B; b++) {
            int c = argmax(z + (long)b * m->classes, m->classes);
            l->hits += (c == l->y[b]);
            if (l->y[b] < 10 && c < 10)
                l->conf[l->y[b]][c]++;
        }
        p->images_done += B;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int eval_pipelined(model *m, const dataset *d, int B0, int lanes, int max_tries, fault_note_fn note_fn, void *user,
                   long *retries, volatile sig_atomic_t *stop, long *hits, int conf[10][10], char *err,
                   size_t errlen)
{
    if (B0 <= 0 || B0 > m->cap || lanes < 2 || lanes > EVAL_MAX_INFLIGHT)
        return PATCTL_ERR_ARG;
    pipe *p = calloc(1, sizeof(*p));
    lane *L = calloc((size_t)lanes, sizeof(*L));
    if (!p || !L) {
        free(p);
        free(L);
        return PATCTL_ERR_NOMEM;
    }
    p->m = m, p->d = d, p->B0 = B0, p->max_tries = max_tries < 1 ? 1 : max_tries;
    p->nb = (d->n + B0 - 1) / B0;
    p->note = note_fn, p->user = user, p->stop = stop;
    p->fail_at = LONG_MAX;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->hook_mu, NULL);

    int rc = 0, started = 0;
    long px = (long)d->h * d->w;
    for (int j = 0; j < lanes && !rc; j++) {
        L[j].p = p;
        L[j].x = malloc(sizeof(float) * (size_t)B0 * (size_t)px);
        L[j].y = malloc((size_t)B0);
        if (!L[j].x || !L[j].y || model_lane_init(m, &L[j].ml))
            rc = PATCTL_ERR_NOMEM;
    }
    if (!rc) {
        hooks_install(p);
        for (; started < lanes; started++)
            if (pthread_create(&L[started].th, NULL, lane_main, &L[started])) {
                /* stop the lanes already running: every batch is > -1 */
                pthread_mutex_lock(&p->mu);
                p->fail_at = -1;
                p->fail_rc = PATCTL_ERR_NOMEM;
                snprintf(p->fail_err, sizeof(p->fail_err), "evaluation: cannot start lane %d of %d: %s",
                         started + 1, lanes, strerror(errno));
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
                break;
            }
        for (int j = 0; j < started; j++)
            pthread_join(L[j].th, NULL);
        hooks_restore(p);
        for (int i = 0; i < m->n_layers; i++)
            if (m->L[i].spec.kind == LAYER_PHYSICAL)
                m->L[i].last_pass = PASS_DEVICE;
        if (retries)
            *retries += p->retries;
        if (p->fail_at != LONG_MAX) {
            rc = p->fail_rc;
            snprintf(err, errlen, "%s", p->fail_err);
        } else if (p->images_done < d->n) { /* stopped */
            rc = PATCTL_ERR_INTERRUPTED;
            snprintf(err, errlen, "evaluation interrupted after %ld of %ld images", p->images_done, d->n);
        } else {
            long h = 0;
            memset(conf, 0, sizeof(int) * 100);
            for (int j = 0; j < lanes; j++) {
                h += L[j].hits;
                for (int a = 0; a < 10; a++)
                    for (int b = 0; b < 10; b++)
                        conf[a][b] += L[j].conf[a][b];
            }
            *hits = h;
        }
    }
    for (int j = 0; j < lanes; j++) {
        free(L[j].x);
        free(L[j].y);
        model_lane_free(&L[j].ml);
    }
    pthread_mutex_destroy(&p->hook_mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(L);
    free(p);
    return rc;
}
