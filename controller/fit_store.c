/* Collected data and fitted surrogates on disk (see fit_store.h). */
#include "controller/fit_store.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controller/summary.h"
#include "controller/surrogates.h"
#include "devices/device.h"
#include "patctl/error.h"
#include "surrogate/fit_npy.h"

int json_write_file(const char *path, const cJSON *o, char *err, size_t errlen)
{
    char *text = cJSON_Print(o);
    if (!text)
        return PATCTL_ERR_NOMEM;
    char tmp[1200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) == EOF || fputc('\n', f) == EOF || fflush(f) || fsync(fileno(f)))
        rc = PATCTL_ERR_IO;
    if (f && fclose(f))
        rc = PATCTL_ERR_IO;
    if (!rc && rename(tmp, path))
        rc = PATCTL_ERR_IO;
    if (rc) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
    }
    free(text);
    return rc;
}

cJSON *json_read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long line = 1;
        for (const char *p = buf; at && p < at && *p; p++)
            line += *p == '\n';
        snprintf(err, errlen, "%s:%ld: not valid JSON", path, line);
    }
    free(buf);
    return j;
}

/* ---------------------------------------------------------------------- */
/* device description                                                      */

cJSON *desc_to_json(const struct patctl_device_desc *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", d->model);
    cJSON_AddStringToObject(o, "about", d->about);
    cJSON_AddNumberToObject(o, "n_in", d->n_in);
    cJSON_AddNumberToObject(o, "n_out", d->n_out);
    cJSON_AddStringToObject(o, "in_unit", d->in_unit);
    cJSON_AddStringToObject(o, "out_unit", d->out_unit);
    cJSON_AddNumberToObject(o, "in_lo", d->in_lo);
    cJSON_AddNumberToObject(o, "in_hi", d->in_hi);
    cJSON_AddNumberToObject(o, "flags", d->flags);
    cJSON *bl = cJSON_AddArrayToObject(o, "blocks");
    for (int b = 0; b < d->n_blocks; b++) {
        const struct patctl_param_block *k = &d->blocks[b];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", k->name);
        cJSON_AddStringToObject(e, "unit", k->unit);
        cJSON_AddStringToObject(e, "about", k->about);
        cJSON_AddNumberToObject(e, "rows", k->rows);
        cJSON_AddNumberToObject(e, "cols", k->cols);
        cJSON_AddNumberToObject(e, "lo", k->lo);
        cJSON_AddNumberToObject(e, "hi", k->hi);
        cJSON_AddNumberToObject(e, "max_step", k->max_step);
        cJSON_AddNumberToObject(e, "safe", k->safe);
        cJSON_AddNumberToObject(e, "init_lo", k->init_lo);
        cJSON_AddNumberToObject(e, "init_hi", k->init_hi);
        cJSON_AddItemToArray(bl, e);
    }
    return o;
}

static int get_num(const cJSON *o, const char *key, double *v)
{
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(i))
        return -1;
    *v = i->valuedouble;
    return 0;
}

static void get_str(const cJSON *o, const char *key, char *out, size_t n)
{
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, n, "%s", cJSON_IsString(i) ? i->valuestring : "");
}

