/* Simulated device: coupled nonlinear oscillators (the mechanical system of
 * the PAT paper).  Runs the physics of surrogate/oscillator.c with a hidden
 * truth that differs from the nominal model:
 *   - nonlinearity detuning eta (sin((1+eta) q) instead of sin q),
 *   - a fixed random extra coupling Qn = L(sym(j_noise * randn)) drawn once
 *     from the device seed,
 *   - input noise q(0) = x + n, n ~ N(0, sigma^2), fresh for every query,
 *   - optional truth calibration: coupling_gain, in/out gain and offset,
 *   - optional slow drift of eta (temperature): eta(id) = eta + eta_drift *
 *     sin(2 pi id / eta_drift_period), following the query id so that runs
 *     stay reproducible and the ideal VJP sees the eta of its forward pass,
 *   - the common noise/fault layer (devices/sim_noise.h), off by default.
 * Parameters: C [N,N] (coupling, 1/s^2) and e [N] (drive, rad/s^2).
 * Inputs x [B,N] are initial displacements (rad); outputs y [B,N] are the
 * displacements at t_end (rad). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/sim_noise.h"
#include "devices/sim_rng.h"
#include "surrogate/oscillator.h"
#include "surrogate/bigmem.h"

enum { PURPOSE_QNOISE = 1, PURPOSE_INPUT = 2 };

typedef struct {
    osc_model m;          /* the hidden truth */
    float *q_noise;       /* [N,N] owned */
    float sigma;          /* input noise std, rad */
    float eta0;           /* eta without drift */
    double eta_drift;     /* drift amplitude of eta */
    double eta_period;    /* queries per drift cycle */
    sim_noise nz;         /* common output noise/fault layer */
    uint64_t seed;
    osc_tape *tape;       /* grown on demand */
    float *noise;         /* [cap, N] */
    int cap;
    char err[160];
} osc_dev;

static const char *const known[] = {
    "n", "eta", "j_noise", "sigma", "seed", "steps", "t_end", "coupling_gain",
    "in_gain", "in_offset", "out_gain", "out_offset", "eta_drift", "eta_drift_period", "row_exact", NULL,
};

/* Room for B rows; exact: exactly B (osc_backward sums dL/dM in one GEMM
 * when the tape is full and per stage otherwise, which rounds differently,
 * so the VJP uses a tape of exactly B rows: its result then does not depend
 * on the batch sizes this device saw before, e.g. behind a server). */
static int ensure_cap2(osc_dev *d, int B, int exact)
{
    if (exact ? B == d->cap : B <= d->cap)
        return 0;
    osc_tape *t = osc_tape_alloc(d->m.n, B, d->m.steps);
    float *nz = malloc(sizeof(float) * (size_t)B * (size_t)d->m.n);
    if (!t || !nz) {
        osc_tape_free(t);
        free(nz);
        return PATCTL_ERR_NOMEM;
    }
    osc_tape_free(d->tape);
    free(d->noise);
    d->tape = t, d->noise = nz, d->cap = B;
    return 0;
}

static int ensure_cap(osc_dev *d, int B) { return ensure_cap2(d, B, 0); }

static void osc_close(void *state)
{
    osc_dev *d = state;
    if (!d)
        return;
    osc_tape_free(d->tape);
    free(d->noise);
    free(d->q_noise);
    free(d);
}

