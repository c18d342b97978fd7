/* NARMA-10, Mackey-Glass, NRMSE, ridge readout, windows.  See series.h. */
#include "surrogate/series.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>

#include "patctl/error.h"

int series_narma10(gsl_rng *r, long n, long washout, double *u, double *y)
{
    if (!r || !u || !y || n < 1 || washout < 0)
        return PATCTL_ERR_ARG;
    enum { ORD = 10 };
    double uh[ORD] = {0}, yh[ORD] = {0}; /* ring buffers: u(t-i), y(t-i) at [(t-i) % ORD] */
    long total = n + washout;
    double yt = 0.0;                     /* y(t) */
    for (long t = 0; t < total; t++) {
        double ut = 0.5 * gsl_rng_uniform(r);
        uh[t % ORD] = ut;
        yh[t % ORD] = yt;
        double next;
        if (t < ORD - 1) {
            next = 0.0; /* y(t+1) = 0 until the ten-step history exists (t+1 <= 9) */
        } else {
            double sum = 0.0;
            for (int i = 0; i < ORD; i++)
                sum += yh[i];
            double u9 = uh[(t - 9) % ORD];
            next = 0.3 * yt + 0.05 * yt * sum + 1.5 * u9 * ut + 0.1;
        }
        if (!isfinite(next) || fabs(next) > 10.0)
            return PATCTL_ERR_NUMERIC;
        if (t >= washout) {
            u[t - washout] = ut;
            y[t - washout] = next;
        }
        yt = next;
    }
    return 0;
}

series_mg_params series_mg_default(void)
{
    return (series_mg_params){.beta = 0.2, .gamma = 0.1, .n_exp = 10.0, .tau = 17.0, .dt = 0.1,
                              .sample = 1.0, .x0 = 1.2, .washout = 1000.0};
}

/* a positive ratio that is an integer within 1e-9, or 0 */
static long whole(double a, double b)
{
    if (!(a > 0) || !(b > 0))
        return 0;
    double q = a / b, r = nearbyint(q);
    return fabs(q - r) <= 1e-9 * fmax(1.0, q) && r >= 1 && r < 1e9 ? (long)r : 0;
}

static inline double mg_rhs(const series_mg_params *p, double x, double xd)
{
    return p->beta * xd / (1.0 + pow(fabs(xd), p->n_exp)) - p->gamma * x;
}

int series_mackey_glass(const series_mg_params *p, long n, double *x)
{
    if (!p || !x || n < 1 || !(p->beta > 0) || !(p->gamma > 0) || !(p->n_exp > 0) ||
        !(p->washout >= 0) || !isfinite(p->x0))
        return PATCTL_ERR_ARG;
    long m = whole(p->tau, p->dt), every = whole(p->sample, p->dt);
    long skip = p->washout == 0 ? 0 : whole(p->washout, p->dt);
    if (m < 2 || !every || (p->washout > 0 && !skip))
        return PATCTL_ERR_ARG;
    /* history ring of the last m+1 grid values and their derivatives:
     * grid point j lives at [j % (m+1)]; points j <= 0 are the constant x0
     * (derivative 0 before t = 0) */
    long L = m + 1;
    double *hx = malloc(sizeof(double) * (size_t)L), *hf = malloc(sizeof(double) * (size_t)L);
    if (!hx || !hf) {
        free(hx), free(hf);
        return PATCTL_ERR_NOMEM;
    }
    for (long j = 0; j < L; j++)
        hx[j] = p->x0, hf[j] = 0.0;
    double h = p->dt, xn = p->x0;
    long out = 0, steps = skip + (n - 1) * every;
    int rc = 0;
    if (skip == 0)
        x[out++] = xn;
    for (long j = 0; j < steps && out < n; j++) {
        /* delayed values at t_j - tau (grid j-m), t_j - tau + h/2 and t_j - tau + h
         * (grid j-m+1): an interval inside the constant history, or on the
         * solution (its values and right derivatives stored) */
        double x0 = p->x0, x1 = p->x0, f0 = 0.0, f1 = 0.0;
        if (j - m >= 0) {
            x0 = hx[(j - m) % L], f0 = hf[(j - m) % L];
            x1 = hx[(j - m + 1) % L], f1 = hf[(j - m + 1) % L];
        }
        double xm = 0.5 * (x0 + x1) + h * (f0 - f1) / 8.0; /* cubic Hermite at the midpoint */
        double k1 = mg_rhs(p, xn, x0);
        double k2 = mg_rhs(p, xn + 0.5 * h * k1, xm);
        double k3 = mg_rhs(p, xn + 0.5 * h * k2, xm);
        double k4 = mg_rhs(p, xn + h * k3, x1);
        /* the derivative at grid point j (for the interpolation later) */
        hf[j % L] = k1;
        hx[j % L] = xn;
        xn += h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
        if (!isfinite(xn)) {
            rc = PATCTL_ERR_NUMERIC;
            break;
        }
        long jj = j + 1; /* xn is grid point jj */
        hx[jj % L] = xn;
        if (jj >= skip && (jj - skip) % every == 0)
            x[out++] = xn;
    }
    free(hx), free(hf);
    return rc;
}

