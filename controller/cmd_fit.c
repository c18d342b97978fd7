/* patctl fit: fit surrogates to collected data and validate them on held-out
 * settings against the measured noise floor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/cli_args.h"
#include "controller/commands.h"
#include "controller/fit_store.h"
#include "controller/summary.h"
#include "controller/surrogates.h"
#include "devices/options.h"
#include "patctl/version.h"
#include "surrogate/fit_npy.h"

static void fit_usage(FILE *f)
{
    fprintf(f,
        "usage: patctl fit DATA_DIR [OPTIONS]\n"
        "\n"
        "Fits surrogates of the device measured by `patctl collect` into DATA_DIR and\n"
        "validates each on held-out settings: NRMSE and NRMSE / noise floor.\n"
        "\n"
        "surrogates (--models, comma-separated; default: all that apply):\n"
        "  nominal    the nominal physics (no fit; the reference)\n"
        "  consts     physics models: the calibration constants by trust-region\n"
        "             Levenberg-Marquardt, +- SE (oscillators: eta, coupling gain, input\n"
        "             and output gain/offset; shg: dispersion, response, gain; circuit:\n"
        "             R, L, diode V_on and R_on, DAC/ADC calibration, C fixed)\n"
        "  greybox    oscillators: constants + a coupling correction matrix, jointly by\n"
        "             trust-region Gauss-Newton with CG, then constants +- SE by LM\n"
        "  mlp        black box for any device: (x, theta) -> y, early-stopped\n"
        "\n"
        "options:\n"
        "  --out DIR          where fitted surrogates and the report go (default DATA_DIR/fit)\n"
        "  --models LIST      e.g. consts,mlp\n"
        "  --val F --test F   fractions of the settings held out (default 0.15 each)\n"
        "  --seed N           split and initialisation seed (default 0)\n"
        "  --gn-iter N        greybox: Gauss-Newton iterations (default 30)\n"
        "  --cg-iter N        greybox: CG iterations per step (default 30)\n"
        "  --max-resid N      consts: residuals used by LM (default 4000000)\n"
        "  --coupling-method M  greybox: gn (default) | adam (first-order, for large\n"
        "                     devices: rounds of Adam on the coupling, then LM on the constants)\n"
        "                     | ls (large devices: the coupling as a full matrix by iterated\n"
        "                     linear least squares, then LM on the constants, in rounds)\n"
        "  --ls-iter N --ridge X  ls: iterations per round (15), ridge relative to the\n"
        "                     mean feature power (1e-3)\n"
        "  --rounds N         adam/ls: coupling <-> constants rounds (3)\n"
        "  --fix-consts       greybox: keep the constants at their nominal values\n"
        "  --laplacian        ls: D keeps the device coupling's structure (diagonal = minus\n"
        "                     the off-diagonal row sum), so eta stays identifiable\n"
        "  --adam-epochs N --adam-rounds N --adam-lr X --adam-batch SETTINGS\n"
        "                     adam: epochs per round (20), rounds (3), lr (3e-3), settings per step (2)\n"
        "  --mlp-width N      hidden units (default 256)\n"
        "  --mlp-depth N      hidden layers (default 2)\n"
        "  --mlp-epochs N     maximum epochs (default 300)\n"
        "  --mlp-patience N   early stopping patience in epochs (default 30)\n"
        "  --mlp-lr X         Adam learning rate (default 1e-3)\n"
        "  --mlp-wd X         AdamW weight decay (default 1e-4)\n"
        "  --mlp-batch N      settings per step (default 8)\n"
        "  --verbose          progress of every fit\n"
        "  --quiet            only the table\n"
        "\n"
        "Writes DIR/report.json, DIR/NAME.json (+ .npy arrays) for every fitted\n"
        "surrogate (use with `patctl train --surrogate DEVICE=DIR/NAME.json`), and\n"
        "DIR/parity_NAME.npy (float32 [P,2]: measured, predicted held-out values) and\n"
        "DIR/residual_NAME.npy (float32 [n_out]: held-out RMSE per output).\n");
}



static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { M_NOMINAL = 1, M_CONSTS = 2, M_GREYBOX = 4, M_MLP = 8 };

static int parse_models(const char *s, unsigned *out)
{
    *out = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (strcmp(t, "nominal") == 0) *out |= M_NOMINAL;
        else if (strcmp(t, "consts") == 0) *out |= M_CONSTS;
        else if (strcmp(t, "greybox") == 0) *out |= M_GREYBOX;
        else if (strcmp(t, "mlp") == 0) *out |= M_MLP;
        else return -1;
    }
    return *out ? 0 : -1;
}

static cJSON *metrics_json(const fit_metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "samples", (double)m->n);
    cJSON_AddNumberToObject(o, "rmse", m->rmse);
    cJSON_AddNumberToObject(o, "std_y", m->std_y);
    cJSON_AddNumberToObject(o, "nrmse", m->nrmse);
    if (m->ratio >= 0) {
        cJSON_AddNumberToObject(o, "noise_nrmse", m->noise_nrmse);
        cJSON_AddNumberToObject(o, "nrmse_over_noise", m->ratio);
    }
    return o;
}

/* Validate s on the test settings; write parity/residual arrays; add the
 * entry to the report and print a row. */
