/* Collected data: allocation, checks, noise floor, split, metrics. */
#include "surrogate/fit_set.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

int fit_set_alloc(fit_set *d, int n_in, int n_out, long n_theta, long S, long K, long G, int R)
{
    memset(d, 0, sizeof(*d));
    if (n_in <= 0 || n_out <= 0 || n_theta < 0 || S < 0 || K < 0 || G < 0 || R < 0)
        return PATCTL_ERR_ARG;
    d->n_in = n_in, d->n_out = n_out, d->n_theta = n_theta;
    d->S = S, d->K = K, d->G = G, d->R = R;
    /* +1 so that empty arrays are still valid pointers */
    d->x = calloc((size_t)(S * n_in + 1), sizeof(float));
    d->y = calloc((size_t)(S * n_out + 1), sizeof(float));
    d->setting = calloc((size_t)(S + 1), sizeof(int32_t));
    d->theta = calloc((size_t)(K * n_theta + 1), sizeof(float));
    d->rep_x = calloc((size_t)(G * n_in + 1), sizeof(float));
    d->rep_setting = calloc((size_t)(G + 1), sizeof(int32_t));
    d->rep_y = calloc((size_t)((long)R * G * n_out + 1), sizeof(float));
    if (!d->x || !d->y || !d->setting || !d->theta || !d->rep_x || !d->rep_setting || !d->rep_y) {
        fit_set_free(d);
        return PATCTL_ERR_NOMEM;
    }
    return 0;
}

void fit_set_free(fit_set *d)
{
    free(d->x);
    free(d->y);
    free(d->setting);
    free(d->theta);
    free(d->rep_x);
    free(d->rep_setting);
    free(d->rep_y);
    free(d->noise_std);
    memset(d, 0, sizeof(*d));
}

