/* bench_step: patctl's training step, timed.  A benchmark, never run by
 * ctest; bench/run.py drives it side by side with bench/torch_pnn.py.
 *
 * One step is exactly what controller/train.c does per batch: gather,
 * model_forward (pass by mode), softmax_xent, model_zero_grad,
 * model_backward, optimizer_step (Adam, lr 1e-3), model_project.
 *
 * Architectures (batch 32, devices at the quickstart's gap settings):
 *   quickstart  14x14 -> 4 patches 7x7 -> pad 64 -> osc64 (shared)
 *               -> concat 256 -> pad 266 -> osc266 -> readout 10
 *   anchor      28x28 -> 16 patches 7x7 -> pad 100 -> osc100 (shared)
 *               -> concat 1600 -> pad 1610 -> osc1610 -> readout 10
 *
 * usage: bench_step [--arch quickstart|anchor] [--mode pat|insilico|ideal]
 *                   [--steps N] [--data DIR] [--serve] [--profile] [--peak]
 * (the anchor is built in, identical to examples/fmnist-oscillators.ini's
 * graph and devices)
 * --serve reads commands from stdin, one per line, and answers one line each:
 *   steps K   -> "ms t1 ... tK"       wall time of K consecutive steps
 *   peak      -> "peak GFLOPS"        best 1024^3 sgemm of 10 (this process's
 *                                     OpenBLAS threads)
 *   info      -> "info key=value ..." flop counts and configuration
 *   blas K    -> "blas CPU_MS CALLS WALL_MS" per step over K steps: CPU time
 *                                     inside OpenBLAS (all threads), calls,
 *                                     and the steps' wall time
 *   quit
 * Without --serve it runs --steps steps and prints the median. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/optim.h"
#include "controller/rng.h"
#include "surrogate/blas.h"
#include "surrogate/oscillator.h"
/* bench/variants.sh also builds this file against older trees */
#if defined(__has_include)
#if __has_include("surrogate/team.h")
#include "surrogate/team.h"
#include "surrogate/trig.h"
#define HAVE_TEAM 1
#endif
#endif
#ifndef HAVE_TEAM
static int team_threads(void) { return 0; }
static int trig_vector_width(void) { return 1; }
#endif

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void config_anchor(run_config *c)
{
    config_quickstart(c);
    c->pool = 1;
    c->n_devices = 2;
    c->devices[0] = (device_spec){.name = "osc100", .driver = "oscillators",
                                  .options = "n=100,eta=0.1,j_noise=0.2,sigma=0.02",
                                  .limits = "clamp", .steps = "ramp"};
    c->devices[1] = (device_spec){.name = "osc1610", .driver = "oscillators",
                                  .options = "n=1610,eta=0.1,j_noise=0.2,sigma=0.02",
                                  .limits = "clamp", .steps = "ramp"};
    layer_spec L[] = {
        {LAYER_PATCHES, 7, ""},          /* [B,784] -> [16B,49] */
        {LAYER_PAD, 100, ""},            /* -> [16B,100] */
        {LAYER_PHYSICAL, 0, "osc100"},   /* shared 100-oscillator layer */
        {LAYER_CONCAT, 16, ""},          /* -> [B,1600] */
        {LAYER_PAD, 1610, ""},           /* + 10 class oscillators */
        {LAYER_PHYSICAL, 0, "osc1610"},
        {LAYER_READOUT, 10, ""},
    };
    c->n_layers = (int)(sizeof(L) / sizeof(L[0]));
    memcpy(c->layers, L, sizeof(L));
}

typedef struct bench {
    run_config cfg;
    dataset data;
    rng_streams rng;
    model m;
    optimizer opt;
    float *x, *dlogits;
    uint8_t *y;
    long next;             /* next sample of data */
    pass_kind pass;
} bench;

/* FLOPs of one step.  mat: GEMM multiply-adds x 2 of every physical layer
 * (device forward, surrogate forward, VJP = two GEMMs per stage);
 * ew: elementwise arithmetic of the RK4 stages (about 14 per element per
 * stage forward, 12 backward) and Adam (about 12 per parameter);
 * tr: sin/cos evaluations. */
typedef struct flops {
    double dev, sur, vjp, ew, opt, tr;
} flops;

