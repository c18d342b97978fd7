/* The common fault and noise layer of the simulated drivers.
 *
 * Every simulated driver measures its physics (with its own physical noise:
 * input noise, shot noise, Johnson noise ...) and then passes the outputs
 * y [B, n_out] through sim_noise_apply(), which adds, in this order:
 *
 *   latency     sleep latency_ms + B * latency_row_ms per batch query (B > 0),
 *               like a slow instrument (latency_row_ms: one measuring its
 *               samples one after another)
 *   dropout     with probability `dropout` the whole query fails with
 *               PATCTL_ERR_TIMEOUT (the boundary retries it under a new id)
 *   drift       a slow additive offset per output channel k:
 *                 o_k(id) = drift * sin(2 pi id / drift_period + phi_k),
 *               phi_k fixed by the device seed; id is the query id, so the
 *               drift is reproducible (it follows the query count, not time)
 *   noise_std   Gaussian output noise N(0, noise_std^2), fresh per value
 *   outlier     with probability `outlier` per value, add +-outlier_scale
 *   quant_step  rounding to a multiple of quant_step (0 = off)
 *
 * All units are the driver's output unit.  Everything is off by default
 * (a driver's own physical noise is separate).  Randomness comes from
 * sim_rng(seed, id, SIM_PURPOSE_COMMON) for the per-query dropout draw and
 * from the per-row streams sim_rng_row(seed, id, SIM_PURPOSE_COMMON, row) for
 * the values of absolute row `row` = row0 + b, so a query's noise depends
 * only on the seed, the query id and each row's index in the whole query
 * (a batch split across a pool of servers gets the same noise).
 *
 * For the exact VJP (--mode ideal) the layer is the identity: the additive
 * terms do not depend on x or theta, and rounding is passed straight through. */
#ifndef PATCTL_SIM_NOISE_H
#define PATCTL_SIM_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/device.h"

/* sim_rng purpose of the layer's stream; drivers use purposes below 0x100. */
#define SIM_PURPOSE_COMMON 0x100u

typedef struct sim_noise {
    double noise_std;     /* Gaussian output noise std */
    double quant_step;    /* quantisation step, 0 = off */
    double drift;         /* drift amplitude */
    double drift_period;  /* queries per drift cycle (> 0) */
    double latency_ms;    /* delay per batch query, ms */
    double latency_row_ms; /* and per row of it, ms */
    double dropout;       /* probability that a batch query times out, 0..1 */
    double outlier;       /* probability that a value is an outlier, 0..1 */
    double outlier_scale; /* size of an outlier */
    uint64_t seed;        /* the device seed */
} sim_noise;

/* The option keys of the layer, NULL-terminated (for options_check_known). */
extern const char *const sim_noise_keys[];

/* Help lines for a driver's options_help (string literal, concatenable). */
#define SIM_NOISE_HELP                                                              \
    "noise_std=0     common: Gaussian output noise std (output units)\n"            \
    "quant_step=0    common: output quantisation step, 0 = off\n"                   \
    "drift=0         common: slow additive output drift amplitude\n"                \
    "drift_period=10000  common: queries per drift cycle\n"                         \
    "latency_ms=0    common: emulated delay per batch (ms)\n"                       \
    "latency_row_ms=0  common: and per row of a batch (ms): samples one after another\n" \
    "dropout=0       common: probability that a batch query times out\n"            \
    "outlier=0       common: probability that an output value is an outlier\n"      \
    "outlier_scale=1 common: size of an outlier (output units)\n"

/* A bits-bit ADC over [-range, range] (saturating, round to nearest code):
 * y[n] in place; bits <= 0: nothing.  For drivers whose instrument has one
 * (circuit, reservoir); the exact VJP passes it straight through. */
void sim_adc(float *y, long n, int bits, double range);

/* Read the layer's options (unknown keys are not checked here).  Returns 0 or
 * PATCTL_ERR_ARG with a message naming the option. */
int sim_noise_parse(sim_noise *nz, const struct patctl_option *o, int n, uint64_t seed,
                    char *err, size_t errlen);

/* Nonzero when any part of the layer is on. */
int sim_noise_active(const sim_noise *nz);

/* Apply the layer to y [B, n_out] of query id, whose row b is row row0 + b
 * of the whole query (struct patctl_query.row0).  Returns 0,
 * PATCTL_ERR_TIMEOUT for a dropout (y then holds no data), or
 * PATCTL_ERR_NOMEM. */
int sim_noise_apply(const sim_noise *nz, uint64_t id, int64_t row0, float *y, int B, int n_out);

/* The drift offset of output channel k at query id (0 when drift is off). */
double sim_noise_drift(const sim_noise *nz, uint64_t id, int k);

#endif
