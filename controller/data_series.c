/* Regression tasks on generated series (see data.h): windows of NARMA-10
 * and Mackey-Glass (surrogate/series.c) as samples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/data.h"
#include "devices/sim_rng.h"
#include "patctl/error.h"
#include "surrogate/series.h"

int dataset_is_series(const char *kind) { return strcmp(kind, "narma10") == 0 || strcmp(kind, "mackey-glass") == 0; }

static double variance(const float *t, long n)
{
    double m = 0, v = 0;
    for (long i = 0; i < n; i++)
        m += t[i];
    m /= n > 0 ? n : 1;
    for (long i = 0; i < n; i++)
        v += (t[i] - m) * (t[i] - m);
    return n > 0 ? v / n : 0.0;
}

int dataset_series(dataset *out, const char *kind, long n, int window, int horizon, uint64_t seed, int part,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (n < 1 || window < 1 || horizon < 0 || !dataset_is_series(kind)) {
        snprintf(err, errlen, "%s: needs samples >= 1, window >= 1, horizon >= 0", kind);
        return PATCTL_ERR_ARG;
    }
    int mg = strcmp(kind, "mackey-glass") == 0;
    /* the series: [len] values; sample j's window ends at first + j */
    long first = window - 1, len = first + n + horizon + 1, off = 0;
    if (mg)
        off = part ? 50000 : 0; /* the test stretch: far after the training one */
    if (mg && len > 50000) {
        snprintf(err, errlen, "%s: at most %ld samples per part", kind, 50000L - first - horizon - 1);
        return PATCTL_ERR_ARG;
    }
    double *u = malloc(sizeof(double) * (size_t)(len + off)), *y = malloc(sizeof(double) * (size_t)(len + off));
    out->x = malloc(sizeof(float) * (size_t)n * (size_t)window);
    out->y = calloc((size_t)n, 1);
    out->t = malloc(sizeof(float) * (size_t)n);
    int rc = u && y && out->x && out->y && out->t ? 0 : PATCTL_ERR_NOMEM;
    if (!rc && mg) {
        series_mg_params p = series_mg_default();
        rc = series_mackey_glass(&p, len + off, y);
        for (long i = 0; !rc && i < len + off; i++)
            u[i] = (y[i] - 0.85) / 0.5;
    } else if (!rc) {
        gsl_rng *r = sim_rng(seed, (uint64_t)part, 0x5E41u);
        if (!r)
            rc = PATCTL_ERR_NOMEM;
        else
            rc = series_narma10(r, len, 200, u, y);
        if (r)
            gsl_rng_free(r);
        for (long i = 0; !rc && i < len; i++)
            u[i] = 4.0 * u[i] - 1.0;
    }
    if (rc) {
        snprintf(err, errlen, "%s: generating the series: %s", kind, patctl_strerror(rc));
        free(u), free(y);
        dataset_free(out);
        return rc;
    }
    series_windows(u + off, first, n, window, out->x);
    for (long j = 0; j < n; j++)
        out->t[j] = (float)(mg ? y[off + first + j + horizon] : y[first + j]);
    free(u), free(y);
    out->n = n, out->h = 1, out->w = window, out->classes = 0, out->n_targets = 1;
    out->t_var = variance(out->t, n);
    return 0;
}
