/* Simulated device: a delay-based reservoir computer (one nonlinear node
 * with a delay loop of N time-multiplexed virtual nodes; electronic
 * Mackey-Glass or optoelectronic sin^2 node).  Runs the physics of
 * surrogate/reservoir.c (see reservoir.h and devices/reservoir/README.md)
 * with a hidden truth that differs from the nominal (set) operating point:
 *   - feedback strength eta, exponent p (or bias phase phi), the node's
 *     response time (theta), the modulator's input gain, the photodiode
 *     gain (relative errors of the set values),
 *   - the mask and bias as the waveform generator writes them: rounded to
 *     mask_bits over [-1, 1] and a fixed per-slot gain mismatch
 *     (mask_mismatch, relative std, drawn once from the device seed);
 * and measures with
 *   - additive noise in the loop, N(0, loop_noise^2) per virtual node and
 *     step (it circulates through the delay like the signal),
 *   - detection noise of the photodiode amplifier, N(0, det_noise^2) per
 *     output value (V),
 *   - an adc_bits ADC over [-adc_range, adc_range] (saturating),
 *   - the common noise/fault layer (devices/sim_noise.h), off by default.
 * Noise of row b of query id comes from the streams of (seed, id, row0 + b).
 * Inputs x [B, window*channels] (in [-1, 1]); parameters mask [N, C], bias
 * [N], gain [1]; outputs y [B, out_steps*N] (V).  The exact VJP is that of
 * the truth along the same noisy trajectory (same id => same loop noise);
 * the DAC and ADC rounding are passed straight through, the detection noise
 * is additive. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/reservoir/reservoir_dev.h"
#include "devices/sim_noise.h"
#include "devices/sim_rng.h"

enum { PURPOSE_MISMATCH = 1, PURPOSE_LOOP = 2, PURPOSE_DET = 3 };

typedef struct {
    reservoir_model m;    /* the hidden truth */
    double *mis;          /* [N] per-slot drive factor 1 + delta_i */
    float *th;            /* [n_theta] theta as written (rounded, mismatch applied) */
    int mask_bits;        /* 0 = exact */
    double loop_noise;    /* std per node and step, state units */
    double det_noise;     /* std per output, V */
    int adc_bits;         /* 0 = no quantisation */
    double adc_range;     /* ADC full scale +-adc_range, V */
    sim_noise nz;
    uint64_t seed;
    gsl_rng *rng;         /* reseeded per row */
    const struct patctl_query *q; /* the query being run (for the loop-noise callback) */
    reservoir_tape *tape; /* grown on demand */
    char err[160];
} reservoir_dev;

const char *const reservoir_shape_keys[] = {
    "nodes", "window", "channels", "out_steps", "out_stride", "desync", "nonlin", "eta", "p", "phi",
    "theta", NULL,
};

static const char *const truth_keys[] = {
    "eta_err", "p_err", "phi_err", "tnode_err", "gain_err", "out_gain", "mask_mismatch",
    "mask_bits", "loop_noise", "det_noise", "adc_bits", "adc_range", "seed", NULL,
};

