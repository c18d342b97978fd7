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

/* Fill out[n] with N(0, sigma^2) draws from r. */
void sim_gaussian_fill(gsl_rng *r, float *out, long n, double sigma);

#endif
