/* The training loop.  Per step: forward (device, device + surrogate, or
 * surrogate, by mode), softmax cross-entropy on the output, backward through
 * the surrogate VJP (PAT, in-silico) or the device's exact VJP (ideal),
 * optimiser step, then projection of device parameters into their limits. */
#include "controller/train.h"

#include <gsl/gsl_randist.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/loss.h"
#include "controller/model.h"
#include "controller/optim.h"
#include "controller/progress.h"
#include "controller/rng.h"

static void gather(const dataset *d, const size_t *idx, long start, int B, float *x, uint8_t *y)
{
    long px = (long)d->h * d->w;
    for (int b = 0; b < B; b++) {
        size_t s = idx ? idx[start + b] : (size_t)(start + b);
        memcpy(x + b * px, d->x + (long)s * px, sizeof(float) * (size_t)px);
        y[b] = d->y[s];
    }
}

/* Accuracy of the model on d, physical layers on the device. */
static int evaluate(model *m, const dataset *d, int eval_batch, double *acc, int conf[10][10],
                    float *x, uint8_t *y, char *err, size_t errlen)
{
    long hits = 0;
    memset(conf, 0, sizeof(int) * 100);
    for (long s = 0; s < d->n; s += eval_batch) {
        int B = (int)((d->n - s) < eval_batch ? (d->n - s) : eval_batch);
        gather(d, NULL, s, B, x, y);
        int rc = model_forward(m, x, B, PASS_DEVICE, err, errlen);
        if (rc)
            return rc;
        const float *z = model_logits(m);
        for (int b = 0; b < B; b++) {
            int k = argmax(z + (long)b * m->classes, m->classes);
            hits += (k == y[b]);
            if (y[b] < 10 && k < 10)
                conf[y[b]][k]++;
        }
    }
    *acc = d->n ? (double)hits / (double)d->n : 0.0;
    return 0;
}

int train_run(const run_config *c, const dataset *train, const dataset *test,
              const train_options *o, train_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    res->test_accuracy = -1.0;
    if (c->mode == MODE_SPSA) {
        snprintf(err, errlen, "mode spsa is not available in this build");
        return PATCTL_ERR_UNSUPPORTED;
    }
    if (c->epochs < 0 || c->epochs > TRAIN_MAX_EPOCHS || c->batch <= 0 || c->eval_batch <= 0) {
        snprintf(err, errlen, "epochs must be 0..%d and batch sizes positive", TRAIN_MAX_EPOCHS);
        return PATCTL_ERR_ARG;
    }
    if (train->h != test->h || train->w != test->w) {
        snprintf(err, errlen, "training and test images differ in size");
        return PATCTL_ERR_ARG;
    }
    rng_streams rng;
    model m;
    optimizer opt;
    memset(&m, 0, sizeof(m));
    memset(&opt, 0, sizeof(opt));
    int rc = rng_streams_init(&rng, c->seed);
    if (rc)
        return rc;
    int cap = c->batch > c->eval_batch ? c->batch : c->eval_batch;
    long px = (long)train->h * train->w;
    float *x = malloc(sizeof(float) * (size_t)cap * (size_t)px);
    uint8_t *y = malloc((size_t)cap);
    float *dlogits = NULL;
    size_t *idx = malloc(sizeof(size_t) * (size_t)(train->n + 1));
    if (!x || !y || !idx) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    for (long i = 0; i < train->n; i++)
        idx[i] = (size_t)i;
    if ((rc = model_build(&m, c, train->h, train->w, cap, &rng, err, errlen)))
        goto out;
    if (m.classes < 2) {
        snprintf(err, errlen, "the model has %d outputs; classification needs at least 2", m.classes);
        rc = PATCTL_ERR_CONFIG;
        goto out;
    }
    dlogits = malloc(sizeof(float) * (size_t)cap * (size_t)m.classes);
    if (!dlogits || (rc = optimizer_init(&opt, c->optimizer, m.n_params, c->lr, c->momentum))) {
        rc = rc ? rc : PATCTL_ERR_NOMEM;
        goto out;
    }

    pass_kind pass = c->mode == MODE_PAT ? PASS_PAT : c->mode == MODE_INSILICO ? PASS_SURROGATE : PASS_DEVICE;
    long steps_per_epoch = (train->n + c->batch - 1) / c->batch;
    progress pg;
    progress_begin(&pg, steps_per_epoch * c->epochs, c->epochs, o->tty, o->quiet);
    double t_train0 = now_seconds();
    for (int ep = 0; ep < c->epochs; ep++) {
        progress_epoch_begin(&pg, ep + 1);
        gsl_ran_shuffle(rng.r[STREAM_DATA], idx, (size_t)train->n, sizeof(size_t));
        for (long s = 0; s < train->n; s += c->batch) {
            if (o->stop && *o->stop) {
                res->interrupted = 1;
                goto stopped;
            }
            int B = (int)((train->n - s) < c->batch ? (train->n - s) : c->batch);
            double t0 = now_seconds(), d0 = model_device_stats(&m).seconds;
            gather(train, idx, s, B, x, y);
            if ((rc = model_forward(&m, x, B, pass, err, errlen)))
                goto fail;
            int hits = 0;
            double loss = softmax_xent(model_logits(&m), y, B, m.classes, dlogits, &hits);
            model_zero_grad(&m);
            if ((rc = model_backward(&m, dlogits, B, c->mode, err, errlen)))
                goto fail;
            optimizer_step(&opt, m.params, m.grads);
            model_project(&m);
            res->steps++;
            progress_step(&pg, loss, hits, B, model_device_stats(&m).seconds - d0, now_seconds() - t0);
        }
        epoch_record *er = &res->epochs[ep];
        er->loss = pg.loss_sum / (pg.epoch_steps ? pg.epoch_steps : 1);
        er->train_acc = (double)pg.hits / (pg.seen ? pg.seen : 1);
        er->seconds = now_seconds() - pg.t_epoch0;
        er->device_seconds = pg.dev_s;
        res->epochs_done = ep + 1;
        progress_epoch_end(&pg);
    }
stopped:
    res->train_seconds = now_seconds() - t_train0;
    res->train_dev = model_device_stats(&m);
    if (res->interrupted) {
        model_make_safe(&m);
        snprintf(err, errlen, "interrupted after %ld steps; devices made safe", res->steps);
        rc = PATCTL_ERR_INTERRUPTED;
        goto out;
    }
    double t_eval0 = now_seconds();
    progress_note(&pg, "evaluating on the device: %ld test images...\n", test->n);
    if ((rc = evaluate(&m, test, c->eval_batch, &res->test_accuracy, res->confusion, x, y, err, errlen)))
        goto fail;
    res->eval_seconds = now_seconds() - t_eval0;
    res->all_dev = model_device_stats(&m);
    goto out;
fail:
    res->train_dev = model_device_stats(&m);
    res->all_dev = res->train_dev;
    model_make_safe(&m);
out:
    optimizer_free(&opt);
    model_free(&m);
    rng_streams_free(&rng);
    free(x);
    free(y);
    free(idx);
    free(dlogits);
    return rc;
}