int reservoir_options_shape(const struct patctl_option *o, int n, reservoir_model *m, char *err,
                            size_t errlen)
{
    long nodes, window, channels, ks, st, ds;
    double eta, p, phi, theta;
    int rc;
    if ((rc = options_int(o, n, "nodes", 50, &nodes, err, errlen)) ||
        (rc = options_int(o, n, "window", 20, &window, err, errlen)) ||
        (rc = options_int(o, n, "channels", 1, &channels, err, errlen)) ||
        (rc = options_int(o, n, "out_steps", 1, &ks, err, errlen)) ||
        (rc = options_int(o, n, "out_stride", 1, &st, err, errlen)) ||
        (rc = options_int(o, n, "desync", 1, &ds, err, errlen)) ||
        (rc = options_float(o, n, "eta", 0.9, &eta, err, errlen)) ||
        (rc = options_float(o, n, "p", 2.0, &p, err, errlen)) ||
        (rc = options_float(o, n, "phi", M_PI / 4, &phi, err, errlen)) ||
        (rc = options_float(o, n, "theta", 1.0, &theta, err, errlen)))
        return rc;
    const char *nl = options_get(o, n, "nonlin");
    if (nl && strcmp(nl, "mg") != 0 && strcmp(nl, "sin2") != 0) {
        snprintf(err, errlen, "option nonlin: expected mg or sin2, got '%s'", nl);
        return PATCTL_ERR_ARG;
    }
    if (nodes < 1 || nodes > 100000 || window < 1 || window > 1000000 || channels < 1 ||
        channels > 100000 || ks < 1 || ks > window || st < 1 || st > window || ds < 0 ||
        ds > nodes) {
        snprintf(err, errlen, "options nodes/window/channels/out_steps/out_stride/desync: expected "
                 "nodes 1..100000, window 1..1000000, channels 1..100000, out_steps and out_stride "
                 "1..window, desync 0..nodes");
        return PATCTL_ERR_ARG;
    }
    *m = reservoir_model_nominal((int)nodes, (int)window, (int)channels);
    m->out_steps = (int)ks;
    m->out_stride = (int)st;
    m->desync = (int)ds;
    m->nonlin = nl && strcmp(nl, "sin2") == 0 ? RES_NL_SIN2 : RES_NL_MG;
    m->k.eta = eta, m->k.p = p, m->k.phi = phi, m->k.theta = theta;
    return reservoir_check(m, err, errlen);
}

int reservoir_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o,
                             int n, reservoir_model *m, char *err, size_t errlen)
{
    int rc = reservoir_options_shape(o, n, m, err, errlen);
    if (rc)
        return rc;
    const struct patctl_param_block *mask = &desc->blocks[0];
    int N = mask->rows, C = mask->cols;
    if (desc->n_blocks != 3 || N < 1 || C < 1 || desc->n_in % C || desc->n_out % N ||
        desc->blocks[1].rows * desc->blocks[1].cols != N ||
        desc->blocks[2].rows * desc->blocks[2].cols != 1) {
        snprintf(err, errlen, "reservoir: description does not have the reservoir's shape (mask "
                 "[N, C], bias [N], gain [1], n_in = window * C, n_out = out_steps * N)");
        return PATCTL_ERR_ARG;
    }
    if (m->nodes != N || m->channels != C || reservoir_n_in(m) != desc->n_in ||
        reservoir_n_out(m) != desc->n_out) {
        m->nodes = N, m->channels = C;
        m->window = desc->n_in / C, m->out_steps = desc->n_out / N;
        if ((long)(m->out_steps - 1) * m->out_stride > (long)m->window - 1)
            m->out_stride = 1;
        if (m->desync > N)
            m->desync = 1;
    }
    return reservoir_check(m, err, errlen);
}

static void reservoir_close(void *state)
{
    reservoir_dev *d = state;
    if (!d)
        return;
    reservoir_tape_free(d->tape);
    if (d->rng)
        gsl_rng_free(d->rng);
    free(d->mis);
    free(d->th);
    free(d);
}

