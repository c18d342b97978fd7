/* Simulated device: broadband second-harmonic generation with a pulse shaper
 * and a spectrometer (the optical system of the PAT paper).  Runs the physics
 * of surrogate/shg.c (see shg.h and devices/shg/README.md) with a hidden
 * truth that differs from the nominal model:
 *   - dispersion of the optics: spectral phase disp2 v^2 + disp3 v^3,
 *   - spectrometer response R(u) = 1 + resp1 u + resp2 u^2, times gain,
 *   - optional ripple: a fixed smooth random response (outside the family
 *     the grey-box model can fit), drawn once from the device seed;
 * and measures with
 *   - shot noise: counts ~ Poisson(y * photons), y = counts / photons,
 *   - camera quantisation: camera_bits over [0, camera_max] (saturating),
 *   - the common noise/fault layer (devices/sim_noise.h), off by default.
 * Inputs x [B, n_in] and parameters phi [n_par] drive the pulse-shaper pixels
 * (in [-1, 1]; the pixel writes the spectral phase phase_scale * drive, pi
 * rad per unit by default); outputs y [B, n_out] are spectrometer pixels
 * (dimensionless; the transform-limited pulse peaks at 1 in the nominal
 * model).  The exact VJP is that of the noiseless truth (the measurement
 * noise is additive; quantisation is passed straight through). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/shg/shg_dev.h"
#include "devices/sim_noise.h"
#include "devices/sim_rng.h"

enum { PURPOSE_RIPPLE = 1, PURPOSE_SHOT = 2 };

typedef struct {
    shg_model m;          /* the hidden truth */
    double *extra;        /* [M] ripple of the response, owned, or NULL */
    double photons;       /* photons per unit output (shot noise), 0 = off */
    int camera_bits;      /* 0 = no quantisation */
    double camera_max;    /* camera full scale, output units */
    sim_noise nz;
    uint64_t seed;
    shg_tape *tape;       /* grown on demand */
    char err[160];
} shg_dev;

const char *const shg_geometry_keys[] = {
    "n_in", "n_par", "bins", "n_out", "bandwidth", "span", "phase_scale", NULL,
};

static const char *const known[] = {
    "n_in", "n_par", "bins", "n_out", "bandwidth", "span", "phase_scale", "disp2", "disp3", "resp1", "resp2",
    "gain", "ripple", "photons", "camera_bits", "camera_max", "seed", NULL,
};

int shg_options_geometry(const struct patctl_option *o, int n, shg_model *m, char *err,
                         size_t errlen)
{
    long n_in, n_par, bins, n_out;
    double bw, span, scale;
    int rc;
    if ((rc = options_int(o, n, "n_in", 32, &n_in, err, errlen)) ||
        (rc = options_int(o, n, "n_par", 32, &n_par, err, errlen)) ||
        (rc = options_int(o, n, "bins", 4, &bins, err, errlen)) ||
        (rc = options_int(o, n, "n_out", 32, &n_out, err, errlen)) ||
        (rc = options_float(o, n, "bandwidth", 0.6, &bw, err, errlen)) ||
        (rc = options_float(o, n, "span", 0.7, &span, err, errlen)) ||
        (rc = options_float(o, n, "phase_scale", M_PI, &scale, err, errlen)))
        return rc;
    if (n_in < 1 || n_in > 65536 || n_par < 0 || n_par > 65536 || bins < 1 || bins > 4096 ||
        n_out < 1 || n_out > 65536) {
        snprintf(err, errlen, "options n_in/n_par/bins/n_out: expected n_in 1..65536, n_par "
                 "0..65536, bins 1..4096, n_out 1..65536");
        return PATCTL_ERR_ARG;
    }
    *m = shg_model_nominal((int)n_in, (int)n_par, (int)bins, (int)n_out);
    m->bandwidth = bw;
    m->span = span;
    m->phase_scale = scale;
    return shg_check(m, err, errlen);
}

int shg_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o, int n,
                       shg_model *m, char *err, size_t errlen)
{
    int rc = shg_options_geometry(o, n, m, err, errlen);
    if (rc)
        return rc;
    long n_par = 0;
    for (int b = 0; b < desc->n_blocks; b++)
        n_par += (long)desc->blocks[b].rows * desc->blocks[b].cols;
    if (desc->n_blocks > 1 || n_par > 65536 || desc->n_in < 1 || desc->n_out < 1) {
        snprintf(err, errlen, "shg: description does not have the SHG device's shape (one parameter "
                 "block phi [n_par], n_in and n_out >= 1)");
        return PATCTL_ERR_ARG;
    }
    if (m->n_in != desc->n_in || m->n_out != desc->n_out || m->n_par != n_par) {
        shg_model g = shg_model_nominal(desc->n_in, (int)n_par, m->bins, desc->n_out);
        g.bandwidth = m->bandwidth, g.span = m->span, g.phase_scale = m->phase_scale;
        *m = g;
    }
    return shg_check(m, err, errlen);
}

