/* Simulated device: an analog nonlinear circuit (the electronic system of the
 * PAT paper).  Runs the physics of surrogate/circuit.c (see circuit.h and
 * devices/circuit/README.md) with a hidden truth that differs from the
 * nominal (datasheet) model by component tolerances:
 *   - R, L, C, the diodes' V_on and R_on, DAC and ADC gains, ADC offset,
 *   - optional per-slot DAC gain mismatch (dac_mismatch: relative std, drawn
 *     once from the device seed; outside the model family a grey-box fit
 *     uses);
 * and measures with
 *   - Johnson noise of the ADC input resistor: N(0, 4 k_B T R_noise B_noise)
 *     added to every sample,
 *   - an adc_bits ADC over [-adc_range, adc_range] (saturating),
 *   - the common noise/fault layer (devices/sim_noise.h), off by default.
 * Inputs x [B, n_in] are DAC voltages (V), one per time slot; parameters are
 * a gain g [n_in] (V/V) and a bias b [n_in] (V) per slot; outputs y
 * [B, n_in*sps] are ADC samples of the capacitor voltage (V).  The exact
 * VJP is that of the noiseless truth (noise is additive, the ADC rounding is
 * passed straight through). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "devices/circuit/circuit_dev.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/sim_noise.h"
#include "devices/sim_rng.h"

enum { PURPOSE_MISMATCH = 1, PURPOSE_JOHNSON = 2 };

#define K_BOLTZMANN 1.380649e-23 /* J/K */

typedef struct {
    circuit_model m;      /* the hidden truth */
    double *mis;          /* [n_in] per-slot DAC gain factor 1 + delta_s */
    float *th;            /* [2 n_in] theta with the mismatch applied */
    double johnson;       /* Johnson noise std, V */
    int adc_bits;         /* 0 = no quantisation */
    double adc_range;     /* ADC full scale +-adc_range, V */
    sim_noise nz;
    uint64_t seed;
    circuit_tape *tape;   /* grown on demand */
    char err[160];
} circuit_dev;

const char *const circuit_shape_keys[] = {"n_in", "sps", "substeps", "t_slot_us", "nvt", NULL};

static const char *const known[] = {
    "n_in", "sps", "substeps", "t_slot_us", "nvt", "r", "l_mh", "c_nf", "von", "ron",
    "in_gain", "out_gain", "out_offset", "dac_mismatch", "temperature", "noise_r", "noise_bw",
    "adc_bits", "adc_range", "seed", NULL,
};

int circuit_options_shape(const struct patctl_option *o, int n, circuit_model *m, char *err,
                          size_t errlen)
{
    long n_in, sps, sub;
    double t_us, nvt;
    int rc;
    if ((rc = options_int(o, n, "n_in", 32, &n_in, err, errlen)) ||
        (rc = options_int(o, n, "sps", 1, &sps, err, errlen)) ||
        (rc = options_int(o, n, "substeps", 10, &sub, err, errlen)) ||
        (rc = options_float(o, n, "t_slot_us", 10.0, &t_us, err, errlen)) ||
        (rc = options_float(o, n, "nvt", 0.05, &nvt, err, errlen)))
        return rc;
    if (n_in < 1 || n_in > 100000 || sps < 1 || sps > 1000 || sub < 1 || sub > 100000) {
        snprintf(err, errlen, "options n_in/sps/substeps: expected n_in 1..100000, sps 1..1000, "
                 "substeps 1..100000");
        return PATCTL_ERR_ARG;
    }
    *m = circuit_model_nominal((int)n_in, (int)sps);
    m->substeps = (int)sub;
    m->t_slot = t_us * 1e-6;
    m->nvt = nvt;
    return circuit_check(m, err, errlen);
}

int circuit_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o, int n,
                           circuit_model *m, char *err, size_t errlen)
{
    int rc = circuit_options_shape(o, n, m, err, errlen);
    if (rc)
        return rc;
    if (desc->n_in < 1 || desc->n_out < desc->n_in || desc->n_out % desc->n_in) {
        snprintf(err, errlen, "circuit: description does not have the circuit's shape (n_out = sps x n_in, "
                 "got n_in %d, n_out %d)", desc->n_in, desc->n_out);
        return PATCTL_ERR_ARG;
    }
    if (m->n_in != desc->n_in || circuit_n_out(m) != desc->n_out) {
        circuit_model g = circuit_model_nominal(desc->n_in, desc->n_out / desc->n_in);
        g.substeps = m->substeps, g.t_slot = m->t_slot, g.nvt = m->nvt;
        *m = g;
    }
    return circuit_check(m, err, errlen);
}

static void circuit_close(void *state)
{
    circuit_dev *d = state;
    if (!d)
        return;
    circuit_tape_free(d->tape);
    free(d->mis);
    free(d->th);
    free(d);
}