static int reservoir_open(void **state, const struct patctl_option *o, int no,
                          struct patctl_device_desc *desc, char *err, size_t errlen)
{
    /* the driver's keys are the shape keys plus the truth keys */
    const char *known[sizeof(reservoir_shape_keys) / sizeof(reservoir_shape_keys[0]) +
                      sizeof(truth_keys) / sizeof(truth_keys[0])];
    int nk = 0;
    for (int i = 0; reservoir_shape_keys[i]; i++)
        known[nk++] = reservoir_shape_keys[i];
    for (int i = 0; truth_keys[i]; i++)
        known[nk++] = truth_keys[i];
    known[nk] = NULL;
    int rc = options_check_known2(o, no, known, sim_noise_keys, "reservoir", err, errlen);
    if (rc)
        return rc;
    reservoir_model m;
    double eta_err, p_err, phi_err, tnode_err, gain_err, out_gain, mism, loop, det, range;
    long mbits, abits;
    uint64_t seed;
    sim_noise nz;
    if ((rc = reservoir_options_shape(o, no, &m, err, errlen)) ||
        (rc = options_float(o, no, "eta_err", 0.05, &eta_err, err, errlen)) ||
        (rc = options_float(o, no, "p_err", 0.1, &p_err, err, errlen)) ||
        (rc = options_float(o, no, "phi_err", 0.05, &phi_err, err, errlen)) ||
        (rc = options_float(o, no, "tnode_err", 0.1, &tnode_err, err, errlen)) ||
        (rc = options_float(o, no, "gain_err", -0.06, &gain_err, err, errlen)) ||
        (rc = options_float(o, no, "out_gain", 1.03, &out_gain, err, errlen)) ||
        (rc = options_float(o, no, "mask_mismatch", 0.03, &mism, err, errlen)) ||
        (rc = options_int(o, no, "mask_bits", 8, &mbits, err, errlen)) ||
        (rc = options_float(o, no, "loop_noise", 5e-4, &loop, err, errlen)) ||
        (rc = options_float(o, no, "det_noise", 1e-3, &det, err, errlen)) ||
        (rc = options_int(o, no, "adc_bits", 12, &abits, err, errlen)) ||
        (rc = options_float(o, no, "adc_range", 0.5, &range, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 1, &seed, err, errlen)) ||
        (rc = sim_noise_parse(&nz, o, no, seed, err, errlen)))
        return rc;
    if (eta_err <= -1 || eta_err > 1 || p_err <= -1 || p_err > 1 || fabs(phi_err) > 1 ||
        tnode_err <= -0.9 || tnode_err > 10 || gain_err <= -1 || gain_err > 1 ||
        !(out_gain > 0 && out_gain <= 100) || mism < 0 || mism > 0.5 || mbits < 0 ||
        mbits > 24 || loop < 0 || loop > 1 || det < 0 || det > 10 || abits < 0 || abits > 24 ||
        !(range > 0)) {
        snprintf(err, errlen, "options eta_err/p_err/gain_err in (-1, 1], phi_err in [-1, 1], "
                 "tnode_err in (-0.9, 10], out_gain in (0, 100], mask_mismatch 0..0.5, mask_bits "
                 "and adc_bits 0..24, loop_noise 0..1, det_noise 0..10, adc_range > 0");
        return PATCTL_ERR_ARG;
    }
    reservoir_model truth = m;
    truth.k.eta = m.k.eta * (1.0 + eta_err);
    truth.k.p = m.k.p * (1.0 + p_err);
    truth.k.phi = m.k.phi + phi_err;
    truth.k.theta = m.k.theta / (1.0 + tnode_err); /* a slower node: smaller theta */
    truth.k.in_gain = 1.0 + gain_err;
    truth.k.out_gain = out_gain;
    if ((rc = reservoir_check(&truth, err, errlen)))
        return rc;
    reservoir_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->m = truth;
    d->mask_bits = (int)mbits;
    d->loop_noise = loop;
    d->det_noise = det;
    d->adc_bits = (int)abits;
    d->adc_range = range;
    d->nz = nz;
    d->seed = seed;
    d->mis = malloc(sizeof(double) * (size_t)m.nodes);
    d->th = malloc(sizeof(float) * (size_t)reservoir_n_theta(&m));
    d->rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng *r = sim_rng(seed, 0, PURPOSE_MISMATCH);
    if (!d->mis || !d->th || !d->rng || !r) {
        if (r)
            gsl_rng_free(r);
        reservoir_close(d);
        return PATCTL_ERR_NOMEM;
    }
    for (int i = 0; i < m.nodes; i++)
        d->mis[i] = 1.0 + (mism > 0 ? gsl_ran_gaussian(r, mism) : 0.0);
    gsl_rng_free(r);

    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "reservoir");
    snprintf(desc->about, sizeof(desc->about),
             "delay reservoir, %s node, %d virtual nodes, window %d x %d channel(s), last %d "
             "step(s) read, %d-bit ADC (simulated)", m.nonlin == RES_NL_SIN2 ? "sin^2" : "Mackey-Glass",
             m.nodes, m.window, m.channels, m.out_steps, d->adc_bits);
    desc->n_in = reservoir_n_in(&m);
    desc->n_out = reservoir_n_out(&m);
    snprintf(desc->in_unit, sizeof(desc->in_unit), "1");
    snprintf(desc->out_unit, sizeof(desc->out_unit), "V");
    desc->in_lo = -1.0f, desc->in_hi = 1.0f;
    desc->n_blocks = 3;
    desc->blocks[0] = (struct patctl_param_block){
        .name = "mask", .unit = "1", .about = "input mask M[i,c]: weight of channel c in virtual node i",
        .rows = m.nodes, .cols = m.channels, .lo = -1.0f, .hi = 1.0f, .max_step = 0.5f,
        .safe = 0.0f, .init_lo = -1.0f, .init_hi = 1.0f};
    desc->blocks[1] = (struct patctl_param_block){
        .name = "bias", .unit = "1", .about = "constant drive b[i] in virtual node i's slot",
        .rows = m.nodes, .cols = 1, .lo = -1.0f, .hi = 1.0f, .max_step = 0.25f, .safe = 0.0f,
        .init_lo = -0.1f, .init_hi = 0.1f};
    desc->blocks[2] = (struct patctl_param_block){
        .name = "gain", .unit = "1", .about = "input gain g: J = g (M u + b)",
        .rows = 1, .cols = 1, .lo = 0.0f, .hi = 4.0f, .max_step = 0.5f, .safe = 0.0f,
        .init_lo = 0.5f, .init_hi = 0.5f};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

