/* Grey-box fitting of the coupled-oscillator model (oscillator.h) to device
 * data: the nominal physics plus
 *   - the calibration constants osc_consts (eta, coupling gain, input and
 *     output gain/offset), fitted with gsl_multifit_nlinear (trust-region
 *     Levenberg-Marquardt) on an analytic Jacobian from the forward-mode
 *     tangent below; each constant gets a standard error from the covariance
 *     (J^T J)^-1 scaled by chi^2/dof;
 *   - optionally a coupling correction D = L(sym(A)) [N,N] added to the
 *     coupling (the structure of the device's hidden Q_noise), fitted jointly
 *     with the constants by gsl_multilarge_nlinear (trust region with
 *     Steihaug-Toint conjugate gradients, matrix-free: J u is the tangent
 *     below, J^T u the exact VJP osc_backward, whose gradient w.r.t. A is
 *     gC / coupling_gain because g L(sym(C)) + L(sym(A)) = L(sym(g C + A))),
 *     or by Adam on mini-batches of settings (method FIT_COUPLING_ADAM),
 *     or, for large devices, as a full [N,N] matrix by iterated linear least
 *     squares with the constants fixed (FIT_COUPLING_LS, fit_coupling_ls.c);
 *     then the constants are refitted by LM with D fixed, so their standard
 *     errors are conditional on the fitted D.
 * The fitted model is still osc_forward/osc_backward with other constants and
 * q_noise = D, so it keeps the exact VJP w.r.t. inputs and parameters. */
#ifndef PATCTL_FIT_OSC_H
#define PATCTL_FIT_OSC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "surrogate/fit_set.h"
#include "surrogate/oscillator.h"
#include "surrogate/surrogate.h"

/* One tangent direction: a change of the constants and of the coupling. */
typedef struct osc_dir {
    osc_consts dk;          /* direction in the 6 constants */
    const float *dM;        /* [N,N] symmetric direction of M, or NULL */
} osc_dir;

typedef struct fit_osc_work fit_osc_work;
/* Work space for fit_osc_jvp with up to cap rows and T directions.  Caller
 * owns; free accepts NULL. */
fit_osc_work *fit_osc_work_alloc(int n, int cap, int T);
void fit_osc_work_free(fit_osc_work *w);

/* Forward-mode derivative (JVP) of the noiseless model:
 *   y [B,N]     = osc_forward(m; C, e, x)
 *   dy [T,B,N]  = d y / d(direction t),  t = 0..T-1
 * in float32 on CBLAS.  Returns 0 or PATCTL_ERR_ARG (B/T over capacity). */
int fit_osc_jvp(const osc_model *m, const float *C, const float *e, const float *x, int B,
                const osc_dir *dirs, int T, float *y, float *dy, fit_osc_work *w);

/* Bit masks of the constants (field order of osc_consts). */
enum {
    OSC_K_ETA = 1u << 0, OSC_K_GAIN = 1u << 1, OSC_K_IN_GAIN = 1u << 2,
    OSC_K_IN_OFFSET = 1u << 3, OSC_K_OUT_GAIN = 1u << 4, OSC_K_OUT_OFFSET = 1u << 5,
    OSC_K_ALL = 0x3fu,
};
/* Name of constant i (0..5), e.g. "coupling_gain". */
const char *fit_osc_const_name(int i);
float *fit_osc_const_ptr(osc_consts *k, int i);

typedef struct fit_osc_options {
    unsigned mask;          /* constants to fit (default OSC_K_ALL) */
    int max_iter;           /* LM iteration cap (default 100) */
    long max_resid;         /* residuals used by LM, whole settings (default 4e6) */
    int coupling;           /* also fit the coupling correction D */
    int method;             /* FIT_COUPLING_GN (default) or FIT_COUPLING_ADAM */
    int gn_iter;            /* GN: trust-region iterations (default 30) */
    int cg_iter;            /* GN: CG iterations per step (default 30) */
    int rounds;             /* Adam: constants <-> D alternations (default 3) */
    int epochs;             /* Adam: epochs over the training settings per round (default 20) */
    double lr;              /* Adam learning rate for A (default 3e-3) */
    double l2;              /* ridge penalty on A (default 0) */
    int batch_settings;     /* settings per Adam step (default 2) */
    int ls_iter;            /* LS: iterations per round (default 15) */
    double ridge;           /* LS: ridge, relative to the mean feature power (default 1e-3) */
    int laplacian;          /* LS: D keeps the structure L(sym A) (default 0: free diagonal) */
    uint64_t seed;          /* order of the mini-batches */
    int verbose;            /* progress lines on stderr */
    volatile sig_atomic_t *stop; /* set asynchronously to stop early; may be NULL */
} fit_osc_options;

