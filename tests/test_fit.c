/* Surrogate fitting: .npy I/O, the oscillator tangent (JVP) against finite
 * differences and against the exact VJP, grey-box recovery of known hidden
 * constants (a table of problems, like GSL's tests), the coupling
 * correction, the MLP's VJP and training, and data collection through the
 * safety boundary. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "controller/collect.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/sim_rng.h"
#include "gradcheck.h"
#include "controller/surrogates.h"
#include "surrogate/fit_consts.h"
#include "surrogate/fit_online.h"
#include "surrogate/fit_npy.h"
#include "surrogate/fit_osc.h"
#include "surrogate/fit_set.h"
#include "surrogate/mlp.h"

static void fill(float *v, long n, float scale, unsigned seed)
{
    for (long i = 0; i < n; i++)
        v[i] = scale * (float)(2.0 * gc_uniform(&seed) - 1.0);
}

/* ---- .npy ---- */

static void test_npy_roundtrip(void **state)
{
    (void)state;
    char dir[] = "/tmp/patctl-test-npy-XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/a.npy", dir);
    float a[2 * 3 * 4];
    fill(a, 24, 1.0f, 5);
    long shape[3] = {2, 3, 4}, got[FIT_NPY_MAX_DIM];
    assert_int_equal(fit_npy_write(path, NPY_F32, 3, shape, a, err, sizeof(err)), 0);
    /* header padded to a multiple of 64 */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    assert_int_equal(ftell(f), 128 + 24 * 4);
    fclose(f);
    void *data;
    int nd;
    assert_int_equal(fit_npy_read(path, NPY_F32, &nd, got, &data, err, sizeof(err)), 0);
    assert_int_equal(nd, 3);
    assert_int_equal(got[0], 2), assert_int_equal(got[1], 3), assert_int_equal(got[2], 4);
    assert_memory_equal(data, a, sizeof(a));
    free(data);
    /* wrong dtype, wrong shape: clear errors naming the file */
    assert_int_equal(fit_npy_read(path, NPY_I32, &nd, got, &data, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "a.npy"));
    long want[2] = {2, 12};
    assert_int_equal(fit_npy_read_shape(path, NPY_F32, 2, want, got, &data, err, sizeof(err)),
                     PATCTL_ERR_FORMAT);
    /* 1-D int32 */
    int32_t iv[5] = {1, -2, 3, 4, 5};
    long s1 = 5;
    assert_int_equal(fit_npy_write(path, NPY_I32, 1, &s1, iv, err, sizeof(err)), 0);
    assert_int_equal(fit_npy_read(path, NPY_I32, &nd, got, &data, err, sizeof(err)), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(got[0], 5);
    assert_memory_equal(data, iv, sizeof(iv));
    free(data);
    /* truncated file */
    f = fopen(path, "r+b");
    assert_int_equal(ftruncate(fileno(f), 70), 0);
    fclose(f);
    assert_int_equal(fit_npy_read(path, NPY_I32, &nd, got, &data, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "truncated"));
    remove(path);
    rmdir(dir);
}

/* ---- the tangent ---- */

enum { N = 6, B = 3 };

static osc_model gap_model(float *qn)
{
    float raw[N * N];
    fill(raw, N * N, 0.2f, 5);
    osc_laplacian_sym(qn, raw, N);
    osc_model m = osc_model_nominal(N);
    m.k = (osc_consts){0.1f, 0.8f, 1.2f, 0.05f, 0.9f, -0.03f};
    m.q_noise = qn;
    return m;
}

/* directional derivative by central differences in double of the float model */
static void fd_dir(const osc_model *m0, const float *C, const float *e, const float *x, const osc_dir *d,
                   double eps, double *out)
{
    osc_model mp = *m0, mm = *m0;
    float Mp[N * N], Mm[N * N], yp[B * N], ym[B * N];
    for (int i = 0; i < OSC_N_CONSTS; i++) {
        *fit_osc_const_ptr(&mp.k, i) += (float)eps * *fit_osc_const_ptr((osc_consts *)&d->dk, i);
        *fit_osc_const_ptr(&mm.k, i) -= (float)eps * *fit_osc_const_ptr((osc_consts *)&d->dk, i);
    }
    if (d->dM) {
        for (int i = 0; i < N * N; i++) {
            Mp[i] = m0->q_noise[i] + (float)eps * d->dM[i];
            Mm[i] = m0->q_noise[i] - (float)eps * d->dM[i];
        }
        mp.q_noise = Mp, mm.q_noise = Mm;
    }
    osc_forward(&mp, C, e, x, NULL, B, yp, NULL);
    osc_forward(&mm, C, e, x, NULL, B, ym, NULL);
    for (int i = 0; i < B * N; i++)
        out[i] = ((double)yp[i] - ym[i]) / (2 * eps);
}

static void test_jvp_against_fd_and_vjp(void **state)
{
    (void)state;
    float qn[N * N], C[N * N], e[N], x[B * N], dMraw[N * N], dM[N * N];
    osc_model m = gap_model(qn);
    fill(C, N * N, 0.5f, 11);
    fill(e, N, 0.5f, 12);
    fill(x, B * N, 0.8f, 13);
    fill(dMraw, N * N, 1.0f, 14);
    osc_laplacian_sym(dM, dMraw, N);
    enum { T = OSC_N_CONSTS + 2 };
    osc_dir dirs[T];
    memset(dirs, 0, sizeof(dirs));
    for (int i = 0; i < OSC_N_CONSTS; i++)
        *fit_osc_const_ptr(&dirs[i].dk, i) = 1.0f;
    dirs[6].dM = dM;                               /* a coupling direction */
    dirs[7].dk = (osc_consts){0.3f, -0.2f, 0.1f, 0.5f, -0.4f, 0.2f};  /* a mixed one */
    dirs[7].dM = dM;
    fit_osc_work *w = fit_osc_work_alloc(N, B, T);
    float y[B * N], yref[B * N], dy[T * B * N];
    assert_int_equal(fit_osc_jvp(&m, C, e, x, B, dirs, T, y, dy, w), 0);
    osc_forward(&m, C, e, x, NULL, B, yref, NULL);
    for (int i = 0; i < B * N; i++)
        assert_float_equal(y[i], yref[i], 1e-5);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double fd[B * N], num = 0, den = 0;
        fd_dir(&m, C, e, x, &dirs[t], 1e-2, fd);
        for (int i = 0; i < B * N; i++) {
            num += (dy[t * B * N + i] - fd[i]) * (dy[t * B * N + i] - fd[i]);
            den += fd[i] * fd[i];
        }
        double rel = sqrt(num / fmax(den, 1e-12));
        printf("  jvp direction %d: |jvp - fd| / |fd| = %.2e\n", t, rel);
        worst = fmax(worst, rel);
    }
    assert_true(worst < 2e-3);
    /* adjoint consistency: r . (J dk) == (J^T r) . dk, J^T r from osc_backward */
    osc_tape *tp = osc_tape_alloc(N, B, m.steps);
    float r[B * N];
    fill(r, B * N, 1.0f, 15);
    osc_forward(&m, C, e, x, NULL, B, yref, tp);
    osc_consts gk = {0};
    osc_backward(&m, tp, r, NULL, NULL, NULL, &gk);
    for (int i = 0; i < OSC_N_CONSTS; i++) {
        double fwd = 0;
        for (int j = 0; j < B * N; j++)
            fwd += (double)r[j] * dy[i * B * N + j];
        double adj = *fit_osc_const_ptr(&gk, i);
        printf("  constant %-14s tangent %+.6e  adjoint %+.6e\n", fit_osc_const_name(i), fwd, adj);
        assert_true(fabs(fwd - adj) <= 1e-4 * fmax(1.0, fabs(adj)));
    }
    osc_tape_free(tp);
    fit_osc_work_free(w);
}

