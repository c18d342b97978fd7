/* Affine layer on CBLAS. */
#include "surrogate/layers.h"
#include "surrogate/blas.h"

void linear_forward(float *out, const float *in, const float *W, const float *b,
                    int R, int I, int O)
{
    if (b) {
        for (int r = 0; r < R; r++)
            for (int o = 0; o < O; o++)
                out[(long)r * O + o] = b[o];
    }
    blas_sgemm(0, 1, R, O, I, 1.0f, in, W, b ? 1.0f : 0.0f, out);
}

void linear_backward(float *din, float *dW, float *db, const float *dout,
                     const float *in, const float *W, int R, int I, int O)
{
    if (din)
        blas_sgemm(0, 0, R, I, O, 1.0f, dout, W, 1.0f, din);
    if (dW)
        blas_sgemm(1, 0, O, I, R, 1.0f, dout, in, 1.0f, dW);
    if (db) {
        for (int r = 0; r < R; r++)
            for (int o = 0; o < O; o++)
                db[o] += dout[(long)r * O + o];
    }
}