/* the waveform generator's value of a mask or bias entry in [-1, 1] */
static double dac(const reservoir_dev *d, double v)
{
    if (d->mask_bits <= 0)
        return v;
    double codes = ldexp(1.0, d->mask_bits), lsb = 2.0 / (codes - 1.0);
    double c = floor((v + 1.0) / lsb + 0.5);
    c = c < 0 ? 0 : c > codes - 1 ? codes - 1 : c;
    return c * lsb - 1.0;
}

/* loop noise of row b: the stream of (seed, id, row0 + b) */
static void loop_noise(void *ctx, int b, double *n, long len)
{
    reservoir_dev *d = ctx;
    sim_rng_row(d->rng, d->seed, d->q->id, PURPOSE_LOOP, (uint64_t)(d->q->row0 + b));
    for (long j = 0; j < len; j++)
        n[j] = gsl_ran_gaussian_ziggurat(d->rng, d->loop_noise);
}

/* the truth's forward: the mask and bias as written, the loop noise of q */
static int truth_forward(reservoir_dev *d, const struct patctl_query *q, float *y)
{
    int N = d->m.nodes, C = d->m.channels;
    if (q->batch > reservoir_tape_capacity(d->tape)) {
        reservoir_tape *t = reservoir_tape_alloc(&d->m, q->batch);
        if (!t)
            return PATCTL_ERR_NOMEM;
        reservoir_tape_free(d->tape);
        d->tape = t;
    }
    for (int i = 0; i < N; i++) {
        for (int c = 0; c < C; c++)
            d->th[(long)i * C + c] = (float)(dac(d, q->theta[(long)i * C + c]) * d->mis[i]);
        d->th[(long)N * C + i] = (float)(dac(d, q->theta[(long)N * C + i]) * d->mis[i]);
    }
    d->th[(long)N * C + N] = q->theta[(long)N * C + N];
    d->q = q;
    int rc = reservoir_forward(&d->m, q->x, d->th, q->batch, y, d->tape,
                               d->loop_noise > 0 ? loop_noise : NULL, d);
    d->q = NULL;
    if (rc == PATCTL_ERR_NUMERIC)
        snprintf(d->err, sizeof(d->err), "reservoir state diverged (non-finite)");
    return rc;
}

static int reservoir_run(void *state, const struct patctl_query *q, float *y)
{
    reservoir_dev *d = state;
    if (q->batch == 0)
        return 0; /* the mask is played during a batch; the loop rests between batches */
    int rc = truth_forward(d, q, y);
    if (rc)
        return rc;
    int n_out = reservoir_n_out(&d->m);
    long len = (long)q->batch * n_out;
    if (d->det_noise > 0)
        for (int b = 0; b < q->batch; b++) {
            sim_rng_row(d->rng, d->seed, q->id, PURPOSE_DET, (uint64_t)(q->row0 + b));
            for (int k = 0; k < n_out; k++)
                y[(long)b * n_out + k] += (float)gsl_ran_gaussian_ziggurat(d->rng, d->det_noise);
        }
    sim_adc(y, len, d->adc_bits, d->adc_range);
    return sim_noise_apply(&d->nz, q->id, q->row0, y, q->batch, n_out);
}

