/* An out-of-tree patctl device plugin: a simulated array of Mach-Zehnder
 * interferometers read by photodiodes.  It includes nothing from patctl but
 * the public headers in include/patctl/ and links nothing but libm.
 *
 * Physics (n = n_in = n_out channels, parameters phi [n] and mix [n, n]):
 *   a_j = sum_i mix_ji x_i                      (a passive mixing mesh, rad)
 *   y_j = visibility * cos^2((a_j + phi_j) / 2) + dark   (photodiode, a.u.)
 * plus Gaussian detector noise of std `noise` seeded by (seed, query id).
 *
 * Build: see README.md next to this file.  Load: give the .so path as a
 * device driver, e.g. `patctl devices --plugin ./libpatctl_example.so`. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/device.h"

typedef struct {
    int n;
    double visibility, dark, noise;
    uint64_t seed;
    char err[128];
} mzi;

/* option parsing without patctl's helpers: the ABI gives key=value strings */
static int opt_double(const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

static int mzi_open(void **state, const struct patctl_option *o, int n_opts,
                    struct patctl_device_desc *desc, char *err, size_t errlen)
{
    double n = 8, vis = 0.9, dark = 0.02, noise = 0.0, seed = 1;
    for (int i = 0; i < n_opts; i++) {
        double *dst = strcmp(o[i].key, "n") == 0 ? &n
                    : strcmp(o[i].key, "visibility") == 0 ? &vis
                    : strcmp(o[i].key, "dark") == 0 ? &dark
                    : strcmp(o[i].key, "noise") == 0 ? &noise
                    : strcmp(o[i].key, "seed") == 0 ? &seed : NULL;
        if (!dst) {
            snprintf(err, errlen, "driver mzi-example: unknown option '%s' (known: n visibility "
                     "dark noise seed)", o[i].key);
            return PATCTL_ERR_ARG;
        }
        if (opt_double(o[i].value, dst)) {
            snprintf(err, errlen, "option %s: expected a number, got '%s'", o[i].key, o[i].value);
            return PATCTL_ERR_ARG;
        }
    }
    if (n < 1 || n > 4096 || n != floor(n) || noise < 0 || seed < 0) {
        snprintf(err, errlen, "options: expected n an integer in 1..4096, noise >= 0, seed >= 0");
        return PATCTL_ERR_ARG;
    }
    mzi *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->n = (int)n, d->visibility = vis, d->dark = dark, d->noise = noise;
    d->seed = (uint64_t)seed;

    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "mzi-example");
    snprintf(desc->about, sizeof(desc->about), "%d Mach-Zehnder interferometers after a mixing mesh "
             "(example plugin, simulated)", d->n);
    desc->n_in = desc->n_out = d->n;
    snprintf(desc->in_unit, sizeof(desc->in_unit), "rad");
    snprintf(desc->out_unit, sizeof(desc->out_unit), "a.u.");
    desc->in_lo = -4.0f, desc->in_hi = 4.0f;
    desc->n_blocks = 2;
    desc->blocks[0] = (struct patctl_param_block){
        .name = "phi", .unit = "rad", .about = "phase shifter of each interferometer",
        .rows = d->n, .cols = 1, .lo = -6.3f, .hi = 6.3f, .max_step = 0.5f, .safe = 0.0f,
        .init_lo = -1.0f, .init_hi = 1.0f};
    float init = 1.0f / sqrtf((float)d->n);
    desc->blocks[1] = (struct patctl_param_block){
        .name = "mix", .unit = "1", .about = "mixing mesh weights",
        .rows = d->n, .cols = d->n, .lo = -2.0f, .hi = 2.0f, .max_step = 0.0f, .safe = 0.0f,
        .init_lo = -init, .init_hi = init};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

/* a tiny deterministic Gaussian from (seed, id, index): splitmix64 + Box-Muller */
static double gauss(uint64_t seed, uint64_t id, uint64_t k)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL ^ (id + 1) * 0xbf58476d1ce4e5b9ULL ^ k * 0x94d049bb133111ebULL;
    double u[2];
    for (int i = 0; i < 2; i++) {
        z += 0x9e3779b97f4a7c15ULL;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
        u[i] = ((double)(x >> 11) + 0.5) * 0x1p-53;
    }
    return sqrt(-2.0 * log(u[0])) * cos(2.0 * M_PI * u[1]);
}

/* the argument (a_j + phi_j) of sample b, channel j */
static double arg(const mzi *d, const struct patctl_query *q, int b, int j)
{
    const float *phi = q->theta, *mix = q->theta + d->n, *x = q->x + (long)b * d->n;
    double a = phi[j];
    for (int i = 0; i < d->n; i++)
        a += (double)mix[(long)j * d->n + i] * x[i];
    return a;
}

static int mzi_run(void *state, const struct patctl_query *q, float *y)
{
    mzi *d = state;
    for (int b = 0; b < q->batch; b++)
        for (int j = 0; j < d->n; j++) {
            double c = cos(0.5 * arg(d, q, b, j));
            double v = d->visibility * c * c + d->dark;
            if (d->noise > 0)
                v += d->noise * gauss(d->seed, q->id, (uint64_t)b * d->n + j);
            y[(long)b * d->n + j] = (float)v;
        }
    return 0;
}

/* exact VJP of the noiseless model: dy/da = -visibility/2 sin(a + phi) */
static int mzi_vjp(void *state, const struct patctl_query *q, const float *gy, float *gx,
                   float *gtheta)
{
    mzi *d = state;
    int n = d->n;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)n);
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * (size_t)n * (size_t)(n + 1));
    const float *mix = q->theta + n;
    for (int b = 0; b < q->batch; b++)
        for (int j = 0; j < n; j++) {
            double ga = gy[(long)b * n + j] * -0.5 * d->visibility * sin(arg(d, q, b, j));
            for (int i = 0; i < n; i++) {
                if (gx)
                    gx[(long)b * n + i] += (float)(ga * mix[(long)j * n + i]);
                if (gtheta)
                    gtheta[n + (long)j * n + i] += (float)(ga * q->x[(long)b * n + i]);
            }
            if (gtheta)
                gtheta[j] += (float)ga;
        }
    return 0;
}

static int mzi_make_safe(void *state)
{
    (void)state; /* phase shifters unpowered: nothing to do in a simulation */
    return 0;
}

static void mzi_close(void *state) { free(state); }

static const char *mzi_last_error(void *state)
{
    mzi *d = state;
    return d && d->err[0] ? d->err : NULL;
}

static const struct patctl_driver driver = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "mzi-example",
    .summary = "example plugin: Mach-Zehnder interferometers after a mixing mesh (simulated)",
    .options_help =
        "n=8             channels (inputs = outputs)\n"
        "visibility=0.9  fringe visibility\n"
        "dark=0.02       photodiode dark level\n"
        "noise=0         detector noise std\n"
        "seed=1          noise seed\n",
    .flags = PATCTL_DRV_SEEDED,
    .open = mzi_open,
    .run = mzi_run,
    .vjp = mzi_vjp,
    .make_safe = mzi_make_safe,
    .close = mzi_close,
    .last_error = mzi_last_error,
};

/* The one exported symbol patctl looks for. */
__attribute__((visibility("default"))) const struct patctl_driver *patctl_driver_entry(void)
{
    return &driver;
}
