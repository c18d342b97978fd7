/* The training loop.  Per step (train_step): gather a batch, then by mode
 *   pat       forward on the device, backward through the surrogate's VJP at
 *             exactly what was sent (step_gradient),
 *   insilico  surrogate both ways (step_gradient),
 *   ideal     forward on the device, backward through the device's own exact
 *             VJP (simulated drivers only; step_gradient),
 *   spsa      two forwards on the device at theta +- c*delta per sample pair,
 *             no surrogate, no backward (step_spsa),
 * then the optimiser step at the scheduled learning rate and projection of
 * device parameters into their limits.  Every forward pass on the devices
 * runs in [train] microbatches row slices (microbatch.h; 1 = in one piece),
 * with the same results on row-exact devices.
 *
 * Position in the run: `epoch` epochs completed, `pos` samples of the next
 * epoch used.  Checkpoints (checkpoint_build) capture everything the next
 * step depends on, so a resumed run continues bit for bit: parameters,
 * optimiser moments, every RNG stream, the data permutation and position,
 * each device's query counter (seeded simulators derive their noise from
 * it), setting and statistics, and the epoch's running sums.
 *
 * A step that fails with a device fault (is_device_fault) is skipped
 * (skip_step): nothing of it is applied — the optimiser runs only after every
 * device query of the step succeeded, and SPSA puts its parameters back —
 * the batch is dropped, the fault logged; max_failed_steps in a row stop the
 * run (see train.h). */
#include "controller/train.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/dfa.h"
#include "controller/eval_pipe.h"
#include "controller/loss.h"
#include "controller/microbatch.h"
#include "controller/model.h"
#include "controller/optim.h"
#include "controller/pc.h"
#include "controller/regularize.h"
#include "controller/progress.h"
#include "controller/rng.h"

typedef struct trainer {
    const run_config *c;
    const dataset *tr, *te;
    const train_options *o;
    train_result *res;
    runstore *rs;                 /* may be NULL */
    char *err;
    size_t errlen;

    rng_streams rng;
    model m;
    optimizer opt;
    pass_kind pass;
    int cap;                      /* batch capacity */
    float *x;                     /* [cap, h*w] batch inputs */
    uint8_t *y;                   /* [cap] labels */
    float *tg;                    /* regression: [cap, n_targets] targets, else NULL */
    float *dlogits;               /* [cap, classes] */
    size_t *idx;                  /* [n] the training set's permutation */
    float *p0, *g, *delta;        /* SPSA: [n_params] each */
    pc_state pc;                  /* mode pc: beliefs and prediction errors */
    dfa_state dfa;                /* modes dfa, adfa: feedback matrices, local rules */
    unsigned char *prune_mask;    /* [n_params] 1 = pruned, held at zero (NULL until [train]
                                     prune is applied after prune_after epochs) */
    double prune_frac;            /* fraction the mask holds (0 = none yet; below prune
                                     while prune_ramp grows it) */
    long pruned, prunable;        /* entries (couplings) pruned / prunable */

    long steps_per_epoch, total_steps;
    int epoch;                    /* epochs completed */
    long pos;                     /* samples of the epoch in progress used */
    double t0, seconds_before;    /* session start; training time of earlier sessions */
    device_stats eval_dev;        /* device use of evaluations (whole run) */
    int failed_in_row;            /* consecutive skipped steps */
    int gave_up;                  /* stopped by max_failed_steps */
    int eval_failed;              /* an evaluation failed (device faults) */
    progress pg;

    /* device state at the end of the last step, for a checkpoint taken
     * while an evaluation is under way */
    ckpt_device snap[CFG_MAX_DEVICES];
    device_stats snap_eval_dev;
} trainer;