/* ---- collection and grey-box recovery of known constants ---- */

static device *open_osc(const char *opts, uint64_t seed)
{
    struct patctl_option *o = NULL;
    int no = options_parse(opts, &o);
    assert_true(no >= 0);
    device *d = NULL;
    char err[256] = "";
    int rc = device_open(&d, "osc", "oscillators", o, no, seed, err, sizeof(err));
    if (rc)
        printf("open: %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    return d;
}

static void collect_from(device *d, long K, int Bs, double xlo, double xhi, double tscale,
                         collect_design design, uint64_t seed, fit_set *set)
{
    collect_options co;
    collect_default_options(&co);
    co.settings = K, co.per_setting = Bs, co.x_lo = xlo, co.x_hi = xhi;
    co.theta_scale = tscale, co.design = design, co.seed = seed;
    co.repeat_settings = 4, co.repeat_inputs = 8, co.repeats = 6;
    char err[256] = "";
    int rc = collect_run(d, &co, set, err, sizeof(err));
    if (rc)
        printf("collect: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(fit_set_check(set, err, sizeof(err)), 0);
}

static void test_collect(void **state)
{
    (void)state;
    device *d = open_osc("n=5,eta=0.1,j_noise=0.1,sigma=0.02", 3);
    fit_set s;
    collect_from(d, 20, 10, -1.0, 1.0, 1.0, DESIGN_LHS, 1, &s);
    assert_int_equal(s.S, 200);
    assert_int_equal(s.K, 20);
    assert_int_equal(s.G, 32);
    assert_int_equal(s.R, 6);
    /* every query went through the boundary: K + repeats * R */
    assert_int_equal(d->st.queries, 20 + 4 * 6);
    /* inputs in range; LHS: each input column has one sample per stratum */
    for (int j = 0; j < 5; j++) {
        int hits[200] = {0};
        for (long i = 0; i < s.S; i++) {
            float v = s.x[i * 5 + j];
            assert_true(v >= -1.0f && v <= 1.0f);
            int b = (int)floor((v + 1.0) / 2.0 * 200);
            hits[b < 200 ? b : 199]++;
        }
        for (int b = 0; b < 200; b++)
            assert_int_equal(hits[b], 1);
    }
    /* settings inside the init range */
    float init = 1.0f / sqrtf(5.0f);
    for (long i = 0; i < s.K * s.n_theta; i++)
        assert_true(fabsf(s.theta[i]) <= init + 1e-6f);
    /* noise floor ~ sigma times the sensitivity of q(t_end) to q(0) (~0.9) */
    double nf = fit_set_noise_rms(&s);
    printf("  noise floor rms %.5f (sigma 0.02)\n", nf);
    assert_true(nf > 0.014 && nf < 0.024);
    fit_set_free(&s);
    device_close(&d);
    /* without noise, repeats are identical: floor 0 */
    d = open_osc("n=5,eta=0.1,j_noise=0.1,sigma=0", 3);
    collect_from(d, 6, 10, -1.0, 1.0, 1.0, DESIGN_UNIFORM, 2, &s);
    assert_true(fit_set_noise_rms(&s) == 0.0);
    fit_set_free(&s);
    device_close(&d);
}

/* A table of problems with known answers: hidden constants inside the model
 * family (no coupling noise); the fit must recover each within 2 SE. */
typedef struct {
    int n;
    osc_consts truth;
    double sigma;
    long K;
    int Bs;
    uint64_t seed;
} problem;

static void test_greybox_recovers_constants(void **state)
{
    (void)state;
    static const problem table[] = {
        {8, {0.10f, 0.80f, 1.20f, 0.05f, 0.90f, -0.03f}, 0.02, 40, 20, 1},
        {16, {-0.05f, 1.10f, 0.90f, -0.10f, 1.10f, 0.02f}, 0.01, 30, 20, 2},
        {4, {0.20f, 1.00f, 1.00f, 0.00f, 1.00f, 0.00f}, 0.05, 60, 20, 3},
        {12, {0.05f, 1.30f, 0.80f, 0.20f, 0.70f, 0.10f}, 0.03, 400, 25, 4},
    };
    for (size_t p = 0; p < sizeof(table) / sizeof(table[0]); p++) {
        const problem *P = &table[p];
        char opts[256];
        snprintf(opts, sizeof(opts),
                 "n=%d,eta=%g,coupling_gain=%g,in_gain=%g,in_offset=%g,out_gain=%g,out_offset=%g,"
                 "j_noise=0,sigma=%g", P->n, P->truth.eta, P->truth.coupling_gain, P->truth.in_gain,
                 P->truth.in_offset, P->truth.out_gain, P->truth.out_offset, P->sigma);
        device *d = open_osc(opts, 100 + P->seed);
        fit_set s;
        collect_from(d, P->K, P->Bs, -1.5, 1.5, 2.0, DESIGN_LHS, P->seed, &s);
        osc_model m = osc_model_nominal(P->n);
        fit_osc_options o;
        fit_osc_default_options(&o);
        fit_osc_result r;
        memset(&r, 0, sizeof(r));
        char err[256] = "";
        int rc = fit_osc_consts(&m, &s, NULL, &o, &r, err, sizeof(err));
        if (rc)
            printf("fit: %s\n", err);
        assert_int_equal(rc, 0);
        printf("  problem %zu (n=%d, sigma=%g): %d iterations, chi2/dof %.3g, noise floor^2 %.3g\n", p,
               P->n, P->sigma, r.iters, r.chi2_dof, pow(fit_set_noise_rms(&s), 2));
        osc_consts truth = P->truth;
        for (int i = 0; i < OSC_N_CONSTS; i++) {
            double f = *fit_osc_const_ptr(&r.k, i), se = *fit_osc_const_ptr(&r.se, i);
            double t = *fit_osc_const_ptr(&truth, i);
            printf("    %-14s truth %+.4f  fit %+.5f +- %.5f  (%+.2f SE)\n", fit_osc_const_name(i), t, f,
                   se, (f - t) / se);
            assert_true(se > 0);
            assert_true(fabs(f - t) <= 2.0 * se);
        }
        /* the residual is the noise: chi2/dof ~ the noise floor squared */
        double nf2 = pow(fit_set_noise_rms(&s), 2);
        assert_true(r.chi2_dof < 1.5 * nf2 && r.chi2_dof > 0.5 * nf2);
        fit_set_free(&s);
        device_close(&d);
    }
}

/* The standard errors are calibrated: over many seeds of one problem about
 * 95 % of the fitted constants lie within 2 SE of the truth (each seed is a
 * new device noise stream and a new design). */
static void test_greybox_se_coverage(void **state)
{
    (void)state;
    const osc_consts truth = {0.08f, 0.9f, 1.1f, -0.05f, 1.05f, 0.04f};
    int within = 0, total = 0;
    double worst = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        char opts[256];
        snprintf(opts, sizeof(opts),
                 "n=6,eta=%g,coupling_gain=%g,in_gain=%g,in_offset=%g,out_gain=%g,out_offset=%g,"
                 "j_noise=0,sigma=0.03", truth.eta, truth.coupling_gain, truth.in_gain, truth.in_offset,
                 truth.out_gain, truth.out_offset);
        device *d = open_osc(opts, 1000 + seed);
        fit_set s;
        collect_from(d, 20, 15, -1.5, 1.5, 2.0, DESIGN_UNIFORM, seed, &s);
        osc_model m = osc_model_nominal(6);
        fit_osc_options o;
        fit_osc_default_options(&o);
        fit_osc_result r;
        memset(&r, 0, sizeof(r));
        char err[256] = "";
        assert_int_equal(fit_osc_consts(&m, &s, NULL, &o, &r, err, sizeof(err)), 0);
        osc_consts t = truth;
        for (int i = 0; i < OSC_N_CONSTS; i++) {
            double z = (*fit_osc_const_ptr(&r.k, i) - *fit_osc_const_ptr(&t, i)) /
                       *fit_osc_const_ptr(&r.se, i);
            within += fabs(z) <= 2.0;
            total++;
            worst = fmax(worst, fabs(z));
        }
        fit_set_free(&s);
        device_close(&d);
    }
    printf("  %d of %d constants within 2 SE (%.0f %%; 95 %% expected), worst |z| %.2f\n", within, total,
           100.0 * within / total, worst);
    assert_true(within >= 0.8 * total);
    assert_true(worst < 4.0);
}

/* truth outside the constants' family: coupling noise; the correction
 * D = L(sym(A)) is fitted and approaches the hidden Q_noise */
/* the oscillator driver's hidden coupling Qn [n,n] for its seed, rebuilt as
 * the driver does */
static void hidden_coupling(uint64_t seed, int n, double jn, float *qn)
{
    float *raw = malloc(sizeof(float) * (size_t)(n * n));
    gsl_rng *g = sim_rng(seed, 0, 1);
    sim_gaussian_fill(g, raw, n * n, jn);
    gsl_rng_free(g);
    osc_laplacian_sym(qn, raw, n);
    free(raw);
}

static void test_greybox_coupling_correction(void **state)
{
    (void)state;
    const int n = 8;
    const double jn = 0.3;
    uint64_t seed = 77;
    char opts[160];
    snprintf(opts, sizeof(opts), "n=%d,eta=0.1,j_noise=%g,sigma=0.01,seed=%llu", n, jn,
             (unsigned long long)seed);
    device *d = open_osc(opts, 0);
    fit_set s;
    collect_from(d, 100, 30, -1.5, 1.5, 2.0, DESIGN_LHS, 5, &s);
    uint8_t *role = fit_split(&s, 0.15, 0.15, 1);
    float qn[64];
    hidden_coupling(seed, n, jn, qn);

    osc_model m0 = osc_model_nominal(n), m = m0;
    fit_osc_options o;
    fit_osc_default_options(&o);
    fit_osc_result r0, r;
    memset(&r0, 0, sizeof(r0));
    char err[256] = "";
    assert_int_equal(fit_osc_consts(&m0, &s, role, &o, &r0, err, sizeof(err)), 0);
    o.coupling = 1;
    float *D = NULL;
    int rc = fit_osc_greybox(&m, &D, &s, role, &o, &r, err, sizeof(err));
    if (rc)
        printf("fit: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(D);
    double num = 0, den = 0;
    for (int i = 0; i < n * n; i++) {
        num += (D[i] - qn[i]) * (D[i] - qn[i]);
        den += qn[i] * qn[i];
    }
    surrogate *s0 = surrogate_osc_fitted_new(&m0, NULL), *s1 = surrogate_osc_fitted_new(&m, D);
    fit_metrics t0, t1;
    assert_int_equal(fit_evaluate(s0, &s, role, FIT_TEST, &t0, NULL, NULL), 0);
    assert_int_equal(fit_evaluate(s1, &s, role, FIT_TEST, &t1, NULL, NULL), 0);
    printf("  constants only: held-out rms %.5f (ratio to noise %.2f); with D: %.5f (ratio %.2f); "
           "|D - Qn| / |Qn| = %.3f; eta %.4f +- %.4f (truth 0.1)\n",
           t0.rmse, t0.ratio, t1.rmse, t1.ratio, sqrt(num / den), m.k.eta, r.se.eta);
    assert_true(sqrt(num / den) < 0.15);
    assert_true(t1.ratio < 1.3);
    assert_true(t0.ratio > 2.0 * t1.ratio);
    assert_true(fabs(m.k.eta - 0.1) < 3 * r.se.eta + 0.01);
    surrogate_destroy(&s0);
    surrogate_destroy(&s1);
    free(D);
    free(role);
    fit_set_free(&s);
    device_close(&d);
}

/* The coupling input osc_tape_coupling_input is the design matrix of the LS
 * coupling fit: c F dD must predict the change of the outputs for a small
 * symmetric change dD of the coupling (exact to first order only in the
 * limit of a short integration; here to within 15 %). */
static void test_coupling_input_linearises(void **state)
{
    (void)state;
    float qn[N * N], C[N * N], e[N], x[B * N], dD[N * N], raw[N * N];
    osc_model m = gap_model(qn);
    fill(C, N * N, 0.1f, 11);
    fill(e, N, 0.1f, 12);
    fill(x, B * N, 1.0f, 13);
    fill(raw, N * N, 1.0f, 14);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            dD[i * N + j] = 0.5f * (raw[i * N + j] + raw[j * N + i]);
    osc_tape *t = osc_tape_alloc(N, B, m.steps);
    float y[B * N], F[B * N];
    assert_int_equal(osc_tape_coupling_input(t, F), PATCTL_ERR_ARG); /* nothing recorded yet */
    assert_int_equal(osc_forward(&m, C, e, x, NULL, B, y, t), 0);
    assert_int_equal(osc_tape_coupling_input(t, F), 0);
    osc_dir dir = {.dM = dD};
    double fd[B * N], num = 0, den = 0, c = m.k.out_gain * m.t_end * m.t_end / 2;
    fd_dir(&m, C, e, x, &dir, 1e-3, fd);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            double pred = 0;
            for (int j = 0; j < N; j++)
                pred += c * F[b * N + j] * dD[j * N + i];
            num += (pred - fd[b * N + i]) * (pred - fd[b * N + i]);
            den += fd[b * N + i] * fd[b * N + i];
        }
    printf("  linear coupling response vs finite differences: relative error %.3f\n", sqrt(num / den));
    assert_true(den > 0);
    assert_true(sqrt(num / den) < 0.15);
    osc_tape_free(t);
}

/* osc_tape_self_sensitivity against central differences of y_i in x_i:
 * exact without coupling, close with a weak one */
static void test_self_sensitivity(void **state)
{
    (void)state;
    float qn[N * N], C[N * N], e[N], x[B * N], J[B * N], y[B * N], yp[B * N], ym[B * N], xp[B * N];
    for (int pass = 0; pass < 2; pass++) {
        osc_model m = gap_model(qn);
        fill(C, N * N, pass ? 0.05f : 0.0f, 21);
        fill(e, N, 0.2f, 22);
        fill(x, B * N, 1.5f, 23);
        float qd[N * N];
        memset(qd, 0, sizeof(qd));
        for (int i = 0; i < N; i++) /* strong self terms of both signs */
            qd[i * N + i] = (i % 2 ? 6.0f : -4.0f) + (pass ? qn[i * N + i] * 0.1f : 0.0f);
        m.q_noise = qd;
        m.k.coupling_gain = 1.0f;
        osc_tape *t = osc_tape_alloc(N, B, m.steps);
        assert_int_equal(osc_forward(&m, C, e, x, NULL, B, y, t), 0);
        assert_int_equal(osc_tape_self_sensitivity(&m, t, J), 0);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            const float eps = 1e-2f;
            memcpy(xp, x, sizeof(xp));
            for (int b = 0; b < B; b++) xp[b * N + i] += eps;
            osc_forward(&m, C, e, xp, NULL, B, yp, NULL);
            for (int b = 0; b < B; b++) xp[b * N + i] -= 2 * eps;
            osc_forward(&m, C, e, xp, NULL, B, ym, NULL);
            for (int b = 0; b < B; b++) {
                double fd = ((double)yp[b * N + i] - ym[b * N + i]) / (2 * eps) / m.k.in_gain;
                worst = fmax(worst, fabs(fd - J[b * N + i]) / fmax(1.0, fabs(fd)));
            }
        }
        printf("  self-sensitivity vs central differences (%s coupling): worst relative error %.2g\n",
               pass ? "weak" : "no", worst);
        assert_true(worst < (pass ? 0.05 : 2e-3));
        osc_tape_free(t);
    }
}

