#define _GNU_SOURCE
#include "surrogate/blas.h"

#include <dlfcn.h>
#include <gsl/gsl_cblas.h>
#include <stdatomic.h>
#include <time.h>

#include "surrogate/team.h"

/* Below this many flops a GEMM runs on the calling thread only. */
#define PAR_MIN_FLOPS 4e6

/* blas_clock_*: thread CPU nanoseconds inside OpenBLAS, and calls */
static atomic_int clock_on;
static atomic_llong clock_ns, clock_calls;

static long long thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

void blas_clock_start(void)
{
    atomic_store(&clock_ns, 0);
    atomic_store(&clock_calls, 0);
    atomic_store(&clock_on, 1);
}

void blas_clock_stop(void) { atomic_store(&clock_on, 0); }
double blas_clock_seconds(void) { return (double)atomic_load(&clock_ns) * 1e-9; }
long blas_clock_calls(void) { return (long)atomic_load(&clock_calls); }

static long long clock_begin(void)
{
    return atomic_load_explicit(&clock_on, memory_order_relaxed) ? thread_cpu_ns() : -1;
}

static void clock_end(long long t0)
{
    if (t0 < 0)
        return;
    atomic_fetch_add_explicit(&clock_ns, thread_cpu_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&clock_calls, 1, memory_order_relaxed);
}

static void sgemm1(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc)
{
    team_threads(); /* the team exists, so OpenBLAS is single-threaded: every
                       call of a given shape rounds the same way */
    long long t0 = clock_begin();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    clock_end(t0);
}

typedef struct {
    int ta, tb, M, N, K, by_rows;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

/* part p: a block of C's columns (rows when by_rows), each one OpenBLAS call */
static void gemm_part(void *arg, int p, int np)
{
    const gemm_job *j = arg;
    int lda = j->ta ? j->M : j->K, ldb = j->tb ? j->K : j->N;
    int lo, hi;
    if (j->by_rows) {
        team_split(j->M, np, 16, p, &lo, &hi);
        if (hi > lo)
            sgemm1(j->ta, j->tb, hi - lo, j->N, j->K, j->alpha,
                   j->ta ? j->A + lo : j->A + (long)lo * lda, lda, j->B, ldb, j->beta,
                   j->C + (long)lo * j->N, j->N);
    } else {
        team_split(j->N, np, 16, p, &lo, &hi);
        if (hi > lo)
            sgemm1(j->ta, j->tb, j->M, hi - lo, j->K, j->alpha, j->A, lda,
                   j->tb ? j->B + (long)lo * ldb : j->B + lo, ldb, j->beta, j->C + lo, j->N);
    }
}

void blas_sgemm(int ta, int tb, int M, int N, int K, float alpha,
                const float *A, const float *B, float beta, float *C)
{
    /* Blocks fixed by the shape (OpenBLAS rounds differently for different
     * call shapes): the same results with any number of threads, and
     * inside a team part (where the blocks run one after the other). */
    int big = M > N ? M : N, nb = big >= 1024 ? 4 : big >= 256 ? 2 : 1;
    if (nb > 1 && 2.0 * M * (double)N * K >= PAR_MIN_FLOPS) {
        gemm_job j = {ta, tb, M, N, K, M > N, alpha, beta, A, B, C};
        team_run(gemm_part, &j, nb);
        return;
    }
    sgemm1(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N);
}

void blas_sgemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void blas_sgemv_t_serial(int K, int N, float alpha, const float *A, int lda, const float *x,
                         float beta, float *y)
{
    team_threads(); /* OpenBLAS single-threaded, as in sgemm1 */
    long long t0 = clock_begin();
    cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, A, lda, x, 1, beta, y, 1);
    clock_end(t0);
}

const char *blas_library(void)
{
    Dl_info info;
    if (dladdr((void *)cblas_sgemm, &info) && info.dli_fname)
        return info.dli_fname;
    return "unknown";
}

const char *blas_config(void)
{
    const char *(*fn)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
    return fn ? fn() : NULL;
}

int blas_threads(void)
{
    int (*fn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    return fn ? fn() : 0;
}

void blas_set_threads(int n)
{
    void (*fn)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (fn)
        fn(n);
}
