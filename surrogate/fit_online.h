/* Online refit during PAT: an oscillator surrogate that keeps learning from
 * the measurements the run makes (drift tracking).
 *
 * After each PAT step (forward on the device, surrogate forward at what was
 * sent, backward through the surrogate), the controller shows the surrogate
 * what the device measured for the batch it was just evaluated at
 * (surrogate_online_observe).  Then
 *   - coupling: one Adam step on the coupling correction D = L(sym(A)) on
 *     the batch's residual 1/2 |y_surrogate - y_device|^2 (exact VJP: the
 *     gradient w.r.t. A is gC / coupling_gain, see fit_osc.h);
 *     or, with `ls`, recursive least squares on the whole correction D (a
 *     full symmetric matrix, as fitted by --coupling-method ls): every batch
 *     adds its coupling inputs F [B,N] (osc_tape_coupling_input) and the
 *     pseudo-targets T = R / c + F D (R the batch's residual, c = a_out
 *     t_end^2/2: what F D_true would be in the linear response) to the normal
 *     equations G = rho G + F^T F, H = rho H + F^T T (double; forgetting
 *     factor rho per batch), and every `ls_every` batches D is replaced by
 *     the symmetric part of (G + lambda I)^-1 (H + lambda D) — the minimum
 *     change of D that fits the recent measurements (lambda = ridge x the
 *     mean of diag G).  So the correction follows the operating point the
 *     training moves to, from the run's own measurements (no extra queries);
 *   - every `refit_every` steps: the calibration constants are refitted by
 *     trust-region LM (fit_osc_consts) on the last `window` batches.
 * State (A, Adam moments, the window) lives in the surrogate; it is not part
 * of a run's checkpoints. */
#ifndef PATCTL_FIT_ONLINE_H
#define PATCTL_FIT_ONLINE_H

#include <stddef.h>

#include "surrogate/fit_osc.h"

typedef struct fit_online_options {
    int refit_every;        /* steps between constants refits, 0 = never (default 100) */
    int window;             /* batches kept for a refit (default 10) */
    unsigned mask;          /* constants refitted (default OSC_K_ALL) */
    int coupling;           /* Adam step on D every step (default 1) */
    double lr;              /* Adam learning rate for A (default 1e-3) */
    int ls;                 /* coupling by recursive least squares instead of Adam (default 0) */
    int ls_every;           /* ls: batches between solves (default 25) */
    double forget;          /* ls: forgetting factor per batch (default 0.99) */
    double ridge;           /* ls: pull towards the current D, relative (default 1e-2) */
    int denoise;            /* iterations of input-noise inference before the backward (0 = off) */
    double noise;           /* denoise: the device's input noise std, rad (default 0.02) */
    double model_err;       /* denoise: the model's output error std, rad (default 0.01) */
} fit_online_options;

void fit_online_default_options(fit_online_options *o);

/* Parse "every=N,window=W,lr=X,coupling=0|1,consts=0|1,ls=0|1,ls_every=N,
 * forget=X,ridge=X" into o (keys not
 * given keep their value).  0 or PATCTL_ERR_ARG with a message. */
int fit_online_parse(const char *text, fit_online_options *o, char *err, size_t errlen);

/* An online surrogate starting from model m and correction D [N,N] (copied;
 * NULL = none).  theta = [C, e] like the oscillator surrogate.  Caller owns. */
surrogate *surrogate_osc_online_new(const osc_model *m, const float *D, const fit_online_options *o);

/* 1 if s is an online surrogate. */
int surrogate_is_online(surrogate *s);

/* What the device measured, y_dev [B, N], for the batch of the surrogate's
 * last forward (theta, x: what was sent).  Updates the surrogate as above.
 * 0 or PATCTL_ERR_* (message in err). */
int surrogate_online_observe(surrogate *s, const float *theta, const float *x, const float *y_dev,
                             int B, char *err, size_t errlen);

/* Input-noise inference (option denoise=K): after the device measured
 * y_dev [B,N] for the batch of the surrogate's last forward (theta, x: what
 * was sent), estimate the input noise n the device's trajectory carried —
 * the MAP estimate under n ~ N(0, noise^2) and a model error model_err,
 * by K Gauss-Newton steps on the self-sensitivity
 * (osc_tape_self_sensitivity) — and re-run the forward at q(0) + n, so that
 * the backward follows the device's estimated trajectory instead of the
 * noiseless one (in an unstable regime the two differ by far more than the
 * noise).  y [B,N] receives the surrogate's output there.  0 (also when
 * denoise is off: then nothing changes) or PATCTL_ERR_*. */
int surrogate_online_condition(surrogate *s, const float *theta, const float *x, const float *y_dev, int B,
                               float *y);

/* The current model (constants; q_noise = the current D), or NULL. */
const osc_model *surrogate_online_model(surrogate *s);

#endif
