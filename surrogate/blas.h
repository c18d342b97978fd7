/* Thin helpers over CBLAS (bound to OpenBLAS at link time). float32, row-major. */
#ifndef PATCTL_BLAS_H
#define PATCTL_BLAS_H

#include <stddef.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op = transpose when t* != 0.
 * A is [M,K] (or [K,M] if ta), B is [K,N] (or [N,K] if tb).  Products of
 * >= 4 Mflop are split into 2 (max(M,N) >= 256) or 4 (>= 1024) column (or
 * row) blocks, one single-threaded OpenBLAS call each, run in parallel over
 * the thread team (team.h).  The blocks
 * depend on the shape only, so the results do not depend on the number of
 * threads. */
void blas_sgemm(int ta, int tb, int M, int N, int K, float alpha,
                const float *A, const float *B, float beta, float *C);

/* One OpenBLAS call on the calling thread, with explicit leading dimensions
 * (for blocks of larger matrices). */
void blas_sgemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* y[N] = alpha * A^T x + beta * y for A [K, N] with leading dimension lda,
 * x [K]: one OpenBLAS call on the calling thread.  Its result for a row x
 * depends only on (K, N, lda, data), never on other rows. */
void blas_sgemv_t_serial(int K, int N, float alpha, const float *A, int lda, const float *x,
                         float beta, float *y);

/* Benchmarks: CPU time spent inside the OpenBLAS calls made through this
 * file (sgemm, sgemv), summed over all threads, and their count.  Off by
 * default (then it costs one relaxed atomic load per call); on, every call
 * reads the thread's CPU clock twice.  blas_clock_start() zeroes both. */
void blas_clock_start(void);
void blas_clock_stop(void);
double blas_clock_seconds(void);
long blas_clock_calls(void);

/* File name of the shared object that provides cblas_sgemm in this process,
 * e.g. "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0". */
const char *blas_library(void);

/* OpenBLAS build configuration string and thread count, or NULL/0 when the
 * bound BLAS is not OpenBLAS. */
const char *blas_config(void);
int blas_threads(void);
/* Set OpenBLAS's thread count (no-op for other BLAS); the thread team sets 1. */
void blas_set_threads(int n);

#endif
