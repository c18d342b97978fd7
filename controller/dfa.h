/* Direct feedback alignment on hybrid physical networks: DFA (Nokland,
 * "Direct feedback alignment provides learning in deep neural networks",
 * NeurIPS 2016) and augmented DFA (Nakajima et al., "Physical deep learning
 * with biologically inspired training method: gradient-free approach for
 * physical hardware", Nat. Commun. 13, 7847, 2022).
 *
 * No backward pass goes through any physical layer and no surrogate exists
 * (model_build makes none in these modes); the devices are queried once
 * per physical layer per step (the forward pass).  With e = dL/dy
 * [B, classes] the output error, the graph is walked from the top:
 *
 *   digital layers     differentiated exactly (they are ours): parameter
 *                      gradient and the error at their input;
 *   physical layer k   its own parameters by a LOCAL rule from the error
 *                      delta arriving at its output (below) and what was
 *                      sent to it; the error at its INPUT is not J^T delta
 *                      (unknown) but the output error carried there by a
 *                      fixed random matrix B_k [classes, r_in*c_in]:
 *                          delta_in = (e B_k) (.) g(x_k)
 *                      with g = 1 (dfa) or the chosen g (adfa: cos, sin,
 *                      tanh, sech2), x_k the layer's input (the physical
 *                      "pre-activation" of Nakajima's f(W x)).
 *
 * So a digital layer below a physical one learns as in DFA (its error comes
 * straight from the output through B_k), a digital head above the last
 * physical layer learns by backpropagation, and B_k is drawn once from the
 * run seed (N(0, 1/classes)), so a resumed run uses the same matrices.
 *
 * Local rules of a physical parameter block (roles), from delta [R, n_out]
 * at the layer's output and x [R, n_in] as sent (R = B * rows per sample):
 *   weight     block [n_out, n_in]:  G += delta^T x     (as if y = W x + ...);
 *              a block [n_out/K, n_in/K] is shared over K steps (a reservoir's
 *              input mask: y_k ~ M x_k): G += sum_k delta_k^T x_k
 *   bias_out   block of n_out (or n_out/K, shared): G += sum_r delta
 *   gain_diag  block of n_in, n_out = k n_in:  G_s += sum_r x_s sum_q delta_(s k + q)
 *   bias_diag  block of n_in:        G_s += sum_r sum_q delta_(s k + q)
 *   fixed      not trained
 * i.e. the gradient a linear (or diagonal) response of the device would
 * have, with no knowledge of the device beyond that.  Defaults by device
 * model: oscillators C weight, e bias_out (y_i ~ x_i + c (e_i + sum_j Q_ij
 * sin x_j) over the short integration); circuit gain gain_diag, bias
 * bias_diag; spiking W weight; reservoir mask weight (shared over the
 * steps when every step is read out), bias bias_out; every other model,
 * and a default that does not fit the geometry, fixed; [device] dfa_roles =
 * BLOCK:ROLE,... overrides (and must fit).
 *
 * BP-STDP (--mode bpstdp; Tavanaei & Maida, "BP-STDP: Approximating
 * backpropagation using spike timing dependent plasticity", Neurocomputing
 * 330, 39 (2019)), in its rate form for spiking layers whose outputs are
 * spike counts: the error delta at a layer's output is gated by each neuron
 * having fired, xi = delta (.) [y > 0] (BP-STDP's derivative), the local
 * rules above take xi (weight: xi^T x, presynaptic activity x as sent), and
 * the error below the layer is carried through the layer's own weight block
 * (the parameters, not a model of the device): delta_in = xi W.  A layer
 * with something trainable below it must therefore have a weight block
 * [n_out, n_in]; no feedback matrix, no surrogate.
 */
#ifndef PATCTL_DFA_H
#define PATCTL_DFA_H

#include <stddef.h>

#include "controller/config.h"
#include "controller/model.h"

typedef enum { ROLE_FIXED, ROLE_WEIGHT, ROLE_BIAS_OUT, ROLE_GAIN_DIAG, ROLE_BIAS_DIAG } dfa_role;

const char *dfa_role_name(dfa_role r);

typedef struct dfa_state {
    int n_layers, classes;
    dfa_g_kind g;                               /* DFA_G_ONE for mode dfa */
    int stdp;                                   /* mode bpstdp (no feedback matrices) */
    int wblock[CFG_MAX_LAYERS];                 /* bpstdp: the weight block carrying the error down */
    float *fb[CFG_MAX_LAYERS];                  /* physical layer k: B_k [classes, r_in*c_in], or NULL
                                                   (nothing trainable below it) */
    dfa_role role[CFG_MAX_LAYERS][PATCTL_MAX_BLOCKS];
    int trainable_below[CFG_MAX_LAYERS];        /* a layer j < k has something to train */
    float *buf[2];                              /* [max activation] errors being carried down */
    float *block;                               /* the one allocation behind fb and buf, owned */
} dfa_state;

/* The roles of every physical layer's blocks (c's dfa_roles or the
 * defaults; an unknown block, role or a shape that does not fit is an error
 * naming the device and, from a file, the config line) and the feedback
 * matrices, drawn from c->seed.  g: c->dfa_g for adfa, DFA_G_ONE for dfa. */
int dfa_init(dfa_state *s, const model *m, const run_config *c, char *err, size_t errlen);
void dfa_free(dfa_state *s);

/* The DFA update direction of one batch after model_forward(m, x, B,
 * PASS_DEVICE): ACCUMULATES into m->grads (zero them first).  dlogits
 * [B, classes] = dL/dy.  Never calls a surrogate or a device VJP. */
int dfa_gradient(dfa_state *s, model *m, const float *dlogits, int B, char *err, size_t errlen);

/* The default role of block b of a device of model `model` (see above). */
dfa_role dfa_default_role(const char *model, const char *block);

#endif