static int validate(const char *out, const char *name, surrogate *s, const fit_set *d,
                    const uint8_t *role, double seconds, const char *file, cJSON *entries,
                    cJSON *extra, fit_metrics *mt, double nominal_rmse, int quiet, char *err, size_t errlen)
{
    float *pred = calloc((size_t)(d->S * d->n_out + 1), sizeof(float));
    double *res = malloc(sizeof(double) * (size_t)d->n_out);
    if (!pred || !res) {
        free(pred), free(res);
        return PATCTL_ERR_NOMEM;
    }
    fit_metrics mtr;
    int rc = fit_evaluate(s, d, role, FIT_TEST, mt, pred, res);
    if (!rc)
        rc = fit_evaluate(s, d, role, FIT_TRAIN, &mtr, NULL, NULL);
    if (rc) {
        snprintf(err, errlen, "surrogate %s: evaluation failed: %s", name, patctl_strerror(rc));
        free(pred), free(res);
        return rc;
    }
    /* parity: up to 20000 held-out (measured, predicted) pairs, evenly strided */
    long total = mt->n * d->n_out, stride = total > 20000 ? (total + 19999) / 20000 : 1, P = 0;
    float *pp = malloc(sizeof(float) * (size_t)(2 * (total / stride + 2)));
    float *rr = malloc(sizeof(float) * (size_t)d->n_out);
    if (!pp || !rr) {
        free(pred), free(res), free(pp), free(rr);
        return PATCTL_ERR_NOMEM;
    }
    long idx = 0;
    for (long smp = 0; smp < d->S; smp++) {
        if (role[d->setting[smp]] != FIT_TEST)
            continue;
        for (int i = 0; i < d->n_out; i++, idx++)
            if (idx % stride == 0) {
                pp[2 * P] = d->y[smp * d->n_out + i];
                pp[2 * P + 1] = pred[smp * d->n_out + i];
                P++;
            }
    }
    for (int i = 0; i < d->n_out; i++)
        rr[i] = (float)res[i];
    char path[1400], fpar[300], fres[300];
    snprintf(fpar, sizeof(fpar), "parity_%s.npy", name);
    snprintf(fres, sizeof(fres), "residual_%s.npy", name);
    long sp[2] = {P, 2}, sr[1] = {d->n_out};
    snprintf(path, sizeof(path), "%s/%s", out, fpar);
    rc = fit_npy_write(path, NPY_F32, 2, sp, pp, err, errlen);
    snprintf(path, sizeof(path), "%s/%s", out, fres);
    if (!rc)
        rc = fit_npy_write(path, NPY_F32, 1, sr, rr, err, errlen);
    free(pred), free(res), free(pp), free(rr);
    if (rc)
        return rc;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "kind", s->ops->kind);
    if (file)
        cJSON_AddStringToObject(e, "file", file);
    else
        cJSON_AddNullToObject(e, "file");
    cJSON_AddItemToObject(e, "test", metrics_json(mt));
    cJSON_AddItemToObject(e, "train", metrics_json(&mtr));
    /* what the model explains of the nominal model's error above the noise */
    double nf = mt->noise_rms > 0 ? mt->noise_rms : 0.0;
    if (nominal_rmse > 0 && nominal_rmse > nf) {
        double ex = 1.0 - (mt->rmse * mt->rmse - nf * nf) / (nominal_rmse * nominal_rmse - nf * nf);
        cJSON_AddNumberToObject(e, "explained_of_nominal_excess", ex);
    }
    cJSON_AddNumberToObject(e, "fit_seconds", seconds);
    cJSON_AddStringToObject(e, "parity", fpar);
    cJSON_AddStringToObject(e, "residual", fres);
    if (extra)
        cJSON_AddItemToObject(e, "fit", extra);
    cJSON_AddItemToArray(entries, e);
    (void)quiet; /* the table row is printed even with --quiet */
    printf("  %-9s %-20s %10.4f %12.4f %8.2f %9.1f\n", name, s->ops->kind, mt->nrmse, mt->noise_nrmse,
               mt->ratio, seconds);
    return 0;
}

