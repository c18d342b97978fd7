/* Seeded randomness for simulated devices.  Noise of query `id` comes from a
 * generator seeded by mix(seed, id, purpose), so a query's noise does not
 * depend on what ran before it: runs are reproducible and resumable, and the
 * ideal VJP can recompute the very noise realisation of a forward pass. */
#ifndef PATCTL_SIM_RNG_H
#define PATCTL_SIM_RNG_H

#include <stdint.h>
#include <gsl/gsl_rng.h>

/* A 64-bit mix of two words (splitmix64 finaliser over their combination). */
uint64_t seed_mix(uint64_t a, uint64_t b);

/* A fresh mt19937 generator for (seed, id, purpose); caller frees with
 * gsl_rng_free().  NULL on allocation failure. */
gsl_rng *sim_rng(uint64_t seed, uint64_t id, uint32_t purpose);

/* Reseed r (any allocated generator) for row `row` of query id: the stream
 * of (seed, id, purpose, row).  Per-row streams make a row's noise depend on
 * its absolute index in the query (struct patctl_query.row0 + b), not on how
 * a batch was split, so a pool of servers draws what one device would. */
void sim_rng_row(gsl_rng *r, uint64_t seed, uint64_t id, uint32_t purpose, uint64_t row);

/* Fill out[n] with N(0, sigma^2) draws from r. */
void sim_gaussian_fill(gsl_rng *r, float *out, long n, double sigma);

#endif
