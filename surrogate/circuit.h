/* An analog nonlinear circuit (the electronic system of the PAT paper) — the
 * physics, written once.  The simulated device (devices/circuit/) runs it
 * with hidden-truth component values plus Johnson noise and a 12-bit ADC; the
 * surrogate runs it with the nominal (datasheet) values.
 *
 * Inputs are time-multiplexed: during slot s (duration t_slot) a DAC drives
 *
 *   u_s = a_in (g_s x_s + b_s)          x_s input voltage, g_s gain (V/V) and
 *                                       b_s bias (V) the trainable parameters
 *
 * into a series RLC whose capacitor is shunted by an antiparallel diode pair:
 *
 *   L di/dt = u(t) - R i - v
 *   C dv/dt = i - I_d(v)
 *   I_d(v)  = (nVt / R_on) [ sp((v - V_on)/nVt) - sp((-v - V_on)/nVt) ],
 *             sp(z) = log(1 + e^z)  (a smooth diode with on-resistance R_on)
 *
 * starting at rest (i = v = 0) for every sample.  An ADC samples the
 * capacitor voltage `sps` times per slot (at the end of equal sub-intervals):
 *
 *   y_{s*sps+q} = a_out v(t_{s,q}) + b_out
 *
 * Integrated with classic RK4, `substeps` steps per slot (a multiple of sps),
 * in double precision; x, theta and y are float32.  Shapes: x [B, n_in] (V),
 * theta = [g (n_in), b (n_in)], y [B, n_in*sps] (V). */
#ifndef PATCTL_CIRCUIT_H
#define PATCTL_CIRCUIT_H

#include <stddef.h>

/* Component values and calibration (what a grey-box fit estimates). */
typedef struct circuit_consts {
    double r;           /* series resistance, ohm */
    double l;           /* inductance, H */
    double c;           /* capacitance, F */
    double von;         /* diode turn-on voltage, V */
    double ron;         /* diode on-resistance, ohm */
    double in_gain;     /* DAC gain a_in */
    double out_gain;    /* ADC front-end gain a_out */
    double out_offset;  /* ADC offset b_out, V */
} circuit_consts;

#define CIRCUIT_N_CONSTS 8

typedef struct circuit_model {
    int n_in;           /* time slots (inputs) */
    int sps;            /* ADC samples per slot; n_out = n_in * sps */
    int substeps;       /* RK4 steps per slot, a multiple of sps */
    double t_slot;      /* slot duration, s */
    double nvt;         /* diode softness n V_T, V (fixed) */
    circuit_consts k;
} circuit_model;

/* Nominal (datasheet) values: R 50 ohm, L 1 mH, C 100 nF (f0 = 15.9 kHz,
 * Q = 2), V_on 0.5 V, R_on 20 ohm, nVt 0.05 V, gains 1, offset 0; slots of
 * 10 us with 10 RK4 steps. */
circuit_model circuit_model_nominal(int n_in, int sps);

/* 0 if usable, else PATCTL_ERR_ARG with a message. */
int circuit_check(const circuit_model *m, char *err, size_t errlen);

static inline int circuit_n_out(const circuit_model *m) { return m->n_in * m->sps; }

/* Forward states kept for the VJP (per sample: the state at every RK4 step,
 * inputs, parameters), for batches up to cap.  Caller owns; circuit_tape_free
 * accepts NULL.  NULL on bad model or no memory. */
typedef struct circuit_tape circuit_tape;
circuit_tape *circuit_tape_alloc(const circuit_model *m, int cap);
void circuit_tape_free(circuit_tape *t);
int circuit_tape_capacity(const circuit_tape *t);

/* y[B, n_out] = circuit(x[B, n_in]; theta = [g, b]).  The tape must come from
 * a model with the same n_in, sps and substeps.  Returns 0, PATCTL_ERR_ARG
 * (B above capacity, shape mismatch) or PATCTL_ERR_NUMERIC (the integration
 * blew up: non-finite state). */
int circuit_forward(const circuit_model *m, const float *x, const float *theta, int B,
                    float *y, circuit_tape *t);

/* Gradient of the constants, same layout as circuit_consts. */
typedef struct circuit_consts circuit_consts_grad;

/* VJP of the last circuit_forward on this tape (same model).  ACCUMULATES:
 * gx[B, n_in] += ..., gtheta[2 n_in] += ..., gk += ...; any may be NULL. */
int circuit_backward(const circuit_model *m, circuit_tape *t, const float *gy, float *gx,
                     float *gtheta, circuit_consts_grad *gk);

#endif
