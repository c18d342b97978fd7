/* Shape-changing digital layers: patches, zero padding, concatenation,
 * readout, and an elementwise tanh. */
#include <math.h>
#include <string.h>

#include "surrogate/layers.h"

void patches_forward(float *out, const float *in, int B, int H, int W, int k)
{
    int py = H / k, px = W / k, kk = k * k;
    for (int b = 0; b < B; b++) {
        const float *img = in + (long)b * H * W;
        for (int i = 0; i < py; i++)
            for (int j = 0; j < px; j++) {
                float *p = out + ((long)b * py * px + i * px + j) * kk;
                for (int r = 0; r < k; r++)
                    memcpy(p + r * k, img + (long)(i * k + r) * W + j * k,
                           sizeof(float) * (size_t)k);
            }
    }
}

void patches_backward(float *din, const float *dout, int B, int H, int W, int k)
{
    int py = H / k, px = W / k, kk = k * k;
    for (int b = 0; b < B; b++) {
        float *img = din + (long)b * H * W;
        for (int i = 0; i < py; i++)
            for (int j = 0; j < px; j++) {
                const float *p = dout + ((long)b * py * px + i * px + j) * kk;
                for (int r = 0; r < k; r++)
                    for (int c = 0; c < k; c++)
                        img[(long)(i * k + r) * W + j * k + c] += p[r * k + c];
            }
    }
}

void pad_forward(float *out, const float *in, int R, int c, int to)
{
    for (int r = 0; r < R; r++) {
        memcpy(out + (long)r * to, in + (long)r * c, sizeof(float) * (size_t)c);
        memset(out + (long)r * to + c, 0, sizeof(float) * (size_t)(to - c));
    }
}

void pad_backward(float *din, const float *dout, int R, int c, int to)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < c; j++)
            din[(long)r * c + j] += dout[(long)r * to + j];
}

void concat_forward(float *out, const float *in, int R, int c, int g)
{
    (void)g;
    memcpy(out, in, sizeof(float) * (size_t)R * (size_t)c);
}

void concat_backward(float *din, const float *dout, int R, int c, int g)
{
    (void)g;
    long n = (long)R * c;
    for (long i = 0; i < n; i++)
        din[i] += dout[i];
}

void readout_forward(float *out, const float *in, float s, int R, int c, int m)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < m; j++)
            out[(long)r * m + j] = s * in[(long)r * c + (c - m) + j];
}

void readout_backward(float *din, float *ds, const float *dout, const float *in,
                      float s, int R, int c, int m)
{
    double acc = 0.0;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < m; j++) {
            float g = dout[(long)r * m + j];
            acc += (double)g * in[(long)r * c + (c - m) + j];
            if (din)
                din[(long)r * c + (c - m) + j] += s * g;
        }
    if (ds)
        *ds += (float)acc;
}

void tanh_forward(float *out, const float *in, long n)
{
    for (long i = 0; i < n; i++)
        out[i] = tanhf(in[i]);
}

void tanh_backward(float *din, const float *dout, const float *out, long n)
{
    for (long i = 0; i < n; i++)
        din[i] += dout[i] * (1.0f - out[i] * out[i]);
}
