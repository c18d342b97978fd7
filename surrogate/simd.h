/* PATCTL_HOT marks the elementwise loops of a training step (RK4 stages,
 * their VJP, the coupling map, Adam).  With GCC on x86-64 each is compiled
 * twice, for the x86-64 baseline (SSE2) and for AVX2, and the loader picks
 * one by CPU (target_clones / ifunc).  Both give the same bits: these loops
 * only add, multiply, divide and take square roots, all correctly rounded
 * (no FMA contraction in ISO C mode, no reassociation), and wider vectors
 * change no rounding.  Elsewhere (other
 * compilers or C libraries, sanitizer builds) it is empty. */
#ifndef PATCTL_SIMD_H
#define PATCTL_SIMD_H

#include <limits.h> /* defines __GLIBC__ on glibc (ifunc needs it) */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__OPTIMIZE_SIZE__)
#define PATCTL_HOT __attribute__((target_clones("avx2", "default")))
#else
#define PATCTL_HOT
#endif

#endif