int desc_from_json(const cJSON *j, struct patctl_device_desc *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    double v[5];
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(j, "blocks");
    if (!cJSON_IsObject(j) || get_num(j, "n_in", &v[0]) || get_num(j, "n_out", &v[1]) ||
        get_num(j, "in_lo", &v[2]) || get_num(j, "in_hi", &v[3]) || !cJSON_IsArray(bl) ||
        cJSON_GetArraySize(bl) > PATCTL_MAX_BLOCKS) {
        snprintf(err, errlen, "device description: expected n_in, n_out, in_lo, in_hi and up to %d blocks",
                 PATCTL_MAX_BLOCKS);
        return PATCTL_ERR_FORMAT;
    }
    get_str(j, "model", d->model, sizeof(d->model));
    get_str(j, "about", d->about, sizeof(d->about));
    get_str(j, "in_unit", d->in_unit, sizeof(d->in_unit));
    get_str(j, "out_unit", d->out_unit, sizeof(d->out_unit));
    d->n_in = (int32_t)v[0], d->n_out = (int32_t)v[1];
    d->in_lo = (float)v[2], d->in_hi = (float)v[3];
    if (!get_num(j, "flags", &v[4]))
        d->flags = (uint32_t)v[4];
    const cJSON *e;
    cJSON_ArrayForEach(e, bl) {
        struct patctl_param_block *k = &d->blocks[d->n_blocks];
        double r, c, lo, hi;
        if (get_num(e, "rows", &r) || get_num(e, "cols", &c) || get_num(e, "lo", &lo) ||
            get_num(e, "hi", &hi) || r < 1 || c < 1) {
            snprintf(err, errlen, "device description: block %d lacks rows/cols/lo/hi", d->n_blocks);
            return PATCTL_ERR_FORMAT;
        }
        get_str(e, "name", k->name, sizeof(k->name));
        get_str(e, "unit", k->unit, sizeof(k->unit));
        get_str(e, "about", k->about, sizeof(k->about));
        k->rows = (int32_t)r, k->cols = (int32_t)c, k->lo = (float)lo, k->hi = (float)hi;
        double x;
        k->max_step = get_num(e, "max_step", &x) ? 0.0f : (float)x;
        k->safe = get_num(e, "safe", &x) ? 0.0f : (float)x;
        k->init_lo = get_num(e, "init_lo", &x) ? k->lo : (float)x;
        k->init_hi = get_num(e, "init_hi", &x) ? k->hi : (float)x;
        d->n_blocks++;
    }
    if (d->n_in < 1 || d->n_out < 1) {
        snprintf(err, errlen, "device description: n_in and n_out must be positive");
        return PATCTL_ERR_FORMAT;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* collected data                                                          */

static int wr(const char *dir, const char *name, npy_dtype t, int nd, const long *shape,
              const void *data, char *err, size_t errlen)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return fit_npy_write(path, t, nd, shape, data, err, errlen);
}

int fitdata_write(const char *dir, const fit_set *d, cJSON *meta, char *err, size_t errlen)
{
    if (make_dirs(dir)) {
        snprintf(err, errlen, "%s: cannot create directory: %s", dir, strerror(errno));
        return PATCTL_ERR_IO;
    }
    long sx[2] = {d->S, d->n_in}, sy[2] = {d->S, d->n_out}, ss[1] = {d->S};
    long st[2] = {d->K, d->n_theta}, rx[2] = {d->G, d->n_in}, rs[1] = {d->G};
    long ry[3] = {d->R, d->G, d->n_out}, ns[1] = {d->n_out};
    int rc;
    if ((rc = wr(dir, "x.npy", NPY_F32, 2, sx, d->x, err, errlen)) ||
        (rc = wr(dir, "y.npy", NPY_F32, 2, sy, d->y, err, errlen)) ||
        (rc = wr(dir, "setting.npy", NPY_I32, 1, ss, d->setting, err, errlen)) ||
        (rc = wr(dir, "theta.npy", NPY_F32, 2, st, d->theta, err, errlen)) ||
        (rc = wr(dir, "rep_x.npy", NPY_F32, 2, rx, d->rep_x, err, errlen)) ||
        (rc = wr(dir, "rep_setting.npy", NPY_I32, 1, rs, d->rep_setting, err, errlen)) ||
        (rc = wr(dir, "rep_y.npy", NPY_F32, 3, ry, d->rep_y, err, errlen)))
        return rc;
    if (d->noise_std && (rc = wr(dir, "noise_std.npy", NPY_F32, 1, ns, d->noise_std, err, errlen)))
        return rc;
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "format");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "version");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "counts");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "noise_floor");
    cJSON_AddStringToObject(meta, "format", "patctl-collect");
    cJSON_AddNumberToObject(meta, "version", 1);
    cJSON *c = cJSON_AddObjectToObject(meta, "counts");
    cJSON_AddNumberToObject(c, "samples", (double)d->S);
    cJSON_AddNumberToObject(c, "settings", (double)d->K);
    cJSON_AddNumberToObject(c, "n_in", d->n_in);
    cJSON_AddNumberToObject(c, "n_out", d->n_out);
    cJSON_AddNumberToObject(c, "n_theta", (double)d->n_theta);
    cJSON_AddNumberToObject(c, "repeat_pairs", (double)d->G);
    cJSON_AddNumberToObject(c, "repeats", d->R);
    cJSON *nf = cJSON_AddObjectToObject(meta, "noise_floor");
    double rms = fit_set_noise_rms(d);
    if (rms >= 0) {
        cJSON_AddNumberToObject(nf, "rms", rms);
        cJSON_AddStringToObject(nf, "per_output", "noise_std.npy");
    } else {
        cJSON_AddNullToObject(nf, "rms");
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/meta.json", dir);
    return json_write_file(path, meta, err, errlen);
}

