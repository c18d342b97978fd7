/* Predictive coding (PC) on the model graph: the three variants of
 * Rosenbaum, "On the relationship between predictive coding and
 * backpropagation", PLOS ONE 17(3) e0266102 (2022), as in his Torch2PC.
 *
 * Every activation a_k (k = 1..L-1, the outputs of graph layers 0..L-2)
 * holds a belief v_k and a prediction error eps_k; eps_L = dL/dy (the
 * softmax cross-entropy gradient at the logits).  A layer's local Jacobian
 * J_k (of layer k, a_k -> a_k+1) is its VJP: digital layers exactly, a
 * physical layer its surrogate's VJP at what was sent to the device.
 *
 *   fixedpred  predictions fixed at the feedforward pass vhat (no device
 *              query beyond it); iters sweeps k = L-1..1 of
 *                  eps_k = vhat_k - v_k
 *                  v_k  += eta (eps_k - J_k(vhat_k)^T eps_k+1)
 *              with eta = 1 and iters >= L the eps are the backpropagated
 *              gradients (to float rounding), so the update is PAT's;
 *   strict     predictions at the beliefs: each sweep after the first runs
 *              every layer at its input belief, p_k+1 = f_k(v_k) (a
 *              physical layer MEASURES it on its device: (iters - 1)
 *              queries per physical layer per step beyond the feedforward,
 *              journaled with phase "pc"), then
 *                  eps_L = dL/dp_L,  eps_k = v_k - p_k
 *                  v_k  += eta (-eps_k + J_k(v_k)^T eps_k+1)
 *              (the last sweep's beliefs are not updated: nothing uses them);
 *   exact      eps_k = J_k^T eps_k+1 in one sweep: backpropagation written
 *              as prediction errors, equal to PAT.
 *
 * Then the parameter gradient of layer k is J_theta,k^T eps_k+1 at the
 * feedforward pass, as in Torch2PC (strict puts each surrogate's tape back
 * at what the feedforward sent: one surrogate forward per physical layer;
 * at the beliefs the gradient would pick up eps x eps terms of one sign).
 * Beliefs of fixedpred are kept as their displacement from vhat, so eps is
 * never a difference of nearly equal numbers. */
#ifndef PATCTL_PC_H
#define PATCTL_PC_H

#include <stddef.h>
#include <stdint.h>

#include "controller/model.h"

typedef struct pc_state {
    int n_layers;
    float *eps[CFG_MAX_LAYERS + 1];   /* [cap*r_k, c_k] prediction errors of a_k (k = 1..L) */
    float *v[CFG_MAX_LAYERS + 1];     /* beliefs (strict) / their displacement v - vhat (fixedpred) */
    float *p[CFG_MAX_LAYERS + 1];     /* strict: predictions f_k-1(v_k-1) (k = 1..L) */
    float *g;                         /* [max activation] a VJP's result */
    float *sent_x[CFG_MAX_LAYERS];    /* strict: physical layer k's feedforward inputs as sent */
    float *sent_theta[CFG_MAX_LAYERS];/* ... and its setting */
    float *block;                     /* the one allocation behind all of them, owned */
    long extra_queries;               /* strict: device queries beyond the feedforward (all calls) */
} pc_state;

/* Buffers for m (its batch capacity and shapes).  0 or PATCTL_ERR_NOMEM. */
int pc_init(pc_state *s, const model *m);
void pc_free(pc_state *s);

/* The PC gradient of one batch, after model_forward(m, x, B, PASS_PAT) (or
 * PASS_SURROGATE) left the feedforward in m->act and the surrogates' tapes
 * at it: ACCUMULATES into m->grads (zero them first).  dlogits [B, classes]
 * = dL/dy of the feedforward, labels [B] or, for a regression task, targets
 * [B, classes] (else NULL): strict recomputes dL/dp_L.  A
 * failing device query (strict) or surrogate returns its error with a
 * message; nothing is half-applied to the parameters (only grads). */
int pc_gradient(pc_state *s, model *m, const float *dlogits, const uint8_t *labels, const float *targets, int B,
                pc_variant_kind variant, double eta, int iters, char *err, size_t errlen);

#endif
