/* The common fault and noise layer of the simulated drivers (see sim_noise.h). */
#include "devices/sim_noise.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include <gsl/gsl_randist.h>

#include "devices/options.h"
#include "devices/sim_rng.h"

const char *const sim_noise_keys[] = {
    "noise_std", "quant_step", "drift", "drift_period", "latency_ms", "latency_row_ms",
    "dropout", "outlier", "outlier_scale", NULL,
};

int sim_noise_parse(sim_noise *nz, const struct patctl_option *o, int n, uint64_t seed,
                    char *err, size_t errlen)
{
    int rc;
    *nz = (sim_noise){.drift_period = 10000, .outlier_scale = 1, .seed = seed};
    if ((rc = options_float(o, n, "noise_std", 0, &nz->noise_std, err, errlen)) ||
        (rc = options_float(o, n, "quant_step", 0, &nz->quant_step, err, errlen)) ||
        (rc = options_float(o, n, "drift", 0, &nz->drift, err, errlen)) ||
        (rc = options_float(o, n, "drift_period", 10000, &nz->drift_period, err, errlen)) ||
        (rc = options_float(o, n, "latency_ms", 0, &nz->latency_ms, err, errlen)) ||
        (rc = options_float(o, n, "latency_row_ms", 0, &nz->latency_row_ms, err, errlen)) ||
        (rc = options_float(o, n, "dropout", 0, &nz->dropout, err, errlen)) ||
        (rc = options_float(o, n, "outlier", 0, &nz->outlier, err, errlen)) ||
        (rc = options_float(o, n, "outlier_scale", 1, &nz->outlier_scale, err, errlen)))
        return rc;
    const char *bad = nz->noise_std < 0 ? "noise_std >= 0"
                    : nz->quant_step < 0 ? "quant_step >= 0"
                    : nz->drift_period <= 0 ? "drift_period > 0"
                    : nz->latency_ms < 0 || nz->latency_ms > 60000 ? "latency_ms in 0..60000"
                    : nz->latency_row_ms < 0 || nz->latency_row_ms > 1000 ? "latency_row_ms in 0..1000"
                    : nz->dropout < 0 || nz->dropout >= 1 ? "dropout in [0, 1)"
                    : nz->outlier < 0 || nz->outlier > 1 ? "outlier in [0, 1]"
                    : NULL;
    if (bad) {
        snprintf(err, errlen, "common noise options: expected %s", bad);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

int sim_noise_active(const sim_noise *nz)
{
    return nz->noise_std > 0 || nz->quant_step > 0 || nz->drift != 0 || nz->latency_ms > 0 || nz->latency_row_ms > 0 ||
           nz->dropout > 0 || nz->outlier > 0;
}

double sim_noise_drift(const sim_noise *nz, uint64_t id, int k)
{
    if (nz->drift == 0)
        return 0.0;
    /* phase of channel k: uniform in [0, 2 pi) from the seed, no generator needed */
    double phi = 2.0 * M_PI * (double)(seed_mix(nz->seed ^ 0x5d1f7ULL, (uint64_t)k) >> 11) * 0x1p-53;
    double cyc = fmod((double)id, nz->drift_period) / nz->drift_period;
    return nz->drift * sin(2.0 * M_PI * cyc + phi);
}

static void sleep_ms(double ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000.0),
                          .tv_nsec = (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int sim_noise_apply(const sim_noise *nz, uint64_t id, int64_t row0, float *y, int B, int n_out)
{
    if (B <= 0)
        return 0;
    if (nz->latency_ms > 0 || nz->latency_row_ms > 0)
        sleep_ms(nz->latency_ms + B * nz->latency_row_ms);
    /* dropout: one draw per query from the query's stream, so every part of
     * a pooled query makes the same decision */
    if (nz->dropout > 0) {
        gsl_rng *q = sim_rng(nz->seed, id, SIM_PURPOSE_COMMON);
        if (!q)
            return PATCTL_ERR_NOMEM;
        int drop = gsl_rng_uniform(q) < nz->dropout;
        gsl_rng_free(q);
        if (drop)
            return PATCTL_ERR_TIMEOUT;
    }
    for (int k = 0; k < n_out && nz->drift != 0; k++) {
        float off = (float)sim_noise_drift(nz, id, k);
        for (int b = 0; b < B; b++)
            y[(long)b * n_out + k] += off;
    }
    if (nz->noise_std > 0 || nz->outlier > 0) {
        gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
        if (!r)
            return PATCTL_ERR_NOMEM;
        for (int b = 0; b < B; b++) {
            /* row b's values come from the stream of its absolute row index */
            float *yb = y + (long)b * n_out;
            sim_rng_row(r, nz->seed, id, SIM_PURPOSE_COMMON, (uint64_t)(row0 + b));
            if (nz->noise_std > 0)
                for (int k = 0; k < n_out; k++)
                    yb[k] += (float)gsl_ran_gaussian_ziggurat(r, nz->noise_std);
            if (nz->outlier > 0)
                for (int k = 0; k < n_out; k++)
                    if (gsl_rng_uniform(r) < nz->outlier)
                        yb[k] += (float)(gsl_rng_uniform(r) < 0.5 ? -nz->outlier_scale : nz->outlier_scale);
        }
        gsl_rng_free(r);
    }
    long len = (long)B * n_out;
    if (nz->quant_step > 0)
        for (long i = 0; i < len; i++)
            y[i] = (float)(nz->quant_step * nearbyint((double)y[i] / nz->quant_step));
    return 0;
}

void sim_adc(float *y, long n, int bits, double range)
{
    if (bits <= 0)
        return;
    double codes = ldexp(1.0, bits), lsb = 2.0 * range / codes;
    for (long i = 0; i < n; i++) {
        double c = floor(((double)y[i] + range) / lsb + 0.5);
        c = c < 0 ? 0 : c > codes - 1 ? codes - 1 : c;
        y[i] = (float)(c * lsb - range);
    }
}
