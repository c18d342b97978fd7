/* A small learnable synthetic image set: each of 10 classes has a prototype
 * made of three bright Gaussian blobs at class-specific places; a sample is
 * its prototype, shifted by up to one pixel, plus pixel noise, in [0, 1]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "controller/data.h"
#include "devices/sim_rng.h"
#include "patctl/error.h"

int dataset_synthetic(dataset *out, long n, int side, uint64_t seed)
{
    memset(out, 0, sizeof(*out));
    if (n <= 0 || side < 4)
        return PATCTL_ERR_ARG;
    long px = (long)side * side;
    float *proto = calloc((size_t)(10 * px), sizeof(float));
    out->x = malloc(sizeof(float) * (size_t)(n * px));
    out->y = malloc((size_t)n);
    gsl_rng *shape = sim_rng(12345, 0, 1); /* class prototypes are fixed */
    gsl_rng *r = sim_rng(seed, 0, 2);
    if (!proto || !out->x || !out->y || !shape || !r) {
        free(proto);
        if (shape)
            gsl_rng_free(shape);
        if (r)
            gsl_rng_free(r);
        dataset_free(out);
        return PATCTL_ERR_NOMEM;
    }
    double width = side / 7.0;
    for (int c = 0; c < 10; c++)
        for (int blob = 0; blob < 3; blob++) {
            double cy = gsl_rng_uniform(shape) * (side - 1), cx = gsl_rng_uniform(shape) * (side - 1);
            for (int i = 0; i < side; i++)
                for (int j = 0; j < side; j++) {
                    double d2 = ((i - cy) * (i - cy) + (j - cx) * (j - cx)) / (width * width);
                    proto[c * px + i * side + j] += (float)exp(-d2);
                }
        }
    for (long s = 0; s < n; s++) {
        int c = (int)gsl_rng_uniform_int(r, 10);
        int dy = (int)gsl_rng_uniform_int(r, 3) - 1, dx = (int)gsl_rng_uniform_int(r, 3) - 1;
        float *dst = out->x + s * px;
        for (int i = 0; i < side; i++)
            for (int j = 0; j < side; j++) {
                int si = i - dy, sj = j - dx;
                float v = (si >= 0 && si < side && sj >= 0 && sj < side) ? proto[c * px + si * side + sj] : 0.0f;
                v += (float)gsl_ran_gaussian(r, 0.1);
                dst[i * side + j] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
        out->y[s] = (uint8_t)c;
    }
    free(proto);
    gsl_rng_free(shape);
    gsl_rng_free(r);
    out->n = n, out->h = out->w = side, out->classes = 10;
    return 0;
}
