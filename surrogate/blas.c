#define _GNU_SOURCE
#include "surrogate/blas.h"

#include <dlfcn.h>
#include <gsl/gsl_cblas.h>

void blas_sgemm(int ta, int tb, int M, int N, int K, float alpha,
                const float *A, const float *B, float beta, float *C)
{
    int lda = ta ? M : K;
    int ldb = tb ? K : N;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, N);
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
