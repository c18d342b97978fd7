/* How well does PAT's gradient through a surrogate agree with the device's
 * exact gradient?  For a simulated device (one with an exact VJP) and one or
 * more surrogate specs (nominal, fitted:PATH, ...):
 *   for S random parameter settings (the driver's init range) and inputs
 *   x ~ U[lo, hi]: the device runs the batch (noiseless copy for its VJP),
 *   each surrogate runs forward at what was sent and backward for the same
 *   random output cotangent; prints the mean cosine between the surrogate's
 *   and the device's gradient w.r.t. the parameters and w.r.t. the inputs,
 *   and the surrogate's output NRMSE against the noiseless device.
 *
 *   bench_grad DRIVER "OPTIONS" SPEC [SPEC...] [--batch B] [--settings S] [--x lo:hi]
 *              [--theta-scale F]   (settings drawn from F x the init range)
 *              [--theta-npy F1[,F2...]]  a fixed setting: float32 arrays, the
 *                                  blocks in order (e.g. from patctl export)
 *              [--x-npy FILE]      inputs [rows, n_in] (e.g. a run's journal),
 *                                  taken in batches in order
 *              [--noisy]           keep the device's input noise (default: sigma=0;
 *                                  the device's exact VJP then runs along its
 *                                  noisy trajectory, the surrogate's at x)
 *              [--gy-last K]       cotangent only on the last K outputs (a
 *                                  readout of K class oscillators)
 *   e.g. build/bench_grad oscillators "n=1610,eta=0.1,j_noise=0.2,seed=3880729275" \
 *          nominal fitted:/tmp/fit/greybox.json
 * OPTIONS must reproduce the device (its seed: see the collected meta.json).
 * An online[,denoise=K]:SPEC surrogate is conditioned on the device's
 * measurement before its backward, as in PAT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/surrogates.h"
#include "devices/device.h"
#include "devices/options.h"
#include "surrogate/fit_npy.h"
#include "surrogate/fit_online.h"

static void quiet(void *u, const char *dev, int level, const char *msg) { (void)u, (void)dev, (void)level, (void)msg; }

static double cosine(const float *a, const float *b, long n)
{
    double ab = 0, aa = 0, bb = 0;
    for (long i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(fmax(aa * bb, 1e-300));
}

static double norm_ratio(const float *a, const float *b, long n)
{
    double aa = 0, bb = 0;
    for (long i = 0; i < n; i++)
        aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return sqrt(aa / fmax(bb, 1e-300));
}

static float uni(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) * (1.0 / 16777216.0));
}

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: bench_grad DRIVER OPTIONS SPEC [SPEC...] [--batch B] [--settings S] [--x lo:hi]"
                        " [--theta-scale F]\n");
        return 2;
    }
    const char *driver = argv[1], *opts = argv[2];
    const char *specs[16];
    int nspec = 0, B = 32, S = 4;
    float lo = 0.0f, hi = 1.0f, tscale = 1.0f;
    const char *theta_files = NULL, *x_file = NULL;
    int gy_last = 0, noisy = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = atoi(argv[++i]);
        else if (strcmp(argv[i], "--settings") == 0 && i + 1 < argc) S = atoi(argv[++i]);
        else if (strcmp(argv[i], "--theta-scale") == 0 && i + 1 < argc) tscale = (float)atof(argv[++i]);
        else if (strcmp(argv[i], "--theta-npy") == 0 && i + 1 < argc) theta_files = argv[++i];
        else if (strcmp(argv[i], "--x-npy") == 0 && i + 1 < argc) x_file = argv[++i];
        else if (strcmp(argv[i], "--gy-last") == 0 && i + 1 < argc) gy_last = atoi(argv[++i]);
        else if (strcmp(argv[i], "--noisy") == 0) noisy = 1;
        else if (strcmp(argv[i], "--x") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%f:%f", &lo, &hi) != 2) return 2;
        } else if (nspec < 16) specs[nspec++] = argv[i];
    }
    if (B < 1 || S < 1 || !nspec)
        return 2;
    char clean[1024];
    snprintf(clean, sizeof(clean), noisy ? "%s" : "%s,sigma=0", opts);
    struct patctl_option *o = NULL;
    int no = options_parse(clean, &o);
    device *d = NULL;
    char err[512] = "";
    if (no < 0 || device_open(&d, "dev", driver, o, no, 1, err, sizeof(err))) {
        fprintf(stderr, "bench_grad: %s\n", err);
        return 1;
    }
    free(o);
    device_set_logger(d, quiet, NULL);
    if (!(d->desc.flags & PATCTL_DEV_HAS_VJP)) {
        fprintf(stderr, "bench_grad: driver %s has no exact VJP\n", driver);
        return 1;
    }
    surrogate *sur[16] = {0};
    for (int k = 0; k < nspec; k++)
        if (surrogate_make(&sur[k], "dev", &d->desc, opts, specs[k], err, sizeof(err))) {
            fprintf(stderr, "bench_grad: %s: %s\n", specs[k], err);
            return 1;
        }
    int ni = d->desc.n_in, nout = d->desc.n_out;
    long nt = d->n_theta;
    float *x = malloc(sizeof(float) * (size_t)B * ni), *th = malloc(sizeof(float) * (size_t)nt);
    float *yd = malloc(sizeof(float) * (size_t)B * nout), *ys = malloc(sizeof(float) * (size_t)B * nout);
    float *gy = malloc(sizeof(float) * (size_t)B * nout);
    float *gxd = malloc(sizeof(float) * (size_t)B * ni), *gxs = malloc(sizeof(float) * (size_t)B * ni);
    float *gtd = malloc(sizeof(float) * (size_t)nt), *gts = malloc(sizeof(float) * (size_t)nt);
    float *fixed_theta = NULL, *xs = NULL;
    long x_rows = 0;
    if (theta_files) {
        char list[2048], *save = NULL;
        snprintf(list, sizeof(list), "%s", theta_files);
        fixed_theta = malloc(sizeof(float) * (size_t)nt);
        long off = 0;
        for (char *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
            int nd;
            long shape[FIT_NPY_MAX_DIM], len = 1;
            void *data = NULL;
            if (fit_npy_read(f, NPY_F32, &nd, shape, &data, err, sizeof(err))) {
                fprintf(stderr, "bench_grad: %s\n", err);
                return 1;
            }
            for (int k = 0; k < nd; k++)
                len *= shape[k];
            if (off + len > nt)
                return fprintf(stderr, "bench_grad: --theta-npy: more than %ld values\n", nt), 1;
            memcpy(fixed_theta + off, data, sizeof(float) * (size_t)len);
            off += len;
            free(data);
        }
        if (off != nt)
            return fprintf(stderr, "bench_grad: --theta-npy: %ld values, the device has %ld\n", off, nt), 1;
    }
    if (x_file) {
        int nd;
        long shape[FIT_NPY_MAX_DIM];
        if (fit_npy_read(x_file, NPY_F32, &nd, shape, (void **)&xs, err, sizeof(err)) || nd != 2 || shape[1] != ni) {
            fprintf(stderr, "bench_grad: %s: %s (need [rows, %d])\n", x_file, err, ni);
            return 1;
        }
        x_rows = shape[0];
    }
    double ct[16] = {0}, cx[16] = {0}, rt[16] = {0}, rx[16] = {0}, e2[16] = {0}, s1 = 0, s2 = 0;
    unsigned long long seed = 12345;
    for (int s = 0; s < S; s++) {
        for (long i = 0; i < (long)B * ni; i++)
            x[i] = lo + (hi - lo) * uni(&seed);
        for (long r = 0; xs && r < B; r++)
            memcpy(x + r * ni, xs + (((long)s * B + r) % x_rows) * ni, sizeof(float) * (size_t)ni);
        long off = 0;
        for (int b = 0; b < d->desc.n_blocks; b++) {
            const struct patctl_param_block *blk = &d->desc.blocks[b];
            for (long i = 0; i < (long)blk->rows * blk->cols; i++)
                th[off + i] = tscale * (blk->init_lo + (blk->init_hi - blk->init_lo) * uni(&seed));
            off += (long)blk->rows * blk->cols;
        }
        if (fixed_theta)
            memcpy(th, fixed_theta, sizeof(float) * (size_t)nt);
        for (long i = 0; i < (long)B * nout; i++)
            gy[i] = gy_last > 0 && i % nout < nout - gy_last ? 0.0f : 2 * uni(&seed) - 1;
        if (device_run(d, th, x, B, yd)) {
            fprintf(stderr, "bench_grad: device: %s\n", d->err);
            return 1;
        }
        memset(gxd, 0, sizeof(float) * (size_t)B * ni), memset(gtd, 0, sizeof(float) * (size_t)nt);
        if (device_vjp(d, gy, gxd, gtd))
            return 1;
        for (long i = 0; i < (long)B * nout; i++)
            s1 += yd[i], s2 += (double)yd[i] * yd[i];
        for (int k = 0; k < nspec; k++) {
            memset(gxs, 0, sizeof(float) * (size_t)B * ni), memset(gts, 0, sizeof(float) * (size_t)nt);
            if (surrogate_forward(sur[k], d->sent_theta, d->sent_x, B, ys) ||
                (surrogate_is_online(sur[k]) &&
                 surrogate_online_condition(sur[k], d->sent_theta, d->sent_x, yd, B, ys)) ||
                surrogate_backward(sur[k], gy, gxs, gts))
                return 1;
            ct[k] += cosine(gtd, gts, nt) / S;
            cx[k] += cosine(gxd, gxs, (long)B * ni) / S;
            rt[k] += norm_ratio(gts, gtd, nt) / S;
            if (s == S - 1) { /* per block, last setting: cosine and share of coordinates with the right sign */
                long off = 0;
                for (int b = 0; b < d->desc.n_blocks; b++) {
                    long len = (long)d->desc.blocks[b].rows * d->desc.blocks[b].cols, agree = 0;
                    for (long i = off; i < off + len; i++)
                        agree += (gts[i] > 0) == (gtd[i] > 0);
                    printf("  [%s] block %s: cos %.4f, sign agreement %.3f\n", specs[k], d->desc.blocks[b].name,
                           cosine(gtd + off, gts + off, len), (double)agree / len);
                    off += len;
                }
            }
            rx[k] += norm_ratio(gxs, gxd, (long)B * ni) / S;
            for (long i = 0; i < (long)B * nout; i++)
                e2[k] += ((double)ys[i] - yd[i]) * ((double)ys[i] - yd[i]);
        }
    }
    double n = (double)S * B * nout, mean = s1 / n, sd = sqrt(fmax(s2 / n - mean * mean, 1e-30));
    printf("%s %s: %d settings (%g x init range) x %d inputs in [%g, %g]\n", driver, opts, S, tscale, B, lo, hi);
    printf("  %-40s %10s %14s %12s %14s %12s\n", "surrogate", "NRMSE", "cos(params)", "cos(inputs)",
           "|g|/|g_dev| p", "x");
    for (int k = 0; k < nspec; k++) {
        printf("  %-40s %10.4f %14.4f %12.4f %14.3f %12.3f\n", specs[k], sqrt(e2[k] / n) / sd, ct[k], cx[k], rt[k],
               rx[k]);
        surrogate_destroy(&sur[k]);
    }
    free(fixed_theta), free(xs);
    free(x), free(th), free(yd), free(ys), free(gy), free(gxd), free(gxs), free(gtd), free(gts);
    device_close(&d);
    return 0;
}