static int osc_open(void **state, const struct patctl_option *o, int no,
                    struct patctl_device_desc *desc, char *err, size_t errlen)
{
    int rc = options_check_known2(o, no, known, sim_noise_keys, "oscillators", err, errlen);
    if (rc)
        return rc;
    long n, steps, row_exact;
    double eta, jn, sigma, t_end, cg, ig, io, og, oo, edrift, eperiod;
    sim_noise nz;
    uint64_t seed;
    if ((rc = options_int(o, no, "n", 64, &n, err, errlen)) ||
        (rc = options_float(o, no, "eta", 0.1, &eta, err, errlen)) ||
        (rc = options_float(o, no, "j_noise", 0.2, &jn, err, errlen)) ||
        (rc = options_float(o, no, "sigma", 0.02, &sigma, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 1, &seed, err, errlen)) ||
        (rc = options_int(o, no, "steps", 5, &steps, err, errlen)) ||
        (rc = options_float(o, no, "t_end", 0.5, &t_end, err, errlen)) ||
        (rc = options_float(o, no, "coupling_gain", 1.0, &cg, err, errlen)) ||
        (rc = options_float(o, no, "in_gain", 1.0, &ig, err, errlen)) ||
        (rc = options_float(o, no, "in_offset", 0.0, &io, err, errlen)) ||
        (rc = options_float(o, no, "out_gain", 1.0, &og, err, errlen)) ||
        (rc = options_float(o, no, "out_offset", 0.0, &oo, err, errlen)) ||
        (rc = options_float(o, no, "eta_drift", 0.0, &edrift, err, errlen)) ||
        (rc = options_float(o, no, "eta_drift_period", 10000.0, &eperiod, err, errlen)) ||
        (rc = options_int(o, no, "row_exact", 0, &row_exact, err, errlen)) ||
        (rc = sim_noise_parse(&nz, o, no, seed, err, errlen)))
        return rc;
    if (eperiod <= 0) {
        snprintf(err, errlen, "option eta_drift_period: expected > 0 queries, got %g", eperiod);
        return PATCTL_ERR_ARG;
    }
    if (row_exact != 0 && row_exact != 1) {
        snprintf(err, errlen, "option row_exact: expected 0 or 1, got %ld", row_exact);
        return PATCTL_ERR_ARG;
    }
    if (n < 1 || n > 20000) {
        snprintf(err, errlen, "option n: expected 1..20000 oscillators, got %ld", n);
        return PATCTL_ERR_ARG;
    }
    if (steps < 1 || steps > 10000 || t_end <= 0) {
        snprintf(err, errlen, "options steps/t_end: expected steps >= 1 and t_end > 0");
        return PATCTL_ERR_ARG;
    }
    if (sigma < 0 || jn < 0) {
        snprintf(err, errlen, "options sigma/j_noise: expected >= 0");
        return PATCTL_ERR_ARG;
    }

    osc_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->m = osc_model_nominal((int)n);
    d->m.steps = (int)steps;
    d->m.t_end = (float)t_end;
    d->m.k = (osc_consts){(float)eta, (float)cg, (float)ig, (float)io, (float)og, (float)oo};
    /* 1: a row's result does not depend on the batch it is in, so a pool of
     * servers gives the bits of one server (one GEMV per row: slower) */
    d->m.row_exact = (int)row_exact;
    d->sigma = (float)sigma;
    d->eta0 = (float)eta;
    d->eta_drift = edrift;
    d->eta_period = eperiod;
    d->nz = nz;
    d->seed = seed;
    if (jn > 0) {
        long nn = n * n;
        float *raw = malloc(sizeof(float) * (size_t)nn);
        d->q_noise = big_alloc(sizeof(float) * (size_t)nn);
        gsl_rng *r = sim_rng(seed, 0, PURPOSE_QNOISE);
        if (!raw || !d->q_noise || !r) {
            free(raw);
            if (r)
                gsl_rng_free(r);
            osc_close(d);
            return PATCTL_ERR_NOMEM;
        }
        sim_gaussian_fill(r, raw, nn, jn);
        gsl_rng_free(r);
        osc_laplacian_sym(d->q_noise, raw, (int)n);
        free(raw);
        d->m.q_noise = d->q_noise;
    }

    /* initialise like a linear layer's weight: U(-1/sqrt(N), 1/sqrt(N)) */
    float init = (float)(1.0 / sqrt((double)n));
    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "oscillators");
    snprintf(desc->about, sizeof(desc->about),
             "%ld coupled nonlinear oscillators, RK4 %ld steps to t=%.3g (simulated)", n, steps, t_end);
    desc->n_in = desc->n_out = (int32_t)n;
    snprintf(desc->in_unit, sizeof(desc->in_unit), "rad");
    snprintf(desc->out_unit, sizeof(desc->out_unit), "rad");
    desc->in_lo = -10.0f, desc->in_hi = 10.0f;
    desc->n_blocks = 2;
    desc->blocks[0] = (struct patctl_param_block){
        .name = "C", .unit = "1/s^2", .about = "coupling matrix, Q = L((C+C^T)/2)",
        .rows = (int32_t)n, .cols = (int32_t)n, .lo = -4.0f, .hi = 4.0f, .max_step = 0.0f, .safe = 0.0f,
        .init_lo = -init, .init_hi = init};
    desc->blocks[1] = (struct patctl_param_block){
        .name = "e", .unit = "rad/s^2", .about = "constant drive of each oscillator",
        .rows = (int32_t)n, .cols = 1, .lo = -4.0f, .hi = 4.0f, .max_step = 0.0f, .safe = 0.0f,
        .init_lo = -init, .init_hi = init};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