static int rd(const char *dir, const char *name, npy_dtype t, int nd, const long *expect, void **data,
              char *err, size_t errlen)
{
    char path[1200];
    long shape[FIT_NPY_MAX_DIM];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return fit_npy_read_shape(path, t, nd, expect, shape, data, err, errlen);
}

int fitdata_read(const char *dir, fit_set *d, cJSON **meta_out, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    if (meta_out)
        *meta_out = NULL;
    char path[1200];
    snprintf(path, sizeof(path), "%s/meta.json", dir);
    cJSON *meta = json_read_file(path, err, errlen);
    if (!meta)
        return PATCTL_ERR_IO;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(meta, "counts");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    double S, K, nin, nout, nt, G, R;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "patctl-collect") != 0 ||
        get_num(c, "samples", &S) || get_num(c, "settings", &K) || get_num(c, "n_in", &nin) ||
        get_num(c, "n_out", &nout) || get_num(c, "n_theta", &nt) || get_num(c, "repeat_pairs", &G) ||
        get_num(c, "repeats", &R)) {
        snprintf(err, errlen, "%s: not a patctl collect file (expected format \"patctl-collect\" and "
                 "counts: samples, settings, n_in, n_out, n_theta, repeat_pairs, repeats)", path);
        cJSON_Delete(meta);
        return PATCTL_ERR_FORMAT;
    }
    d->S = (long)S, d->K = (long)K, d->n_in = (int)nin, d->n_out = (int)nout;
    d->n_theta = (long)nt, d->G = (long)G, d->R = (int)R;
    long sx[2] = {d->S, d->n_in}, sy[2] = {d->S, d->n_out}, ss[1] = {d->S};
    long st[2] = {d->K, d->n_theta}, rx[2] = {d->G, d->n_in}, rs[1] = {d->G};
    long ry[3] = {d->R, d->G, d->n_out}, ns[1] = {d->n_out};
    int rc;
    if ((rc = rd(dir, "x.npy", NPY_F32, 2, sx, (void **)&d->x, err, errlen)) ||
        (rc = rd(dir, "y.npy", NPY_F32, 2, sy, (void **)&d->y, err, errlen)) ||
        (rc = rd(dir, "setting.npy", NPY_I32, 1, ss, (void **)&d->setting, err, errlen)) ||
        (rc = rd(dir, "theta.npy", NPY_F32, 2, st, (void **)&d->theta, err, errlen)) ||
        (rc = rd(dir, "rep_x.npy", NPY_F32, 2, rx, (void **)&d->rep_x, err, errlen)) ||
        (rc = rd(dir, "rep_setting.npy", NPY_I32, 1, rs, (void **)&d->rep_setting, err, errlen)) ||
        (rc = rd(dir, "rep_y.npy", NPY_F32, 3, ry, (void **)&d->rep_y, err, errlen)))
        goto fail;
    if (d->G > 0 && d->R >= 2 &&
        (rc = rd(dir, "noise_std.npy", NPY_F32, 1, ns, (void **)&d->noise_std, err, errlen)))
        goto fail;
    char cerr[256];
    if ((rc = fit_set_check(d, cerr, sizeof(cerr)))) {
        snprintf(err, errlen, "%s: %s", dir, cerr);
        goto fail;
    }
    if (meta_out)
        *meta_out = meta;
    else
        cJSON_Delete(meta);
    return 0;
