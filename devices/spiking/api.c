/* Simulated device: an analog neuromorphic chip, one layer of leaky
 * integrate-and-fire neurons.  Runs the physics of surrogate/lif.c (see
 * lif.h and devices/spiking/README.md) with a hidden truth that differs
 * from the nominal (mismatch-free) chip by
 *   - per-neuron mismatch of threshold, leak rate (1 - leak) and synaptic
 *     gain: relative Gaussian errors drawn once from the device seed,
 *   - weights quantised to weight_bits (two's complement over [-1, 1)),
 * and measures with
 *   - Bernoulli input spikes (rate coding; the nominal model feeds their
 *     expectation),
 *   - membrane noise N(0, v_noise^2) per neuron and step,
 *   - the common noise/fault layer (devices/sim_noise.h), off by default.
 * Every random draw of row b comes from the per-row streams of (seed, query
 * id, absolute row q->row0 + b).
 * Inputs x [B, n_in] are normalised rates (spike probability / p_max) or
 * intensities (latency coding) in [0, 1]; parameters are the synaptic
 * weights W [n_out, n_in] and bias currents b [n_out] (full scale 1 = one
 * syn_gain per step); outputs y [B, n_out] are spike counts over the
 * window.
 *
 * The "exact" VJP (--mode ideal) of a spiking chip: the surrogate-gradient
 * BPTT of lif_backward through the TRUTH (mismatched neurons, quantised
 * weights) at the very noise realisation of the forward pass (same query id
 * and rows => the same input spikes and membrane noise), with the weight
 * quantisation and the Bernoulli sampling passed straight through.  With
 * spike=soft it is the exact derivative of the (soft) truth. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/sim_noise.h"
#include "devices/sim_rng.h"
#include "devices/spiking/spiking_dev.h"

enum { PURPOSE_MISMATCH = 1, PURPOSE_INPUT = 2, PURPOSE_MEMBRANE = 3 };

typedef struct {
    lif_model m;          /* the hidden truth (points at the arrays below) */
    double *theta_i;      /* [n_out] thresholds */
    double *leak_i;       /* [n_out] leak factors */
    double *gain_i;       /* [n_out] synaptic gains */
    float *th;            /* [n_theta] theta as applied (quantised weights) */
    int weight_bits;      /* 0 = no quantisation */
    int bernoulli;        /* rate coding: sample the input spikes */
    double v_noise;       /* membrane noise std per step, theta units */
    sim_noise nz;
    uint64_t seed;
    lif_tape *tape;       /* grown on demand */
    float *u_in;          /* [cap, T, n_in] input uniforms */
    float *n_mem;         /* [cap, T, n_out] membrane noise */
    char err[160];
} spiking_dev;

const char *const spiking_shape_keys[] = {
    "n_in", "n_out", "timesteps", "coding", "p_max", "lat_cutoff", "leak", "syn_gain", "beta", "sg",
    NULL,
};

static const char *const known[] = {
    "n_in", "n_out", "timesteps", "coding", "p_max", "lat_cutoff", "leak", "syn_gain", "beta", "sg",
    "mismatch_theta", "mismatch_leak", "mismatch_gain", "v_noise", "weight_bits", "bernoulli",
    "spike", "w_init", "b_init", "seed", NULL,
};