/* The LS coupling method (for large devices), from the nominal model with
 * the constants fixed (--fix-consts): the device's eta = 0.1 is outside
 * what D can express exactly, but the free diagonal of D absorbs most of
 * it (so with LS the constants are not identifiable next to D). */
static void test_greybox_coupling_ls(void **state)
{
    (void)state;
    const int n = 24;
    const double jn = 0.3;
    uint64_t seed = 78;
    char opts[160];
    snprintf(opts, sizeof(opts), "n=%d,eta=0.1,j_noise=%g,sigma=0.01,seed=%llu", n, jn,
             (unsigned long long)seed);
    device *d = open_osc(opts, 0);
    fit_set s;
    collect_from(d, 120, 40, -0.5, 1.5, 1.0, DESIGN_LHS, 6, &s);
    uint8_t *role = fit_split(&s, 0.15, 0.15, 2);
    float *qn = malloc(sizeof(float) * n * n);
    hidden_coupling(seed, n, jn, qn);

    osc_model m0 = osc_model_nominal(n), m = m0;
    fit_osc_options o;
    fit_osc_default_options(&o);
    o.coupling = 1, o.method = FIT_COUPLING_LS, o.rounds = 1, o.mask = 0;
    fit_osc_result r;
    char err[256] = "";
    float *D = NULL;
    int rc = fit_osc_greybox(&m, &D, &s, role, &o, &r, err, sizeof(err));
    if (rc)
        printf("fit: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(D);
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            assert_true(D[i * n + j] == D[j * n + i]); /* symmetric, as osc_backward needs */
            if (i != j) { /* the diagonal also absorbs the constants' errors */
                num += (D[i * n + j] - qn[i * n + j]) * (D[i * n + j] - qn[i * n + j]);
                den += qn[i * n + j] * qn[i * n + j];
            }
        }
    surrogate *s0 = surrogate_osc_fitted_new(&m0, NULL), *s1 = surrogate_osc_fitted_new(&m, D);
    fit_metrics t0, t1;
    assert_int_equal(fit_evaluate(s0, &s, role, FIT_TEST, &t0, NULL, NULL), 0);
    assert_int_equal(fit_evaluate(s1, &s, role, FIT_TEST, &t1, NULL, NULL), 0);
    printf("  LS: nominal held-out ratio to noise %.2f; fitted %.2f; off-diagonal |D - Qn| / |Qn| = %.3f; "
           "%d iterations\n", t0.ratio, t1.ratio, sqrt(num / den), r.epochs_done);
    assert_true(sqrt(num / den) < 0.15);
    assert_true(t1.ratio < 1.3);
    assert_true(t0.ratio > 3.0 * t1.ratio);
    assert_true(m.k.eta == 0.0f && r.rounds_done == 1);
    surrogate_destroy(&s1);
    free(D);

    /* with the device coupling's structure kept (--laplacian), rounds of LS
     * and LM on the constants: D = L(sym A) exactly, eta moves towards 0.1 */
    m = m0;
    o.laplacian = 1, o.mask = OSC_K_ALL, o.rounds = 3;
    rc = fit_osc_greybox(&m, &D, &s, role, &o, &r, err, sizeof(err));
    if (rc)
        printf("fit: %s\n", err);
    assert_int_equal(rc, 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double off = 0;
        for (int j = 0; j < n; j++)
            off += j != i ? D[i * n + j] : 0.0;
        worst = fmax(worst, fabs(D[i * n + i] + off));
    }
    s1 = surrogate_osc_fitted_new(&m, D);
    assert_int_equal(fit_evaluate(s1, &s, role, FIT_TEST, &t1, NULL, NULL), 0);
    printf("  LS, Laplacian structure + constants: held-out ratio %.2f; eta %.4f +- %.4f (truth 0.1); "
           "worst |diag + off-diagonal sum| %.2g\n", t1.ratio, m.k.eta, r.se.eta, worst);
    assert_true(worst < 1e-3);
    assert_true(t1.ratio < 1.3);
    assert_true(m.k.eta > 0.03);
    surrogate_destroy(&s0);
    surrogate_destroy(&s1);
    free(D), free(qn);
    free(role);
    fit_set_free(&s);
    device_close(&d);
}