/* The input noise of query q [B, N] (deterministic in seed, q->id and each
 * row's absolute index q->row0 + b, so a split batch draws the same). */
static int draw_noise(osc_dev *d, const struct patctl_query *q)
{
    int n = d->m.n;
    long len = (long)q->batch * n;
    if (d->sigma <= 0) {
        memset(d->noise, 0, sizeof(float) * (size_t)len);
        return 0;
    }
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r)
        return PATCTL_ERR_NOMEM;
    for (int b = 0; b < q->batch; b++) {
        sim_rng_row(r, d->seed, q->id, PURPOSE_INPUT, (uint64_t)(q->row0 + b));
        sim_gaussian_fill(r, d->noise + (long)b * n, n, d->sigma);
    }
    gsl_rng_free(r);
    return 0;
}

/* The physics of query q (its eta, its input noise) into y; tape kept. */
static int osc_measure(osc_dev *d, const struct patctl_query *q, float *y)
{
    int rc = ensure_cap(d, q->batch);
    if (rc || (rc = draw_noise(d, q)))
        return rc;
    d->m.k.eta = d->eta0;
    if (d->eta_drift != 0)
        d->m.k.eta += (float)(d->eta_drift *
                              sin(2.0 * M_PI * fmod((double)q->id, d->eta_period) / d->eta_period));
    long nn = (long)d->m.n * d->m.n;
    return osc_forward(&d->m, q->theta, q->theta + nn, q->x, d->noise, q->batch, y, d->tape);
}

static int osc_run(void *state, const struct patctl_query *q, float *y)
{
    osc_dev *d = state;
    if (q->batch == 0)
        return 0;
    int rc = osc_measure(d, q, y);
    return rc ? rc : sim_noise_apply(&d->nz, q->id, q->row0, y, q->batch, d->m.n);
}

static int osc_vjp(void *state, const struct patctl_query *q, const float *gy,
                   float *gx, float *gtheta)
{
    osc_dev *d = state;
    int n = d->m.n;
    long nn = (long)n * n;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)n);
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * (size_t)(nn + n));
    if (q->batch == 0)
        return 0;
    float *y = malloc(sizeof(float) * (size_t)q->batch * (size_t)n);
    int rc = y ? ensure_cap2(d, q->batch, 1) : PATCTL_ERR_NOMEM;
    if (rc) {
        free(y);
        return rc;
    }
    /* same id => same eta and input noise => same trajectory; the common
     * output layer is the identity for the VJP (see sim_noise.h) */
    rc = osc_measure(d, q, y);
    free(y);
    if (rc)
        return rc;
    return osc_backward(&d->m, d->tape, gy, gx, gtheta, gtheta ? gtheta + nn : NULL, NULL);
}

static int osc_make_safe(void *state)
{
    (void)state; /* a simulation holds no energy between queries */
    return 0;
}

static const char *osc_last_error(void *state)
{
    osc_dev *d = state;
    return d && d->err[0] ? d->err : NULL;
}

const struct patctl_driver patctl_driver_oscillators = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "oscillators",
    .summary = "simulated coupled nonlinear oscillators (mechanical), hidden eta + coupling noise",
    .options_help =
        "n=64            number of oscillators (inputs = outputs = n)\n"
        "eta=0.1         truth: nonlinearity detuning, sin((1+eta) q)\n"
        "j_noise=0.2     truth: std of the random extra coupling before symmetrisation\n"
        "sigma=0.02      truth: input noise std (rad), fresh per query\n"
        "seed=1          device seed (hidden coupling and noise streams)\n"
        "steps=5         RK4 steps\n"
        "t_end=0.5       integration time\n"
        "coupling_gain=1 truth: gain on the trained coupling\n"
        "in_gain=1 in_offset=0 out_gain=1 out_offset=0   truth: input/output calibration\n"
        "eta_drift=0     truth: slow drift amplitude of eta (temperature)\n"
        "eta_drift_period=10000  queries per eta drift cycle\n"
        "row_exact=0     1: every row computed on its own (one GEMV per row), so a batch\n"
        "                split across a pool of servers gives bit-identical results (slower)\n"
        SIM_NOISE_HELP,
    .flags = PATCTL_DRV_SEEDED,
    .open = osc_open,
    .run = osc_run,
    .vjp = osc_vjp,
    .make_safe = osc_make_safe,
    .close = osc_close,
    .last_error = osc_last_error,
};
