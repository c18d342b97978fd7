/* Fit time for 10 000 samples (issue 4): collect N samples from a simulated
 * oscillator device (the quickstart's 64-oscillator truth), then time each
 * surrogate fit and print it in seconds and in units of one reference pass
 * (the nominal surrogate's forward over all N samples, measured in the same
 * invocation), with the held-out NRMSE / noise floor reached.
 *
 *   bench_fit [N=10000] [n_osc=64] [mlp_epochs=100]
 * Never run in CI (bench/fit.sh builds and runs it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/collect.h"
#include "devices/device.h"
#include "devices/options.h"
#include "surrogate/blas.h"
#include "surrogate/fit_osc.h"
#include "surrogate/mlp.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void row(const char *what, double secs, double ref, const fit_metrics *m, const char *note)
{
    printf("  %-34s %9.2f s %10.1f x  %s%.2f  %s\n", what, secs, secs / ref, m ? "ratio " : "",
           m ? m->ratio : 0.0, note);
}

int main(int argc, char **argv)
{
    long N = argc > 1 ? atol(argv[1]) : 10000;
    int n = argc > 2 ? atoi(argv[2]) : 64;
    int epochs = argc > 3 ? atoi(argv[3]) : 100;
    int per = 40;
    char opts[128], err[512] = "";
    snprintf(opts, sizeof(opts), "n=%d,eta=0.1,j_noise=0.2,sigma=0.02", n);
    struct patctl_option *o = NULL;
    int no = options_parse(opts, &o);
    device *d = NULL;
    if (no < 0 || device_open(&d, "osc", "oscillators", o, no, 1, err, sizeof(err))) {
        fprintf(stderr, "bench_fit: %s\n", err);
        return 1;
    }
    free(o);
    collect_options co;
    collect_default_options(&co);
    co.settings = (N + per - 1) / per, co.per_setting = per, co.x_lo = 0.0, co.x_hi = 1.0;
    fit_set s;
    double t0 = now_s();
    if (collect_run(d, &co, &s, err, sizeof(err))) {
        fprintf(stderr, "bench_fit: %s\n", err);
        return 1;
    }
    double t_collect = now_s() - t0;
    device_close(&d);
    uint8_t *role = fit_split(&s, 0.15, 0.15, 0);
    printf("bench_fit: %ld samples (%ld settings x %d) of a %d-oscillator device, noise floor %.4f; "
           "BLAS %s, %d threads\n", s.S, s.K, per, n, fit_set_noise_rms(&s), blas_library(), blas_threads());

    /* reference: the nominal surrogate over all samples */
    osc_model nom = osc_model_nominal(n);
    surrogate *sn = surrogate_osc_new(&nom);
    fit_metrics m;
    t0 = now_s();
    fit_evaluate(sn, &s, NULL, -1, &m, NULL, NULL);
    double ref = now_s() - t0;
    fit_evaluate(sn, &s, role, FIT_TEST, &m, NULL, NULL);
    printf("  %-34s %9s   %10s   held-out NRMSE / noise floor\n", "task", "time", "x pass");
    row("reference: nominal forward pass", ref, ref, &m, "(no fit)");
    row("collection (device queries)", t_collect, ref, NULL, "");

    fit_osc_options fo;
    fit_osc_default_options(&fo);
    fit_osc_result r;
    float *D = NULL;
    osc_model mk = nom;
    t0 = now_s();
    fit_osc_greybox(&mk, &D, &s, role, &fo, &r, err, sizeof(err));
    double t_k = now_s() - t0;
    surrogate *sk = surrogate_osc_fitted_new(&mk, NULL);
    fit_evaluate(sk, &s, role, FIT_TEST, &m, NULL, NULL);
    char note[160];
    snprintf(note, sizeof(note), "LM %d iterations, %ld residuals", r.iters, r.n_resid);
    row("consts: LM on 6 constants", t_k, ref, &m, note);

    osc_model mg = nom;
    fo.coupling = 1;
    t0 = now_s();
    int rc = fit_osc_greybox(&mg, &D, &s, role, &fo, &r, err, sizeof(err));
    double t_g = now_s() - t0;
    if (rc) {
        fprintf(stderr, "bench_fit: greybox: %s\n", err);
        return 1;
    }
    surrogate *sg = surrogate_osc_fitted_new(&mg, D);
    fit_evaluate(sg, &s, role, FIT_TEST, &m, NULL, NULL);
    snprintf(note, sizeof(note), "GN %d iterations, %ld parameters", r.epochs_done,
             (long)n * (n - 1) / 2 + OSC_N_CONSTS);
    row("greybox: constants + coupling (GN)", t_g, ref, &m, note);

    osc_model ml = nom;
    float *Dl = NULL;
    fo.method = FIT_COUPLING_LS, fo.mask = 0, fo.rounds = 1;
    t0 = now_s();
    rc = fit_osc_greybox(&ml, &Dl, &s, role, &fo, &r, err, sizeof(err));
    double t_l = now_s() - t0;
    if (rc) {
        fprintf(stderr, "bench_fit: greybox ls: %s\n", err);
        return 1;
    }
    surrogate *sl = surrogate_osc_fitted_new(&ml, Dl);
    fit_evaluate(sl, &s, role, FIT_TEST, &m, NULL, NULL);
    snprintf(note, sizeof(note), "LS %d iterations, %ld parameters, constants fixed", r.epochs_done, (long)n * n);
    row("greybox: coupling (iterated LS)", t_l, ref, &m, note);
    surrogate_destroy(&sl);
    free(Dl);

    mlp_train_options mo;
    mlp_default_train_options(&mo);
    mo.max_epochs = epochs;
    mo.patience = epochs;
    mlp *mm = NULL;
    mlp_train_result mr;
    t0 = now_s();
    rc = mlp_train(&mm, &s, role, &mo, &mr, err, sizeof(err));
    double t_m = now_s() - t0;
    if (rc) {
        fprintf(stderr, "bench_fit: mlp: %s\n", err);
        return 1;
    }
    surrogate *sm = surrogate_mlp_new(mm);
    fit_evaluate(sm, &s, role, FIT_TEST, &m, NULL, NULL);
    snprintf(note, sizeof(note), "%d x %d, %ld parameters, %d epochs (%.3f s/epoch)", mo.depth, mo.width,
             mm->n_params, mr.epochs, t_m / mr.epochs);
    row("mlp: Adam, early stopping", t_m, ref, &m, note);

    surrogate_destroy(&sn), surrogate_destroy(&sk), surrogate_destroy(&sg), surrogate_destroy(&sm);
    free(D);
    free(role);
    fit_set_free(&s);
    return 0;
}