/* value of key among choices (index into *out), default def */
static int choice(const struct patctl_option *o, int n, const char *key, const char *const *choices,
                  int def, int *out, char *err, size_t errlen)
{
    const char *v = options_get(o, n, key);
    *out = def;
    if (!v)
        return 0;
    for (int i = 0; choices[i]; i++)
        if (strcmp(v, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    snprintf(err, errlen, "option %s: expected %s or %s, got '%s'", key, choices[0], choices[1], v);
    return PATCTL_ERR_ARG;
}

int spiking_options_shape(const struct patctl_option *o, int n, lif_model *m, char *err,
                          size_t errlen)
{
    static const char *const codings[] = {"rate", "latency", NULL};
    static const char *const sgs[] = {"sigmoid", "fast", NULL};
    long n_in, n_out, steps;
    double p_max, cut, leak, gain, beta;
    int coding, sg, rc;
    if ((rc = options_int(o, n, "n_in", 64, &n_in, err, errlen)) ||
        (rc = options_int(o, n, "n_out", 32, &n_out, err, errlen)) ||
        (rc = options_int(o, n, "timesteps", 32, &steps, err, errlen)) ||
        (rc = choice(o, n, "coding", codings, LIF_RATE, &coding, err, errlen)) ||
        (rc = options_float(o, n, "p_max", 0.5, &p_max, err, errlen)) ||
        (rc = options_float(o, n, "lat_cutoff", 0.05, &cut, err, errlen)) ||
        (rc = options_float(o, n, "leak", 0.9, &leak, err, errlen)) ||
        (rc = options_float(o, n, "syn_gain", 0.25, &gain, err, errlen)) ||
        (rc = options_float(o, n, "beta", 4.0, &beta, err, errlen)) ||
        (rc = choice(o, n, "sg", sgs, LIF_SG_SIGMOID, &sg, err, errlen)))
        return rc;
    if (n_in < 1 || n_in > 100000 || n_out < 1 || n_out > 100000 || steps < 1 || steps > 10000) {
        snprintf(err, errlen, "options n_in/n_out/timesteps: expected n_in, n_out 1..100000, "
                 "timesteps 1..10000");
        return PATCTL_ERR_ARG;
    }
    *m = lif_model_nominal((int)n_in, (int)n_out);
    m->steps = (int)steps;
    m->coding = (lif_coding)coding;
    m->p_max = p_max;
    m->lat_cutoff = cut;
    m->leak = leak;
    m->gain = gain;
    m->beta = beta;
    m->sg = (lif_sg)sg;
    return lif_check(m, err, errlen);
}

static void spiking_close(void *state)
{
    spiking_dev *d = state;
    if (!d)
        return;
    lif_tape_free(d->tape);
    free(d->theta_i), free(d->leak_i), free(d->gain_i), free(d->th);
    free(d->u_in), free(d->n_mem);
    free(d);
}

static int spiking_open(void **state, const struct patctl_option *o, int no,
                        struct patctl_device_desc *desc, char *err, size_t errlen)
{
    static const char *const spikes[] = {"hard", "soft", NULL};
    int rc = options_check_known2(o, no, known, sim_noise_keys, "spiking", err, errlen);
    if (rc)
        return rc;
    lif_model m;
    double mth, mlk, mg, vn, w_init, b_init;
    long bits, bern;
    int spike;
    uint64_t seed;
    sim_noise nz;
    if ((rc = spiking_options_shape(o, no, &m, err, errlen)) ||
        (rc = options_float(o, no, "mismatch_theta", 0.03, &mth, err, errlen)) ||
        (rc = options_float(o, no, "mismatch_leak", 0.05, &mlk, err, errlen)) ||
        (rc = options_float(o, no, "mismatch_gain", 0.05, &mg, err, errlen)) ||
        (rc = options_float(o, no, "v_noise", 0.05, &vn, err, errlen)) ||
        (rc = options_int(o, no, "weight_bits", 6, &bits, err, errlen)) ||
        (rc = options_int(o, no, "bernoulli", 1, &bern, err, errlen)) ||
        (rc = choice(o, no, "spike", spikes, LIF_HARD, &spike, err, errlen)) ||
        (rc = options_float(o, no, "w_init", 0.5, &w_init, err, errlen)) ||
        (rc = options_float(o, no, "b_init", 0.0, &b_init, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 1, &seed, err, errlen)) ||
        (rc = sim_noise_parse(&nz, o, no, seed, err, errlen)))
        return rc;
    if (mth < 0 || mth > 0.5 || mlk < 0 || mlk > 0.5 || mg < 0 || mg > 0.5 || vn < 0 || vn > 10 ||
        bits < 0 || bits > 16 || (bern != 0 && bern != 1) || !(w_init >= 0 && w_init <= 1) ||
        !(b_init >= -1 && b_init <= 1)) {
        snprintf(err, errlen, "options mismatch_theta/mismatch_leak/mismatch_gain/v_noise/weight_bits/"
                 "bernoulli/w_init/b_init: expected mismatches 0..0.5, v_noise 0..10, weight_bits "
                 "0..16, bernoulli 0 or 1, w_init 0..1, b_init -1..1");
        return PATCTL_ERR_ARG;
    }
    spiking_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    int nn = m.n_out;
    d->theta_i = malloc(sizeof(double) * (size_t)nn);
    d->leak_i = malloc(sizeof(double) * (size_t)nn);
    d->gain_i = malloc(sizeof(double) * (size_t)nn);
    d->th = malloc(sizeof(float) * (size_t)lif_n_theta(&m));
    gsl_rng *r = sim_rng(seed, 0, PURPOSE_MISMATCH);
    if (!d->theta_i || !d->leak_i || !d->gain_i || !d->th || !r) {
        if (r)
            gsl_rng_free(r);
        spiking_close(d);
        return PATCTL_ERR_NOMEM;
    }
    /* per-neuron mismatch, fixed by the seed: threshold and gain relative,
     * the leak on its rate 1 - leak (the leak conductance); three unit
     * normals per neuron always drawn, so one std does not move the others */
    for (int i = 0; i < nn; i++) {
        double a = mth * gsl_ran_ugaussian(r), b = mlk * gsl_ran_ugaussian(r);
        double c = mg * gsl_ran_ugaussian(r);
        d->theta_i[i] = m.theta * fmax(1.0 + a, 0.05);
        double lk = b != 0 ? 1.0 - (1.0 - m.leak) * (1.0 + b) : m.leak;
        d->leak_i[i] = lk < 0 ? 0 : lk > 1 ? 1 : lk;
        d->gain_i[i] = m.gain * (1.0 + c);
    }
    gsl_rng_free(r);
    m.spike = (lif_spike)spike;
    m.theta_i = d->theta_i, m.leak_i = d->leak_i, m.gain_i = d->gain_i;
    d->m = m;
    d->weight_bits = (int)bits;
    d->bernoulli = (int)bern;
    d->v_noise = vn;
    d->nz = nz;
    d->seed = seed;

    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "spiking");
    snprintf(desc->about, sizeof(desc->about),
             "LIF chip: %d inputs (%s coding, %d steps) -> %d neurons, %d-bit weights, spike counts "
             "out (simulated)", m.n_in, m.coding == LIF_RATE ? "rate" : "latency", m.steps, m.n_out,
             d->weight_bits);
    desc->n_in = m.n_in;
    desc->n_out = m.n_out;
    snprintf(desc->in_unit, sizeof(desc->in_unit), "%s",
             m.coding == LIF_RATE ? "rate / p_max" : "intensity");
    snprintf(desc->out_unit, sizeof(desc->out_unit), "spikes");
    desc->in_lo = 0.0f, desc->in_hi = 1.0f;
    desc->n_blocks = 2;
    desc->blocks[0] = (struct patctl_param_block){
        .name = "W", .unit = "syn_gain/spike", .about = "synaptic weight of input j at neuron i",
        .rows = m.n_out, .cols = m.n_in, .lo = -1.0f, .hi = 1.0f, .max_step = 0.0f, .safe = 0.0f,
        .init_lo = (float)-w_init, .init_hi = (float)w_init};
    desc->blocks[1] = (struct patctl_param_block){
        .name = "b", .unit = "syn_gain/step", .about = "bias current of each neuron",
        .rows = m.n_out, .cols = 1, .lo = -1.0f, .hi = 1.0f, .max_step = 0.0f, .safe = 0.0f,
        .init_lo = (float)b_init, .init_hi = (float)b_init};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

/* the weight DAC: two's complement codes -2^(bits-1) .. 2^(bits-1) - 1 of
 * 2^-(bits-1) each (2^bits levels over [-1, 1), zero exact) */
static float quantise(float w, int bits)
{
    double lsb = ldexp(1.0, -(bits - 1)), top = ldexp(1.0, bits - 1);
    double c = floor((double)w / lsb + 0.5);
    c = c < -top ? -top : c > top - 1 ? top - 1 : c;
    return (float)(c * lsb);
}

/* the truth's forward at query q with its noise realisation */
static int truth_forward(spiking_dev *d, const struct patctl_query *q, float *y)
{
    const lif_model *m = &d->m;
    int B = q->batch, T = m->steps;
    if (B > lif_tape_capacity(d->tape)) {
        lif_tape *t = lif_tape_alloc(m, B);
        float *ui = malloc(sizeof(float) * (size_t)B * T * m->n_in);
        float *nm = malloc(sizeof(float) * (size_t)B * T * m->n_out);
        if (!t || !ui || !nm) {
            lif_tape_free(t), free(ui), free(nm);
            return PATCTL_ERR_NOMEM;
        }
        lif_tape_free(d->tape), free(d->u_in), free(d->n_mem);
        d->tape = t, d->u_in = ui, d->n_mem = nm;
    }
    long nw = (long)m->n_out * m->n_in, nt = lif_n_theta(m);
    for (long k = 0; k < nt; k++)
        d->th[k] = d->weight_bits > 0 && k < nw ? quantise(q->theta[k], d->weight_bits) : q->theta[k];
    int sample = d->bernoulli && m->coding == LIF_RATE, noisy = d->v_noise > 0;
    if (sample || noisy) {
        gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
        if (!r)
            return PATCTL_ERR_NOMEM;
        for (int b = 0; b < B; b++) {
            uint64_t row = (uint64_t)(q->row0 + b);
            if (sample) {
                float *u = d->u_in + (size_t)b * T * m->n_in;
                sim_rng_row(r, d->seed, q->id, PURPOSE_INPUT, row);
                for (long k = 0; k < (long)T * m->n_in; k++)
                    u[k] = (float)gsl_rng_uniform(r);
            }
            if (noisy) {
                sim_rng_row(r, d->seed, q->id, PURPOSE_MEMBRANE, row);
                sim_gaussian_fill(r, d->n_mem + (size_t)b * T * m->n_out, (long)T * m->n_out,
                                  d->v_noise);
            }
        }
        gsl_rng_free(r);
    }
    lif_noise nz = {.u_in = sample ? d->u_in : NULL, .n_mem = noisy ? d->n_mem : NULL};
    int rc = lif_forward(m, q->x, d->th, B, y, d->tape, &nz);
    if (rc)
        snprintf(d->err, sizeof(d->err), "lif forward failed (%d)", rc);
    return rc;
}

static int spiking_run(void *state, const struct patctl_query *q, float *y)
{
    spiking_dev *d = state;
    if (q->batch == 0)
        return 0; /* the weights are written into the synapse array per batch */
    int rc = truth_forward(d, q, y);
    if (rc)
        return rc;
    return sim_noise_apply(&d->nz, q->id, q->row0, y, q->batch, d->m.n_out);
}

static int spiking_vjp(void *state, const struct patctl_query *q, const float *gy, float *gx,
                       float *gtheta)
{
    spiking_dev *d = state;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)d->m.n_in);
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * (size_t)lif_n_theta(&d->m));
    if (q->batch == 0)
        return 0;
    float *y = malloc(sizeof(float) * (size_t)q->batch * (size_t)d->m.n_out);
    if (!y)
        return PATCTL_ERR_NOMEM;
    int rc = truth_forward(d, q, y);
    free(y);
    if (rc)
        return rc;
    /* the gradient at the quantised weights, passed straight through */
    return lif_backward(&d->m, d->tape, gy, gx, gtheta);
}