static int reservoir_vjp(void *state, const struct patctl_query *q, const float *gy,
                         float *gx, float *gtheta)
{
    reservoir_dev *d = state;
    int N = d->m.nodes, C = d->m.channels;
    long nth = reservoir_n_theta(&d->m);
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)reservoir_n_in(&d->m));
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * (size_t)nth);
    if (q->batch == 0)
        return 0;
    float *y = malloc(sizeof(float) * (size_t)q->batch * (size_t)reservoir_n_out(&d->m));
    if (!y)
        return PATCTL_ERR_NOMEM;
    int rc = truth_forward(d, q, y);
    free(y);
    if (rc || (rc = reservoir_backward(&d->m, d->tape, gy, gx, gtheta, NULL)))
        return rc;
    if (gtheta) /* d(written)/d(set) = the slot's mismatch (rounding passed straight through) */
        for (int i = 0; i < N; i++) {
            for (int c = 0; c < C; c++)
                gtheta[(long)i * C + c] = (float)(gtheta[(long)i * C + c] * d->mis[i]);
            gtheta[(long)N * C + i] = (float)(gtheta[(long)N * C + i] * d->mis[i]);
        }
    return 0;
}

static int reservoir_make_safe(void *state)
{
    (void)state; /* zero mask, bias and gain: no drive, the loop decays to rest */
    return 0;
}

static const char *reservoir_last_error(void *state)
{
    reservoir_dev *d = state;
    return d && d->err[0] ? d->err : NULL;
}

const struct patctl_driver patctl_driver_reservoir = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "reservoir",
    .summary = "simulated delay-based reservoir computer (one nonlinear node, a delay loop of "
               "time-multiplexed virtual nodes): input windows in, virtual-node states out",
    .options_help =
        "nodes=50        virtual nodes N in the delay loop\n"
        "window=20       steps T per sample (one input clock period of nodes slots each)\n"
        "channels=1      inputs C per step (n_in = window * channels, limits +-1)\n"
        "out_steps=1     steps K read out at the end of the window (n_out = K * nodes)\n"
        "out_stride=1    steps between read-outs (the last K steps, every S-th)\n"
        "desync=1        loop delay tau = (nodes + desync) slots (0: synchronous, 1: a ring)\n"
        "nonlin=mg       node: mg (Mackey-Glass z/(1+|z|^p)) or sin2 (sin^2(z+phi)-sin^2 phi)\n"
        "eta=0.9         set feedback strength (nominal model = the set values)\n"
        "p=2             set Mackey-Glass exponent\n"
        "phi=0.785398    set bias phase of the sin2 node (rad)\n"
        "theta=1         set virtual-node spacing / node response time\n"
        "eta_err=0.05    truth: relative error of eta\n"
        "p_err=0.1       truth: relative error of p\n"
        "phi_err=0.05    truth: error of phi (rad)\n"
        "tnode_err=0.1   truth: relative error of the node's response time\n"
        "gain_err=-0.06  truth: relative error of the input (modulator) gain\n"
        "out_gain=1.03   truth: photodiode + amplifier gain (V; nominal 1)\n"
        "mask_mismatch=0.03  truth: relative std of per-slot drive errors (fixed from seed)\n"
        "mask_bits=8     waveform generator resolution of mask and bias over +-1, 0 = exact\n"
        "loop_noise=0.0005  additive noise in the loop per node and step (std)\n"
        "det_noise=0.001 photodiode amplifier noise per output (V, std)\n"
        "adc_bits=12     ADC resolution, 0 = off\n"
        "adc_range=0.5   ADC full scale +-adc_range (V; |x| <= eta/2 for mg with p = 2)\n"
        "seed=1          device seed (mismatch and noise streams)\n"
        SIM_NOISE_HELP,
    .flags = PATCTL_DRV_SEEDED,
    .open = reservoir_open,
    .run = reservoir_run,
    .vjp = reservoir_vjp,
    .make_safe = reservoir_make_safe,
    .close = reservoir_close,
    .last_error = reservoir_last_error,
};
