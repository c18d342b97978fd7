/* A delay-based reservoir computer (one nonlinear node with a delay loop,
 * Appeltant et al., Nat. Commun. 2, 468 (2011); Larger et al., Opt. Express
 * 20, 3241 (2012); Paquot et al., Sci. Rep. 2, 287 (2012)) — the physics,
 * written once.  The simulated device (devices/reservoir/) runs it with a
 * hidden truth plus loop noise, a photodiode and an ADC; the surrogate runs
 * it with the nominal constants.
 *
 * The delay loop holds N virtual nodes spaced theta apart (theta in units
 * of the node's response time); the input clock has period N theta, the
 * loop delay is tau = (N + D) theta (D = desync >= 0; D = 1 is the
 * desynchronised loop of Paquot 2012, where every virtual node hears its
 * neighbour's state of the previous round: a ring).  A sample is an input
 * window u[k][c] (k = 0..T-1 steps of one clock period, c = 0..C-1
 * channels).  During step k the input mask modulates the input in the time
 * slot of virtual node i:
 *
 *   J_i(k) = G (sum_c M_ic u_c(k) + b_i),   G = in_gain * g
 *
 * (M [N, C] the mask, b [N] a bias, g the input gain: the trainable
 * parameters; in_gain a calibration constant).  The node is a low-pass
 * filter (response time 1) driven by the nonlinearity of its delayed state
 * plus the input, the classic discretisation of the Mackey-Glass delay
 * system (Appeltant 2011) with the input and delayed state held constant
 * over one slot.  With the slots numbered s = k N + i in time order,
 *
 *   z[s] = x[s - N - D] + J_i(k)
 *   x[s] = c x[s - 1] + (1 - c) eta F(z[s]) + n[s],   c = exp(-theta)
 *   x[s] = 0 for s < 0 (every sample starts at rest)
 *
 * so a virtual node couples to the slot before it through the node's
 * inertia (c) and to the slot one delay earlier through the loop (memory).
 * so a virtual node couples to its predecessor through the node's inertia
 * (c) and to itself one round trip earlier through the delay (memory).
 * n[s] is optional additive noise in the loop (the device's; the model
 * has none).  Nonlinearities:
 *
 *   RES_NL_MG    F(z) = z / (1 + |z|^p)                (Mackey-Glass type,
 *                odd, F'(0) = 1; p = 1 saturates, p > 1 has a hump)
 *   RES_NL_SIN2  F(z) = sin^2(z + phi) - sin^2(phi)    (optoelectronic:
 *                Mach-Zehnder intensity, Larger 2012 / Paquot 2012; phi the
 *                bias phase, F(0) = 0, F'(0) = sin 2 phi)
 *
 * The photodiode reads the states of the last K steps, every S-th step
 * (out_steps K, out_stride S): with s_j = T - 1 - (K - 1 - j) S,
 *
 *   y[j N + i] = out_gain x_i(s_j),   j = 0..K-1
 *
 * where x_i(k) = x[k N + i] (K = T, S = 1 gives the whole state sequence,
 * e.g. for a next reservoir layer with window T and N channels).  Double precision inside; x, theta
 * and y are float32.  Shapes: x [B, T*C] (step-major: x[b][k*C + c]),
 * theta = [M (N*C, row-major [N, C]), b (N), g (1)], y [B, K*N]. */
#ifndef PATCTL_RESERVOIR_H
#define PATCTL_RESERVOIR_H

#include <stddef.h>

typedef enum { RES_NL_MG = 0, RES_NL_SIN2 = 1 } reservoir_nonlin;

/* Device constants (what a grey-box fit would estimate). */
typedef struct reservoir_consts {
    double eta;       /* feedback strength (loop gain at F'(0) = 1) */
    double p;         /* Mackey-Glass exponent (RES_NL_MG) */
    double phi;       /* bias phase, rad (RES_NL_SIN2) */
    double theta;     /* virtual-node spacing / node response time */
    double in_gain;   /* input (modulator) gain calibration */
    double out_gain;  /* photodiode + amplifier gain, V per state unit */
} reservoir_consts;

#define RESERVOIR_N_CONSTS 6

typedef struct reservoir_model {
    int nodes;        /* N virtual nodes */
    int window;       /* T steps per sample */
    int channels;     /* C inputs per step */
    int out_steps;    /* K steps read out */
    int out_stride;   /* S steps between read-outs */
    int desync;       /* D: delay tau = (N + D) theta (0: synchronous) */
    reservoir_nonlin nonlin;
    reservoir_consts k;
} reservoir_model;

/* Nominal constants: the Mackey-Glass nonlinearity with eta 0.9, p 2
 * (phi pi/4 for sin2), theta 1, gains 1; desync 1, out_steps 1,
 * out_stride 1. */
reservoir_model reservoir_model_nominal(int nodes, int window, int channels);

/* 0 if usable, else PATCTL_ERR_ARG with a message. */
int reservoir_check(const reservoir_model *m, char *err, size_t errlen);

static inline int reservoir_n_in(const reservoir_model *m) { return m->window * m->channels; }
static inline int reservoir_n_out(const reservoir_model *m) { return m->out_steps * m->nodes; }
static inline long reservoir_n_theta(const reservoir_model *m)
{
    return (long)m->nodes * m->channels + m->nodes + 1;
}

/* The nonlinearity and its derivative dF/dz (for tests and fits). */
double reservoir_f(const reservoir_model *m, double z, double *dfdz);

/* Optional loop noise: fill n[T*N] (n[s], s = k*N + i in time order) for
 * row b of the batch.  Called once per row by reservoir_forward. */
typedef void (*reservoir_noise_fn)(void *ctx, int b, double *n, long len);

/* Forward states kept for the VJP (every state of every row, inputs,
 * parameters) for batches up to cap.  Caller owns; reservoir_tape_free
 * accepts NULL.  NULL on a bad model or no memory. */
typedef struct reservoir_tape reservoir_tape;
reservoir_tape *reservoir_tape_alloc(const reservoir_model *m, int cap);
void reservoir_tape_free(reservoir_tape *t);
int reservoir_tape_capacity(const reservoir_tape *t);

/* y[B, K*N] = reservoir(x[B, T*C]; theta = [M, b, g]), with loop noise from
 * noise (NULL: none).  The tape must come from a model of the same shape.
 * Returns 0, PATCTL_ERR_ARG (B above capacity, shape mismatch) or
 * PATCTL_ERR_NUMERIC (non-finite state). */
int reservoir_forward(const reservoir_model *m, const float *x, const float *theta, int B,
                      float *y, reservoir_tape *t, reservoir_noise_fn noise, void *noise_ctx);

/* Gradient of the constants, same layout as reservoir_consts (theta: per
 * unit of the constant theta, i.e. through c = exp(-theta)). */
typedef struct reservoir_consts reservoir_consts_grad;

/* VJP of the last reservoir_forward on this tape (same model), along the
 * recorded (noisy) trajectory.  ACCUMULATES: gx[B, T*C] += ...,
 * gtheta[n_theta] += ..., gk += ...; any may be NULL.  PATCTL_ERR_STATE
 * without a forward. */
int reservoir_backward(const reservoir_model *m, reservoir_tape *t, const float *gy, float *gx,
                       float *gtheta, reservoir_consts_grad *gk);

#endif