/* the fitted surrogate keeps an exact VJP: FD check in x and theta */
typedef struct {
    surrogate *s;
} sctx;
static void f_s(void *c, const float *p, float *y)
{
    sctx *k = c;
    surrogate_forward(k->s, p + B * N, p, B, y);
}
static void v_s(void *c, const float *p, const float *r, float *g)
{
    sctx *k = c;
    float y[B * N];
    surrogate_forward(k->s, p + B * N, p, B, y);
    surrogate_backward(k->s, r, g, g + B * N);
}

static void test_fitted_surrogate_grad(void **state)
{
    (void)state;
    float qn[N * N];
    osc_model m = gap_model(qn);
    sctx c = {.s = surrogate_osc_fitted_new(&m, qn)};
    assert_non_null(c.s);
    qn[0] = 99.0f; /* the surrogate owns its copy of D */
    float p[B * N + N * N + N];
    fill(p, B * N, 0.8f, 61);
    fill(p + B * N, N * N + N, 0.4f, 62);
    double e = gradcheck("fitted osc x,theta", f_s, v_s, &c, p, B * N + N * N + N, B * N, 1e-2, 5, 7);
    assert_true(e < 2e-3);
    surrogate_destroy(&c.s);
}

/* ---- the MLP ---- */

enum { MX = 5, MT = 7, MO = 4, MB = 6, MG = 2 };
typedef struct {
    mlp *m;
    int32_t grp[MB];
} mctx;
/* p = [x (MB*MX), theta (MG*MT), params] */
static void f_m(void *c, const float *p, float *y)
{
    mctx *k = c;
    memcpy(k->m->params, p + MB * MX + MG * MT, sizeof(float) * (size_t)k->m->n_params);
    mlp_forward(k->m, p + MB * MX, MG, k->grp, p, MB, y);
}
static void v_m(void *c, const float *p, const float *r, float *g)
{
    mctx *k = c;
    float y[MB * MO];
    f_m(c, p, y);
    mlp_backward(k->m, r, g, g + MB * MX, g + MB * MX + MG * MT);
}

