/* Seeded random streams, one per purpose, so that a run is reproducible from
 * its seed and one purpose drawing more numbers does not shift another. */
#ifndef PATCTL_RNG_H
#define PATCTL_RNG_H

#include <stddef.h>
#include <stdint.h>
#include <gsl/gsl_rng.h>

typedef enum {
    STREAM_DATA = 0,   /* data order (shuffling) */
    STREAM_INIT = 1,   /* parameter initialisation */
    STREAM_SPSA = 2,   /* perturbations of gradient-free training */
    N_STREAMS
} stream_id;

typedef struct rng_streams {
    uint64_t seed;
    gsl_rng *r[N_STREAMS];   /* mt19937, owned */
} rng_streams;

int rng_streams_init(rng_streams *s, uint64_t seed);
void rng_streams_free(rng_streams *s);

/* The seed a simulated device gets from the run seed (device noise stream). */
uint64_t rng_device_seed(uint64_t run_seed, int device_index);

/* Bytes of one stream's state, and copies out/in (for checkpoints). */
size_t rng_state_size(const rng_streams *s, stream_id id);
void rng_state_save(const rng_streams *s, stream_id id, void *buf);
void rng_state_load(rng_streams *s, stream_id id, const void *buf);

#endif
