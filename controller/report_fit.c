/* patctl report: the outputs of `patctl fit` (DIR/report.json with, per
 * fitted surrogate, held-out metrics and the files parity_NAME.npy
 * (float32 [P, 2]: measured, predicted) and residual_NAME.npy (float32
 * [n_out]: held-out RMSE per output); the collected data's noise_std.npy
 * (float32 [n_out]) gives the noise floor per output) drawn as fit.png. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "controller/report_int.h"
#include "patctl/error.h"
#include "surrogate/fit_npy.h"

#define MAX_FIT_ROWS 4

static cJSON *load_json(const char *path, char *note, size_t nn)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[8192];
    size_t k;
    while (mem && (k = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        fwrite(chunk, 1, k, mem);
    fclose(fp);
    if (!mem || fclose(mem) != 0 || !buf) {
        free(buf);
        snprintf(note, nn, "%s: cannot read", path);
        return NULL;
    }
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j)
        snprintf(note, nn, "%s: not valid JSON", path);
    return j;
}

static int try_dir(rep_fit *f, const char *dir, char *note, size_t nn)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/report.json", dir);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return PATCTL_ERR_NOT_FOUND;
    cJSON *j = load_json(path, note, nn);
    if (!j)
        return PATCTL_ERR_FORMAT;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "surrogates");
    if (!cJSON_IsArray(s)) {
        snprintf(note, nn, "%s: no \"surrogates\" array (not written by patctl fit?)", path);
        cJSON_Delete(j);
        return PATCTL_ERR_FORMAT;
    }
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    f->report = j;
    const cJSON *nr = cJSON_GetObjectItemCaseSensitive(j, "noise_rms");
    f->noise_rms = cJSON_IsNumber(nr) && nr->valuedouble > 0 ? nr->valuedouble : NAN;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(j, "device");
    const cJSON *dn = cJSON_GetObjectItemCaseSensitive(dev, "name");
    if (cJSON_IsString(dn))
        snprintf(f->device, sizeof(f->device), "%s", dn->valuestring);
    /* the noise floor per output, from the collected data: where report.json
     * says (a path relative to where patctl fit ran), else the fit
     * directory's parent (patctl fit's default DATA_DIR/fit) */
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    char np[1200], parent[1100];
    snprintf(parent, sizeof(parent), "%s", dir);
    snprintf(np, sizeof(np), "%s/noise_std.npy", cJSON_IsString(data) ? data->valuestring : dirname(parent));
    if (stat(np, &sb) != 0) {
        snprintf(parent, sizeof(parent), "%s", dir);
        snprintf(np, sizeof(np), "%s/noise_std.npy", dirname(parent));
    }
    {
        char err[256];
        int nd;
        long shape[FIT_NPY_MAX_DIM];
        void *v = NULL;
        if (stat(np, &sb) == 0 && fit_npy_read(np, NPY_F32, &nd, shape, &v, err, sizeof(err)) == 0) {
            if (nd == 1) {
                f->noise_std = v;
                f->n_noise = shape[0];
            } else {
                free(v);
            }
        }
    }
    return 0;
}

int rep_fit_find(rep_fit *f, const rep_run *r, const char *explicit_dir, char *note, size_t nn)
{
    memset(f, 0, sizeof(*f));
    f->noise_rms = NAN;
    note[0] = '\0';
    if (explicit_dir) {
        int rc = try_dir(f, explicit_dir, note, nn);
        if (rc == PATCTL_ERR_NOT_FOUND)
            snprintf(note, nn, "%s/report.json: not found (--fit names the output directory of patctl fit)",
                     explicit_dir);
        return rc;
    }
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/fit", r->dir);
    int rc = try_dir(f, dir, note, nn);
    if (rc != PATCTL_ERR_NOT_FOUND)
        return rc;
    /* the directory of a fitted surrogate the run used */
    for (int i = 0; i < r->n_dev; i++) {
        const char *s = r->dev[i].surrogate;
        size_t len = strlen(s);
        if (strncmp(s, "fitted:", 7) == 0)
            s += 7;
        else if (!(len > 5 && strcmp(s + len - 5, ".json") == 0))
            continue;
        snprintf(dir, sizeof(dir), "%s", s);
        rc = try_dir(f, dirname(dir), note, nn);
        if (rc != PATCTL_ERR_NOT_FOUND)
            return rc;
    }
    snprintf(note, nn, "no patctl fit outputs found (looked for %s/fit/report.json and beside the fitted "
             "surrogates the run used); patctl collect + patctl fit measure the noise floor and validate "
             "surrogates, and patctl report RUN --fit DIR draws them", r->dir);
    return PATCTL_ERR_NOT_FOUND;
}