enum { FIT_COUPLING_GN = 0, FIT_COUPLING_ADAM = 1, FIT_COUPLING_LS = 2 };

void fit_osc_default_options(fit_osc_options *o);

typedef struct fit_osc_result {
    osc_consts k, se;       /* fitted constants and standard errors (0: not fitted) */
    unsigned mask;
    long n_resid;           /* residuals of the last LM fit */
    double chi2, dof, chi2_dof;   /* of the last LM fit (residuals in output units) */
    int iters;              /* LM iterations of the last constants fit */
    int status;             /* GSL status of the last LM driver call (0 = converged) */
    int rounds_done, epochs_done;
    double rms_train, rms_val;    /* RMS residual after the fit (val: -1 without) */
    double seconds;
} fit_osc_result;

/* Fit the constants selected by o->mask by trust-region LM, starting from
 * m->k, on the settings of role FIT_TRAIN (all if role == NULL).  m->q_noise
 * (if any) stays fixed.  On success m->k holds the fit. */
int fit_osc_consts(osc_model *m, const fit_set *d, const uint8_t *role,
                   const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen);

/* Fit the coupling correction by Adam with the constants fixed: A [N,N]
 * (in: start, out: fit) and D = L(sym(A)) [N,N] (out; m->q_noise must point
 * to D).  Monitors the FIT_VAL settings and keeps the best A. */
int fit_osc_coupling(osc_model *m, float *A, float *D, const fit_set *d, const uint8_t *role,
                     const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen);

/* Fit the coupling correction D [N,N] (in: start, out: fit; m->q_noise
 * is set to D) by iterated linear least squares with the constants fixed
 * (see fit_coupling_ls.c).  Keeps the D with the best FIT_VAL RMS (the last
 * one without validation settings); r->epochs_done = iterations. */
int fit_osc_coupling_ls(osc_model *m, float *D, const fit_set *d, const uint8_t *role,
                        const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen);

/* The ridge of the LS fits: G [n,n] += lambda I, lambda = rel x the mean of
 * diag G (x 1 if that is 0); returns lambda. */
double fit_ridge(double *G, int n, double rel);
/* X [n,n] = G^-1 B by GSL's Cholesky (lower triangle of G used; G is
 * overwritten by the factor).  0 or the GSL status. */
int fit_cholesky_solve(double *G, const double *B, double *X, int n);

/* Fit the constants selected by o->mask and A jointly by trust-region
 * Gauss-Newton (gsl_multilarge_nlinear, Steihaug-Toint CG), starting from
 * m->k and A; D = L(sym(A)) out, m->q_noise must point to D.  Training
 * settings; the FIT_VAL RMS is reported in r->rms_val. */
int fit_osc_joint(osc_model *m, float *A, float *D, const fit_set *d, const uint8_t *role,
                  const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen);

/* The whole grey-box fit: LM on the constants; with o->coupling then the
 * joint GN fit (or rounds of Adam on D and LM on the constants; or, for LS,
 * no LM first — far from the truth the constants compensate instead of
 * calibrating — and rounds of LS on D and LM on the constants) and a final
 * LM on the constants with D fixed (for their standard errors).  m: in the nominal model (n, steps, t_end, start
 * constants), out the fit; *D_out: the fitted correction [N,N] (malloc'ed,
 * caller frees; m->q_noise points to it) or NULL without coupling. */
int fit_osc_greybox(osc_model *m, float **D_out, const fit_set *d, const uint8_t *role,
                    const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen);

/* A surrogate for the fitted model that owns a copy of D [N,N] (may be
 * NULL).  Same theta layout as surrogate_osc_new ([C, e]).  Caller owns. */
surrogate *surrogate_osc_fitted_new(const osc_model *m, const float *D);

/* The parts of a plain or fitted oscillator surrogate: its model (copied
 * into *m) and its correction D (borrowed, NULL if none).  0 or
 * PATCTL_ERR_UNSUPPORTED for other kinds. */
int surrogate_osc_parts(surrogate *s, osc_model *m, const float **D);

#endif