fail:
    cJSON_Delete(meta);
    fit_set_free(d);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* fitted surrogates                                                       */

/* NAME.json -> dir, stem */
static void split_path(const char *path, char *dir, size_t dn, char *stem, size_t sn)
{
    char a[1024], b[1024];
    snprintf(a, sizeof(a), "%s", path);
    snprintf(b, sizeof(b), "%s", path);
    snprintf(dir, dn, "%s", dirname(a));
    snprintf(stem, sn, "%s", basename(b));
    char *dot = strrchr(stem, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = '\0';
}

static void merge_extra(cJSON *o, const cJSON *extra)
{
    const cJSON *e;
    if (!extra)
        return;
    cJSON_ArrayForEach(e, extra) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, e->string);
        cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
    }
}

int fitted_osc_save(const char *path, const osc_model *m, const float *D, const fit_osc_result *r,
                    const cJSON *extra, char *err, size_t errlen)
{
    char dir[1024], stem[512], file[600], arr[1700];
    split_path(path, dir, sizeof(dir), stem, sizeof(stem));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "patctl-surrogate");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "kind", "oscillators-greybox");
    cJSON_AddNumberToObject(o, "n", m->n);
    cJSON_AddNumberToObject(o, "steps", m->steps);
    cJSON_AddNumberToObject(o, "t_end", m->t_end);
    cJSON *k = cJSON_AddObjectToObject(o, "constants");
    osc_consts kk = m->k, se = r->se;
    for (int i = 0; i < OSC_N_CONSTS; i++) {
        cJSON *e = cJSON_AddObjectToObject(k, fit_osc_const_name(i));
        cJSON_AddNumberToObject(e, "value", *fit_osc_const_ptr(&kk, i));
        cJSON_AddNumberToObject(e, "se", *fit_osc_const_ptr(&se, i));
        cJSON_AddBoolToObject(e, "fitted", (r->mask >> i) & 1u);
    }
    cJSON *f = cJSON_AddObjectToObject(o, "fit");
    cJSON_AddNumberToObject(f, "chi2", r->chi2);
    cJSON_AddNumberToObject(f, "dof", r->dof);
    cJSON_AddNumberToObject(f, "chi2_dof", r->chi2_dof);
    cJSON_AddNumberToObject(f, "residuals", (double)r->n_resid);
    cJSON_AddNumberToObject(f, "lm_iterations", r->iters);
    cJSON_AddNumberToObject(f, "coupling_iterations", r->epochs_done);
    cJSON_AddNumberToObject(f, "rms_train", r->rms_train);
    cJSON_AddNumberToObject(f, "seconds", r->seconds);
    int rc = 0;
    if (D) {
        snprintf(file, sizeof(file), "%s_D.npy", stem);
        snprintf(arr, sizeof(arr), "%s/%s", dir, file);
        long sh[2] = {m->n, m->n};
        if ((rc = fit_npy_write(arr, NPY_F32, 2, sh, D, err, errlen))) {
            cJSON_Delete(o);
            return rc;
        }
        cJSON_AddStringToObject(o, "coupling", file);
    } else {
        cJSON_AddNullToObject(o, "coupling");
    }
    merge_extra(o, extra);
    rc = json_write_file(path, o, err, errlen);
    cJSON_Delete(o);
    return rc;
}

