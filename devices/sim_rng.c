#include "devices/sim_rng.h"

#include <gsl/gsl_randist.h>

uint64_t seed_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

gsl_rng *sim_rng(uint64_t seed, uint64_t id, uint32_t purpose)
{
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r)
        return NULL;
    uint64_t s = seed_mix(seed_mix(seed, id), purpose);
    gsl_rng_set(r, (unsigned long)(s & 0xffffffffUL) ^ (unsigned long)(s >> 32));
    return r;
}

void sim_rng_row(gsl_rng *r, uint64_t seed, uint64_t id, uint32_t purpose, uint64_t row)
{
    uint64_t s = seed_mix(seed_mix(seed_mix(seed, id), purpose), row);
    gsl_rng_set(r, (unsigned long)(s & 0xffffffffUL) ^ (unsigned long)(s >> 32));
}

void sim_gaussian_fill(gsl_rng *r, float *out, long n, double sigma)
{
    for (long i = 0; i < n; i++)
        out[i] = (float)gsl_ran_gaussian_ziggurat(r, sigma);
}