static void test_mlp_grad(void **state)
{
    (void)state;
    for (int skip = 0; skip <= 1; skip++) {
        mlp_shape sh = {.n_x = MX, .n_theta = MT, .n_out = MO, .depth = 3, .width = 8, .skip = skip};
        mctx c = {.m = mlp_new(&sh), .grp = {0, 1, 1, 0, 1, 0}};
        assert_non_null(c.m);
        mlp_init(c.m, 3);
        /* non-trivial normalisation */
        for (int i = 0; i < MX; i++)
            c.m->mx[i] = 0.1f * i, c.m->sx[i] = 0.5f + 0.2f * i;
        for (int i = 0; i < MT; i++)
            c.m->mt[i] = -0.1f * i, c.m->st[i] = 2.0f - 0.1f * i;
        for (int i = 0; i < MO; i++)
            c.m->my[i] = 0.3f, c.m->sy[i] = 1.5f;
        long np = MB * MX + MG * MT + c.m->n_params;
        float *p = malloc(sizeof(float) * (size_t)np);
        fill(p, MB * MX + MG * MT, 1.0f, 71);
        memcpy(p + MB * MX + MG * MT, c.m->params, sizeof(float) * (size_t)c.m->n_params);
        for (long i = MB * MX + MG * MT; i < np; i++) /* non-zero biases and skip */
            if (p[i] == 0.0f)
                p[i] = 0.1f * (float)((i * 7) % 11 - 5) / 5.0f;
        double e = gradcheck(skip ? "mlp x,theta,params (skip)" : "mlp x,theta,params", f_m, v_m, &c,
                             p, (int)np, MB * MO, 3e-3, 6, 5 + skip);
        assert_true(e < 3e-3);
        free(p);
        mlp_free(c.m);
    }
}

static void test_mlp_trains_on_device_data(void **state)
{
    (void)state;
    device *d = open_osc("n=4,eta=0.1,j_noise=0.2,sigma=0.01", 9);
    fit_set s;
    collect_from(d, 600, 10, -1.0, 1.0, 1.0, DESIGN_UNIFORM, 9, &s);
    uint8_t *role = fit_split(&s, 0.15, 0.15, 2);
    mlp_train_options o;
    mlp_default_train_options(&o);
    o.width = 48, o.depth = 2, o.max_epochs = 100, o.patience = 20, o.batch_settings = 4;
    o.lr = 3e-3;
    mlp *m = NULL;
    mlp_train_result r;
    char err[256] = "";
    int rc = mlp_train(&m, &s, role, &o, &r, err, sizeof(err));
    if (rc)
        printf("train: %s\n", err);
    assert_int_equal(rc, 0);
    surrogate *sm = surrogate_mlp_new(m);
    osc_model nom = osc_model_nominal(4);
    surrogate *sn = surrogate_osc_new(&nom);
    fit_metrics tm, tn;
    assert_int_equal(fit_evaluate(sm, &s, role, FIT_TEST, &tm, NULL, NULL), 0);
    assert_int_equal(fit_evaluate(sn, &s, role, FIT_TEST, &tn, NULL, NULL), 0);
    printf("  mlp: %d epochs (best %d), held-out nrmse %.4f ratio %.2f; nominal physics nrmse %.4f "
           "ratio %.2f\n", r.epochs, r.best_epoch, tm.nrmse, tm.ratio, tn.nrmse, tn.ratio);
    assert_true(tm.nrmse < tn.nrmse);
    assert_true(tm.ratio < 2.0);
    surrogate_destroy(&sm);
    surrogate_destroy(&sn);
    free(role);
    fit_set_free(&s);
    device_close(&d);
}

/* ---- SHG and circuit: constants by LM on central-difference columns ---- */

/* the central differences in a constant agree with the exact VJP of the
 * physics w.r.t. that constant (what the Jacobian columns rest on) */