int fitted_mlp_save(const char *path, const mlp *m, const mlp_train_result *r, const cJSON *extra,
                    char *err, size_t errlen)
{
    char dir[1024], stem[512], fp[600], fn[600], arr[1700];
    split_path(path, dir, sizeof(dir), stem, sizeof(stem));
    snprintf(fp, sizeof(fp), "%s_params.npy", stem);
    snprintf(fn, sizeof(fn), "%s_norm.npy", stem);
    long np = m->n_params, nn = m->n_norm;
    int rc;
    snprintf(arr, sizeof(arr), "%s/%s", dir, fp);
    if ((rc = fit_npy_write(arr, NPY_F32, 1, &np, m->params, err, errlen)))
        return rc;
    snprintf(arr, sizeof(arr), "%s/%s", dir, fn);
    if ((rc = fit_npy_write(arr, NPY_F32, 1, &nn, m->norm, err, errlen)))
        return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "patctl-surrogate");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "kind", "mlp");
    cJSON_AddNumberToObject(o, "n_x", m->sh.n_x);
    cJSON_AddNumberToObject(o, "n_theta", (double)m->sh.n_theta);
    cJSON_AddNumberToObject(o, "n_out", m->sh.n_out);
    cJSON_AddNumberToObject(o, "depth", m->sh.depth);
    cJSON_AddNumberToObject(o, "width", m->sh.width);
    cJSON_AddBoolToObject(o, "skip", m->sh.skip);
    cJSON_AddStringToObject(o, "activation", "tanh");
    cJSON_AddStringToObject(o, "params", fp);
    cJSON_AddStringToObject(o, "norm", fn);
    cJSON_AddStringToObject(o, "layout",
                            "params: W0x[width,n_x] W0t[width,n_theta] b0[width] (Wl[width,width] "
                            "bl[width])*(depth-1) Wo[n_out,width] bo[n_out] Ws[n_out,n_x] if skip; "
                            "norm: mx sx [n_x] mt st [n_theta] my sy [n_out]");
    if (r) {
        cJSON *t = cJSON_AddObjectToObject(o, "train");
        cJSON_AddNumberToObject(t, "epochs", r->epochs);
        cJSON_AddNumberToObject(t, "best_epoch", r->best_epoch);
        cJSON_AddNumberToObject(t, "train_rmse", r->train_rmse);
        cJSON_AddNumberToObject(t, "val_rmse", r->val_rmse);
        cJSON_AddNumberToObject(t, "seconds", r->seconds);
    }
    merge_extra(o, extra);
    rc = json_write_file(path, o, err, errlen);
    cJSON_Delete(o);
    return rc;
}

static int load_vec(const char *dir, const cJSON *o, const char *key, long n, float **out,
                    const char *path, char *err, size_t errlen)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(f)) {
        snprintf(err, errlen, "%s: key \"%s\": expected a file name", path, key);
        return PATCTL_ERR_FORMAT;
    }
    char arr[1700];
    long shape[FIT_NPY_MAX_DIM];
    snprintf(arr, sizeof(arr), "%s/%s", dir, f->valuestring);
    return fit_npy_read_shape(arr, NPY_F32, 1, &n, shape, (void **)out, err, errlen);
}

static int all_finite(const float *v, long n)
{
    for (long i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

int fitted_consts_save(const char *path, const char *model, const fit_consts_view *v,
                       const fit_consts_result *r, const cJSON *extra, char *err, size_t errlen)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "patctl-surrogate");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "kind", "physics-consts");
    cJSON_AddStringToObject(o, "model", model);
    cJSON *k = cJSON_AddObjectToObject(o, "constants");
    for (int j = 0; j < v->n; j++) {
        cJSON *e = cJSON_AddObjectToObject(k, v->name[j]);
        cJSON_AddNumberToObject(e, "value", r->value[j]);
        cJSON_AddNumberToObject(e, "se", r->se[j]);
        cJSON_AddBoolToObject(e, "fitted", (r->mask >> j) & 1u);
    }
    if (v->note)
        cJSON_AddStringToObject(o, "note", v->note);
    cJSON *f = cJSON_AddObjectToObject(o, "fit");
    cJSON_AddNumberToObject(f, "chi2", r->chi2);
    cJSON_AddNumberToObject(f, "dof", r->dof);
    cJSON_AddNumberToObject(f, "chi2_dof", r->chi2_dof);
    cJSON_AddNumberToObject(f, "residuals", (double)r->n_resid);
    cJSON_AddNumberToObject(f, "lm_iterations", r->iters);
    cJSON_AddNumberToObject(f, "seconds", r->seconds);
    cJSON_AddStringToObject(f, "jacobian", "central differences in each constant (checked against the exact VJP)");
    merge_extra(o, extra);
    int rc = json_write_file(path, o, err, errlen);
    cJSON_Delete(o);
    return rc;
}