static int circuit_open(void **state, const struct patctl_option *o, int no,
                        struct patctl_device_desc *desc, char *err, size_t errlen)
{
    int rc = options_check_known2(o, no, known, sim_noise_keys, "circuit", err, errlen);
    if (rc)
        return rc;
    circuit_model m;
    circuit_consts k;
    double l_mh, c_nf, mism, temp, nr, nbw, range;
    long bits;
    uint64_t seed;
    sim_noise nz;
    if ((rc = circuit_options_shape(o, no, &m, err, errlen)) ||
        (rc = options_float(o, no, "r", 52.5, &k.r, err, errlen)) ||
        (rc = options_float(o, no, "l_mh", 1.08, &l_mh, err, errlen)) ||
        (rc = options_float(o, no, "c_nf", 110.0, &c_nf, err, errlen)) ||
        (rc = options_float(o, no, "von", 0.45, &k.von, err, errlen)) ||
        (rc = options_float(o, no, "ron", 25.0, &k.ron, err, errlen)) ||
        (rc = options_float(o, no, "in_gain", 0.97, &k.in_gain, err, errlen)) ||
        (rc = options_float(o, no, "out_gain", 1.03, &k.out_gain, err, errlen)) ||
        (rc = options_float(o, no, "out_offset", 0.005, &k.out_offset, err, errlen)) ||
        (rc = options_float(o, no, "dac_mismatch", 0.02, &mism, err, errlen)) ||
        (rc = options_float(o, no, "temperature", 300.0, &temp, err, errlen)) ||
        (rc = options_float(o, no, "noise_r", 1e7, &nr, err, errlen)) ||
        (rc = options_float(o, no, "noise_bw", 1e6, &nbw, err, errlen)) ||
        (rc = options_int(o, no, "adc_bits", 12, &bits, err, errlen)) ||
        (rc = options_float(o, no, "adc_range", 2.0, &range, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 1, &seed, err, errlen)) ||
        (rc = sim_noise_parse(&nz, o, no, seed, err, errlen)))
        return rc;
    k.l = l_mh * 1e-3;
    k.c = c_nf * 1e-9;
    m.k = k;
    if ((rc = circuit_check(&m, err, errlen)))
        return rc;
    if (mism < 0 || mism > 0.5 || temp < 0 || nr < 0 || nbw < 0 || bits < 0 || bits > 24 ||
        !(range > 0)) {
        snprintf(err, errlen, "options dac_mismatch/temperature/noise_r/noise_bw/adc_bits/"
                 "adc_range: expected dac_mismatch 0..0.5, temperature, noise_r, noise_bw >= 0, "
                 "adc_bits 0..24, adc_range > 0");
        return PATCTL_ERR_ARG;
    }
    circuit_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    d->m = m;
    d->johnson = sqrt(4.0 * K_BOLTZMANN * temp * nr * nbw);
    d->adc_bits = (int)bits;
    d->adc_range = range;
    d->nz = nz;
    d->seed = seed;
    d->mis = malloc(sizeof(double) * (size_t)m.n_in);
    d->th = malloc(sizeof(float) * 2 * (size_t)m.n_in);
    gsl_rng *r = sim_rng(seed, 0, PURPOSE_MISMATCH);
    if (!d->mis || !d->th || !r) {
        if (r)
            gsl_rng_free(r);
        circuit_close(d);
        return PATCTL_ERR_NOMEM;
    }
    for (int s = 0; s < m.n_in; s++)
        d->mis[s] = 1.0 + (mism > 0 ? gsl_ran_gaussian(r, mism) : 0.0);
    gsl_rng_free(r);

    memset(desc, 0, sizeof(*desc));
    snprintf(desc->model, sizeof(desc->model), "circuit");
    snprintf(desc->about, sizeof(desc->about),
             "RLC + diode pair, %d time slots of %.3g us, %d ADC sample(s) per slot, %d-bit ADC "
             "(simulated)", m.n_in, m.t_slot * 1e6, m.sps, d->adc_bits);
    desc->n_in = m.n_in;
    desc->n_out = circuit_n_out(&m);
    snprintf(desc->in_unit, sizeof(desc->in_unit), "V");
    snprintf(desc->out_unit, sizeof(desc->out_unit), "V");
    desc->in_lo = -1.0f, desc->in_hi = 1.0f;
    desc->n_blocks = 2;
    desc->blocks[0] = (struct patctl_param_block){
        .name = "gain", .unit = "V/V", .about = "DAC gain of each time slot",
        .rows = m.n_in, .cols = 1, .lo = -2.0f, .hi = 2.0f, .max_step = 0.25f, .safe = 0.0f,
        .init_lo = 0.5f, .init_hi = 1.5f};
    desc->blocks[1] = (struct patctl_param_block){
        .name = "bias", .unit = "V", .about = "bias voltage added in each time slot",
        .rows = m.n_in, .cols = 1, .lo = -1.0f, .hi = 1.0f, .max_step = 0.1f, .safe = 0.0f,
        .init_lo = -0.1f, .init_hi = 0.1f};
    desc->flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    *state = d;
    return 0;
}