static void test_consts_columns_match_vjp(void **state)
{
    (void)state;
    enum { SB = 3 };
    /* SHG */
    shg_model sm = shg_model_nominal(8, 8, 4, 8);
    sm.k = (shg_consts){0.5, 0.2, 0.1, -0.2, 1.1};
    shg_tape *st = shg_tape_alloc(&sm, SB);
    float x[SB * 8], phi[8], y[SB * 8], yp[SB * 8], ym[SB * 8], r[SB * 8];
    fill(x, SB * 8, 2.0f, 81);
    fill(phi, 8, 1.0f, 82);
    fill(r, SB * 8, 1.0f, 83);
    assert_int_equal(shg_forward(&sm, x, phi, SB, y, st), 0);
    shg_consts gk = {0};
    assert_int_equal(shg_backward(&sm, st, r, NULL, NULL, &gk), 0);
    double *kp = &sm.k.disp2, *gp = &gk.disp2;
    for (int j = 0; j < SHG_N_CONSTS; j++) {
        double k0 = kp[j], h = 1e-3, fd = 0;
        kp[j] = k0 + h;
        shg_forward(&sm, x, phi, SB, yp, st);
        kp[j] = k0 - h;
        shg_forward(&sm, x, phi, SB, ym, st);
        kp[j] = k0;
        for (int i = 0; i < SB * 8; i++)
            fd += r[i] * ((double)yp[i] - ym[i]) / (2 * h);
        printf("  shg constant %d: central difference %+.6e  exact VJP %+.6e\n", j, fd, gp[j]);
        assert_true(fabs(fd - gp[j]) <= 2e-3 * fmax(1e-2, fabs(gp[j])));
    }
    shg_tape_free(st);
    /* circuit */
    circuit_model cm = circuit_model_nominal(6, 2);
    circuit_tape *ct = circuit_tape_alloc(&cm, SB);
    float cx[SB * 6], th[12], cy[SB * 12], cyp[SB * 12], cym[SB * 12], cr[SB * 12];
    fill(cx, SB * 6, 0.9f, 91);
    for (int i = 0; i < 6; i++)
        th[i] = 1.0f + 0.3f * (float)(i % 3 - 1), th[6 + i] = 0.05f * (float)(i - 3);
    fill(cr, SB * 12, 1.0f, 93);
    assert_int_equal(circuit_forward(&cm, cx, th, SB, cy, ct), 0);
    circuit_consts ck = {0};
    assert_int_equal(circuit_backward(&cm, ct, cr, NULL, NULL, &ck), 0);
    double *ckp = &cm.k.r, *cgp = &ck.r;
    const double scale[CIRCUIT_N_CONSTS] = {50, 1e-3, 1e-7, 0.5, 20, 1, 1, 0.01};
    for (int j = 0; j < CIRCUIT_N_CONSTS; j++) {
        double k0 = ckp[j], h = 1e-3 * scale[j], fd = 0;
        ckp[j] = k0 + h;
        circuit_forward(&cm, cx, th, SB, cyp, ct);
        ckp[j] = k0 - h;
        circuit_forward(&cm, cx, th, SB, cym, ct);
        ckp[j] = k0;
        for (int i = 0; i < SB * 12; i++)
            fd += cr[i] * ((double)cyp[i] - cym[i]) / (2 * h);
        printf("  circuit constant %d: central difference %+.6e  exact VJP %+.6e\n", j, fd * scale[j],
               cgp[j] * scale[j]);
        assert_true(fabs(fd - cgp[j]) * scale[j] <= 2e-3 * fmax(1e-2, fabs(cgp[j]) * scale[j]));
    }
    circuit_tape_free(ct);
}

/* known truth inside the family (no ripple / DAC mismatch, Gaussian output
 * noise): the LM fit recovers every constant within 2 SE */
static void recover(const char *driver, const char *opts, const double *truth, long K, int Bs)
{
    struct patctl_option *o = NULL;
    int no = options_parse(opts, &o);
    device *d = NULL;
    char err[512] = "";
    assert_int_equal(device_open(&d, driver, driver, o, no, 5, err, sizeof(err)), 0);
    fit_set s;
    collect_from(d, K, Bs, NAN, NAN, 1.0, DESIGN_LHS, 3, &s);
    surrogate *sur = NULL;
    int rc = surrogate_for_device(&sur, d, opts, err, sizeof(err));
    if (rc)
        printf("%s\n", err);
    assert_int_equal(rc, 0);
    fit_consts_view v;
    assert_int_equal(fit_consts_view_of(sur, &v), 0);
    fit_consts_result r;
    rc = fit_consts(sur, &v, 0, &s, NULL, 100, 4000000, 0, &r, err, sizeof(err));
    if (rc)
        printf("%s\n", err);
    assert_int_equal(rc, 0);
    printf("  %s: %d iterations, chi2/dof %.3g, noise floor^2 %.3g\n", driver, r.iters, r.chi2_dof,
           pow(fit_set_noise_rms(&s), 2));
    for (int j = 0; j < v.n; j++) {
        if (!(r.mask & (1u << j))) {
            printf("    %-10s fixed at %g (%s)\n", v.name[j], r.value[j], v.note ? v.note : "");
            continue;
        }
        double z = (r.value[j] - truth[j]) / r.se[j];
        printf("    %-10s truth %+.5g  fit %+.6g +- %.3g  (%+.2f SE)\n", v.name[j], truth[j], r.value[j],
               r.se[j], z);
        assert_true(r.se[j] > 0);
        assert_true(fabs(z) <= 2.0);
    }
    surrogate_destroy(&sur);
    fit_set_free(&s);
    device_close(&d);
    free(o);
}

static void test_shg_circuit_recover_constants(void **state)
{
    (void)state;
    const double shg_truth[] = {0.8, 0.4, 0.15, -0.3, 1.1};
    recover("shg", "n_in=8,n_par=8,bins=4,n_out=8,disp2=0.8,disp3=0.4,resp1=0.15,resp2=-0.3,gain=1.1,"
            "ripple=0,photons=0,camera_bits=0,noise_std=0.01", shg_truth, 40, 20);
    /* C stays nominal (100 nF): the identifiable truth is R, L, R_on scaled
     * by C_true / C_nominal = 1.1 */
    const double circ_truth[] = {52.5 * 1.1, 0.92e-3 * 1.1, 100e-9, 0.45, 25 * 1.1, 0.97, 1.03, 0.005};
    recover("circuit", "n_in=8,sps=2,r=52.5,l_mh=0.92,c_nf=110,von=0.45,ron=25,in_gain=0.97,out_gain=1.03,"
            "out_offset=0.005,dac_mismatch=0,adc_bits=0,noise_std=0.005", circ_truth, 40, 20);
}

/* ---- online refit during PAT (drift tracking) ---- */