static flops step_flops(const bench *b)
{
    flops f = {0};
    int B = b->cfg.batch;
    for (int i = 0; i < b->m.n_layers; i++) {
        const layer *L = &b->m.L[i];
        if (L->spec.kind != LAYER_PHYSICAL)
            continue;
        int R = B * L->r_in, n = L->c_in;
        const osc_model *om = surrogate_osc_model(L->sur);
        int steps = om ? om->steps : 5;
        double fwd = osc_forward_flops(n, steps, R);
        double elems = 4.0 * steps * R * (double)n;
        int pat = b->cfg.mode == MODE_PAT, ideal = b->cfg.mode == MODE_IDEAL;
        /* forward passes: PAT device + surrogate; in-silico surrogate;
         * ideal device, then the device VJP reruns the device forward */
        int fw = pat ? 2 : ideal ? 2 : 1;
        f.dev += pat ? fwd : ideal ? 2.0 * fwd : 0.0;
        f.sur += pat || !ideal ? fwd : 0.0;
        f.vjp += 2.0 * fwd;
        f.ew += fw * 14.0 * elems + 12.0 * elems;
        f.tr += fw * elems + elems;
    }
    f.opt = 12.0 * (double)b->m.n_params;
    return f;
}

static int bench_init(bench *b, const char *arch, const char *mode, const char *dir,
                      char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (strcmp(arch, "anchor") == 0)
        config_anchor(&b->cfg);
    else if (strcmp(arch, "quickstart") == 0)
        config_quickstart(&b->cfg);
    else {
        snprintf(err, errlen, "unknown --arch %s (quickstart | anchor)", arch);
        return PATCTL_ERR_ARG;
    }
    if (mode_parse(mode, &b->cfg.mode) || b->cfg.mode == MODE_SPSA) {
        snprintf(err, errlen, "unknown --mode %s (pat | insilico | ideal)", mode);
        return PATCTL_ERR_ARG;
    }
    int side = b->cfg.pool == 2 ? 14 : 28;
    int rc = dataset_load_idx(&b->data, dir, "train", b->cfg.pool, 10000, err, errlen);
    if (rc) {
        fprintf(stderr, "bench_step: %s; using synthetic images\n", err);
        if ((rc = dataset_synthetic(&b->data, 10000, side, 1)))
            return rc;
    }
    if ((rc = rng_streams_init(&b->rng, b->cfg.seed)))
        return rc;
    int B = b->cfg.batch;
    if ((rc = model_build(&b->m, &b->cfg, b->data.h, b->data.w, B, &b->rng, err, errlen)))
        return rc;
    if ((rc = optimizer_init(&b->opt, OPT_ADAM, b->m.n_params, 1e-3, 0.0)))
        return rc;
    b->x = malloc(sizeof(float) * (size_t)B * (size_t)(b->data.h * b->data.w));
    b->y = malloc((size_t)B);
    b->dlogits = malloc(sizeof(float) * (size_t)B * (size_t)b->m.classes);
    if (!b->x || !b->y || !b->dlogits)
        return PATCTL_ERR_NOMEM;
    b->pass = b->cfg.mode == MODE_PAT ? PASS_PAT
            : b->cfg.mode == MODE_INSILICO ? PASS_SURROGATE : PASS_DEVICE;
    return 0;
}

static void bench_free(bench *b)
{
    optimizer_free(&b->opt);
    model_free(&b->m);
    rng_streams_free(&b->rng);
    dataset_free(&b->data);
    free(b->x);
    free(b->y);
    free(b->dlogits);
}

/* One training step, as in controller/train.c. */
static int bench_step(bench *b, double *loss, char *err, size_t errlen)
{
    int B = b->cfg.batch;
    long px = (long)b->data.h * b->data.w;
    for (int i = 0; i < B; i++) {
        long s = (b->next++) % b->data.n;
        memcpy(b->x + i * px, b->data.x + s * px, sizeof(float) * (size_t)px);
        b->y[i] = b->data.y[s];
    }
    int rc = model_forward(&b->m, b->x, B, b->pass, err, errlen);
    if (rc)
        return rc;
    *loss = softmax_xent(model_logits(&b->m), b->y, B, b->m.classes, b->dlogits, NULL);
    model_zero_grad(&b->m);
    if ((rc = model_backward(&b->m, b->dlogits, B, b->cfg.mode, err, errlen)))
        return rc;
    optimizer_step(&b->opt, b->m.params, b->m.grads);
    model_project(&b->m);
    return 0;
}

