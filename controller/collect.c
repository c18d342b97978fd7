/* Device data collection (see collect.h). */
#include "controller/collect.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

void collect_default_options(collect_options *o)
{
    memset(o, 0, sizeof(*o));
    o->settings = 200;
    o->per_setting = 50;
    o->design = DESIGN_UNIFORM;
    o->x_lo = o->x_hi = NAN;
    o->range = THETA_INIT;
    o->theta_scale = 1.0;
    o->radius = 0.1;
    o->repeat_settings = 10;
    o->repeat_inputs = 10;
    o->repeats = 8;
}

/* u[n] in [0,1): uniform, or one Latin-hypercube column (n strata, one
 * sample each, in random order). */
static void unit_column(gsl_rng *r, collect_design design, double *u, size_t *perm, long n)
{
    if (design == DESIGN_UNIFORM) {
        for (long i = 0; i < n; i++)
            u[i] = gsl_rng_uniform(r);
        return;
    }
    for (long i = 0; i < n; i++)
        perm[i] = (size_t)i;
    gsl_ran_shuffle(r, perm, (size_t)n, sizeof(size_t));
    for (long i = 0; i < n; i++)
        u[i] = ((double)perm[i] + gsl_rng_uniform(r)) / (double)n;
}

/* Fill theta [K, n_theta]. */
static void draw_settings(gsl_rng *r, const struct patctl_device_desc *desc, const collect_options *o,
                          float *theta, long K, long nt, double *u, size_t *perm)
{
    long off = 0;
    for (int b = 0; b < desc->n_blocks; b++) {
        const struct patctl_param_block *k = &desc->blocks[b];
        long len = (long)k->rows * k->cols;
        double lo = o->range == THETA_LIMITS ? k->lo : k->init_lo;
        double hi = o->range == THETA_LIMITS ? k->hi : k->init_hi;
        double mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo) * o->theta_scale;
        for (long j = 0; j < len; j++) {
            unit_column(r, o->design, u, perm, K);
            for (long s = 0; s < K; s++) {
                double v;
                if (o->around)
                    v = o->around[off + j] + o->radius * half * (2.0 * u[s] - 1.0);
                else
                    v = mid + half * (2.0 * u[s] - 1.0);
                if (v < k->lo)
                    v = k->lo;
                if (v > k->hi)
                    v = k->hi;
                theta[s * nt + off + j] = (float)v;
            }
        }
        off += len;
    }
}

int collect_run(device *d, const collect_options *o, fit_set *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const struct patctl_device_desc *desc = &d->desc;
    long K = o->settings, nt = d->n_theta;
    int B = o->per_setting, nx = desc->n_in, ny = desc->n_out;
    long Kr = o->repeats >= 2 ? (o->repeat_settings < K ? o->repeat_settings : K) : 0;
    int Bi = o->repeat_inputs < B ? o->repeat_inputs : B;
    if (K < 1 || B < 1 || (Kr && Bi < 1)) {
        snprintf(err, errlen, "collect: need at least 1 setting, 1 input per setting and 1 repeated input");
        return PATCTL_ERR_ARG;
    }
    double xlo = isnan(o->x_lo) ? desc->in_lo : fmax(o->x_lo, desc->in_lo);
    double xhi = isnan(o->x_hi) ? desc->in_hi : fmin(o->x_hi, desc->in_hi);
    if (!(xlo <= xhi)) {
        snprintf(err, errlen, "collect: input range [%g, %g] lies outside the limits [%g, %g] of device %s",
                 o->x_lo, o->x_hi, desc->in_lo, desc->in_hi, d->name);
        return PATCTL_ERR_ARG;
    }
    long S = K * B, G = Kr * Bi;
    int R = Kr ? o->repeats : 0;
    int rc = fit_set_alloc(out, nx, ny, nt, S, K, G, R);
    if (rc)
        return rc;
    long nu = S > K ? S : K;
    double *u = malloc(sizeof(double) * (size_t)nu);
    size_t *perm = malloc(sizeof(size_t) * (size_t)nu);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!u || !perm || !r) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    gsl_rng_set(r, (unsigned long)(o->seed * 0x2545F4914F6CDD1DULL + 7));

    /* the design: settings, then inputs (one column per input over all S) */
    draw_settings(r, desc, o, out->theta, K, nt, u, perm);
    for (int j = 0; j < nx; j++) {
        unit_column(r, o->design, u, perm, S);
        for (long s = 0; s < S; s++)
            out->x[s * nx + j] = (float)(xlo + (xhi - xlo) * u[s]);
    }
    for (long s = 0; s < S; s++)
        out->setting[s] = (int32_t)(s / B);

    /* measure: one query per setting; keep what was sent */
    for (long k = 0; k < K; k++) {
        if (o->stop && *o->stop) {
            rc = PATCTL_ERR_INTERRUPTED;
            snprintf(err, errlen, "collect: interrupted after %ld of %ld settings", k, K);
            goto out;
        }
        float *x = out->x + k * B * nx, *y = out->y + k * B * ny;
        if ((rc = device_run(d, out->theta + k * nt, x, B, y))) {
            snprintf(err, errlen, "device %s: setting %ld: %s", d->name, k,
                     d->err[0] ? d->err : patctl_strerror(rc));
            goto out;
        }
        memcpy(out->theta + k * nt, d->sent_theta, sizeof(float) * (size_t)nt);
        memcpy(x, d->sent_x, sizeof(float) * (size_t)B * (size_t)nx);
        if (o->verbose && (k + 1) % 50 == 0)
            fprintf(stderr, "  collect: %ld/%ld settings\n", k + 1, K);
    }

    /* repeats: evenly spaced settings, their first Bi inputs, R times */
    for (long g = 0; g < Kr; g++) {
        long k = Kr > 1 ? g * (K - 1) / (Kr - 1) : 0;
        memcpy(out->rep_x + g * Bi * nx, out->x + k * B * nx, sizeof(float) * (size_t)Bi * (size_t)nx);
        for (int i = 0; i < Bi; i++)
            out->rep_setting[g * Bi + i] = (int32_t)k;
        for (int rr = 0; rr < R; rr++) {
            if (o->stop && *o->stop) {
                rc = PATCTL_ERR_INTERRUPTED;
                snprintf(err, errlen, "collect: interrupted during the repeats");
                goto out;
            }
            float *y = out->rep_y + ((long)rr * G + g * Bi) * ny;
            if ((rc = device_run(d, out->theta + k * nt, out->rep_x + g * Bi * nx, Bi, y))) {
                snprintf(err, errlen, "device %s: repeat of setting %ld: %s", d->name, k,
                         d->err[0] ? d->err : patctl_strerror(rc));
                goto out;
            }
        }
    }
    if (R >= 2)
        rc = fit_set_noise(out);
out:
    free(u);
    free(perm);
    if (r)
        gsl_rng_free(r);
    if (rc)
        fit_set_free(out);
    return rc;
}