double series_nrmse(const double *y, const double *yhat, long n)
{
    if (n < 1)
        return NAN;
    double mean = 0.0;
    for (long t = 0; t < n; t++)
        mean += y[t];
    mean /= (double)n;
    double var = 0.0, se = 0.0;
    for (long t = 0; t < n; t++) {
        var += (y[t] - mean) * (y[t] - mean);
        se += (y[t] - yhat[t]) * (y[t] - yhat[t]);
    }
    return var > 0 ? sqrt(se / var) : NAN;
}

int series_ridge_fit(const double *X, long n, int d, const double *y, double lambda, double *w)
{
    if (!X || !y || !w || n < 1 || d < 0 || !(lambda >= 0))
        return PATCTL_ERR_ARG;
    int D = d + 1;
    double *A = calloc((size_t)D * (size_t)D, sizeof(double)), *rhs = calloc((size_t)D, sizeof(double));
    if (!A || !rhs) {
        free(A), free(rhs);
        return PATCTL_ERR_NOMEM;
    }
    /* A = [X 1]^T [X 1] (lower triangle), rhs = [X 1]^T y */
    for (long t = 0; t < n; t++) {
        const double *xt = X + t * d;
        for (int a = 0; a < d; a++) {
            double va = xt[a];
            double *Aa = A + (long)a * D;
            for (int b = 0; b <= a; b++)
                Aa[b] += va * xt[b];
            rhs[a] += va * y[t];
        }
        double *Ad = A + (long)d * D;
        for (int b = 0; b < d; b++)
            Ad[b] += xt[b];
        Ad[d] += 1.0;
        rhs[d] += y[t];
    }
    for (int a = 0; a < d; a++)
        A[(long)a * D + a] += lambda;
    gsl_matrix_view Am = gsl_matrix_view_array(A, (size_t)D, (size_t)D);
    gsl_vector_view bv = gsl_vector_view_array(rhs, (size_t)D);
    gsl_vector_view wv = gsl_vector_view_array(w, (size_t)D);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    int gs = gsl_linalg_cholesky_decomp1(&Am.matrix);
    if (!gs)
        gs = gsl_linalg_cholesky_solve(&Am.matrix, &bv.vector, &wv.vector);
    gsl_set_error_handler(old);
    free(A), free(rhs);
    return gs ? PATCTL_ERR_NUMERIC : 0;
}

void series_ridge_predict(const double *X, long n, int d, const double *w, double *yhat)
{
    for (long t = 0; t < n; t++) {
        const double *xt = X + t * d;
        double s = w[d];
        for (int a = 0; a < d; a++)
            s += w[a] * xt[a];
        yhat[t] = s;
    }
}

void series_windows(const double *u, long first_end, long count, int T, float *x)
{
    for (long j = 0; j < count; j++) {
        long end = first_end + j;
        for (int k = 0; k < T; k++) {
            long t = end - T + 1 + k;
            x[j * T + k] = t >= 0 ? (float)u[t] : 0.0f;
        }
    }
}
