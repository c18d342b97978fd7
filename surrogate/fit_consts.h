/* Grey-box fit of the calibration constants of any physics surrogate whose
 * constants are doubles in its model (SHG: dispersion, spectrometer response,
 * gain; circuit: R, L, C, diode V_on and R_on, DAC/ADC calibration), by
 * trust-region Levenberg-Marquardt (gsl_multifit_nlinear).
 *
 * The Jacobian columns are directional derivatives of the surrogate's own
 * forward by central differences of each constant (step 1e-3 of its scale;
 * the models compute in double and round outputs to float32, so a column is
 * accurate to ~1e-4 relative), checked in the tests against the models' exact
 * VJP with respect to the constants.  The fit runs in scaled units
 * u_j = k_j / scale_j, so that R ~ 50 ohm and C ~ 1e-7 F are alike; each
 * constant gets a standard error from (J^T J)^-1 chi^2/dof.
 *
 * The circuit's impedance scale is not identifiable from voltages: R, L, C,
 * R_on -> a R, a L, C / a, a R_on leaves every output unchanged, so C stays
 * at its nominal (datasheet) value and R, L, R_on are fitted relative to it.  The fitted
 * surrogate is the nominal one with the fitted constants, so it keeps its
 * exact VJP w.r.t. inputs and parameters. */
#ifndef PATCTL_FIT_CONSTS_H
#define PATCTL_FIT_CONSTS_H

#include <signal.h>
#include <stddef.h>

#include "surrogate/fit_set.h"
#include "surrogate/surrogate.h"

#define FIT_MAX_CONSTS 16

/* The constants of one surrogate: pointers into its model. */
typedef struct fit_consts_view {
    int n;
    const char *name[FIT_MAX_CONSTS];
    double *ptr[FIT_MAX_CONSTS];     /* into the surrogate's model; not owned */
    double scale[FIT_MAX_CONSTS];    /* typical magnitude (> 0) */
    unsigned identifiable;           /* the constants a fit estimates by default */
    const char *note;                /* why some are not, or NULL */
} fit_consts_view;

/* The view of an SHG or circuit surrogate; 0, or PATCTL_ERR_UNSUPPORTED for
 * other kinds. */
int fit_consts_view_of(surrogate *s, fit_consts_view *v);

typedef struct fit_consts_result {
    int n;
    double value[FIT_MAX_CONSTS], se[FIT_MAX_CONSTS];
    unsigned mask;
    long n_resid;
    double chi2, dof, chi2_dof;
    int iters, status;
    double seconds;
} fit_consts_result;

/* Fit the constants selected by mask (bit j = constant j of the view; 0 =
 * v->identifiable) on the FIT_TRAIN settings (all if role == NULL), at most max_resid
 * residuals (whole settings).  On success the surrogate holds the fit. */
int fit_consts(surrogate *s, const fit_consts_view *v, unsigned mask, const fit_set *d,
               const uint8_t *role, int max_iter, long max_resid, int verbose,
               fit_consts_result *r, char *err, size_t errlen);

#endif