/* The machine's sgemm peak: the best of ten 1024^3 products, through
 * patctl's blas_sgemm (split over the thread team) and directly through
 * OpenBLAS with one thread per CPU; the larger is reported. */
static double sgemm_peak(void)
{
    enum { S = 1024 };
    float *A = malloc(sizeof(float) * S * S), *B = malloc(sizeof(float) * S * S);
    float *C = malloc(sizeof(float) * S * S);
    double best = 1e30;
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (A && B && C) {
        for (long i = 0; i < (long)S * S; i++) {
            A[i] = (float)((i * 7919) % 1000) * 1e-3f;
            B[i] = (float)((i * 104729) % 1000) * 1e-3f;
        }
        for (int way = 0; way < 2; way++) {
            int was = blas_threads();
            if (way == 1 && set)
                set((int)sysconf(_SC_NPROCESSORS_ONLN));
            for (int r = 0; r < 10; r++) {
                double t = now_s();
                if (way == 0)
                    blas_sgemm(0, 0, S, S, S, 1.0f, A, B, 0.0f, C);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, S, S, 1.0f, A, S, B,
                                S, 0.0f, C, S);
                t = now_s() - t;
                if (t < best)
                    best = t;
            }
            if (way == 1 && set)
                set(was);
        }
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * S * S * (double)S / best * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* K steps with the OpenBLAS clock on: per step, the CPU time inside
 * OpenBLAS summed over threads, the calls, the wall time. */
typedef struct {
    double cpu_ms, calls, wall_ms;
} blas_share;

static int blas_time(bench *b, int k, blas_share *out, char *err, size_t errlen)
{
    double loss;
    int rc = 0;
    blas_clock_start();
    double t0 = now_s();
    for (int s = 0; s < k && !rc; s++)
        rc = bench_step(b, &loss, err, errlen);
    double wall = now_s() - t0;
    blas_clock_stop();
    out->cpu_ms = 1e3 * blas_clock_seconds() / k;
    out->calls = (double)blas_clock_calls() / k;
    out->wall_ms = 1e3 * wall / k;
    return rc;
}

/* Per-phase times of the physical layers at the current parameters:
 * device run, surrogate forward, surrogate VJP (median of reps). */
static void profile(bench *b, int reps)
{
    char err[256];
    double loss;
    bench_step(b, &loss, err, sizeof(err)); /* fills the activations */
    int B = b->cfg.batch;
    for (int i = 0; i < b->m.n_layers; i++) {
        layer *L = &b->m.L[i];
        if (L->spec.kind != LAYER_PHYSICAL)
            continue;
        int R = B * L->r_in;
        float *P = b->m.params + L->p_off, *G = b->m.grads + L->p_off;
        float *gy = b->m.dact[i + 1], *gx = b->m.dact[i];
        double t[3][64];
        if (reps > 64)
            reps = 64;
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            device_run(L->dev, P, b->m.act[i], R, b->m.act[i + 1]);
            double t1 = now_s();
            surrogate_forward(L->sur, L->dev->sent_theta, L->dev->sent_x, R, L->ysur);
            double t2 = now_s();
            surrogate_backward(L->sur, gy, gx, G);
            double t3 = now_s();
            t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2;
        }
        for (int k = 0; k < 3; k++)
            qsort(t[k], (size_t)reps, sizeof(double), cmp_double);
        double fl = osc_forward_flops(L->c_in, 5, R) * 1e-9;
        printf("layer %d %s rows %d: device run %.2f ms, surrogate forward %.2f ms (%.0f GFLOP/s), "
               "VJP %.2f ms (%.0f GFLOP/s)\n",
               i + 1, L->dev->name, R, 1e3 * t[0][reps / 2], 1e3 * t[1][reps / 2],
               fl / t[1][reps / 2], 1e3 * t[2][reps / 2], 2 * fl / t[2][reps / 2]);
    }
    double t[64];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        optimizer_step(&b->opt, b->m.params, b->m.grads);
        model_project(&b->m);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    printf("optimiser + projection: %.2f ms\n", 1e3 * t[reps / 2]);

    blas_share sh;
    if (!blas_time(b, reps, &sh, err, sizeof(err))) {
        int nt = team_threads();
        printf("OpenBLAS calls: %.1f ms of CPU per step (%.0f calls, all threads), i.e. at least "
               "%.1f ms of the step's %.1f ms wall on %d threads (%.0f %%)\n",
               sh.cpu_ms, sh.calls, sh.cpu_ms / nt, sh.wall_ms, nt,
               100.0 * sh.cpu_ms / nt / sh.wall_ms);
    }
}

