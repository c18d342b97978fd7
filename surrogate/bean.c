/* BEAN regularisation of one weight matrix (see bean.h). */
#include "surrogate/bean.h"

#include <math.h>
#include <string.h>

#include "surrogate/blas.h"

size_t bean_scratch_floats(int O, int I) { return 3 * (size_t)I * (size_t)I + 2 * (size_t)O * (size_t)I + (size_t)I + 1; }

/* Wt = tanh|W| [O, I], A = Wt^T Wt [I, I], G = W^T W [I, I], d [I] */
static void parts(const float *W, int O, int I, float *Wt, float *A, float *G, float *d)
{
    long n = (long)O * I;
    for (long k = 0; k < n; k++)
        Wt[k] = tanhf(fabsf(W[k]));
    blas_sgemm(1, 0, I, I, O, 1.0f, Wt, Wt, 0.0f, A);
    blas_sgemm(1, 0, I, I, O, 1.0f, W, W, 0.0f, G);
    for (int i = 0; i < I; i++) {
        double acc = 0;
        for (int j = 0; j < I; j++)
            acc += A[(long)i * I + j];
        d[i] = (float)acc;
    }
}

double bean_forward(const float *W, int O, int I, double alpha, float *scratch)
{
    if (O <= 0 || I <= 0 || alpha == 0)
        return 0.0;
    float *A = scratch, *G = A + (long)I * I, *Wt = G + (long)I * I + (long)I * I, *d = Wt + 2L * O * I;
    parts(W, O, I, Wt, A, G, d);
    double s = 0;
    for (int i = 0; i < I; i++) {
        s += 2.0 * (double)G[(long)i * I + i] * d[i];
        for (int j = 0; j < I; j++)
            s -= 2.0 * (double)A[(long)i * I + j] * G[(long)i * I + j];
    }
    return alpha * s;
}

void bean_backward(const float *W, int O, int I, double alpha, float *Gout, float *scratch)
{
    if (O <= 0 || I <= 0 || alpha == 0)
        return;
    float *A = scratch, *G = A + (long)I * I, *D = G + (long)I * I, *Wt = D + (long)I * I, *T = Wt + (long)O * I;
    float *d = T + (long)O * I;
    parts(W, O, I, Wt, A, G, d);
    /* D = n_i + n_j - 2 G_ij (the squared distances of outgoing weights) */
    for (int i = 0; i < I; i++)
        for (int j = 0; j < I; j++)
            D[(long)i * I + j] = G[(long)i * I + i] + G[(long)j * I + j] - 2.0f * G[(long)i * I + j];
    float c = (float)alpha;
    /* T = W A, then the through-D term 4 (W diag(d) - W A) */
    blas_sgemm(0, 0, O, I, I, 1.0f, W, A, 0.0f, T);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            long k = (long)o * I + i;
            Gout[k] += c * 4.0f * (W[k] * d[i] - T[k]);
        }
    /* T = W~ D, then the through-A term 2 (W~ D) sign(W) (1 - W~^2) */
    blas_sgemm(0, 0, O, I, I, 1.0f, Wt, D, 0.0f, T);
    for (long k = 0; k < (long)O * I; k++) {
        float sg = W[k] > 0 ? 1.0f : W[k] < 0 ? -1.0f : 0.0f;
        Gout[k] += c * 2.0f * T[k] * sg * (1.0f - Wt[k] * Wt[k]);
    }
}