/* rms of s's prediction against the device on a fresh batch */
static double online_rms(device *d, surrogate *s, const float *th, const float *x, int Bq)
{
    int n = d->desc.n_out;
    float *yd = malloc(sizeof(float) * (size_t)(Bq * n)), *ys = malloc(sizeof(float) * (size_t)(Bq * n));
    assert_int_equal(device_run(d, th, x, Bq, yd), 0);
    assert_int_equal(surrogate_forward(s, d->sent_theta, d->sent_x, Bq, ys), 0);
    double e = 0;
    for (int i = 0; i < Bq * n; i++)
        e += ((double)ys[i] - yd[i]) * ((double)ys[i] - yd[i]);
    free(yd), free(ys);
    return sqrt(e / (Bq * n));
}

static void test_online_tracks_drift(void **state)
{
    (void)state;
    enum { NN = 8, BQ = 32, STEPS = 300 };
    const double period = 400.0, amp = 0.3;
    device *d = open_osc("n=8,eta=0.1,j_noise=0,sigma=0.01,eta_drift=0.3,eta_drift_period=400", 4);
    osc_model m = osc_model_nominal(NN);
    fit_online_options oo;
    fit_online_default_options(&oo);
    oo.refit_every = 10, oo.window = 5, oo.coupling = 0;
    surrogate *on = surrogate_osc_online_new(&m, NULL, &oo);
    assert_non_null(on);
    assert_true(surrogate_is_online(on));
    float th[NN * NN + NN], x[BQ * NN], y[BQ * NN], ys[BQ * NN];
    char err[256] = "";
    double worst_late = 0;
    for (int step = 0; step < STEPS; step++) {
        fill(th, NN * NN + NN, 0.5f, 100 + step);
        fill(x, BQ * NN, 1.2f, 500 + step);
        assert_int_equal(device_run(d, th, x, BQ, y), 0);
        assert_int_equal(surrogate_forward(on, d->sent_theta, d->sent_x, BQ, ys), 0);
        assert_int_equal(surrogate_online_observe(on, d->sent_theta, d->sent_x, y, BQ, err, sizeof(err)), 0);
        double eta_dev = 0.1 + amp * sin(2 * M_PI * (double)(d->next_id - 1) / period);
        double eta_fit = surrogate_online_model(on)->k.eta;
        if (step >= 50 && (step + 1) % 10 == 0) {
            worst_late = fmax(worst_late, fabs(eta_fit - eta_dev));
            if ((step + 1) % 50 == 0)
                printf("  step %3d: device eta %+.3f, online surrogate eta %+.3f\n", step + 1, eta_dev, eta_fit);
        }
    }
    /* a static surrogate fitted at the start drifts away; the online one follows */
    double r_on = online_rms(d, on, th, x, BQ);
    surrogate *st = surrogate_osc_new(&m);
    double r_st = online_rms(d, st, th, x, BQ);
    printf("  worst |eta error| after step 50: %.3f; prediction rms: online %.4f, nominal %.4f\n", worst_late,
           r_on, r_st);
    /* the window spans 5 steps of a 400-query period: the lag is small; the
     * online prediction error sits at the noise floor (input noise sigma
     * 0.01 -> ~0.009 rms), the nominal one well above it */
    assert_true(worst_late < 0.08);
    assert_true(r_on < 0.6 * r_st);
    surrogate_destroy(&st);
    surrogate_destroy(&on);
    device_close(&d);
}

static void test_online_coupling_learns(void **state)
{
    (void)state;
    enum { NN = 8, BQ = 32 };
    device *d = open_osc("n=8,eta=0,j_noise=0.3,sigma=0.01", 6);
    osc_model m = osc_model_nominal(NN);
    fit_online_options oo;
    fit_online_default_options(&oo);
    oo.refit_every = 0, oo.lr = 3e-3;
    surrogate *on = surrogate_osc_online_new(&m, NULL, &oo);
    float th[NN * NN + NN], x[BQ * NN], y[BQ * NN], ys[BQ * NN];
    char err[256] = "";
    fill(th, NN * NN + NN, 0.5f, 7);
    fill(x, BQ * NN, 1.2f, 8);
    double r0 = online_rms(d, on, th, x, BQ);
    for (int step = 0; step < 400; step++) {
        fill(th, NN * NN + NN, 0.5f, 1000 + step);
        fill(x, BQ * NN, 1.2f, 3000 + step);
        assert_int_equal(device_run(d, th, x, BQ, y), 0);
        assert_int_equal(surrogate_forward(on, d->sent_theta, d->sent_x, BQ, ys), 0);
        assert_int_equal(surrogate_online_observe(on, d->sent_theta, d->sent_x, y, BQ, err, sizeof(err)), 0);
    }
    fill(th, NN * NN + NN, 0.5f, 7);
    fill(x, BQ * NN, 1.2f, 8);
    double r1 = online_rms(d, on, th, x, BQ);
    printf("  online coupling correction: prediction rms %.4f -> %.4f (noise ~0.009)\n", r0, r1);
    assert_true(r1 < 0.4 * r0);
    surrogate_destroy(&on);
    device_close(&d);
    /* an online surrogate keeps an exact VJP (with a correction in place) */
    float qn[N * N];
    osc_model gm = gap_model(qn);
    sctx c = {.s = surrogate_osc_online_new(&gm, qn, &oo)};
    assert_non_null(c.s);
    float p[B * N + N * N + N];
    fill(p, B * N, 0.8f, 61);
    fill(p + B * N, N * N + N, 0.4f, 62);
    double e = gradcheck("online osc x,theta", f_s, v_s, &c, p, B * N + N * N + N, B * N, 1e-2, 5, 7);
    assert_true(e < 2e-3);
    surrogate_destroy(&c.s);
}

/* online, ls=1: the correction by recursive least squares from the run's own
 * measurements, starting from none; then the setting distribution moves
 * (larger C) and the prediction stays near the noise */