static int fail(trainer *t, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(trainer *t, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, t->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Samples [start, start+B) (through the permutation idx, or in order) into
 * x, y and (regression, tg != NULL) the targets tg [B, n_targets]. */
static void gather(const dataset *d, const size_t *idx, long start, int B, float *x, uint8_t *y, float *tg)
{
    long px = (long)d->h * d->w;
    for (int b = 0; b < B; b++) {
        size_t s = idx ? idx[start + b] : (size_t)(start + b);
        memcpy(x + b * px, d->x + (long)s * px, sizeof(float) * (size_t)px);
        y[b] = d->y[s];
        if (tg)
            memcpy(tg + (long)b * d->n_targets, d->t + (long)s * d->n_targets, sizeof(float) * (size_t)d->n_targets);
    }
}

static device_stats stats_minus(device_stats a, device_stats b)
{
    a.queries -= b.queries, a.samples -= b.samples, a.ramp_steps -= b.ramp_steps;
    a.clamped -= b.clamped, a.rejected -= b.rejected, a.faults -= b.faults;
    a.retries -= b.retries, a.seconds -= b.seconds;
    return a;
}

static device_stats stats_plus(device_stats a, device_stats b)
{
    a.queries += b.queries, a.samples += b.samples, a.ramp_steps += b.ramp_steps;
    a.clamped += b.clamped, a.rejected += b.rejected, a.faults += b.faults;
    a.retries += b.retries, a.seconds += b.seconds;
    return a;
}

double train_lr(const run_config *c, long t, long total)
{
    if (c->warmup > 0 && t < c->warmup)
        return c->lr * (double)(t + 1) / (double)c->warmup;
    long steps_per_epoch = c->epochs > 0 ? total / c->epochs : total;
    switch (c->schedule) {
    case SCHED_STEP: {
        long ep = steps_per_epoch > 0 ? t / steps_per_epoch : 0;
        return c->lr * pow(c->lr_gamma, (double)(ep / (c->lr_step > 0 ? c->lr_step : 1)));
    }
    case SCHED_COSINE: {
        long span = total - c->warmup;
        double f = span > 0 ? (double)(t - c->warmup) / (double)span : 0.0;
        return 0.5 * c->lr * (1.0 + cos(M_PI * (f > 1 ? 1 : f)));
    }
    case SCHED_CONSTANT:
        break;
    }
    return c->lr;
}

/* ---- device faults ---- */

static uint64_t rejected_count(const model *m)
{
    uint64_t n = 0;
    for (int i = 0; i < m->n_devices; i++)
        n += m->devices[i]->st.rejected;
    return n;
}

/* rc (from a pass over the devices) is a device fault a step may be skipped
 * for: the device or its link failed or answered badly after every retry.
 * A refusal at the safety boundary (the rejected counter grew: the model
 * asked for something the device must not get) is not, nor are argument,
 * memory, config, numeric, interrupt and run-store errors. */
static int is_device_fault(const model *m, int rc, uint64_t rejected_before)
{
    return eval_fault_code(rc) && rejected_count(m) == rejected_before;
}

/* ---- evaluation ---- */

/* train_evaluate, where a batch failing with a device fault is run again
 * (max_tries tries in all; <= 1: none); every failure goes to note();
 * *retries counts the batches run again.  inflight > 1 (and every physical
 * device remote): pipelined over that many lanes (eval_pipe.h), with the
 * same results. */
static int evaluate(model *m, const dataset *d, int eval_batch, int inflight, int max_tries, fault_note_fn note,
                    void *user, long *retries, volatile sig_atomic_t *stop, double *acc, int conf[10][10],
                    char *err, size_t errlen)
{
    long px = (long)d->h * d->w;
    int B0 = eval_batch < m->cap ? eval_batch : m->cap;
    if (inflight > EVAL_MAX_INFLIGHT)
        inflight = EVAL_MAX_INFLIGHT;
    int reg = d->n_targets > 0;
    if (inflight > 1 && d->n > B0 && eval_pipe_usable(m)) {
        long hits = 0;
        double sse = 0;
        int rc = eval_pipelined(m, d, B0, inflight, max_tries, note, user, retries, stop, &hits, &sse, conf, err,
                                errlen);
        if (!rc)
            *acc = score_final(d->n, m->classes, hits, sse, d->t_var, reg);
        return rc;
    }
    float *x = malloc(sizeof(float) * (size_t)B0 * (size_t)px);
    uint8_t *y = malloc((size_t)B0);
    float *tg = reg ? malloc(sizeof(float) * (size_t)B0 * (size_t)d->n_targets) : NULL;
    if (!x || !y || (reg && !tg)) {
        free(x);
        free(y);
        free(tg);
        return PATCTL_ERR_NOMEM;
    }
    long hits = 0;
    double sse = 0;
    int rc = 0;
    memset(conf, 0, sizeof(int) * 100);
    for (long s = 0; s < d->n; s += B0) {
        if (stop && *stop) {
            snprintf(err, errlen, "evaluation interrupted after %ld of %ld images", s, d->n);
            rc = PATCTL_ERR_INTERRUPTED;
            break;
        }
        int B = (int)((d->n - s) < B0 ? (d->n - s) : B0);
        gather(d, NULL, s, B, x, y, tg);
        for (int tries = 1;; tries++) {
            uint64_t rej0 = rejected_count(m);
            rc = model_forward(m, x, B, PASS_DEVICE, err, errlen);
            if (!rc || !is_device_fault(m, rc, rej0) || tries >= max_tries || (stop && *stop))
                break;
            if (note) {
                char msg[700];
                snprintf(msg, sizeof(msg), "evaluation batch of images %ld-%ld failed (try %d of %d): %s; "
                         "running it again", s, s + B - 1, tries, max_tries, err);
                note(user, msg);
            }
            if (retries)
                (*retries)++;
        }
        if (rc) {
            if (max_tries > 1 && is_device_fault(m, rc, rejected_count(m))) {
                char why[400];
                snprintf(why, sizeof(why), "%s", err);
                snprintf(err, errlen, "evaluation failed: images %ld-%ld failed %d times in a row "
                         "(max_failed_steps): %s", s, s + B - 1, max_tries, why);
            }
            break;
        }
        double e = 0;
        score_batch(model_logits(m), y, tg, B, m->classes, &hits, &e, conf);
        sse += e;
    }
    free(x);
    free(y);
    free(tg);
    if (!rc)
        *acc = score_final(d->n, m->classes, hits, sse, d->t_var, reg);
    return rc;
}

int train_evaluate(model *m, const dataset *d, int eval_batch, volatile sig_atomic_t *stop,
                   double *acc, int conf[10][10], char *err, size_t errlen)
{
    return evaluate(m, d, eval_batch, 1, 1, NULL, NULL, NULL, stop, acc, conf, err, errlen);
}

int train_evaluate_inflight(model *m, const dataset *d, int eval_batch, int inflight, int max_tries,
                            long *retries, volatile sig_atomic_t *stop, double *acc, int conf[10][10], char *err,
                            size_t errlen)
{
    return evaluate(m, d, eval_batch, inflight, max_tries, NULL, NULL, retries, stop, acc, conf, err, errlen);
}

/* ---- checkpoints ---- */

static void snapshot_devices(trainer *t)
{
    t->snap_eval_dev = t->eval_dev;
    for (int i = 0; i < t->m.n_devices; i++) {
        const device *d = t->m.devices[i];
        ckpt_device *s = &t->snap[i];
        s->next_id = d->next_id;
        s->st = d->st;
        s->has_last = d->has_last;
        s->n_theta = d->n_theta;
        memcpy(s->last_theta, d->last_theta, sizeof(float) * (size_t)d->n_theta);
    }
}

/* Write a checkpoint of the current position.  from_snapshot: the device
 * state as it was at the end of the last step (an evaluation was cut short). */
static int checkpoint_write(trainer *t, int final, int from_snapshot)
{
    if (!t->rs)
        return 0;
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    ck.step = t->res->steps;
    ck.skipped = t->res->skipped_steps;
    ck.failed_in_row = t->failed_in_row;
    ck.epoch = t->epoch;
    ck.pos = t->pos;
    ck.final = final;
    ck.train_seconds = t->seconds_before + (now_seconds() - t->t0);
    ck.n_params = t->m.n_params;
    ck.params = t->m.params;
    ck.opt_kind = t->opt.kind;
    ck.opt_t = t->opt.t;
    ck.opt_m = t->opt.m;
    ck.opt_v = t->opt.v;
    for (int i = 0; i < N_STREAMS; i++)
        ck.rng_len += rng_state_size(&t->rng, (stream_id)i);
    ck.rng = malloc(ck.rng_len);
    ck.n_order = t->tr->n;
    ck.order = malloc(sizeof(uint32_t) * (size_t)(ck.n_order + 1));
    if (!ck.rng || !ck.order) {
        free(ck.rng);
        free(ck.order);
        return PATCTL_ERR_NOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < N_STREAMS; i++) {
        rng_state_save(&t->rng, (stream_id)i, ck.rng + off);
        off += rng_state_size(&t->rng, (stream_id)i);
    }
    for (long i = 0; i < ck.n_order; i++)
        ck.order[i] = (uint32_t)t->idx[i];
    ck.epoch_steps = t->pg.epoch_steps;
    ck.hits = t->pg.hits;
    ck.seen = t->pg.seen;
    ck.loss_sum = t->pg.loss_sum;
    ck.dev_s = t->pg.dev_s;
    ck.all_s = t->pg.all_s;
    ck.eval_dev = from_snapshot ? t->snap_eval_dev : t->eval_dev;
    ck.n_devices = t->m.n_devices;
    for (int i = 0; i < t->m.n_devices; i++) {
        if (from_snapshot) {
            ck.dev[i] = t->snap[i];
        } else {
            const device *d = t->m.devices[i];
            ck.dev[i] = (ckpt_device){.next_id = d->next_id, .st = d->st, .has_last = d->has_last,
                                      .n_theta = d->n_theta, .last_theta = d->last_theta};
        }
    }
    int rc = runstore_checkpoint_save(t->rs, &ck, t->c->keep_checkpoints);
    free(ck.rng);
    free(ck.order);
    if (rc)
        return fail(t, rc, "run store: %s", runstore_error(t->rs));
    t->res->last_checkpoint = ck.id;
    return 0;
}

int train_restore_devices(model *m, const checkpoint *ck, char *err, size_t errlen)
{
    if (ck->n_devices != m->n_devices) {
        snprintf(err, errlen, "checkpoint has %d devices, the model %d", ck->n_devices, m->n_devices);
        return PATCTL_ERR_FORMAT;
    }
    for (int i = 0; i < m->n_devices; i++) {
        device *d = m->devices[i];
        const ckpt_device *s = &ck->dev[i];
        if (s->n_theta != d->n_theta || !s->last_theta) {
            snprintf(err, errlen, "checkpoint: device %s has %ld parameters, the checkpoint %ld", d->name,
                     d->n_theta, s->n_theta);
            return PATCTL_ERR_FORMAT;
        }
        /* a device whose blocks limit the step must be ramped (through the
         * boundary) to the setting it held; the ramp's queries do not count
         * against the restored counter */
        int limited = 0;
        for (int b = 0; b < d->desc.n_blocks; b++)
            limited |= d->desc.blocks[b].max_step > 0;
        if (limited && s->has_last) {
            int rc = device_run(d, s->last_theta, NULL, 0, NULL);
            if (rc) {
                snprintf(err, errlen, "device %s: restoring its setting: %s", d->name,
                         d->err[0] ? d->err : patctl_strerror(rc));
                return rc;
            }
        }
        d->next_id = s->next_id;
        d->st = s->st;
    }
    return 0;
}

static int trainer_restore(trainer *t, const checkpoint *ck)
{
    model *m = &t->m;
    if (ck->n_params != m->n_params)
        return fail(t, PATCTL_ERR_FORMAT, "checkpoint has %ld parameters, the model %ld", ck->n_params,
                    m->n_params);
    if (ck->n_order != t->tr->n)
        return fail(t, PATCTL_ERR_FORMAT, "checkpoint was taken on %ld training samples, the data has %ld",
                    ck->n_order, t->tr->n);
    size_t need = 0;
    for (int i = 0; i < N_STREAMS; i++)
        need += rng_state_size(&t->rng, (stream_id)i);
    if (ck->rng_len != need || ck->opt_kind != (int)t->opt.kind || ck->pos < 0 || ck->pos > t->tr->n ||
        ck->epoch < 0 || ck->epoch > t->c->epochs)
        return fail(t, PATCTL_ERR_FORMAT, "checkpoint %lld does not fit this run (RNG, optimiser or position)",
                    (long long)ck->id);
    for (long i = 0; i < ck->n_order; i++) {
        if (ck->order[i] >= (uint32_t)t->tr->n)
            return fail(t, PATCTL_ERR_FORMAT, "checkpoint %lld: damaged data order", (long long)ck->id);
        t->idx[i] = ck->order[i];
    }
    memcpy(m->params, ck->params, sizeof(float) * (size_t)m->n_params);
    memcpy(t->opt.m, ck->opt_m, sizeof(float) * (size_t)m->n_params);
    memcpy(t->opt.v, ck->opt_v, sizeof(float) * (size_t)m->n_params);
    t->opt.t = ck->opt_t;
    size_t off = 0;
    for (int i = 0; i < N_STREAMS; i++) {
        rng_state_load(&t->rng, (stream_id)i, ck->rng + off);
        off += rng_state_size(&t->rng, (stream_id)i);
    }
    t->epoch = ck->epoch;
    t->pos = ck->pos;
    t->res->steps = ck->step;
    t->res->skipped_steps = ck->skipped;
    /* the failed steps in a row before the checkpoint count on: a run
     * resumed into a dead device stops after max_failed_steps - k more
     * (at least one try) */
    t->failed_in_row = ck->failed_in_row > 0 ? ck->failed_in_row : 0;
    t->res->epochs_done = ck->epoch;
    t->res->resumed = 1;
    t->res->last_checkpoint = ck->id;
    t->seconds_before = ck->train_seconds;
    t->eval_dev = ck->eval_dev;
    int rc = train_restore_devices(m, ck, t->err, t->errlen);
    if (rc)
        return rc;
    if (t->rs) {
        epoch_metrics em[TRAIN_MAX_EPOCHS];
        memset(em, 0, sizeof(em));
        int n = t->epoch < TRAIN_MAX_EPOCHS ? t->epoch : TRAIN_MAX_EPOCHS;
        runstore_epochs(t->rs, em, n);
        for (int i = 0; i < n; i++) {
            t->res->epochs[i] = (epoch_record){em[i].loss, em[i].train_accuracy, em[i].seconds,
                                               em[i].device_seconds, em[i].test_accuracy};
            if (em[i].test_accuracy >= 0)
                t->res->test_accuracy = em[i].test_accuracy;
        }
    }
    progress_resume(&t->pg, ck->step);
    return 0;
}

/* ---- set-up ---- */

static int trainer_init(trainer *t)
{
    const run_config *c = t->c;
    int rc = rng_streams_init(&t->rng, c->seed);
    if (rc)
        return rc;
    t->cap = c->batch > c->eval_batch ? c->batch : c->eval_batch;
    long px = (long)t->tr->h * t->tr->w;
    t->x = malloc(sizeof(float) * (size_t)t->cap * (size_t)px);
    t->y = malloc((size_t)t->cap);
    if (t->tr->n_targets > 0 && !(t->tg = malloc(sizeof(float) * (size_t)t->cap * (size_t)t->tr->n_targets)))
        return PATCTL_ERR_NOMEM;
    t->idx = malloc(sizeof(size_t) * (size_t)(t->tr->n + 1));
    if (!t->x || !t->y || !t->idx)
        return PATCTL_ERR_NOMEM;
    for (long i = 0; i < t->tr->n; i++)
        t->idx[i] = (size_t)i;
    if ((rc = model_build(&t->m, c, t->tr->h, t->tr->w, t->cap, &t->rng, t->err, t->errlen)))
        return rc;
    model *m = &t->m;
    if (t->tr->n_targets > 0 && m->classes != t->tr->n_targets)
        return fail(t, PATCTL_ERR_CONFIG, "the model has %d outputs; the regression task (%s) has %d target%s per "
                    "sample (end the model with linear %d)", m->classes, c->data_set, t->tr->n_targets,
                    t->tr->n_targets > 1 ? "s" : "", t->tr->n_targets);
    if (t->tr->n_targets == 0 && m->classes < 2)
        return fail(t, PATCTL_ERR_CONFIG, "the model has %d outputs; classification needs at least 2", m->classes);
    t->dlogits = malloc(sizeof(float) * (size_t)t->cap * (size_t)m->classes);
    if (!t->dlogits || (rc = optimizer_init(&t->opt, c->optimizer, m->n_params, c->lr, c->momentum)))
        return rc ? rc : PATCTL_ERR_NOMEM;
    if (c->mode == MODE_SPSA) {
        t->p0 = malloc(sizeof(float) * 3 * (size_t)(m->n_params + 1));
        if (!t->p0)
            return PATCTL_ERR_NOMEM;
        t->g = t->p0 + m->n_params + 1;
        t->delta = t->g + m->n_params + 1;
    }
    for (int i = 0; i < m->n_devices; i++) {
        t->snap[i].last_theta = malloc(sizeof(float) * (size_t)(m->devices[i]->n_theta + 1));
        if (!t->snap[i].last_theta)
            return PATCTL_ERR_NOMEM;
    }
    if (c->mode == MODE_IDEAL)
        for (int i = 0; i < m->n_devices; i++)
            if (!(m->devices[i]->desc.flags & PATCTL_DEV_HAS_VJP))
                return fail(t, PATCTL_ERR_UNSUPPORTED, "mode ideal needs the device's exact VJP; device %s "
                            "(%s) has none (use pat, insilico or spsa)", m->devices[i]->name,
                            m->devices[i]->desc.model);
    t->pass = c->mode == MODE_PAT || c->mode == MODE_PC ? PASS_PAT
            : c->mode == MODE_INSILICO                ? PASS_SURROGATE
                                                      : PASS_DEVICE;
    if (c->mode == MODE_PC && (rc = pc_init(&t->pc, m)))
        return rc;
    if (MODE_IS_LOCAL(c->mode) && (rc = dfa_init(&t->dfa, m, c, t->err, t->errlen)))
        return rc;
    t->steps_per_epoch = (t->tr->n + c->batch - 1) / c->batch;
    t->total_steps = t->steps_per_epoch * c->epochs;
    if (t->rs) {
        for (int i = 0; i < m->n_devices; i++)
            if ((rc = runstore_attach(t->rs, m->devices[i], i, c->journal, c->journal_every)))
                return rc;
        if (!t->o->resume && (rc = runstore_write_model(t->rs, c, m)))
            return fail(t, rc, "run store: %s", runstore_error(t->rs));
    }
    return 0;
}

static void trainer_free(trainer *t)
{
    optimizer_free(&t->opt);
    model_free(&t->m);
    rng_streams_free(&t->rng);
    free(t->prune_mask);
    free(t->x);
    free(t->y);
    free(t->tg);
    free(t->idx);
    free(t->dlogits);
    free(t->p0);
    pc_free(&t->pc);
    dfa_free(&t->dfa);
    for (int i = 0; i < CFG_MAX_DEVICES; i++)
        free(t->snap[i].last_theta);
}

/* ---- one step ---- */

static void set_context(trainer *t, const char *phase)
{
    if (t->rs)
        runstore_set_context(t->rs, t->res->steps + 1, phase);
}

/* The fraction of each matrix pruned at training step g (0-based, over
 * the whole run): 0 before prune_after epochs; then, over the K steps of
 * prune_ramp epochs, F (1 - (1 - k/K)^3) at the k-th (k = 0..K; Zhu &
 * Gupta 2017); F = [train] prune from then on. */
static double prune_fraction(const trainer *t, long g)
{
    const run_config *c = t->c;
    long g0 = (long)c->prune_after * t->steps_per_epoch, K = (long)c->prune_ramp * t->steps_per_epoch;
    if (!(c->prune > 0) || g < g0)
        return 0.0;
    if (g >= g0 + K)
        return c->prune;
    double u = 1.0 - (double)(g - g0) / (double)K;
    return c->prune * (1.0 - u * u * u);
}

static long step_index(const trainer *t)
{
    return (long)t->epoch * t->steps_per_epoch + t->pos / t->c->batch;
}

static void prune_log(trainer *t, const char *msg)
{
    progress_note(&t->pg, "%s\n", msg);
    if (t->rs)
        runstore_log(t->rs, "train", DEVLOG_INFO, msg);
}

/* Prune ([train] prune): zero the fraction f of each matrix's smallest
 * entries and keep the mask.  Entries pruned before are exactly zero, so
 * the smallest: a growing f keeps them and adds the next smallest, and a
 * resumed run finds the mask of its last step again the same way. */
static int prune_now(trainer *t, double f, int announce)
{
    const run_config *c = t->c;
    if (!t->prune_mask && !(t->prune_mask = malloc((size_t)t->m.n_params)))
        return fail(t, PATCTL_ERR_NOMEM, "out of memory (prune mask)");
    int rc = model_prune(&t->m, t->m.params, f, c->prune_physical, &t->pruned, &t->prunable, t->prune_mask);
    if (rc)
        return fail(t, rc, "prune: %s", patctl_strerror(rc));
    if (t->prunable == 0)
        return fail(t, PATCTL_ERR_ARG, "[train] prune: the model has no weight or coupling matrix to prune%s",
                    c->prune_physical ? "" : " (prune_physical = 0)");
    t->prune_frac = f;
    model_project(&t->m);
    if (announce && f == c->prune) {
        char msg[240], ramp[64] = "";
        if (c->prune_ramp > 0)
            snprintf(ramp, sizeof(ramp), ", reached over %d epoch%s", c->prune_ramp, c->prune_ramp == 1 ? "" : "s");
        snprintf(msg, sizeof(msg), "pruned %ld of %ld %s after epoch %d (fraction %g%s); the rest of the run "
                 "trains with them held at zero", t->pruned, t->prunable,
                 c->prune_physical ? "weights and couplings" : "digital weights", t->epoch, c->prune, ramp);
        prune_log(t, msg);
    }
    return 0;
}

/* Before each training step: prune to the step's fraction if it grew. */
static int prune_step(trainer *t)
{
    const run_config *c = t->c;
    double f = prune_fraction(t, step_index(t));
    if (!(f > 0) || f == t->prune_frac)
        return 0;
    if (t->prune_frac == 0 && f < c->prune) {
        char msg[200];
        snprintf(msg, sizeof(msg), "pruning from epoch %d on: the fraction grows step by step to %g over %d "
                 "epoch%s (cubic schedule)", t->epoch + 1, c->prune, c->prune_ramp, c->prune_ramp == 1 ? "" : "s");
        prune_log(t, msg);
    }
    return prune_now(t, f, 1);
}

/* The parameter update from grads [n_params]: + BEAN's gradient ([train]
 * bean > 0), pruned entries' gradients dropped, the optimiser, the limits,
 * pruned entries back to zero (unless a limit excludes zero: limits win). */
static int apply_update(trainer *t, float *grads)
{
    model *m = &t->m;
    int rc = 0;
    if (t->c->bean > 0)
        model_bean(m, t->c->bean, t->c->bean_physical, grads, &rc);
    if (rc)
        return rc;
    if (t->prune_mask)
        for (long i = 0; i < m->n_params; i++)
            if (t->prune_mask[i])
                grads[i] = 0.0f;
    optimizer_step(&t->opt, m->params, grads);
    if (t->prune_mask)
        for (long i = 0; i < m->n_params; i++)
            if (t->prune_mask[i])
                m->params[i] = 0.0f;
    model_project(m);
    return 0;
}

/* Forward (by pass), loss on what came out, backward by mode (or the PC
 * or DFA update direction), BEAN, optimiser. */
static int step_gradient(trainer *t, int B, double *loss, int *hits)
{
    model *m = &t->m;
    set_context(t, "train");
    int rc = model_forward_micro(m, t->x, B, t->pass, t->c->microbatches, t->err, t->errlen);
    if (rc)
        return rc;
    *loss = task_loss(model_logits(m), t->y, t->tg, B, m->classes, t->dlogits, hits);
    if (!isfinite(*loss))
        return fail(t, PATCTL_ERR_NUMERIC, "step %ld: the loss is %g", t->res->steps + 1, *loss);
    model_zero_grad(m);
    const run_config *c = t->c;
    if (c->mode == MODE_PC) {
        set_context(t, "pc"); /* strict measures predictions at the beliefs */
        rc = pc_gradient(&t->pc, m, t->dlogits, t->y, t->tg, B, c->pc_variant, c->pc_eta, c->pc_iters, t->err,
                         t->errlen);
    } else if (MODE_IS_LOCAL(c->mode)) {
        rc = dfa_gradient(&t->dfa, m, t->dlogits, B, t->err, t->errlen);
    } else {
        rc = model_backward(m, t->dlogits, B, c->mode, t->err, t->errlen);
    }
    if (rc)
        return rc;
    if (c->mode == MODE_PAT && (rc = model_observe(m, B, t->err, t->errlen)))
        return rc;
    return apply_update(t, m->grads);
}

/* SPSA (Spall): for each of spsa_samples pairs draw delta in {-1,+1}^n
 * (every parameter, digital ones included), measure the loss on the device
 * at theta + c*delta and theta - c*delta, and average
 *     g = (L+ - L-) / (2c) * delta
 * into the gradient estimate the optimiser then uses.  2 * spsa_samples
 * device queries per device per step; no surrogate, no backward pass. */
static int step_spsa(trainer *t, int B, double *loss, int *hits)
{
    model *m = &t->m;
    long n = m->n_params;
    double cpert = t->c->spsa_c, lsum = 0;
    int S = t->c->spsa_samples, hsum = 0;
    gsl_rng *r = t->rng.r[STREAM_SPSA];
    memcpy(t->p0, m->params, sizeof(float) * (size_t)n);
    memset(t->g, 0, sizeof(float) * (size_t)n);
    for (int s = 0; s < S; s++) {
        unsigned long bits = 0;
        for (long i = 0; i < n; i++) {
            if (i % 32 == 0)
                bits = gsl_rng_get(r); /* mt19937: 32 random bits */
            t->delta[i] = (bits >> (i % 32)) & 1 ? 1.0f : -1.0f;
        }
        double L[2];
        for (int k = 0; k < 2; k++) {
            float sign = k == 0 ? 1.0f : -1.0f;
            for (long i = 0; i < n; i++)
                m->params[i] = t->p0[i] + sign * (float)cpert * t->delta[i];
            model_project(m);
            set_context(t, k == 0 ? "spsa+" : "spsa-");
            int h = 0;
            int rc = model_forward_micro(m, t->x, B, PASS_DEVICE, t->c->microbatches, t->err, t->errlen);
            if (rc) {
                memcpy(m->params, t->p0, sizeof(float) * (size_t)n);
                return rc;
            }
            L[k] = task_loss(model_logits(m), t->y, t->tg, B, m->classes, NULL, &h);
            if (k == 0)
                hsum += h;
        }
        if (!isfinite(L[0]) || !isfinite(L[1])) {
            memcpy(m->params, t->p0, sizeof(float) * (size_t)n);
            return fail(t, PATCTL_ERR_NUMERIC, "step %ld: the loss is not finite", t->res->steps + 1);
        }
        float coef = (float)((L[0] - L[1]) / (2.0 * cpert * S));
        for (long i = 0; i < n; i++)
            t->g[i] += coef * t->delta[i];
        lsum += 0.5 * (L[0] + L[1]);
    }
    memcpy(m->params, t->p0, sizeof(float) * (size_t)n);
    int rc = apply_update(t, t->g);
    if (rc)
        return rc;
    *loss = lsum / S;
    *hits = (hsum + S / 2) / S;
    return 0;
}

static void notify(trainer *t, int skipped, int rc)
{
    if (!t->o->on_step)
        return;
    train_step_view v = {.skipped = skipped, .rc = rc, .steps = t->res->steps,
                         .skipped_steps = t->res->skipped_steps, .epoch = t->epoch, .pos = t->pos,
                         .n_params = t->m.n_params, .params = t->m.params, .opt_m = t->opt.m,
                         .opt_v = t->opt.v, .opt_t = t->opt.t};
    t->o->on_step(t->o->on_step_user, &v);
}

/* A fault note: to the progress output and the run store's log table. */
static void note_fault(void *user, const char *msg)
{
    trainer *t = user;
    progress_note(&t->pg, "\npatctl train: %s\n", msg);
    if (t->rs)
        runstore_log(t->rs, "train", DEVLOG_FAULT, msg);
}

/* The step on B samples at t->pos failed with device fault rc (message in
 * t->err) after t0 (now_seconds) and d0 (device seconds): nothing of it was
 * applied.  Log it and its step row (status skipped), drop the batch; 1 = go
 * on, or the error that stops the run (max_failed_steps in a row). */
static int skip_step(trainer *t, int B, int rc, double t0, double d0)
{
    char why[300], msg[700];
    snprintf(why, sizeof(why), "%s", t->err[0] ? t->err : patctl_strerror(rc));
    t->res->skipped_steps++;
    t->failed_in_row++;
    snprintf(msg, sizeof(msg), "step %ld (epoch %d, samples %ld-%ld) skipped, nothing applied "
             "(%d failed in a row, max_failed_steps %d): %s: %s", t->res->steps + 1, t->epoch + 1, t->pos,
             t->pos + B - 1, t->failed_in_row, t->c->max_failed_steps, patctl_strerror(rc), why);
    note_fault(t, msg);
    t->pos += B;
    notify(t, 1, rc);
    if (t->rs) {
        device_stats ds = model_device_stats(&t->m);
        double dev_s = ds.seconds - d0, all_s = now_seconds() - t0;
        step_metrics sm = {.step = t->res->steps + 1, .attempt = t->res->steps + t->res->skipped_steps,
                           .epoch = t->epoch + 1, .batch = B, .lr = t->opt.lr, .device_seconds = dev_s,
                           .compute_seconds = all_s - dev_s, .device_queries = ds.queries, .skipped = 1,
                           .rc = rc, .error = why};
        int src;
        if ((src = runstore_step(t->rs, &sm)) || (src = runstore_commit(t->rs)) || (src = runstore_failed(t->rs)))
            return fail(t, src, "run store: %s", runstore_error(t->rs));
    }
    if (t->failed_in_row >= t->c->max_failed_steps) {
        t->gave_up = 1;
        return fail(t, rc, "%d training steps in a row failed with device faults (max_failed_steps %d); "
                    "the last: %s", t->failed_in_row, t->c->max_failed_steps, why);
    }
    return 1;
}

/* One step on B samples at t->pos: 0 = applied, 1 = skipped after a device
 * fault, < 0 = an error that stops the run. */
static int train_step(trainer *t, int B)
{
    const run_config *c = t->c;
    double t0 = now_seconds(), d0 = model_device_stats(&t->m).seconds;
    gather(t->tr, t->idx, t->pos, B, t->x, t->y, t->tg);
    t->opt.lr = train_lr(c, t->res->steps, t->total_steps);
    double loss = 0;
    int hits = 0;
    uint64_t rej0 = rejected_count(&t->m);
    int rc = c->mode == MODE_SPSA ? step_spsa(t, B, &loss, &hits) : step_gradient(t, B, &loss, &hits);
    if (rc) {
        if (c->max_failed_steps > 0 && is_device_fault(&t->m, rc, rej0))
            return skip_step(t, B, rc, t0, d0);
        return rc;
    }
    t->failed_in_row = 0;
    t->res->steps++;
    t->pos += B;
    notify(t, 0, 0);
    device_stats ds = model_device_stats(&t->m);
    double dev_s = ds.seconds - d0, all_s = now_seconds() - t0;
    progress_step(&t->pg, loss, hits, B, dev_s, all_s);
    if (t->rs) {
        step_metrics sm = {.step = t->res->steps, .attempt = t->res->steps + t->res->skipped_steps,
                           .epoch = t->epoch + 1, .batch = B, .lr = t->opt.lr,
                           .loss = loss, .accuracy = (double)hits / B, .device_seconds = dev_s,
                           .compute_seconds = all_s - dev_s, .device_queries = ds.queries};
        if ((rc = runstore_step(t->rs, &sm)) || (rc = runstore_commit(t->rs)) || (rc = runstore_failed(t->rs)))
            return fail(t, rc, "run store: %s", runstore_error(t->rs));
    }
    return 0;
}

/* ---- epochs ---- */

/* Evaluate on the test set (device), record it.  Interrupted: a checkpoint
 * from the state before the evaluation. */
static int eval_and_record(trainer *t)
{
    train_result *res = t->res;
    device_stats before = model_device_stats(&t->m);
    double e0 = now_seconds();
    if (t->rs)
        runstore_set_context(t->rs, res->steps, "eval");
    progress_note(&t->pg, "evaluating on the device: %ld test images...\n", t->te->n);
    double acc = 0;
    int rc = evaluate(&t->m, t->te, t->c->eval_batch, t->c->eval_inflight, t->c->max_failed_steps, note_fault, t, &res->eval_retries,
                      t->o->stop, &acc, res->confusion, t->err, t->errlen);
    if (rc && rc != PATCTL_ERR_INTERRUPTED)
        t->eval_failed = 1;
    device_stats used = stats_minus(model_device_stats(&t->m), before);
    t->eval_dev = stats_plus(t->eval_dev, used);
    res->eval_seconds += now_seconds() - e0;
    if (rc)
        return rc;
    int reg = t->te->n_targets > 0; /* regression: acc is the NRMSE */
    if (reg) {
        res->test_nrmse = acc;
        progress_note(&t->pg, "test NRMSE %.4f (%ld samples on the device)\n", acc, t->te->n);
    } else {
        res->test_accuracy = acc;
        progress_note(&t->pg, "test accuracy %.2f%% (%ld images on the device)\n", 100.0 * acc, t->te->n);
    }
    if (t->rs) {
        eval_record er = {.step = res->steps, .epoch = t->epoch + (t->pos > 0 ? 1 : 0), .n = t->te->n,
                          .accuracy = reg ? NAN : acc, .nrmse = reg ? acc : NAN, .seconds = now_seconds() - e0,
                          .device_queries = used.queries, .classes = reg ? 0 : 10,
                          .confusion = &res->confusion[0][0], .pruned = t->prune_mask ? t->prune_frac : 0,
                          .pruned_entries = t->prune_mask ? t->pruned : 0,
                          .prunable_entries = t->prune_mask ? t->prunable : 0};
        if ((rc = runstore_evaluation(t->rs, &er)))
            return fail(t, rc, "run store: %s", runstore_error(t->rs));
    }
    return 0;
}

/* The end of an epoch: evaluate if due, record the epoch, checkpoint. */
static int epoch_end(trainer *t)
{
    const run_config *c = t->c;
    train_result *res = t->res;
    int ep = t->epoch; /* 0-based index of the epoch that ends */
    int due = c->eval_every > 0 && (ep + 1) % c->eval_every == 0;
    epoch_record *er = &res->epochs[ep];
    er->test_acc = -1;
    er->loss = t->pg.loss_sum / (t->pg.epoch_steps ? t->pg.epoch_steps : 1);
    er->train_acc = (double)t->pg.hits / (t->pg.seen ? t->pg.seen : 1);
    er->seconds = t->pg.all_s;
    er->device_seconds = t->pg.dev_s;
    progress_epoch_end(&t->pg);
    if (due) {
        snapshot_devices(t);
        int rc = eval_and_record(t);
        if (rc)
            return rc;
        er->test_acc = t->te->n_targets > 0 ? -1 : res->test_accuracy;
    }
    if (t->rs) {
        epoch_metrics em = {.epoch = ep + 1, .steps = t->pg.epoch_steps, .loss = er->loss,
                            .train_accuracy = er->train_acc, .seconds = er->seconds,
                            .device_seconds = er->device_seconds,
                            .compute_seconds = er->seconds - er->device_seconds,
                            .device_queries = model_device_stats(&t->m).queries, .test_accuracy = er->test_acc};
        int rc = runstore_epoch(t->rs, &em);
        if (rc)
            return fail(t, rc, "run store: %s", runstore_error(t->rs));
    }
    t->epoch++;
    t->pos = 0;
    res->epochs_done = t->epoch;
    return checkpoint_write(t, t->epoch == c->epochs, 0);
}

static int run_epochs(trainer *t)
{
    const run_config *c = t->c;
    while (t->epoch < c->epochs) {
        if (t->pos == 0 && t->pg.epoch != t->epoch + 1)
            progress_epoch_begin(&t->pg, t->epoch + 1);
        while (t->pos < t->tr->n) {
            if (t->o->stop && *t->o->stop) {
                t->res->interrupted = 1;
                return PATCTL_ERR_INTERRUPTED;
            }
            /* the permutation of an epoch is drawn just before its first
             * step, so a checkpoint at pos 0 holds the state before it */
            if (t->pos == 0)
                gsl_ran_shuffle(t->rng.r[STREAM_DATA], t->idx, (size_t)t->tr->n, sizeof(size_t));
            int rc = prune_step(t);
            if (rc)
                return rc;
            int B = (int)((t->tr->n - t->pos) < c->batch ? (t->tr->n - t->pos) : c->batch);
            rc = train_step(t, B);
            if (rc < 0)
                return rc;
            if (rc == 0 && c->checkpoint_every > 0 && t->res->steps % c->checkpoint_every == 0 && t->pos < t->tr->n &&
                (rc = checkpoint_write(t, 0, 0)))
                return rc;
        }
        int rc = epoch_end(t);
        if (rc)
            return rc;
    }
    return 0;
}

int train_run(const run_config *c, const dataset *train, const dataset *test,
              const train_options *o, train_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    res->test_accuracy = -1.0;
    res->test_nrmse = -1.0;
    if (c->epochs < 0 || c->epochs > TRAIN_MAX_EPOCHS || c->batch <= 0 || c->eval_batch <= 0) {
        snprintf(err, errlen, "epochs must be 0..%d and batch sizes positive", TRAIN_MAX_EPOCHS);
        return PATCTL_ERR_ARG;
    }
    if (c->mode == MODE_SPSA && !(c->spsa_c > 0 && c->spsa_samples > 0)) {
        snprintf(err, errlen, "spsa needs spsa_c > 0 and spsa_samples >= 1");
        return PATCTL_ERR_ARG;
    }
    if (c->mode == MODE_PC && !(c->pc_eta > 0 && c->pc_eta < 2 && c->pc_iters >= 1)) {
        snprintf(err, errlen, "pc needs pc_eta in (0, 2) and pc_iters >= 1");
        return PATCTL_ERR_ARG;
    }
    if (!(c->bean >= 0)) {
        snprintf(err, errlen, "bean must be >= 0");
        return PATCTL_ERR_ARG;
    }
    if (c->prune != 0 && !(c->prune > 0 && c->prune < 1 && c->prune_after >= 0 && c->prune_ramp >= 0 &&
                           c->prune_after + c->prune_ramp < c->epochs)) {
        snprintf(err, errlen, "[train] prune = %g, prune_after = %d, prune_ramp = %d: prune must be in [0, 1) and "
                 "prune_after + prune_ramp below epochs (%d), so the pruned network trains at least one epoch",
                 c->prune, c->prune_after, c->prune_ramp, c->epochs);
        return PATCTL_ERR_ARG;
    }
    if (train->h != test->h || train->w != test->w || train->n <= 0) {
        snprintf(err, errlen, "training and test images differ in size, or there are none");
        return PATCTL_ERR_ARG;
    }
    if (o->resume && !o->store) {
        snprintf(err, errlen, "resuming needs the run store");
        return PATCTL_ERR_ARG;
    }
    trainer t;
    memset(&t, 0, sizeof(t));
    t.c = c, t.tr = train, t.te = test, t.o = o, t.res = res, t.rs = o->store, t.err = err, t.errlen = errlen;
    int rc = trainer_init(&t);
    if (rc) {
        if (!err[0])
            snprintf(err, errlen, "%s", patctl_strerror(rc));
        goto out;
    }
    progress_begin(&t.pg, t.total_steps, c->epochs, o->tty, o->quiet);
    t.t0 = now_seconds();
    if (o->resume) {
        if ((rc = trainer_restore(&t, o->resume)))
            goto out;
        /* the mask of the last step before the checkpoint */
        double f = step_index(&t) > 0 ? prune_fraction(&t, step_index(&t) - 1) : 0.0;
        if (f > 0 && (rc = prune_now(&t, f, 0)))
            goto out;
        if (t.pos > 0 || t.epoch < c->epochs) {
            progress_epoch_begin(&t.pg, t.epoch + 1);
            progress_epoch_restore(&t.pg, o->resume->epoch_steps, o->resume->loss_sum, o->resume->hits,
                                   o->resume->seen, o->resume->dev_s, o->resume->all_s);
        }
    }
    if (c->epochs == 0 && (rc = checkpoint_write(&t, 1, 0)))
        goto out;
    rc = run_epochs(&t);
    res->train_seconds = t.seconds_before + (now_seconds() - t.t0);
    /* the final evaluation, unless the last epoch's was it */
    if (!rc && !(c->eval_every > 0 && c->epochs > 0 && c->epochs % c->eval_every == 0)) {
        snapshot_devices(&t);
        rc = eval_and_record(&t);
    }
    if (rc == PATCTL_ERR_INTERRUPTED || t.gave_up || t.eval_failed) {
        /* stopped between steps, or during an evaluation (interrupted or
         * failed): keep the position */
        int from_snap = !t.gave_up && (t.pos == train->n || (t.pos == 0 && t.epoch == c->epochs));
        char why[400];
        snprintf(why, sizeof(why), "%s", err);
        int wrc = from_snap ? (t.epoch == c->epochs ? 0 : checkpoint_write(&t, 0, 1)) : checkpoint_write(&t, 0, 0);
        const char *ck = wrc ? " (the checkpoint could not be written)" : t.rs ? ", checkpoint written" : "";
        if (rc == PATCTL_ERR_INTERRUPTED) {
            res->interrupted = 1;
            snprintf(err, errlen, "interrupted after %ld steps%s; devices made safe", res->steps, ck);
        } else {
            snprintf(err, errlen, "%s; stopped after %ld steps (%ld skipped)%s", why, res->steps,
                     res->skipped_steps, ck);
        }
    }
out:
    res->all_dev = model_device_stats(&t.m);
    res->train_dev = stats_minus(res->all_dev, t.eval_dev);
    if (res->train_seconds == 0 && t.t0 > 0)
        res->train_seconds = t.seconds_before + (now_seconds() - t.t0);
    /* stopped or failed: make every device safe now; on success closing
     * them below does it (device_close) */
    res->devices_safe = rc == 0 || model_make_safe(&t.m) == 0;
    if (t.rs)
        runstore_commit(t.rs);
    trainer_free(&t);
    return rc;
}