static void shg_close(void *state)
{
    shg_dev *d = state;
    if (!d)
        return;
    shg_tape_free(d->tape);
    free(d->extra);
    free(d);
}

/* A smooth random response ripple with rms `ripple` over the spectrometer. */
static int make_ripple(shg_dev *d, double ripple)
{
    int M = shg_spec_bins(&d->m);
    d->extra = calloc((size_t)M, sizeof(double));
    gsl_rng *r = sim_rng(d->seed, 0, PURPOSE_RIPPLE);
    if (!d->extra || !r) {
        if (r)
            gsl_rng_free(r);
        return PATCTL_ERR_NOMEM;
    }
    double amp[4], ph[4], ss = 0;
    for (int c = 0; c < 4; c++) {
        amp[c] = gsl_ran_gaussian(r, 1.0);
        ph[c] = 2 * M_PI * gsl_rng_uniform(r);
    }
    gsl_rng_free(r);
    for (int i = 0; i < M; i++) {
        double u = M > 1 ? 2.0 * i / (M - 1) - 1.0 : 0.0, s = 0;
        for (int c = 0; c < 4; c++)
            s += amp[c] * cos(M_PI * (c + 2) * u + ph[c]); /* 1..3 cycles across */
        d->extra[i] = s;
        ss += s * s;
    }
    double norm = ss > 0 ? ripple / sqrt(ss / M) : 0;
    for (int i = 0; i < M; i++)
        d->extra[i] *= norm;
    d->m.resp_extra = d->extra;
    return 0;
}

static int shg_open(void **state, const struct patctl_option *o, int no,
                    struct patctl_device_desc *desc, char *err, size_t errlen)
{
    int rc = options_check_known2(o, no, known, sim_noise_keys, "shg", err, errlen);
    if (rc)
        return rc;
    shg_model m;
    double d2, d3, r1, r2, gain, ripple, photons, cmax;
    long bits;
    uint64_t seed;
    sim_noise nz;
    if ((rc = shg_options_geometry(o, no, &m, err, errlen)) ||
        (rc = options_float(o, no, "disp2", 0.8, &d2, err, errlen)) ||
        (rc = options_float(o, no, "disp3", 0.4, &d3, err, errlen)) ||
        (rc = options_float(o, no, "resp1", 0.15, &r1, err, errlen)) ||
        (rc = options_float(o, no, "resp2", -0.3, &r2, err, errlen)) ||
        (rc = options_float(o, no, "gain", 1.1, &gain, err, errlen)) ||
        (rc = options_float(o, no, "ripple", 0.05, &ripple, err, errlen)) ||
        (rc = options_float(o, no, "photons", 1e4, &photons, err, errlen)) ||
        (rc = options_int(o, no, "camera_bits", 12, &bits, err, errlen)) ||
        (rc = options_float(o, no, "camera_max", 1.5, &cmax, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 1, &seed, err, errlen)) ||
        (rc = sim_noise_parse(&nz, o, no, seed, err, errlen)))
        return rc;
    if (photons < 0 || ripple < 0 || bits < 0 || bits > 24 || !(cmax > 0) || !(gain > 0)) {
        snprintf(err, errlen, "options photons/ripple/camera_bits/camera_max/gain: expected "
                 "photons >= 0, ripple >= 0, camera_bits 0..24, camera_max > 0, gain > 0");
        return PATCTL_ERR_ARG;
    }
    shg_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->m = m;
    d->m.k = (shg_consts){d2, d3, r1, r2, gain};
    d->photons = photons;
    d->camera_bits = (int)bits;
    d->camera_max = cmax;
    d->nz = nz;
    d->seed = seed;
    if (ripple > 0 && (rc = make_ripple(d, ripple))) {
        shg_close(d);
        return rc;
    }

    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "shg");
    snprintf(desc->about, sizeof(desc->about),
             "broadband SHG: %d input + %d parameter shaper pixels x %d bins, FFT %d, "
             "%d spectrometer pixels (simulated)",
             m.n_in, m.n_par, m.bins, shg_fft_len(&m), m.n_out);
    desc->n_in = m.n_in;
    desc->n_out = m.n_out;
    snprintf(desc->in_unit, sizeof(desc->in_unit), "drive (x%.4g rad)", m.phase_scale);
    snprintf(desc->out_unit, sizeof(desc->out_unit), "a.u.");
    desc->in_lo = -1.0f, desc->in_hi = 1.0f;
    desc->n_blocks = m.n_par > 0 ? 1 : 0;
    if (m.n_par > 0)
        desc->blocks[0] = (struct patctl_param_block){
            .name = "phi", .unit = "drive", .about = "drive of each parameter pixel (phase = "
            "phase_scale x drive)", .rows = m.n_par, .cols = 1, .lo = -1.0f, .hi = 1.0f,
            .max_step = 0.0f, .safe = 0.0f, .init_lo = -0.5f, .init_hi = 0.5f};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

