/* Benchmark time series for reservoir computing and their error measure:
 * pure functions (no I/O, double precision), seeded with a caller's gsl_rng.
 *
 *   NARMA-10 (Atiya & Parlos, IEEE Trans. Neural Netw. 11, 697 (2000)):
 *     y(t+1) = 0.3 y(t) + 0.05 y(t) sum_{i=0}^{9} y(t-i) + 1.5 u(t-9) u(t) + 0.1,
 *     u(t) ~ U(0, 0.5) i.i.d., y(t) = 0 for t <= 9 (and u(t) = 0 for t < 0).
 *   Mackey-Glass (Science 197, 287 (1977)):
 *     dx/dt = beta x(t - tau) / (1 + x(t - tau)^n) - gamma x(t),
 *     beta 0.2, gamma 0.1, n 10, tau 17 (chaotic), constant history x0 on
 *     [-tau, 0]; classic RK4 with step dt (tau/dt an integer >= 2), the delayed
 *     value at the half steps by cubic Hermite interpolation of the stored
 *     history (values and derivatives: fourth order overall), sampled every
 *     `sample` time units after a washout.
 *   NRMSE(y, yhat) = sqrt(mean((y - yhat)^2) / var(y)), var the population
 *     variance of the target y.
 * plus a ridge-regression linear readout (GSL Cholesky) and the windows of
 * a series as samples. */
#ifndef PATCTL_SERIES_H
#define PATCTL_SERIES_H

#include <gsl/gsl_rng.h>

/* NARMA-10 of length n after `washout` discarded steps: u[n] the inputs and
 * y[n] the aligned targets, y[t] = y(t+1) of the recursion, so y[t] depends
 * on u[0..t] (what a causal system fed u[t] at step t must produce).
 * Returns 0, PATCTL_ERR_ARG (n < 1, washout < 0, NULL) or
 * PATCTL_ERR_NUMERIC (the recursion left |y| <= 10 or became non-finite:
 * NARMA-10 is not bounded for every input sequence). */
int series_narma10(gsl_rng *r, long n, long washout, double *u, double *y);

typedef struct series_mg_params {
    double beta, gamma, n_exp, tau;  /* 0.2, 0.1, 10, 17 */
    double dt;                       /* RK4 step, time units (0.1) */
    double sample;                   /* sampling interval, time units (1) */
    double x0;                       /* constant history on [-tau, 0] (1.2) */
    double washout;                  /* time units discarded (1000) */
} series_mg_params;

/* The defaults above (the standard chaotic tau = 17 setting). */
series_mg_params series_mg_default(void);

/* x[n] = x(washout + j sample), j = 0..n-1.  Returns 0, PATCTL_ERR_ARG (n < 1,
 * tau/dt (>= 2) or sample/dt not an integer within 1e-9, non-positive constants),
 * PATCTL_ERR_NOMEM or PATCTL_ERR_NUMERIC. */
int series_mackey_glass(const series_mg_params *p, long n, double *x);

/* NRMSE of yhat[n] against the target y[n]; NAN when n < 1 or var(y) = 0. */
double series_nrmse(const double *y, const double *yhat, long n);

/* Ridge readout: w[d+1] (the last entry a bias) minimising
 * sum_t (y_t - X_t w - w_d)^2 + lambda |w_{0..d-1}|^2 for X [n, d] row-major,
 * by the normal equations and GSL's Cholesky.  Returns 0, PATCTL_ERR_ARG,
 * PATCTL_ERR_NOMEM or PATCTL_ERR_NUMERIC (not positive definite). */
int series_ridge_fit(const double *X, long n, int d, const double *y, double lambda, double *w);
/* yhat[n] = X w[0..d-1] + w[d]. */
void series_ridge_predict(const double *X, long n, int d, const double *w, double *yhat);

/* Samples of a series as windows: x[j, 0..T-1] = u[end_j - T + 1 .. end_j]
 * with end_j = first_end + j, j = 0..count-1 (float32, batch first, values
 * before u[0] are 0).  Shapes: u [>= first_end + count], x [count, T]. */
void series_windows(const double *u, long first_end, long count, int T, float *x);

#endif