static int spiking_make_safe(void *state)
{
    (void)state; /* zero weights and bias: the chip idles between batches */
    return 0;
}

static const char *spiking_last_error(void *state)
{
    spiking_dev *d = state;
    return d && d->err[0] ? d->err : NULL;
}

const struct patctl_driver patctl_driver_spiking = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "spiking",
    .summary = "simulated neuromorphic chip (analog LIF neurons): rate- or latency-coded input "
               "spikes through quantised synapses, spike counts out",
    .options_help =
        "n_in=64         inputs (normalised rate or intensity in [0, 1])\n"
        "n_out=32        LIF neurons (outputs: spike counts)\n"
        "timesteps=32    time steps T of the window\n"
        "coding=rate     rate (Bernoulli spikes, probability x p_max per step) or latency\n"
        "                (one spike at round((1 - x)(T - 1)), none below lat_cutoff)\n"
        "p_max=0.5       rate coding: spike probability per step at x = 1\n"
        "lat_cutoff=0.05 latency coding: inputs below it do not spike\n"
        "leak=0.9        membrane leak factor per step (nominal)\n"
        "syn_gain=0.25   synaptic gain: threshold units per spike at W = 1 (nominal)\n"
        "beta=4          sharpness of the surrogate spike derivative (1/threshold)\n"
        "sg=sigmoid      surrogate derivative: sigmoid or fast (fast sigmoid)\n"
        "mismatch_theta=0.03  truth: relative std of the per-neuron thresholds\n"
        "mismatch_leak=0.05   truth: relative std of the per-neuron leak rates (1 - leak)\n"
        "mismatch_gain=0.05   truth: relative std of the per-neuron synaptic gains\n"
        "v_noise=0.05    membrane noise std per step (threshold units)\n"
        "weight_bits=6   weight DAC resolution (two's complement over [-1, 1)), 0 = off\n"
        "bernoulli=1     rate coding: 1 = sampled input spikes, 0 = their expectation\n"
        "spike=hard      truth's spike: hard (the chip) or soft (sigmoid, for gradient checks)\n"
        "w_init=0.5      suggested initial weights U(-w_init, w_init)\n"
        "b_init=0        suggested initial bias current\n"
        "seed=1          device seed (mismatch and noise streams)\n"
        SIM_NOISE_HELP,
    .flags = PATCTL_DRV_SEEDED,
    .open = spiking_open,
    .run = spiking_run,
    .vjp = spiking_vjp,
    .make_safe = spiking_make_safe,
    .close = spiking_close,
    .last_error = spiking_last_error,
};