static int ensure_tape(shg_dev *d, int B)
{
    if (B <= shg_tape_capacity(d->tape))
        return 0;
    shg_tape *t = shg_tape_alloc(&d->m, B);
    if (!t)
        return PATCTL_ERR_NOMEM;
    shg_tape_free(d->tape);
    d->tape = t;
    return 0;
}

/* shot noise and camera quantisation of y [B, n_out] for query q; row b's
 * shot noise comes from the stream of its absolute row q->row0 + b */
static int measure_noise(shg_dev *d, const struct patctl_query *q, float *y)
{
    int n_out = d->m.n_out;
    long len = (long)q->batch * n_out;
    if (d->photons > 0) {
        gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
        if (!r)
            return PATCTL_ERR_NOMEM;
        for (int b = 0; b < q->batch; b++) {
            sim_rng_row(r, d->seed, q->id, PURPOSE_SHOT, (uint64_t)(q->row0 + b));
            for (long i = (long)b * n_out; i < (long)(b + 1) * n_out; i++) {
                double mean = fmax((double)y[i], 0.0) * d->photons;
                y[i] = (float)((double)gsl_ran_poisson(r, mean) / d->photons);
            }
        }
        gsl_rng_free(r);
    }
    if (d->camera_bits > 0) {
        double levels = ldexp(1.0, d->camera_bits) - 1.0, lsb = d->camera_max / levels;
        for (long i = 0; i < len; i++) {
            double c = nearbyint((double)y[i] / lsb);
            c = c < 0 ? 0 : c > levels ? levels : c;
            y[i] = (float)(c * lsb);
        }
    }
    return 0;
}

static int shg_run(void *state, const struct patctl_query *q, float *y)
{
    shg_dev *d = state;
    if (q->batch == 0)
        return 0; /* a pulse shaper takes any phase pattern at once */
    int rc = ensure_tape(d, q->batch);
    if (rc || (rc = shg_forward(&d->m, q->x, q->theta, q->batch, y, d->tape)))
        return rc;
    if ((rc = measure_noise(d, q, y)))
        return rc;
    return sim_noise_apply(&d->nz, q->id, q->row0, y, q->batch, d->m.n_out);
}

static int shg_vjp(void *state, const struct patctl_query *q, const float *gy,
                   float *gx, float *gtheta)
{
    shg_dev *d = state;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)d->m.n_in);
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * (size_t)d->m.n_par);
    if (q->batch == 0)
        return 0;
    float *y = malloc(sizeof(float) * (size_t)q->batch * (size_t)d->m.n_out);
    if (!y)
        return PATCTL_ERR_NOMEM;
    int rc = ensure_tape(d, q->batch);
    if (rc == 0)
        rc = shg_forward(&d->m, q->x, q->theta, q->batch, y, d->tape);
    free(y);
    if (rc)
        return rc;
    return shg_backward(&d->m, d->tape, gy, gx, gtheta, NULL);
}

static int shg_make_safe(void *state)
{
    (void)state; /* a flat phase on the shaper: nothing is stored between queries */
    return 0;
}

static const char *shg_last_error(void *state)
{
    shg_dev *d = state;
    return d && d->err[0] ? d->err : NULL;
}

const struct patctl_driver patctl_driver_shg = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "shg",
    .summary = "simulated broadband second-harmonic generation (optical): pulse-shaper phases "
               "in, SHG spectrum out",
    .options_help =
        "n_in=32         input pixels on the pulse shaper (inputs = pixel drives in [-1, 1])\n"
        "n_par=32        trainable parameter pixels, interleaved with the input pixels\n"
        "bins=4          frequency bins per shaper pixel\n"
        "n_out=32        spectrometer pixels (outputs)\n"
        "bandwidth=0.6   Gaussian spectral amplitude width (units of the half band)\n"
        "span=0.7        centred fraction of the SHG band the spectrometer covers\n"
        "phase_scale=3.14159  spectral phase (rad) per unit of pixel drive\n"
        "disp2=0.8 disp3=0.4   truth: dispersion, rad at the band edge\n"
        "resp1=0.15 resp2=-0.3 truth: spectrometer response 1 + r1 u + r2 u^2\n"
        "gain=1.1        truth: output gain\n"
        "ripple=0.05     truth: rms of a fixed random response ripple (outside the model)\n"
        "photons=10000   photons per unit output and pixel (shot noise), 0 = off\n"
        "camera_bits=12  camera quantisation over [0, camera_max], 0 = off\n"
        "camera_max=1.5  camera full scale (output units)\n"
        "seed=1          device seed (ripple and noise streams)\n"
        SIM_NOISE_HELP,
    .flags = PATCTL_DRV_SEEDED,
    .open = shg_open,
    .run = shg_run,
    .vjp = shg_vjp,
    .make_safe = shg_make_safe,
    .close = shg_close,
    .last_error = shg_last_error,
};