/* the truth's forward: theta with the per-slot DAC mismatch applied */
static int truth_forward(circuit_dev *d, const struct patctl_query *q, float *y)
{
    int n = d->m.n_in;
    if (q->batch > circuit_tape_capacity(d->tape)) {
        circuit_tape *t = circuit_tape_alloc(&d->m, q->batch);
        if (!t)
            return PATCTL_ERR_NOMEM;
        circuit_tape_free(d->tape);
        d->tape = t;
    }
    for (int s = 0; s < n; s++) {
        d->th[s] = (float)(q->theta[s] * d->mis[s]);
        d->th[n + s] = (float)(q->theta[n + s] * d->mis[s]);
    }
    int rc = circuit_forward(&d->m, q->x, d->th, q->batch, y, d->tape);
    if (rc == PATCTL_ERR_NUMERIC)
        snprintf(d->err, sizeof(d->err), "integration diverged (non-finite state)");
    return rc;
}

static int circuit_run(void *state, const struct patctl_query *q, float *y)
{
    circuit_dev *d = state;
    if (q->batch == 0)
        return 0; /* the DAC levels are applied slot by slot during a batch */
    int rc = truth_forward(d, q, y);
    if (rc)
        return rc;
    int n_out = circuit_n_out(&d->m);
    long len = (long)q->batch * n_out;
    if (d->johnson > 0) {
        /* row b's noise from the stream of its absolute row q->row0 + b */
        gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
        if (!r)
            return PATCTL_ERR_NOMEM;
        for (int b = 0; b < q->batch; b++) {
            sim_rng_row(r, d->seed, q->id, PURPOSE_JOHNSON, (uint64_t)(q->row0 + b));
            for (int k = 0; k < n_out; k++)
                y[(long)b * n_out + k] += (float)gsl_ran_gaussian_ziggurat(r, d->johnson);
        }
        gsl_rng_free(r);
    }
    sim_adc(y, len, d->adc_bits, d->adc_range);
    return sim_noise_apply(&d->nz, q->id, q->row0, y, q->batch, n_out);
}

static int circuit_vjp(void *state, const struct patctl_query *q, const float *gy,
                       float *gx, float *gtheta)
{
    circuit_dev *d = state;
    int n = d->m.n_in;
    if (gx)
        memset(gx, 0, sizeof(float) * (size_t)q->batch * (size_t)n);
    if (gtheta)
        memset(gtheta, 0, sizeof(float) * 2 * (size_t)n);
    if (q->batch == 0)
        return 0;
    float *y = malloc(sizeof(float) * (size_t)q->batch * (size_t)circuit_n_out(&d->m));
    if (!y)
        return PATCTL_ERR_NOMEM;
    int rc = truth_forward(d, q, y);
    free(y);
    if (rc || (rc = circuit_backward(&d->m, d->tape, gy, gx, gtheta, NULL)))
        return rc;
    if (gtheta)
        for (int s = 0; s < 2 * n; s++)
            gtheta[s] = (float)(gtheta[s] * d->mis[s % n]);
    return 0;
}

static int circuit_make_safe(void *state)
{
    (void)state; /* zero gain and bias: the circuit rests between batches */
    return 0;
}

static const char *circuit_last_error(void *state)
{
    circuit_dev *d = state;
    return d && d->err[0] ? d->err : NULL;
}

const struct patctl_driver patctl_driver_circuit = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "circuit",
    .summary = "simulated analog circuit (electronic): time-multiplexed voltages through an RLC "
               "with a diode pair, ADC samples out",
    .options_help =
        "n_in=32         time slots = input voltages (V, limits +-1)\n"
        "sps=1           ADC samples per slot (outputs = n_in * sps)\n"
        "substeps=10     RK4 steps per slot (a multiple of sps)\n"
        "t_slot_us=10    slot duration (us)\n"
        "nvt=0.05        diode softness n V_T (V), same in truth and model\n"
        "r=52.5          truth: series resistance (ohm; nominal 50)\n"
        "l_mh=1.08       truth: inductance (mH; nominal 1)\n"
        "c_nf=110        truth: capacitance (nF; nominal 100)\n"
        "von=0.45        truth: diode turn-on voltage (V; nominal 0.5)\n"
        "ron=25          truth: diode on-resistance (ohm; nominal 20)\n"
        "in_gain=0.97 out_gain=1.03 out_offset=0.005   truth: DAC/ADC calibration\n"
        "dac_mismatch=0.02  truth: relative std of per-slot DAC gain errors\n"
        "temperature=300 noise_r=1e7 noise_bw=1e6   Johnson noise sqrt(4 k T R B) (K, ohm, Hz)\n"
        "adc_bits=12     ADC resolution, 0 = off\n"
        "adc_range=2     ADC full scale +-adc_range (V)\n"
        "seed=1          device seed (mismatch and noise streams)\n"
        SIM_NOISE_HELP,
    .flags = PATCTL_DRV_SEEDED,
    .open = circuit_open,
    .run = circuit_run,
    .vjp = circuit_vjp,
    .make_safe = circuit_make_safe,
    .close = circuit_close,
    .last_error = circuit_last_error,
};