int fitted_load(const char *path, const char *name, const struct patctl_device_desc *desc,
                const char *options, surrogate **out, char *err, size_t errlen)
{
    *out = NULL;
    cJSON *o = json_read_file(path, err, errlen);
    if (!o)
        return PATCTL_ERR_IO;
    char dir[1024], stem[512];
    split_path(path, dir, sizeof(dir), stem, sizeof(stem));
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    int rc = PATCTL_ERR_FORMAT;
    long n_theta = device_desc_n_theta(desc);
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "patctl-surrogate") != 0 ||
        !cJSON_IsString(kind)) {
        snprintf(err, errlen, "%s: not a patctl surrogate file (expected format \"patctl-surrogate\" "
                 "and a kind)", path);
        goto out;
    }
    if (strcmp(kind->valuestring, "oscillators-greybox") == 0) {
        double n, steps, t_end;
        if (get_num(o, "n", &n) || get_num(o, "steps", &steps) || get_num(o, "t_end", &t_end) ||
            steps < 1 || !(t_end > 0)) {
            snprintf(err, errlen, "%s: expected n, steps >= 1 and t_end > 0", path);
            goto out;
        }
        if (strcmp(desc->model, "oscillators") != 0 || desc->n_in != (int)n || desc->n_out != (int)n ||
            n_theta != (long)n * (long)n + (long)n) {
            snprintf(err, errlen, "%s: a %d-oscillator grey-box model does not fit device model '%s' with "
                     "%d inputs", path, (int)n, desc->model, desc->n_in);
            rc = PATCTL_ERR_CONFIG;
            goto out;
        }
        osc_model m = osc_model_nominal((int)n);
        m.steps = (int)steps, m.t_end = (float)t_end;
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "constants");
        for (int i = 0; i < OSC_N_CONSTS; i++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(k, fit_osc_const_name(i));
            double v;
            if (get_num(e, "value", &v) || !isfinite(v)) {
                snprintf(err, errlen, "%s: constants.%s.value: expected a finite number", path,
                         fit_osc_const_name(i));
                goto out;
            }
            *fit_osc_const_ptr(&m.k, i) = (float)v;
        }
        float *D = NULL;
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(o, "coupling");
        if (cf && !cJSON_IsNull(cf)) {
            char arr[1700];
            long shape[FIT_NPY_MAX_DIM], want[2] = {(long)n, (long)n};
            if (!cJSON_IsString(cf)) {
                snprintf(err, errlen, "%s: key \"coupling\": expected a file name or null", path);
                goto out;
            }
            snprintf(arr, sizeof(arr), "%s/%s", dir, cf->valuestring);
            if ((rc = fit_npy_read_shape(arr, NPY_F32, 2, want, shape, (void **)&D, err, errlen)))
                goto out;
            if (!all_finite(D, (long)n * (long)n)) {
                snprintf(err, errlen, "%s: coupling correction contains NaN/Inf", path);
                free(D);
                rc = PATCTL_ERR_NONFINITE;
                goto out;
            }
            /* the oscillator VJP relies on a symmetric coupling (oscillator.h) */
            long nd = (long)n;
            for (long i = 0; i < nd; i++)
                for (long j = 0; j < i; j++)
                    if (D[i * nd + j] != D[j * nd + i]) {
                        snprintf(err, errlen, "%s: coupling correction %s is not symmetric (entry [%ld,%ld] %g, [%ld,%ld] %g)",
                                 path, cf->valuestring, i, j, D[i * nd + j], j, i, D[j * nd + i]);
                        free(D);
                        rc = PATCTL_ERR_FORMAT;
                        goto out;
                    }
        }
        *out = surrogate_osc_fitted_new(&m, D);
        free(D);
        rc = *out ? 0 : PATCTL_ERR_NOMEM;
    } else if (strcmp(kind->valuestring, "physics-consts") == 0) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "constants");
        if (!cJSON_IsString(model) || !cJSON_IsObject(k)) {
            snprintf(err, errlen, "%s: expected model and constants", path);
            goto out;
        }
        if (strcmp(model->valuestring, desc->model) != 0) {
            snprintf(err, errlen, "%s: constants of a '%s' model do not fit device model '%s'", path,
                     model->valuestring, desc->model);
            rc = PATCTL_ERR_CONFIG;
            goto out;
        }
        char merr[512] = "";
        if ((rc = surrogate_make(out, name, desc, options, "nominal", merr, sizeof(merr)))) {
            snprintf(err, errlen, "%s: %s", path, merr);
            goto out;
        }
        fit_consts_view v;
        if (fit_consts_view_of(*out, &v)) {
            snprintf(err, errlen, "%s: the %s surrogate has no fittable constants", path, desc->model);
            surrogate_destroy(out);
            rc = PATCTL_ERR_FORMAT;
            goto out;
        }
        for (int j = 0; j < v.n; j++) {
            double val;
            if (get_num(cJSON_GetObjectItemCaseSensitive(k, v.name[j]), "value", &val) || !isfinite(val)) {
                snprintf(err, errlen, "%s: constants.%s.value: expected a finite number", path, v.name[j]);
                surrogate_destroy(out);
                rc = PATCTL_ERR_FORMAT;
                goto out;
            }
            *v.ptr[j] = val;
        }
        rc = 0;
    } else if (strcmp(kind->valuestring, "mlp") == 0) {
        double nx, nt, no, depth, width;
        const cJSON *skip = cJSON_GetObjectItemCaseSensitive(o, "skip");
        if (get_num(o, "n_x", &nx) || get_num(o, "n_theta", &nt) || get_num(o, "n_out", &no) ||
            get_num(o, "depth", &depth) || get_num(o, "width", &width) || !cJSON_IsBool(skip)) {
            snprintf(err, errlen, "%s: expected n_x, n_theta, n_out, depth, width, skip", path);
            goto out;
        }
        if ((int)nx != desc->n_in || (int)no != desc->n_out || (long)nt != n_theta) {
            snprintf(err, errlen, "%s: an MLP for %d inputs, %d outputs, %ld parameters does not fit a "
                     "device with %d, %d, %ld", path, (int)nx, (int)no, (long)nt, desc->n_in,
                     desc->n_out, n_theta);
            rc = PATCTL_ERR_CONFIG;
            goto out;
        }
        mlp_shape sh = {.n_x = (int)nx, .n_theta = (long)nt, .n_out = (int)no, .depth = (int)depth,
                        .width = (int)width, .skip = cJSON_IsTrue(skip)};
        mlp *m = mlp_new(&sh);
        if (!m) {
            snprintf(err, errlen, "%s: bad MLP shape (depth %d, width %d)", path, sh.depth, sh.width);
            goto out;
        }
        float *p = NULL, *nv = NULL;
        if ((rc = load_vec(dir, o, "params", m->n_params, &p, path, err, errlen)) ||
            (rc = load_vec(dir, o, "norm", m->n_norm, &nv, path, err, errlen))) {
            free(p);
            mlp_free(m);
            goto out;
        }
        if (!all_finite(p, m->n_params) || !all_finite(nv, m->n_norm)) {
            snprintf(err, errlen, "%s: MLP parameters contain NaN/Inf", path);
            free(p), free(nv);
            mlp_free(m);
            rc = PATCTL_ERR_NONFINITE;
            goto out;
        }
        memcpy(m->params, p, sizeof(float) * (size_t)m->n_params);
        memcpy(m->norm, nv, sizeof(float) * (size_t)m->n_norm);
        free(p), free(nv);
        *out = surrogate_mlp_new(m);
        if (!*out) {
            mlp_free(m);
            rc = PATCTL_ERR_NOMEM;
        } else {
            rc = 0;
        }
    } else {
        snprintf(err, errlen, "%s: unknown surrogate kind '%s' (expected oscillators-greybox, "
                 "physics-consts or mlp)", path,
                 kind->valuestring);
    }
out:
    cJSON_Delete(o);
    return rc;
}
