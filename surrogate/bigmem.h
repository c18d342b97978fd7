/* Allocation of the large matrices of a training step ([N,N] couplings,
 * oscillator tapes, parameter and optimiser vectors).
 *
 * Blocks of 4 MB and more are aligned to 2 MB and advised as transparent
 * huge pages (madvise(MADV_HUGEPAGE); the kernel may decline, then they are
 * ordinary pages): strided passes over a 10 MB matrix (a transposed tile, a
 * BLAS packing routine) then walk a few huge pages instead of thousands of
 * 4 KB pages and their TLB misses.  Smaller blocks come from malloc.
 * Release every block with free(). */
#ifndef PATCTL_BIGMEM_H
#define PATCTL_BIGMEM_H

#include <stddef.h>

/* bytes of uninitialised memory, or NULL */
void *big_alloc(size_t bytes);

/* count * size bytes of zeroes, or NULL (also on overflow) */
void *big_calloc(size_t count, size_t size);

#endif