static void info(const bench *b, const char *arch)
{
    flops f = step_flops(b);
    int team = team_threads();
    printf("info arch=%s mode=%s batch=%d params=%ld flop_dev=%.6g flop_sur=%.6g flop_vjp=%.6g "
           "flop_opt=%.6g flop_ew=%.6g sincos=%.6g team_threads=%d blas_threads=%d trig_lanes=%d "
           "blas=%s\n",
           arch, mode_name(b->cfg.mode), b->cfg.batch, b->m.n_params, f.dev, f.sur, f.vjp,
           f.opt, f.ew, f.tr, team, blas_threads(), trig_vector_width(), blas_library());
}

int main(int argc, char **argv)
{
    const char *arch = "quickstart", *mode = "pat", *dir = "/usr/share/datasets/fashion-mnist";
    int steps = 20, serve = 0, prof = 0, peak = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--arch") && i + 1 < argc)
            arch = argv[++i];
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--serve"))
            serve = 1;
        else if (!strcmp(argv[i], "--profile"))
            prof = 1;
        else if (!strcmp(argv[i], "--peak"))
            peak = 1;
        else {
            fprintf(stderr, "usage: bench_step [--arch quickstart|anchor] [--mode pat|insilico|ideal]\n"
                            "                  [--steps N] [--data DIR] [--serve] [--profile] [--peak]\n");
            return 2;
        }
    }
    char err[512] = "";
    bench b;
    int rc = bench_init(&b, arch, mode, dir, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "bench_step: %s (%s)\n", err[0] ? err : "set-up failed", patctl_strerror(rc));
        bench_free(&b);
        return 1;
    }
    double loss = 0;
    if (serve) {
        info(&b, arch);
        fflush(stdout);
        char line[128];
        while (fgets(line, sizeof(line), stdin)) {
            int k;
            if (sscanf(line, "steps %d", &k) == 1 && k > 0) {
                printf("ms");
                for (int s = 0; s < k && !rc; s++) {
                    double t0 = now_s();
                    rc = bench_step(&b, &loss, err, sizeof(err));
                    printf(" %.3f", 1e3 * (now_s() - t0));
                }
                printf(" loss=%.4f\n", loss);
            } else if (!strncmp(line, "peak", 4)) {
                printf("peak %.1f\n", sgemm_peak());
            } else if (sscanf(line, "blas %d", &k) == 1 && k > 0) {
                blas_share sh;
                rc = blas_time(&b, k, &sh, err, sizeof(err));
                printf("blas %.3f %.1f %.3f\n", sh.cpu_ms, sh.calls, sh.wall_ms);
            } else if (!strncmp(line, "info", 4)) {
                info(&b, arch);
            } else if (!strncmp(line, "quit", 4)) {
                break;
            } else {
                printf("error unknown command\n");
            }
            fflush(stdout);
            if (rc)
                break;
        }
    } else {
        info(&b, arch);
        if (peak)
            printf("sgemm 1024^3 peak: %.1f GFLOP/s\n", sgemm_peak());
        if (prof)
            profile(&b, 15);
        double t[1000];
        if (steps > 1000)
            steps = 1000;
        for (int s = 0; s < steps && !rc; s++) {
            double t0 = now_s();
            rc = bench_step(&b, &loss, err, sizeof(err));
            t[s] = now_s() - t0;
        }
        if (!rc && steps > 0) {
            qsort(t, (size_t)steps, sizeof(double), cmp_double);
            flops f = step_flops(&b);
            double tot = f.dev + f.sur + f.vjp + f.opt;
            printf("%s %s: median step %.2f ms over %d steps (min %.2f), %.2f GFLOP/step, %.1f GFLOP/s, "
                   "loss %.4f\n", arch, mode, 1e3 * t[steps / 2], steps, 1e3 * t[0], tot * 1e-9,
                   tot / t[steps / 2] * 1e-9, loss);
        }
    }
    if (rc)
        fprintf(stderr, "bench_step: %s (%s)\n", err, patctl_strerror(rc));
    bench_free(&b);
    return rc ? 1 : 0;
}
