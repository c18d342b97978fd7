#include "controller/rng.h"

#include <string.h>

#include "devices/sim_rng.h"
#include "patctl/error.h"

int rng_streams_init(rng_streams *s, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    for (int i = 0; i < N_STREAMS; i++) {
        s->r[i] = gsl_rng_alloc(gsl_rng_mt19937);
        if (!s->r[i]) {
            rng_streams_free(s);
            return PATCTL_ERR_NOMEM;
        }
        uint64_t k = seed_mix(seed, 0x5157000ULL + (uint64_t)i);
        gsl_rng_set(s->r[i], (unsigned long)((k ^ (k >> 32)) & 0xffffffffUL));
    }
    return 0;
}

void rng_streams_free(rng_streams *s)
{
    for (int i = 0; i < N_STREAMS; i++) {
        if (s->r[i])
            gsl_rng_free(s->r[i]);
        s->r[i] = NULL;
    }
}

uint64_t rng_device_seed(uint64_t run_seed, int device_index)
{
    return seed_mix(run_seed, 0xde71ce00ULL + (uint64_t)device_index) & 0xffffffffULL;
}

size_t rng_state_size(const rng_streams *s, stream_id id) { return gsl_rng_size(s->r[id]); }

void rng_state_save(const rng_streams *s, stream_id id, void *buf)
{
    memcpy(buf, gsl_rng_state(s->r[id]), gsl_rng_size(s->r[id]));
}

void rng_state_load(rng_streams *s, stream_id id, const void *buf)
{
    memcpy(gsl_rng_state(s->r[id]), buf, gsl_rng_size(s->r[id]));
}