static void test_online_ls_learns(void **state)
{
    (void)state;
    enum { NN = 12, BQ = 32 };
    device *d = open_osc("n=12,eta=0,j_noise=0.3,sigma=0.01", 6);
    osc_model m = osc_model_nominal(NN);
    fit_online_options oo;
    fit_online_default_options(&oo);
    char err[256] = "";
    assert_int_equal(fit_online_parse("every=0,ls=1,ls_every=5,forget=0.98,ridge=0.01", &oo, err, sizeof(err)), 0);
    assert_true(oo.ls && oo.ls_every == 5 && oo.refit_every == 0);
    assert_int_equal(fit_online_parse("ls_every=0", &oo, err, sizeof(err)), PATCTL_ERR_ARG);
    assert_int_equal(fit_online_parse("forget=1.5", &oo, err, sizeof(err)), PATCTL_ERR_ARG);
    surrogate *on = surrogate_osc_online_new(&m, NULL, &oo);
    assert_non_null(on);
    float th[NN * NN + NN], x[BQ * NN], y[BQ * NN], ys[BQ * NN];
    fill(th, NN * NN + NN, 0.5f, 7);
    fill(x, BQ * NN, 1.2f, 8);
    double r0 = online_rms(d, on, th, x, BQ), r1 = 0, r2 = 0;
    for (int step = 0; step < 200; step++) {
        float scale = step < 100 ? 0.5f : 2.0f; /* the operating point moves at step 100 */
        fill(th, NN * NN + NN, scale, 1000 + step);
        fill(x, BQ * NN, 1.2f, 3000 + step);
        assert_int_equal(device_run(d, th, x, BQ, y), 0);
        assert_int_equal(surrogate_forward(on, d->sent_theta, d->sent_x, BQ, ys), 0);
        assert_int_equal(surrogate_online_observe(on, d->sent_theta, d->sent_x, y, BQ, err, sizeof(err)), 0);
        if (step == 99) {
            fill(th, NN * NN + NN, 0.5f, 7);
            fill(x, BQ * NN, 1.2f, 8);
            r1 = online_rms(d, on, th, x, BQ);
        }
    }
    fill(th, NN * NN + NN, 2.0f, 9);
    fill(x, BQ * NN, 1.2f, 10);
    surrogate *nom = surrogate_osc_online_new(&m, NULL, &oo); /* never observes: the nominal model */
    double rn = online_rms(d, nom, th, x, BQ);
    r2 = online_rms(d, on, th, x, BQ);
    const osc_model *lm = surrogate_online_model(on);
    for (int i = 0; i < NN; i++)
        for (int j = 0; j < NN; j++)
            assert_true(lm->q_noise[i * NN + j] == lm->q_noise[j * NN + i]);
    printf("  online LS coupling: prediction rms %.4f -> %.4f after 100 batches; at the moved operating point "
           "%.4f (nominal %.4f; noise ~0.01)\n", r0, r1, r2, rn);
    assert_true(r1 < 0.3 * r0);
    assert_true(r2 < 0.3 * rn);
    surrogate_destroy(&on);
    surrogate_destroy(&nom);
    device_close(&d);
}

/* online, denoise=K: in an unstable setting the device's trajectory (with
 * its input noise) and the noiseless one differ; inferring the noise from
 * the measurement brings the surrogate's gradient (model = the truth, so
 * only the noise differs) closer to the device's exact one */
static double cosd(const float *a, const float *b, long n)
{
    double ab = 0, aa = 0, bb = 0;
    for (long i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

static void test_online_denoise(void **state)
{
    (void)state;
    enum { NN = 16, BQ = 32 };
    device *d = open_osc("n=16,eta=0,j_noise=0,sigma=0.05", 3);
    osc_model m = osc_model_nominal(NN);
    fit_online_options oo;
    fit_online_default_options(&oo);
    char err[256] = "";
    assert_int_equal(fit_online_parse("every=0,coupling=0,denoise=8,noise=0.05,model_err=0.01", &oo, err,
                                      sizeof(err)), 0);
    surrogate *dn = surrogate_osc_online_new(&m, NULL, &oo);
    oo.denoise = 0;
    surrogate *plain = surrogate_osc_online_new(&m, NULL, &oo);
    static float th[NN * NN + NN], x[BQ * NN], y[BQ * NN], ys[BQ * NN], gy[BQ * NN];
    static float gxd[BQ * NN], gxs[BQ * NN], gtd[NN * NN + NN], gts[NN * NN + NN];
    /* C = -0.5 off the diagonal: L(sym C) has +7.5 on it, M_ii = 6.5: unstable */
    for (int i = 0; i < NN * NN; i++)
        th[i] = -0.5f;
    fill(th + NN * NN, NN, 0.1f, 5);
    fill(x, BQ * NN, 0.3f, 6);
    fill(gy, BQ * NN, 1.0f, 7);
    assert_int_equal(device_run(d, th, x, BQ, y), 0);
    memset(gxd, 0, sizeof(gxd)), memset(gtd, 0, sizeof(gtd));
    assert_int_equal(device_vjp(d, gy, gxd, gtd), 0);
    double cx[2], ct[2], rms[2];
    for (int k = 0; k < 2; k++) {
        surrogate *s = k ? dn : plain;
        assert_int_equal(surrogate_forward(s, d->sent_theta, d->sent_x, BQ, ys), 0);
        assert_int_equal(surrogate_online_condition(s, d->sent_theta, d->sent_x, y, BQ, ys), 0);
        memset(gxs, 0, sizeof(gxs)), memset(gts, 0, sizeof(gts));
        assert_int_equal(surrogate_backward(s, gy, gxs, gts), 0);
        cx[k] = cosd(gxd, gxs, BQ * NN), ct[k] = cosd(gtd, gts, NN * NN + NN);
        double e = 0;
        for (int i = 0; i < BQ * NN; i++)
            e += ((double)ys[i] - y[i]) * ((double)ys[i] - y[i]);
        rms[k] = sqrt(e / (BQ * NN));
    }
    printf("  denoise: residual rms %.4f -> %.4f; cos(gradient, exact) inputs %.3f -> %.3f, parameters %.3f -> %.3f\n",
           rms[0], rms[1], cx[0], cx[1], ct[0], ct[1]);
    assert_true(rms[1] < 0.5 * rms[0]);
    assert_true(cx[1] > cx[0] && ct[1] > ct[0]);
    assert_true(ct[1] > 0.9);
    surrogate_destroy(&dn);
    surrogate_destroy(&plain);
    device_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_roundtrip),
        cmocka_unit_test(test_jvp_against_fd_and_vjp),
        cmocka_unit_test(test_collect),
        cmocka_unit_test(test_greybox_recovers_constants),
        cmocka_unit_test(test_greybox_se_coverage),
        cmocka_unit_test(test_greybox_coupling_correction),
        cmocka_unit_test(test_coupling_input_linearises),
        cmocka_unit_test(test_self_sensitivity),
        cmocka_unit_test(test_greybox_coupling_ls),
        cmocka_unit_test(test_fitted_surrogate_grad),
        cmocka_unit_test(test_mlp_grad),
        cmocka_unit_test(test_mlp_trains_on_device_data),
        cmocka_unit_test(test_consts_columns_match_vjp),
        cmocka_unit_test(test_shg_circuit_recover_constants),
        cmocka_unit_test(test_online_tracks_drift),
        cmocka_unit_test(test_online_coupling_learns),
        cmocka_unit_test(test_online_ls_learns),
        cmocka_unit_test(test_online_denoise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
