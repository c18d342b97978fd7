/* An analog neuromorphic chip: one layer of leaky integrate-and-fire (LIF)
 * neurons — the physics, written once.  The simulated device
 * (devices/spiking/) runs it with the hidden truth (per-neuron mismatch of
 * threshold, leak and synaptic gain, Bernoulli input spikes, membrane noise,
 * quantised weights); the surrogate runs it mismatch-free and noise-free.
 *
 * Discrete time, T steps t = 0..T-1.  Units: membrane potential in units of
 * the nominal threshold (theta = 1), time in steps.
 *
 * Input coding of x [B, n_in] in [0, 1] into spike trains s_j[t]:
 *   rate     s_j[t] ~ Bernoulli(x_j p_max) (device; uniforms supplied by the
 *            caller), or the expectation s_j[t] = x_j p_max (no uniforms:
 *            the nominal model).  ds_j[t]/dx_j = p_max (straight through
 *            the sampling).
 *   latency  one spike at tau_j = (1 - x_j)(T - 1) (bright inputs early),
 *            none when x_j < lat_cutoff.  Hard: at step round(tau_j).
 *            Soft: split linearly over k = floor(tau_j) and k + 1,
 *            s[k] = 1 - f, s[k+1] = f (f = tau_j - k), differentiable in x.
 *            Both backwards use this split's derivative,
 *            ds[k]/dx = T - 1, ds[k+1]/dx = -(T - 1).
 *
 * Neuron i (parameters W [n_out, n_in] and b [n_out] per-step bias current):
 *   I_i[t] = sum_j W_ij s_j[t] + b_i                   input current
 *   u_i[t] = leak_i v_i[t] + gain_i I_i[t] + n_i[t]    membrane before firing
 *   s_i[t] = H(u_i[t] - theta_i)                       hard spike
 *          | sigmoid(beta (u_i[t] - theta_i))          soft spike
 *   v_i[t+1] = u_i[t] (1 - s_i[t])                     reset to zero
 *   v_i[0] = 0,   y_i = sum_t s_i[t]                   output: spike count
 * n_i[t] is membrane noise (caller-supplied, device only).  The bias is a
 * current through the same synaptic gain (a threshold offset of -gain b per
 * step in steady state).
 *
 * Backward (lif_backward): backprop through time over the tape, the exact
 * derivative of the soft model; for the hard model the spike derivative is
 * replaced by a surrogate derivative sd(u - theta) (sg = sigmoid:
 * beta sigmoid'(beta z), the soft model's own; sg = fast: the fast sigmoid
 * (beta/2) / (1 + beta |z|)^2; both of unit area), everything else
 * (including the reset's u ds term) differentiated exactly.
 *
 * lif_backward_strsbp: a spike-train-level gradient after ST-RSBP (Zhang &
 * Li, NeurIPS 2019) for one feed-forward layer; see lif.c and
 * devices/spiking/README.md.  Shapes: x [B, n_in], theta = [W (n_out*n_in),
 * b (n_out)], y [B, n_out] (spikes). */
#ifndef PATCTL_LIF_H
#define PATCTL_LIF_H

#include <stddef.h>

typedef enum { LIF_RATE = 0, LIF_LATENCY = 1 } lif_coding;
typedef enum { LIF_HARD = 0, LIF_SOFT = 1 } lif_spike;
typedef enum { LIF_SG_SIGMOID = 0, LIF_SG_FAST = 1 } lif_sg;

typedef struct lif_model {
    int n_in, n_out;       /* inputs, neurons */
    int steps;             /* T >= 1 */
    lif_coding coding;
    double p_max;          /* rate coding: spike probability per step at x = 1 */
    double lat_cutoff;     /* latency coding: no spike below this x */
    double theta;          /* threshold (1 in the nominal model) */
    double leak;           /* leak factor per step, 0..1 */
    double gain;           /* synaptic gain: theta per spike at W = 1 */
    lif_spike spike;       /* hard (the chip) or soft (for gradient checks) */
    lif_sg sg;             /* surrogate derivative of the hard spike */
    double beta;           /* sharpness of the soft spike / surrogate, 1/theta */
    /* per-neuron values [n_out] (the device's mismatch), or NULL = the
     * scalar above for every neuron; caller-owned, must outlive the model's
     * use */
    const double *theta_i, *leak_i, *gain_i;
} lif_model;

/* Nominal chip: rate coding, T = 32, p_max 0.5, cutoff 0.05, theta 1, leak
 * 0.9, gain 0.25, hard spikes, sigmoid surrogate, beta 4. */
lif_model lif_model_nominal(int n_in, int n_out);

/* 0 if usable, else PATCTL_ERR_ARG with a message. */
int lif_check(const lif_model *m, char *err, size_t errlen);

static inline long lif_n_theta(const lif_model *m) { return (long)m->n_out * (m->n_in + 1); }

/* Randomness of one forward pass, all optional (NULL = off):
 *   u_in [B, T, n_in]   uniforms in [0, 1) for Bernoulli rate coding
 *                       (spike when u < x p_max); NULL: the expectation
 *   n_mem [B, T, n_out] membrane noise added to u (theta units) */
typedef struct lif_noise {
    const float *u_in;
    const float *n_mem;
} lif_noise;

/* Forward states for the backward passes, for batches up to cap.  Caller
 * owns; lif_tape_free accepts NULL.  NULL on a bad model or no memory. */
typedef struct lif_tape lif_tape;
lif_tape *lif_tape_alloc(const lif_model *m, int cap);
void lif_tape_free(lif_tape *t);
int lif_tape_capacity(const lif_tape *t);

/* y[B, n_out] = spike counts of lif(x[B, n_in]; theta = [W, b]).  The tape
 * must come from a model with the same n_in, n_out and steps.  Returns 0 or
 * PATCTL_ERR_ARG (B above capacity, shape mismatch). */
int lif_forward(const lif_model *m, const float *x, const float *theta, int B, float *y,
                lif_tape *t, const lif_noise *nz);

/* Surrogate-gradient VJP (BPTT) of the last lif_forward on this tape (same
 * model).  ACCUMULATES gx[B, n_in] += ..., gtheta[n_out*(n_in+1)] += ...;
 * either may be NULL. */
int lif_backward(const lif_model *m, lif_tape *t, const float *gy, float *gx, float *gtheta);

/* ST-RSBP VJP of the last hard lif_forward on this tape: for every neuron
 * that fired, d y_i/d W_ij = e_ij / theta_i, d y_i/d b_i = e_ib / theta_i,
 * d y_i/d x_j = (W_ij / theta_i) d e_ij/d x_j, with e the spike-train level
 * PSPs of the pass.  ACCUMULATES like lif_backward.  PATCTL_ERR_ARG for a
 * soft forward. */
int lif_backward_strsbp(const lif_model *m, lif_tape *t, const float *gy, float *gx,
                        float *gtheta);

/* The spike-train level PSPs of sample b of the last forward (for tests and
 * reports): e [n_out, n_in] and e_b [n_out] (either may be NULL). */
int lif_tape_spsp(const lif_model *m, const lif_tape *t, int b, float *e, float *eb);

#endif
