/* Finite-difference gradient checks for the tests (header-only).
 *
 * A function F: R^n -> R^m is checked against its VJP by random directional
 * derivatives: for random r in R^m and v in R^n,
 *     r . (F(p + eps v) - F(p - eps v)) / (2 eps)   ~=   (J^T r) . v
 * The sums are in double; F itself is float32. */
#ifndef PATCTL_GRADCHECK_H
#define PATCTL_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* y[m] = F(p[n]) */
typedef void (*gc_fn)(void *ctx, const float *p, float *y);
/* g[n] += J^T r, r[m]  (g is zeroed by the caller) */
typedef void (*gc_vjp)(void *ctx, const float *p, const float *r, float *g);

static inline double gc_uniform(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) + 0.5) / 16777216.0;
}

/* Returns the worst relative error over `trials` directions; prints each. */
static inline double gradcheck(const char *what, gc_fn f, gc_vjp vjp, void *ctx,
                               const float *p0, int n, int m, double eps, int trials,
                               unsigned seed)
{
    float *p = malloc(sizeof(float) * (size_t)n), *g = calloc((size_t)n, sizeof(float));
    float *yp = malloc(sizeof(float) * (size_t)m), *ym = malloc(sizeof(float) * (size_t)m);
    float *r = malloc(sizeof(float) * (size_t)m), *v = malloc(sizeof(float) * (size_t)n);
    double worst = 0.0;
    for (int t = 0; t < trials; t++) {
        for (int i = 0; i < m; i++)
            r[i] = (float)(2.0 * gc_uniform(&seed) - 1.0);
        for (int i = 0; i < n; i++)
            v[i] = (float)(2.0 * gc_uniform(&seed) - 1.0);
        memset(g, 0, sizeof(float) * (size_t)n);
        vjp(ctx, p0, r, g);
        double an = 0.0;
        for (int i = 0; i < n; i++)
            an += (double)g[i] * v[i];
        for (int i = 0; i < n; i++)
            p[i] = p0[i] + (float)eps * v[i];
        f(ctx, p, yp);
        for (int i = 0; i < n; i++)
            p[i] = p0[i] - (float)eps * v[i];
        f(ctx, p, ym);
        double fd = 0.0;
        for (int i = 0; i < m; i++)
            fd += (double)r[i] * ((double)yp[i] - (double)ym[i]);
        fd /= 2.0 * eps;
        double rel = fabs(an - fd) / fmax(fmax(fabs(an), fabs(fd)), 1e-3);
        if (rel > worst)
            worst = rel;
        printf("  gradcheck %-28s trial %d: vjp %+.6e  fd %+.6e  rel %.2e\n", what, t, an, fd, rel);
    }
    free(p), free(g), free(yp), free(ym), free(r), free(v);
    return worst;
}

#endif
