/* Pipelined evaluation (see eval_pipe.h) on the lanes of lanes.c: an item
 * is a test batch.  Each lane has its own activations (model_lane) and
 * batch buffers and counts its own hits and confusion matrix; the sums are
 * taken at the end.
 *
 * A retry after a fault on the first device of the graph still comes
 * before the next batch on it (lanes.c), so the queries stay exactly as
 * sequential; a retry after a fault on a later device re-queries the
 * earlier devices after batch k+1 did (new query ids: its noise differs, as
 * any retry's does). */
#include "controller/eval_pipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/loss.h"

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

/* What one lane owns. */
typedef struct eval_lane {
    model_lane ml;
    float *x;                       /* [B0, h*w] */
    uint8_t *y;                     /* [B0] */
    float *t;                       /* regression: [B0, n_targets] */
    long hits, retries;
    int conf[10][10];
} eval_lane;

typedef struct eval_job {
    model *m;
    const dataset *d;
    int B0, max_tries;
    eval_lane *L;
    double *sse;                    /* regression: [batches] squared error of each batch (summed in
                                       batch order at the end: the same bits as one after the other) */
} eval_job;

/* Batch l->k through the graph, tried up to max_tries times, then counted. */
static int eval_item(void *user, lane_ctx *l)
{
    eval_job *j = user;
    eval_lane *el = &j->L[l->lane];
    const dataset *d = j->d;
    long s = l->k * j->B0;
    int B = (int)((d->n - s) < j->B0 ? (d->n - s) : j->B0);
    long px = (long)d->h * d->w;
    for (int b = 0; b < B; b++) {
        memcpy(el->x + b * px, d->x + (s + b) * px, sizeof(float) * (size_t)px);
        el->y[b] = d->y[s + b];
    }
    if (el->t)
        memcpy(el->t, d->t + s * d->n_targets, sizeof(float) * (size_t)B * (size_t)d->n_targets);
    int rc = 0;
    for (int tries = 1;; tries++) {
        l->refused = 0;
        rc = model_forward_lane(j->m, &el->ml, el->x, B, &l->gate, l->err, sizeof(l->err));
        if (l->aborted)
            return PATCTL_ERR_INTERRUPTED;
        int fault = eval_fault_code(rc) && !l->refused;
        if (!rc || !fault || tries >= j->max_tries || lanes_stopping(l))
            break;
        char msg[1200];
        snprintf(msg, sizeof(msg), "evaluation batch of images %ld-%ld failed (try %d of %d): %s; "
                 "running it again", s, s + B - 1, tries, j->max_tries, l->err);
        lanes_note(l, msg);
        el->retries++;
    }
    if (rc) {
        if (j->max_tries > 1 && eval_fault_code(rc)) {
            char why[1024];
            snprintf(why, sizeof(why), "%s", l->err);
            snprintf(l->err, sizeof(l->err), "evaluation failed: images %ld-%ld failed %d times in a row "
                     "(max_failed_steps): %.900s", s, s + B - 1, j->max_tries, why);
        }
        return rc;
    }
    double e = 0;
    score_batch(model_lane_logits(j->m, &el->ml), el->y, el->t, B, j->m->classes, &el->hits, &e, el->conf);
    if (j->sse)
        j->sse[l->k] = e;
    return 0;
}

int eval_pipelined(model *m, const dataset *d, int B0, int lanes, int max_tries, fault_note_fn note_fn, void *user,
                   long *retries, volatile sig_atomic_t *stop, long *hits, double *sse, int conf[10][10],
                   char *err, size_t errlen)
{
    if (B0 <= 0 || B0 > m->cap || lanes < 2 || lanes > EVAL_MAX_INFLIGHT)
        return PATCTL_ERR_ARG;
    eval_job j = {.m = m, .d = d, .B0 = B0, .max_tries = max_tries < 1 ? 1 : max_tries};
    j.L = calloc((size_t)lanes, sizeof(*j.L));
    if (!j.L)
        return PATCTL_ERR_NOMEM;
    long nb = (d->n + B0 - 1) / B0;
    int rc = 0;
    if (d->n_targets > 0 && !(j.sse = calloc((size_t)nb + 1, sizeof(double))))
        rc = PATCTL_ERR_NOMEM;
    long px = (long)d->h * d->w;
    for (int i = 0; i < lanes && !rc; i++) {
        j.L[i].x = malloc(sizeof(float) * (size_t)B0 * (size_t)px);
        j.L[i].y = malloc((size_t)B0);
        if (d->n_targets > 0)
            j.L[i].t = malloc(sizeof(float) * (size_t)B0 * (size_t)d->n_targets);
        if (!j.L[i].x || !j.L[i].y || (d->n_targets > 0 && !j.L[i].t) || model_lane_init(m, &j.L[i].ml))
            rc = PATCTL_ERR_NOMEM;
    }
    if (!rc) {
        long done = 0;
        char lerr[1024] = "";
        rc = lanes_run(m, nb, lanes, eval_item, &j, stop, note_fn, user, &done, lerr, sizeof(lerr));
        for (int i = 0; i < m->n_layers; i++)
            if (m->L[i].spec.kind == LAYER_PHYSICAL)
                m->L[i].last_pass = PASS_DEVICE;
        for (int i = 0; i < lanes && retries; i++)
            *retries += j.L[i].retries;
        if (rc == PATCTL_ERR_INTERRUPTED && !lerr[0]) {
            long images = done * B0 < d->n ? done * B0 : d->n;
            snprintf(err, errlen, "evaluation interrupted after %ld of %ld images", images, d->n);
        } else if (rc) {
            snprintf(err, errlen, "%s", lerr);
        } else {
            long h = 0;
            double e = 0;
            for (long k = 0; j.sse && k < nb; k++)
                e += j.sse[k];
            memset(conf, 0, sizeof(int) * 100);
            for (int i = 0; i < lanes; i++) {
                h += j.L[i].hits;
                for (int a = 0; a < 10; a++)
                    for (int b = 0; b < 10; b++)
                        conf[a][b] += j.L[i].conf[a][b];
            }
            *hits = h;
            if (sse)
                *sse = e;
        }
    }
    for (int i = 0; i < lanes; i++) {
        free(j.L[i].x);
        free(j.L[i].y);
        free(j.L[i].t);
        model_lane_free(&j.L[i].ml);
    }
    free(j.L);
    free(j.sse);
    return rc;
}