static void print_consts(const osc_model *m, const fit_osc_result *r)
{
    osc_consts k = m->k, se = r->se;
    printf("    constants:");
    for (int i = 0; i < OSC_N_CONSTS; i++)
        printf(" %s %.4f+-%.4f", fit_osc_const_name(i), *fit_osc_const_ptr(&k, i), *fit_osc_const_ptr(&se, i));
    printf("\n    LM: %d iterations, chi2/dof %.4g (rms %.4g) over %ld residuals\n", r->iters, r->chi2_dof,
           sqrt(r->chi2_dof), r->n_resid);
}

static cJSON *consts_json(const osc_model *m, const fit_osc_result *r)
{
    cJSON *o = cJSON_CreateObject();
    osc_consts k = m->k, se = r->se;
    cJSON *c = cJSON_AddObjectToObject(o, "constants");
    for (int i = 0; i < OSC_N_CONSTS; i++) {
        cJSON *e = cJSON_AddObjectToObject(c, fit_osc_const_name(i));
        cJSON_AddNumberToObject(e, "value", *fit_osc_const_ptr(&k, i));
        cJSON_AddNumberToObject(e, "se", *fit_osc_const_ptr(&se, i));
    }
    cJSON_AddNumberToObject(o, "chi2_dof", r->chi2_dof);
    cJSON_AddNumberToObject(o, "dof", r->dof);
    cJSON_AddNumberToObject(o, "lm_iterations", r->iters);
    cJSON_AddNumberToObject(o, "coupling_iterations", r->epochs_done);
    return o;
}