static int all_finite(const float *v, long n)
{
    for (long i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

int fit_set_check(const fit_set *d, char *err, size_t errlen)
{
    for (long s = 0; s < d->S; s++) {
        if (d->setting[s] < 0 || d->setting[s] >= d->K) {
            snprintf(err, errlen, "sample %ld: setting %d outside 0..%ld", s, d->setting[s], d->K - 1);
            return PATCTL_ERR_FORMAT;
        }
        if (s && d->setting[s] < d->setting[s - 1]) {
            snprintf(err, errlen, "sample %ld: settings must be non-decreasing", s);
            return PATCTL_ERR_FORMAT;
        }
    }
    for (long g = 0; g < d->G; g++)
        if (d->rep_setting[g] < 0 || d->rep_setting[g] >= d->K) {
            snprintf(err, errlen, "repeat pair %ld: setting %d outside 0..%ld", g, d->rep_setting[g],
                     d->K - 1);
            return PATCTL_ERR_FORMAT;
        }
    if (!all_finite(d->x, d->S * d->n_in) || !all_finite(d->y, d->S * d->n_out) ||
        !all_finite(d->theta, d->K * d->n_theta) || !all_finite(d->rep_x, d->G * d->n_in) ||
        !all_finite(d->rep_y, (long)d->R * d->G * d->n_out)) {
        snprintf(err, errlen, "data contains NaN or Inf");
        return PATCTL_ERR_NONFINITE;
    }
    return 0;
}

int fit_set_noise(fit_set *d)
{
    if (d->G < 1 || d->R < 2)
        return PATCTL_ERR_ARG;
    free(d->noise_std);
    d->noise_std = malloc(sizeof(float) * (size_t)d->n_out);
    if (!d->noise_std)
        return PATCTL_ERR_NOMEM;
    int no = d->n_out, R = d->R;
    for (int i = 0; i < no; i++) {
        double var = 0.0;
        for (long g = 0; g < d->G; g++) {
            double mean = 0.0, ss = 0.0;
            for (int r = 0; r < R; r++)
                mean += d->rep_y[((long)r * d->G + g) * no + i];
            mean /= R;
            for (int r = 0; r < R; r++) {
                double e = d->rep_y[((long)r * d->G + g) * no + i] - mean;
                ss += e * e;
            }
            var += ss / (R - 1);
        }
        d->noise_std[i] = (float)sqrt(var / (double)d->G);
    }
    return 0;
}

double fit_set_noise_rms(const fit_set *d)
{
    if (!d->noise_std)
        return -1.0;
    double s = 0.0;
    for (int i = 0; i < d->n_out; i++)
        s += (double)d->noise_std[i] * d->noise_std[i];
    return sqrt(s / d->n_out);
}

uint8_t *fit_split(const fit_set *d, double frac_val, double frac_test, uint64_t seed)
{
    long K = d->K;
    uint8_t *role = malloc((size_t)(K + 1));
    size_t *perm = malloc(sizeof(size_t) * (size_t)(K + 1));
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!role || !perm || !r) {
        free(role);
        free(perm);
        if (r)
            gsl_rng_free(r);
        return NULL;
    }
    gsl_rng_set(r, (unsigned long)(seed ^ 0x5eedf17ULL));
    for (long k = 0; k < K; k++)
        perm[k] = (size_t)k;
    if (K > 1)
        gsl_ran_shuffle(r, perm, (size_t)K, sizeof(size_t));
    long nt = (long)floor(frac_test * (double)K + 0.5), nv = (long)floor(frac_val * (double)K + 0.5);
    if (nt + nv > K - 1) { /* keep one for training */
        nt = nt > K - 1 ? K - 1 : nt;
        nv = K - 1 - nt < nv ? K - 1 - nt : nv;
    }
    if (nt < 0)
        nt = 0;
    if (nv < 0)
        nv = 0;
    for (long i = 0; i < K; i++)
        role[perm[i]] = i < nt ? FIT_TEST : i < nt + nv ? FIT_VAL : FIT_TRAIN;
    gsl_rng_free(r);
    free(perm);
    return role;
}

static int selected(const fit_set *d, const uint8_t *role, int which, long s)
{
    return which < 0 || !role || role[d->setting[s]] == which;
}

long fit_count(const fit_set *d, const uint8_t *role, int which)
{
    long n = 0;
    for (long s = 0; s < d->S; s++)
        n += selected(d, role, which, s);
    return n;
}

long fit_next_group(const fit_set *d, long s, long *s0, long *s1)
{
    if (s >= d->S)
        return -1;
    long k = d->setting[s], e = s;
    while (e < d->S && d->setting[e] == k)
        e++;
    *s0 = s, *s1 = e;
    return k;
}

void fit_metrics_of(const fit_set *d, const uint8_t *role, int which, const float *pred,
                    fit_metrics *m, double *resid_rms)
{
    int no = d->n_out;
    double *mean = calloc((size_t)no, sizeof(double)), *m2 = calloc((size_t)no, sizeof(double));
    double *se = calloc((size_t)no, sizeof(double));
    memset(m, 0, sizeof(*m));
    if (!mean || !m2 || !se) {
        free(mean), free(m2), free(se);
        m->rmse = m->nrmse = NAN;
        return;
    }
    long n = 0;
    for (long s = 0; s < d->S; s++) {
        if (!selected(d, role, which, s))
            continue;
        n++;
        const float *y = d->y + s * no, *p = pred + s * no;
        for (int i = 0; i < no; i++) {
            double dy = y[i] - mean[i]; /* Welford */
            mean[i] += dy / (double)n;
            m2[i] += dy * (y[i] - mean[i]);
            double e = (double)p[i] - y[i];
            se[i] += e * e;
        }
    }
    double sse = 0.0, var = 0.0;
    for (int i = 0; i < no; i++) {
        sse += se[i];
        var += n > 1 ? m2[i] / (double)(n - 1) : 0.0;
        if (resid_rms)
            resid_rms[i] = n ? sqrt(se[i] / (double)n) : 0.0;
    }
    m->n = n;
    m->rmse = n ? sqrt(sse / ((double)n * no)) : 0.0;
    m->std_y = sqrt(var / no);
    m->nrmse = m->std_y > 0 ? m->rmse / m->std_y : INFINITY;
    m->noise_rms = fit_set_noise_rms(d);
    if (m->noise_rms > 0) {
        m->noise_nrmse = m->noise_rms / m->std_y;
        m->ratio = m->rmse / m->noise_rms;
    } else {
        m->noise_nrmse = m->ratio = -1.0;
    }
    free(mean), free(m2), free(se);
}

int fit_evaluate(surrogate *sur, const fit_set *d, const uint8_t *role, int which,
                 fit_metrics *m, float *pred, double *resid_rms)
{
    if (sur->n_in != d->n_in || sur->n_out != d->n_out || sur->n_theta != d->n_theta)
        return PATCTL_ERR_ARG;
    float *own = NULL;
    if (!pred) {
        own = pred = calloc((size_t)(d->S * d->n_out + 1), sizeof(float));
        if (!own)
            return PATCTL_ERR_NOMEM;
    }
    long s0, s1, k;
    int rc = 0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (role && which >= 0 && role[k] != which)
            continue;
        rc = surrogate_forward(sur, d->theta + k * d->n_theta, d->x + s0 * d->n_in, (int)(s1 - s0),
                               pred + s0 * d->n_out);
        if (rc)
            break;
    }
    if (!rc)
        fit_metrics_of(d, role, which, pred, m, resid_rms);
    free(own);
    return rc;
}