void rep_fit_free(rep_fit *f)
{
    if (!f)
        return;
    cJSON_Delete(f->report);
    free(f->noise_std);
    memset(f, 0, sizeof(*f));
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void no_residuals(FILE *f)
{
    fprintf(f, "set xrange [0:1]\nset yrange [0:1]\nset label 1 'no per-output residuals (residual file missing "
               "or empty)' at graph 0.5, graph 0.5 center\nplot NaN notitle\nunset label 1\n");
}

int report_fit(rep_ctx *c)
{
    rep_fit *ft = c->fit;
    if (!ft)
        return 0;
    const char *name = "fit", *title = "Fitted surrogates on held-out device data (patctl fit)";
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(ft->report, "surrogates"), *e;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(ft->report, "device");
    const char *unit = str(cJSON_GetObjectItemCaseSensitive(dev, "desc"), "out_unit");
    /* load the arrays of every entry that has them */
    float *par[MAX_FIT_ROWS] = {0}, *res[MAX_FIT_ROWS] = {0};
    long npar[MAX_FIT_ROWS] = {0}, nres[MAX_FIT_ROWS] = {0};
    const cJSON *ent[MAX_FIT_ROWS] = {0};
    int rows = 0, skipped = 0;
    char problems[1024] = "";
    cJSON_ArrayForEach(e, arr)
    {
        if (rows == MAX_FIT_ROWS) {
            skipped++;
            continue;
        }
        char path[1400], err[300];
        int nd;
        long shape[FIT_NPY_MAX_DIM];
        void *v = NULL;
        snprintf(path, sizeof(path), "%s/%s", ft->dir, str(e, "parity"));
        if (!str(e, "parity")[0] || fit_npy_read(path, NPY_F32, &nd, shape, &v, err, sizeof(err)) != 0 || nd != 2 ||
            shape[1] != 2) {
            free(v);
            size_t u = strlen(problems);
            snprintf(problems + u, sizeof(problems) - u, "%s%.60s: no parity data (%.300s)", u ? "; " : "", str(e, "name"),
                     str(e, "parity")[0] ? path : "no \"parity\" file named");
            continue;
        }
        par[rows] = v;
        npar[rows] = shape[0];
        v = NULL;
        snprintf(path, sizeof(path), "%s/%s", ft->dir, str(e, "residual"));
        if (str(e, "residual")[0] && fit_npy_read(path, NPY_F32, &nd, shape, &v, err, sizeof(err)) == 0 && nd == 1) {
            res[rows] = v;
            nres[rows] = shape[0];
        } else {
            free(v);
        }
        ent[rows++] = e;
    }
    if (!rows) {
        fig_missing(c, name, title, "%s: %s", ft->dir,
                    problems[0] ? problems : "report.json lists no fitted surrogate");
        return 0;
    }
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, 1300, 480 * rows + 40)) {
        for (int i = 0; i < rows; i++)
            free(par[i]), free(res[i]);
        return PATCTL_ERR_NOMEM;
    }
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "From %.300s: each fitted surrogate on the held-out settings of the collected data. Left: prediction "
             "against measurement. Right: held-out RMSE of every output against the measured noise floor "
             "(std of repeated measurements): a model as good as the device allows sits on the noise floor.",
             ft->dir);
    if (problems[0])
        fig_note(m, "%s", problems);
    if (skipped)
        fig_note(m, "%d more surrogates in report.json not drawn", skipped);
    FILE *f = fg.f;
    char t[600], t2[600];
    fprintf(f, "set multiplot layout %d,2 title %s font ',14'\n", rows,
            gp_str(t, sizeof(t), (snprintf(t2, sizeof(t2), "patctl fit: %.500s", ft->dir), t2)));
    for (int i = 0; i < rows; i++) {
        const cJSON *test = cJSON_GetObjectItemCaseSensitive(ent[i], "test");
        double nrmse = num(test, "nrmse"), ratio = num(test, "nrmse_over_noise");
        double lo = INFINITY, hi = -INFINITY;
        fprintf(f, "$P%d << EOD\n", i);
        for (long k = 0; k < npar[i]; k++) {
            float a = par[i][2 * k], b = par[i][2 * k + 1];
            if (!isfinite(a) || !isfinite(b))
                continue;
            lo = fmin(lo, fmin(a, b)), hi = fmax(hi, fmax(a, b));
            fprintf(f, "%.5g %.5g\n", a, b);
        }
        fprintf(f, "EOD\n");
        if (!(hi > lo))
            lo = -1, hi = 1;
        double pad = 0.03 * (hi - lo);
        fprintf(f, "unset logscale\nset key top left font ',9'\nset xrange [%g:%g]\nset yrange [%g:%g]\n"
                   "set size ratio -1\n", lo - pad, hi + pad, lo - pad, hi + pad);
        snprintf(t2, sizeof(t2), "measured (held out) [%s]", unit);
        fprintf(f, "set xlabel %s\n", gp_str(t, sizeof(t), t2));
        snprintf(t2, sizeof(t2), "predicted [%s]", unit);
        fprintf(f, "set ylabel %s\n", gp_str(t, sizeof(t), t2));
        if (isfinite(ratio))
            snprintf(t2, sizeof(t2), "%s (%s): NRMSE %.4f = %.2f x the noise floor", str(ent[i], "name"),
                     str(ent[i], "kind"), nrmse, ratio);
        else
            snprintf(t2, sizeof(t2), "%s (%s): NRMSE %.4f", str(ent[i], "name"), str(ent[i], "kind"), nrmse);
        fprintf(f, "set title %s\nplot $P%d using 1:2 with points pt 7 ps 0.3 lc rgb '#b0009E73' title 'held-out "
                   "values', x with lines lw 1.5 lc rgb '#d62728' title 'predicted = measured'\n",
                gp_str(t, sizeof(t), t2), i);
        /* per-output RMSE vs the noise floor */
        fprintf(f, "set size noratio\n");
        if (!res[i]) {
            no_residuals(f);
            continue;
        }
        double rmin = INFINITY, rmax = 0;
        fprintf(f, "$R%d << EOD\n# output rmse noise_std\n", i);
        for (long k = 0; k < nres[i]; k++) {
            double nz = ft->noise_std && ft->n_noise == nres[i] ? ft->noise_std[k] : ft->noise_rms;
            fprintf(f, "%ld ", k);
            gp_num(f, res[i][k]);
            fputc(' ', f);
            gp_num(f, nz);
            fputc('\n', f);
            if (res[i][k] > 0)
                rmin = fmin(rmin, res[i][k]), rmax = fmax(rmax, res[i][k]);
            if (nz > 0)
                rmin = fmin(rmin, nz), rmax = fmax(rmax, nz);
        }
        fprintf(f, "EOD\n");
        if (!(rmax > 0)) {
            no_residuals(f);
            continue;
        }
        int logy = rmax > 8 * rmin;
        fprintf(f, "set xrange [-0.5:%ld.5]\nset yrange [%s:*]\n%s", nres[i] - 1, logy ? "*" : "0",
                logy ? "set logscale y\n" : "");
        fprintf(f, "set xlabel 'output index'\n");
        snprintf(t2, sizeof(t2), "held-out RMSE [%s]%s", unit, logy ? ", log scale" : "");
        fprintf(f, "set ylabel %s\nset title 'per output: RMSE against the noise floor'\n", gp_str(t, sizeof(t), t2));
        fprintf(f, "plot $R%d using 1:2 with points pt 7 ps 0.6 lc rgb '#0072B2' title 'held-out RMSE'", i);
        if (ft->noise_std && ft->n_noise == nres[i])
            fprintf(f, ", $R%d using 1:3 with steps lw 1.5 lc rgb '#d62728' title 'noise floor (std of repeats)'", i);
        else if (isfinite(ft->noise_rms))
            fprintf(f, ", %g with lines lw 1.5 lc rgb '#d62728' title 'noise floor (rms)'", ft->noise_rms);
        fprintf(f, "\nunset logscale y\n");
    }
    fprintf(f, "unset multiplot\n");
    for (int i = 0; i < rows; i++)
        free(par[i]), free(res[i]);
    return fig_end(c, &fg);
}
