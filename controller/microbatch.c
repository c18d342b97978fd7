/* Training micro-batches (see microbatch.h): an item of lanes.c is a row
 * slice of the batch, run by model_forward_slice into the model's own
 * activations. */
#include "controller/microbatch.h"

#include <stdio.h>

#include "controller/eval_pipe.h"
#include "controller/lanes.h"

typedef struct micro_job {
    model *m;
    const float *x;
    int B, K;
    pass_kind pass;
} micro_job;

/* Slice k of K over B samples: [k*B/K, (k+1)*B/K). */
static int slice_start(long k, int B, int K) { return (int)(k * B / K); }

static int micro_item(void *user, lane_ctx *l)
{
    micro_job *j = user;
    int s0 = slice_start(l->k, j->B, j->K), s1 = slice_start(l->k + 1, j->B, j->K);
    int rc = model_forward_slice(j->m, j->x, s0, s1 - s0, j->B, j->pass, &l->gate, l->err, sizeof(l->err));
    return l->aborted ? PATCTL_ERR_INTERRUPTED : rc;
}

int microbatch_lanes(const model *m, int K)
{
    if (K <= 1 || !eval_pipe_usable(m))
        return 1;
    return K < LANES_MAX ? K : LANES_MAX;
}

int model_forward_micro(model *m, const float *x, int B, pass_kind pass, int K, char *err, size_t errlen)
{
    if (K > B)
        K = B;
    if (K <= 1 || pass == PASS_SURROGATE)
        return model_forward(m, x, B, pass, err, errlen);
    if (B > m->cap || B <= 0)
        return PATCTL_ERR_ARG;
    micro_job j = {.m = m, .x = x, .B = B, .K = K, .pass = pass};
    long done = 0;
    /* no stop request: the step in flight finishes, as with K = 1 */
    int rc = lanes_run(m, K, microbatch_lanes(m, K), micro_item, &j, NULL, NULL, NULL, &done, err, errlen);
    for (int i = 0; i < m->n_layers; i++) {
        layer *L = &m->L[i];
        if (L->spec.kind != LAYER_PHYSICAL)
            continue;
        L->last_pass = pass;
        if (rc)
            L->dev->q_open = 0; /* a query left open by a failed step is never continued */
    }
    return rc;
}