int cmd_fit(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    unsigned models = 0;
    double fval = 0.15, ftest = 0.15;
    uint64_t seed = 0;
    int quiet = 0, verbose = 0;
    fit_osc_options fo;
    fit_osc_default_options(&fo);
    mlp_train_options mo;
    mlp_default_train_options(&mo);
    for (int i = 1; i < argc; i++) {
        const char *v, *a = argv[i];
        double d;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fit_usage(stdout);
            return EXIT_OK;
        } else if ((v = cli_opt_value(argc, argv, &i, "--out"))) {
            out = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--models"))) {
            if (parse_models(v, &models)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--val"))) {
            if (cli_num(v, 0, 0.9, &fval)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--test"))) {
            if (cli_num(v, 0.01, 0.9, &ftest)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (cli_num(v, 0, 2147483647.0, &d)) goto bad;
            seed = (uint64_t)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--gn-iter"))) {
            if (cli_num(v, 1, 10000, &d)) goto bad;
            fo.gn_iter = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--cg-iter"))) {
            if (cli_num(v, 1, 100000, &d)) goto bad;
            fo.cg_iter = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--coupling-method"))) {
            if (strcmp(v, "gn") == 0) fo.method = FIT_COUPLING_GN;
            else if (strcmp(v, "adam") == 0) fo.method = FIT_COUPLING_ADAM;
            else if (strcmp(v, "ls") == 0) fo.method = FIT_COUPLING_LS;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--ls-iter"))) {
            if (cli_num(v, 1, 10000, &d)) goto bad;
            fo.ls_iter = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--ridge"))) {
            if (cli_num(v, 1e-12, 1e6, &fo.ridge)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--rounds"))) {
            if (cli_num(v, 1, 1000, &d)) goto bad;
            fo.rounds = (int)d;
        } else if (strcmp(argv[i], "--laplacian") == 0) {
            fo.laplacian = 1;
        } else if (strcmp(argv[i], "--fix-consts") == 0) {
            fo.mask = 0;
        } else if ((v = cli_opt_value(argc, argv, &i, "--adam-epochs"))) {
            if (cli_num(v, 1, 100000, &d)) goto bad;
            fo.epochs = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--adam-rounds"))) {
            if (cli_num(v, 1, 1000, &d)) goto bad;
            fo.rounds = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--adam-lr"))) {
            if (cli_num(v, 1e-8, 10, &fo.lr)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--adam-batch"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            fo.batch_settings = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-resid"))) {
            if (cli_num(v, 10, 1e10, &d)) goto bad;
            fo.max_resid = (long)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-width"))) {
            if (cli_num(v, 1, 65536, &d)) goto bad;
            mo.width = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-depth"))) {
            if (cli_num(v, 1, MLP_MAX_DEPTH, &d)) goto bad;
            mo.depth = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-epochs"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            mo.max_epochs = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-patience"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            mo.patience = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-lr"))) {
            if (cli_num(v, 1e-8, 10, &mo.lr)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-wd"))) {
            if (cli_num(v, 0, 10, &mo.weight_decay)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mlp-batch"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            mo.batch_settings = (int)d;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            verbose = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (a[0] != '-' && !data) {
            data = a;
        } else {
            fprintf(stderr, "patctl fit: unknown option '%s' (see patctl fit --help)\n", a);
            return EXIT_USAGE;
        }
        continue;
    bad:
        fprintf(stderr, "patctl fit: bad value for %s (see patctl fit --help)\n", a);
        return EXIT_USAGE;
    }
    if (!data) {
        fprintf(stderr, "patctl fit: which data? (patctl fit DATA_DIR; see patctl fit --help)\n");
        return EXIT_USAGE;
    }
    char err[1024] = "";
    fit_set d;
    cJSON *meta = NULL;
    if (fitdata_read(data, &d, &meta, err, sizeof(err))) {
        fprintf(stderr, "patctl fit: %s\n", err);
        return EXIT_FAIL;
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(meta, "device");
    struct patctl_device_desc desc;
    char name[64] = "device", options[1024] = "";
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(jd, "name");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(jd, "options");
    if (cJSON_IsString(jn))
        snprintf(name, sizeof(name), "%s", jn->valuestring);
    if (cJSON_IsString(jo))
        snprintf(options, sizeof(options), "%s", jo->valuestring);
    if (desc_from_json(cJSON_GetObjectItemCaseSensitive(jd, "desc"), &desc, err, sizeof(err)) ||
        desc.n_in != d.n_in || desc.n_out != d.n_out || device_desc_n_theta(&desc) != d.n_theta) {
        fprintf(stderr, "patctl fit: %s/meta.json: device description missing or inconsistent with the "
                "arrays%s%s\n", data, err[0] ? ": " : "", err);
        fit_set_free(&d);
        cJSON_Delete(meta);
        return EXIT_FAIL;
    }
    int is_osc = strcmp(desc.model, "oscillators") == 0;
    /* a physics model with fittable constants (shg, circuit)? */
    int has_consts = 0;
    {
        surrogate *probe = NULL;
        fit_consts_view v;
        if (!is_osc && surrogate_make(&probe, name, &desc, options, "nominal", err, sizeof(err)) == 0)
            has_consts = fit_consts_view_of(probe, &v) == 0;
        surrogate_destroy(&probe);
        err[0] = '\0';
    }
    if (!models)
        models = M_NOMINAL | M_MLP | (is_osc ? M_CONSTS | M_GREYBOX : has_consts ? M_CONSTS : 0);
    if (((models & M_GREYBOX) && !is_osc) || ((models & M_CONSTS) && !is_osc && !has_consts)) {
        fprintf(stderr, "patctl fit: device %s (model '%s') has no %s fit (consts: oscillators, shg, "
                "circuit; greybox: oscillators); use nominal, mlp\n", name, desc.model,
                (models & M_GREYBOX) ? "greybox" : "consts");
        fit_set_free(&d);
        cJSON_Delete(meta);
        return EXIT_USAGE;
    }
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", out ? out : "");
    if (!out)
        snprintf(dir, sizeof(dir), "%s/fit", data);
    if (make_dirs(dir)) {
        fprintf(stderr, "patctl fit: cannot create %s: %s\n", dir, strerror(errno));
        fit_set_free(&d);
        cJSON_Delete(meta);
        return EXIT_FAIL;
    }
    uint8_t *role = fit_split(&d, fval, ftest, seed);
    cJSON *rep = cJSON_CreateObject(), *entries = NULL;
    int rc = role && rep ? 0 : PATCTL_ERR_NOMEM;
    if (rc)
        goto done;
    fo.seed = mo.seed = seed;
    fo.verbose = mo.verbose = verbose;
    fo.stop = mo.stop = &patctl_stop;
    double nf = fit_set_noise_rms(&d);
    cJSON_AddStringToObject(rep, "patctl_version", PATCTL_VERSION_STRING);
    cJSON_AddStringToObject(rep, "data", data);
    cJSON_AddItemToObject(rep, "device", cJSON_Duplicate(jd, 1));
    cJSON *js = cJSON_AddObjectToObject(rep, "split");
    cJSON_AddNumberToObject(js, "seed", (double)seed);
    cJSON_AddNumberToObject(js, "train_samples", (double)fit_count(&d, role, FIT_TRAIN));
    cJSON_AddNumberToObject(js, "val_samples", (double)fit_count(&d, role, FIT_VAL));
    cJSON_AddNumberToObject(js, "test_samples", (double)fit_count(&d, role, FIT_TEST));
    cJSON_AddStringToObject(js, "by", "setting");
    if (nf >= 0)
        cJSON_AddNumberToObject(rep, "noise_rms", nf);
    else
        cJSON_AddNullToObject(rep, "noise_rms");
    entries = cJSON_AddArrayToObject(rep, "surrogates");
    if (!quiet)
        printf("patctl fit: device %s (%s): %ld samples in %ld settings; train/val/test %ld/%ld/%ld samples; "
               "noise floor rms %.4g\n", name, desc.model, d.S, d.K, fit_count(&d, role, FIT_TRAIN),
               fit_count(&d, role, FIT_VAL), fit_count(&d, role, FIT_TEST), nf);
    printf("  %-9s %-20s %10s %12s %8s %9s\n", "surrogate", "kind", "NRMSE", "noise NRMSE", "ratio", "fit [s]");
    fit_metrics mt;
    double nominal_rmse = -1.0;
    char path[1400], file[300];
    if (models & M_NOMINAL) {
        surrogate *s = NULL;
        if (surrogate_make(&s, name, &desc, options, "nominal", err, sizeof(err)) == 0) {
            rc = validate(dir, "nominal", s, &d, role, 0.0, NULL, entries, NULL, &mt, -1.0, quiet, err,
                          sizeof(err));
            nominal_rmse = mt.rmse;
            surrogate_destroy(&s);
            if (rc)
                goto done;
        } else if (!quiet) {
            printf("  (no nominal model: %s)\n", err);
        }
    }
    if ((models & M_CONSTS) && has_consts && !patctl_stop) {
        surrogate *s = NULL;
        fit_consts_view v;
        fit_consts_result r;
        double t0 = now_s();
        if ((rc = surrogate_make(&s, name, &desc, options, "nominal", err, sizeof(err))) ||
            (rc = fit_consts_view_of(s, &v)) ||
            (rc = fit_consts(s, &v, 0, &d, role, 100, fo.max_resid, verbose, &r, err, sizeof(err)))) {
            fprintf(stderr, "patctl fit: consts: %s\n", err);
            surrogate_destroy(&s);
            goto done;
        }
        double secs = now_s() - t0;
        cJSON *ex = cJSON_CreateObject();
        cJSON *c = cJSON_AddObjectToObject(ex, "constants");
        for (int j = 0; j < v.n; j++) {
            cJSON *e = cJSON_AddObjectToObject(c, v.name[j]);
            cJSON_AddNumberToObject(e, "value", r.value[j]);
            cJSON_AddNumberToObject(e, "se", r.se[j]);
            cJSON_AddBoolToObject(e, "fitted", (r.mask >> j) & 1u);
        }
        cJSON_AddNumberToObject(ex, "chi2_dof", r.chi2_dof);
        cJSON_AddNumberToObject(ex, "dof", r.dof);
        cJSON_AddNumberToObject(ex, "lm_iterations", r.iters);
        snprintf(file, sizeof(file), "consts.json");
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        rc = validate(dir, "consts", s, &d, role, secs, file, entries, ex, &mt, nominal_rmse, quiet, err,
                      sizeof(err));
        if (!rc && !quiet) {
            printf("    constants:");
            for (int j = 0; j < v.n; j++)
                printf(" %s %.5g%s%.2g", v.name[j], r.value[j], (r.mask >> j) & 1u ? "+-" : " fixed ",
                       (r.mask >> j) & 1u ? r.se[j] : 0.0);
            printf("\n    LM: %d iterations, chi2/dof %.4g over %ld residuals%s%s\n", r.iters, r.chi2_dof,
                   r.n_resid, v.note ? "; " : "", v.note ? v.note : "");
        }
        if (!rc) {
            cJSON *extra = cJSON_CreateObject();
            cJSON_AddItemToObject(extra, "device", cJSON_Duplicate(jd, 1));
            cJSON_AddItemToObject(extra, "validation", metrics_json(&mt));
            cJSON_AddStringToObject(extra, "data", data);
            rc = fitted_consts_save(path, desc.model, &v, &r, extra, err, sizeof(err));
            cJSON_Delete(extra);
        }
        surrogate_destroy(&s);
        if (rc)
            goto done;
    }
    for (int g = 0; g < 2 && is_osc; g++) {
        unsigned which = g ? M_GREYBOX : M_CONSTS;
        if (!(models & which) || patctl_stop)
            continue;
        const char *nm = g ? "greybox" : "consts";
        osc_model m = osc_model_nominal(d.n_in);
        struct patctl_option *o = NULL;
        int no = options_parse(options, &o);
        long steps = 5;
        double t_end = 0.5;
        if (no >= 0) {
            options_int(o, no, "steps", 5, &steps, err, sizeof(err));
            options_float(o, no, "t_end", 0.5, &t_end, err, sizeof(err));
        }
        free(o);
        m.steps = (int)steps, m.t_end = (float)t_end;
        fit_osc_options f = fo;
        f.coupling = g;
        fit_osc_result r;
        float *D = NULL;
        double t0 = now_s();
        if ((rc = fit_osc_greybox(&m, &D, &d, role, &f, &r, err, sizeof(err)))) {
            fprintf(stderr, "patctl fit: %s: %s\n", nm, err);
            goto done;
        }
        double secs = now_s() - t0;
        snprintf(file, sizeof(file), "%s.json", nm);
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        surrogate *s = surrogate_osc_fitted_new(&m, D);
        cJSON *ex = consts_json(&m, &r);
        rc = s ? validate(dir, nm, s, &d, role, secs, file, entries, ex, &mt, nominal_rmse, quiet, err,
                          sizeof(err))
               : PATCTL_ERR_NOMEM;
        if (!rc && !quiet)
            print_consts(&m, &r);
        if (!rc) {
            cJSON *extra = cJSON_CreateObject();
            cJSON_AddItemToObject(extra, "device", cJSON_Duplicate(jd, 1));
            cJSON_AddItemToObject(extra, "validation", metrics_json(&mt));
            cJSON_AddStringToObject(extra, "data", data);
            rc = fitted_osc_save(path, &m, D, &r, extra, err, sizeof(err));
            cJSON_Delete(extra);
        }
        surrogate_destroy(&s);
        free(D);
        if (rc)
            goto done;
    }
    if ((models & M_MLP) && !patctl_stop) {
        mlp *m = NULL;
        mlp_train_result r;
        double t0 = now_s();
        if ((rc = mlp_train(&m, &d, role, &mo, &r, err, sizeof(err)))) {
            fprintf(stderr, "patctl fit: mlp: %s\n", err);
            goto done;
        }
        double secs = now_s() - t0;
        surrogate *s = surrogate_mlp_new(m);
        cJSON *ex = cJSON_CreateObject();
        cJSON_AddNumberToObject(ex, "width", mo.width);
        cJSON_AddNumberToObject(ex, "depth", mo.depth);
        cJSON_AddNumberToObject(ex, "parameters", (double)m->n_params);
        cJSON_AddNumberToObject(ex, "epochs", r.epochs);
        cJSON_AddNumberToObject(ex, "best_epoch", r.best_epoch);
        snprintf(file, sizeof(file), "mlp.json");
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        rc = s ? validate(dir, "mlp", s, &d, role, secs, file, entries, ex, &mt, nominal_rmse, quiet, err,
                          sizeof(err))
               : PATCTL_ERR_NOMEM;
        if (!s)
            mlp_free(m);
        if (!rc) {
            cJSON *extra = cJSON_CreateObject();
            cJSON_AddItemToObject(extra, "device", cJSON_Duplicate(jd, 1));
            cJSON_AddItemToObject(extra, "validation", metrics_json(&mt));
            cJSON_AddStringToObject(extra, "data", data);
            rc = fitted_mlp_save(path, m, &r, extra, err, sizeof(err));
            cJSON_Delete(extra);
        }
        if (!rc && !quiet)
            printf("    MLP %d x %d (+ linear skip), %ld parameters: %d epochs (best %d)\n", mo.depth,
                   mo.width, m->n_params, r.epochs, r.best_epoch);
        surrogate_destroy(&s);
        if (rc)
            goto done;
    }
    if (patctl_stop) {
        snprintf(err, sizeof(err), "interrupted");
        rc = PATCTL_ERR_INTERRUPTED;
        goto done;
    }
    snprintf(path, sizeof(path), "%s/report.json", dir);
    rc = json_write_file(path, rep, err, sizeof(err));
    if (!rc)
        printf("result: fitted surrogates and report in %s (use: patctl train --surrogate %s=%s/NAME.json)\n",
               dir, name, dir);
done:
    if (rc && err[0])
        fprintf(stderr, "patctl fit: %s\n", err);
    cJSON_Delete(rep);
    cJSON_Delete(meta);
    free(role);
    fit_set_free(&d);
    return rc == PATCTL_ERR_INTERRUPTED ? EXIT_INTERRUPTED : rc ? EXIT_FAIL : EXIT_OK;
}
