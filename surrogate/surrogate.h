/* A surrogate: the differentiable digital model of one physical layer.
 * forward(theta, x) -> y keeps what its VJP needs (the "tape"); backward()
 * is the VJP of the LAST forward and ACCUMULATES into gx and gtheta.
 * theta has the device's layout (its parameter blocks concatenated).
 * Shapes: x [B, n_in], y [B, n_out], theta [n_theta]. */
#ifndef PATCTL_SURROGATE_H
#define PATCTL_SURROGATE_H

#include <stdatomic.h>

#include "surrogate/circuit.h"
#include "surrogate/lif.h"
#include "surrogate/oscillator.h"
#include "surrogate/reservoir.h"
#include "surrogate/shg.h"

typedef struct surrogate surrogate;

typedef struct surrogate_ops {
    const char *kind;
    int (*forward)(surrogate *s, const float *theta, const float *x, int B, float *y);
    int (*backward)(surrogate *s, const float *gy, float *gx, float *gtheta);
    void (*destroy)(surrogate *s);
} surrogate_ops;

struct surrogate {
    const surrogate_ops *ops;
    int n_in, n_out;
    long n_theta;
    void *impl;           /* owned, freed by destroy */
};

static inline int surrogate_forward(surrogate *s, const float *theta,
                                    const float *x, int B, float *y)
{
    return s->ops->forward(s, theta, x, B, y);
}
/* Calls of surrogate_backward in this process (every surrogate, every
 * thread): tests check that a learning rule uses none (DFA). */
extern atomic_long surrogate_backward_calls;

static inline int surrogate_backward(surrogate *s, const float *gy, float *gx,
                                     float *gtheta)
{
    atomic_fetch_add_explicit(&surrogate_backward_calls, 1, memory_order_relaxed);
    return s->ops->backward(s, gy, gx, gtheta);
}
/* Frees *sp and sets it to NULL; accepts NULL and *sp == NULL. */
void surrogate_destroy(surrogate **sp);

/* Oscillator surrogate with the given model (copied; q_noise must outlive
 * the surrogate or be NULL).  theta = [C (N*N), e (N)].  Caller owns. */
surrogate *surrogate_osc_new(const osc_model *m);
/* Access to the model of an oscillator surrogate (to set fitted constants). */
osc_model *surrogate_osc_model(surrogate *s);

/* SHG surrogate with the given model (copied; resp_extra must outlive the
 * surrogate or be NULL).  theta = phi [n_par].  NULL on a bad geometry or no
 * memory.  Caller owns. */
surrogate *surrogate_shg_new(const shg_model *m);
/* The model of an SHG surrogate (to set fitted constants), or NULL. */
shg_model *surrogate_shg_model(surrogate *s);

/* Circuit surrogate with the given model (copied).  theta = [gain (n_in),
 * bias (n_in)].  NULL on a bad model or no memory.  Caller owns. */
surrogate *surrogate_circuit_new(const circuit_model *m);
/* The model of a circuit surrogate (to set fitted constants), or NULL. */
circuit_model *surrogate_circuit_model(surrogate *s);

/* Delay-reservoir surrogate with the given model (copied), no loop noise.
 * theta = [mask (N*C), bias (N), gain (1)].  NULL on a bad model or no
 * memory.  Caller owns. */
surrogate *surrogate_reservoir_new(const reservoir_model *m);
/* The model of a reservoir surrogate (to set fitted constants), or NULL. */
reservoir_model *surrogate_reservoir_model(surrogate *s);
/* Spiking (LIF chip) surrogate with the given model (copied, without its
 * per-neuron arrays: the nominal chip).  theta = [W (n_out*n_in), b
 * (n_out)].  strsbp = 0: surrogate-gradient BPTT (kind "lif"); 1: the
 * ST-RSBP spike-train level gradient (kind "lif-strsbp", hard spikes only).
 * NULL on a bad model or no memory.  Caller owns. */
surrogate *surrogate_lif_new(const lif_model *m, int strsbp);
/* The model of a spiking surrogate, or NULL. */
lif_model *surrogate_lif_model(surrogate *s);

#endif
