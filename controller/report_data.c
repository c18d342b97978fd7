/* patctl report: loading a run from its directory (run.sqlite, read-only,
 * and summary.json).  Schema: controller/runstore.c (SCHEMA) and README.md. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "controller/report_int.h"
#include "controller/run_setup.h"
#include "controller/runstore.h"
#include "patctl/error.h"

static char *dup_col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static double dbl_col(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

int rep_blob_f32(sqlite3_stmt *st, int col, float *dst, long n)
{
    const void *b = sqlite3_column_blob(st, col);
    long bytes = sqlite3_column_bytes(st, col);
    if (!b || bytes != 4 * n)
        return PATCTL_ERR_FORMAT;
    runstore_f32_from_le(dst, b, n);
    return 0;
}

/* Prepare sql; on failure note the error in err (tables missing in an
 * unexpected file). */
static sqlite3_stmt *prep(rep_run *r, const char *sql, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s/%s: %s", r->dir, RUNSTORE_FILE, sqlite3_errmsg(r->db));
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int load_start(rep_run *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = prep(r, "SELECT uid, created, created_unix, host, patctl_version, blas, mode, seed,"
                               " config, config_source, argv FROM run", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    if (sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "%s/%s: no start record (the run table is empty)", r->dir, RUNSTORE_FILE);
        sqlite3_finalize(st);
        return PATCTL_ERR_FORMAT;
    }
    r->uid = dup_col(st, 0);
    r->created = dup_col(st, 1);
    r->created_unix = dbl_col(st, 2);
    r->host = dup_col(st, 3);
    r->version = dup_col(st, 4);
    r->blas = dup_col(st, 5);
    r->mode = dup_col(st, 6);
    r->seed = sqlite3_column_int64(st, 7);
    r->config = dup_col(st, 8);
    r->config_source = dup_col(st, 9);
    r->argv = dup_col(st, 10);
    sqlite3_finalize(st);
    return r->uid && r->created && r->host && r->version && r->blas && r->mode && r->config &&
                   r->config_source && r->argv
               ? 0
               : PATCTL_ERR_NOMEM;
}

static int load_devices(rep_run *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = prep(r, "SELECT idx, name, driver, options, surrogate, limits, steps, seed, model, about,"
                               " n_in, n_out, in_unit, out_unit, in_lo, in_hi, simulated, has_vjp, n_theta"
                               " FROM device ORDER BY idx", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW && r->n_dev < CFG_MAX_DEVICES) {
        rep_device *d = &r->dev[r->n_dev++];
        d->idx = sqlite3_column_int(st, 0);
        copy_col(d->name, sizeof(d->name), st, 1);
        d->driver = dup_col(st, 2);
        d->options = dup_col(st, 3);
        d->surrogate = dup_col(st, 4);
        copy_col(d->limits, sizeof(d->limits), st, 5);
        copy_col(d->steps, sizeof(d->steps), st, 6);
        copy_col(d->seed, sizeof(d->seed), st, 7);
        copy_col(d->model, sizeof(d->model), st, 8);
        d->about = dup_col(st, 9);
        d->n_in = sqlite3_column_int(st, 10);
        d->n_out = sqlite3_column_int(st, 11);
        copy_col(d->in_unit, sizeof(d->in_unit), st, 12);
        copy_col(d->out_unit, sizeof(d->out_unit), st, 13);
        d->in_lo = dbl_col(st, 14);
        d->in_hi = dbl_col(st, 15);
        d->simulated = sqlite3_column_int(st, 16);
        d->has_vjp = sqlite3_column_int(st, 17);
        d->n_theta = (long)sqlite3_column_int64(st, 18);
        if (!d->driver || !d->options || !d->surrogate || !d->about)
            rc = PATCTL_ERR_NOMEM;
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    st = prep(r, "SELECT device, block, name, unit, about, rows, cols, theta_offset, lo, hi, max_step, safe,"
                 " init_lo, init_hi FROM param_block ORDER BY device, block", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int di = sqlite3_column_int(st, 0), b = sqlite3_column_int(st, 1);
        for (int i = 0; i < r->n_dev; i++) {
            rep_device *d = &r->dev[i];
            if (d->idx != di || b < 0 || b >= PATCTL_MAX_BLOCKS)
                continue;
            rep_block *k = &d->blocks[b];
            copy_col(k->name, sizeof(k->name), st, 2);
            copy_col(k->unit, sizeof(k->unit), st, 3);
            copy_col(k->about, sizeof(k->about), st, 4);
            k->rows = sqlite3_column_int(st, 5);
            k->cols = sqlite3_column_int(st, 6);
            k->theta_offset = (long)sqlite3_column_int64(st, 7);
            k->param_offset = -1;
            k->lo = dbl_col(st, 8);
            k->hi = dbl_col(st, 9);
            k->max_step = dbl_col(st, 10);
            k->safe = dbl_col(st, 11);
            k->init_lo = dbl_col(st, 12);
            k->init_hi = dbl_col(st, 13);
            if (b + 1 > d->n_blocks)
                d->n_blocks = b + 1;
        }
    }
    sqlite3_finalize(st);
    /* where each block lives in the model's flat parameter vector */
    st = prep(r, "SELECT device, block, offset, rows * cols FROM param_view", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long end = (long)(sqlite3_column_int64(st, 2) + sqlite3_column_int64(st, 3));
        if (end > r->n_params)
            r->n_params = end;
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            continue;
        int di = sqlite3_column_int(st, 0), b = sqlite3_column_int(st, 1);
        for (int i = 0; i < r->n_dev; i++)
            if (r->dev[i].idx == di && b >= 0 && b < r->dev[i].n_blocks)
                r->dev[i].blocks[b].param_offset = (long)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    /* journal and log counts per device */
    st = prep(r, "SELECT device, count(*), sum(rc = 0 AND batch > 0), sum(rc != 0), sum(attempt > 0),"
                 " sum(ramp != 0), sum(superseded != 0) FROM query GROUP BY device", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int i = 0; i < r->n_dev; i++)
            if (r->dev[i].idx == sqlite3_column_int(st, 0)) {
                rep_device *d = &r->dev[i];
                d->j_rows = (long)sqlite3_column_int64(st, 1);
                d->j_data = (long)sqlite3_column_int64(st, 2);
                d->j_faults = (long)sqlite3_column_int64(st, 3);
                d->j_retries = (long)sqlite3_column_int64(st, 4);
                d->j_ramps = (long)sqlite3_column_int64(st, 5);
                d->j_superseded = (long)sqlite3_column_int64(st, 6);
            }
    sqlite3_finalize(st);
    st = prep(r, "SELECT device, count(*) FROM setting GROUP BY device", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int i = 0; i < r->n_dev; i++)
            if (r->dev[i].idx == sqlite3_column_int(st, 0))
                r->dev[i].settings = (long)sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    st = prep(r, "SELECT device, sum(level = 'warning'), sum(level = 'fault'), count(*) FROM log GROUP BY device",
              err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW) {
        r->n_log += (long)sqlite3_column_int64(st, 3);
        const unsigned char *name = sqlite3_column_text(st, 0);
        for (int i = 0; i < r->n_dev && name; i++)
            if (strcmp(r->dev[i].name, (const char *)name) == 0) {
                r->dev[i].log_warn = (long)sqlite3_column_int64(st, 1);
                r->dev[i].log_fault = (long)sqlite3_column_int64(st, 2);
            }
    }
    sqlite3_finalize(st);
    return 0;
}

static int load_sessions(rep_run *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = prep(r, "SELECT id, kind, argv, started, resumed_from, stopped, status, reason, steps,"
                               " epochs_done, device_queries, device_samples, ramp_steps, clamped, rejected,"
                               " faults, retries, device_seconds, test_accuracy, devices_safe"
                               " FROM session ORDER BY id", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    int rc = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        rep_session *n = realloc(r->sessions, sizeof(*n) * (size_t)(r->n_sessions + 1));
        if (!n) {
            rc = PATCTL_ERR_NOMEM;
            break;
        }
        r->sessions = n;
        rep_session *s = &n[r->n_sessions++];
        memset(s, 0, sizeof(*s));
        s->id = (long)sqlite3_column_int64(st, 0);
        s->kind = dup_col(st, 1);
        s->argv = dup_col(st, 2);
        s->started = dbl_col(st, 3);
        s->resumed_from = (long)sqlite3_column_int64(st, 4);
        s->stopped = dbl_col(st, 5);
        s->status = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL : dup_col(st, 6);
        s->reason = dup_col(st, 7);
        s->steps = (long)sqlite3_column_int64(st, 8);
        s->epochs_done = (long)sqlite3_column_int64(st, 9);
        s->queries = sqlite3_column_int64(st, 10);
        s->samples = sqlite3_column_int64(st, 11);
        s->ramp_steps = sqlite3_column_int64(st, 12);
        s->clamped = sqlite3_column_int64(st, 13);
        s->rejected = sqlite3_column_int64(st, 14);
        s->faults = sqlite3_column_int64(st, 15);
        s->retries = sqlite3_column_int64(st, 16);
        s->device_seconds = dbl_col(st, 17);
        s->test_accuracy = dbl_col(st, 18);
        s->devices_safe = sqlite3_column_type(st, 19) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 19);
        if (!s->kind || !s->argv || !s->reason)
            rc = PATCTL_ERR_NOMEM;
    }
    sqlite3_finalize(st);
    return rc;
}

static int load_metrics(rep_run *r, char *err, size_t errlen)
{
    /* schema 2: skipped steps have rows (status 'skipped', loss NULL); they
     * are counted, and their time goes into the time axis, but they are no
     * points of the curves.  Schema 1 has only applied steps. */
    sqlite3_stmt *st = NULL;
    int v2 = sqlite3_prepare_v2(r->db, "SELECT status, attempt FROM step LIMIT 0", -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    st = prep(r, v2 ? "SELECT count(*), total(status = 'skipped') FROM step" : "SELECT count(*), 0 FROM step",
              err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    long n = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        n = (long)sqlite3_column_int64(st, 0);
        r->n_skipped = (long)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (n > 0) {
        double **cols[] = {&r->st_step, &r->st_epoch, &r->st_loss, &r->st_acc, &r->st_time, &r->st_queries, &r->st_t};
        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
            if (!(*cols[i] = malloc(sizeof(double) * (size_t)n)))
                return PATCTL_ERR_NOMEM;
        st = prep(r, v2 ? "SELECT step, epoch, loss, accuracy, device_seconds, compute_seconds, device_queries, t,"
                          " status = 'skipped' FROM step ORDER BY attempt"
                        : "SELECT step, epoch, loss, accuracy, device_seconds, compute_seconds, device_queries, t,"
                          " 0 FROM step ORDER BY step", err, errlen);
        if (!st)
            return PATCTL_ERR_FORMAT;
        double cum = 0;
        long k = 0;
        while (k < n && sqlite3_step(st) == SQLITE_ROW) {
            if (sqlite3_column_int(st, 8)) { /* skipped: its time passed, no point */
                double ds = dbl_col(st, 4), cs = dbl_col(st, 5);
                cum += (isfinite(ds) ? ds : 0) + (isfinite(cs) ? cs : 0);
                continue;
            }
            r->st_step[k] = sqlite3_column_double(st, 0);
            r->st_epoch[k] = sqlite3_column_double(st, 1);
            r->st_loss[k] = dbl_col(st, 2);
            r->st_acc[k] = dbl_col(st, 3);
            double ds = dbl_col(st, 4), cs = dbl_col(st, 5);
            cum += (isfinite(ds) ? ds : 0) + (isfinite(cs) ? cs : 0);
            r->st_time[k] = cum;
            r->st_queries[k] = dbl_col(st, 6);
            r->st_t[k] = dbl_col(st, 7);
            k++;
        }
        sqlite3_finalize(st);
        r->n_steps = k;
    }
    st = prep(r, "SELECT epoch, steps, loss, train_accuracy, test_accuracy, seconds, device_queries, t"
                 " FROM epoch ORDER BY epoch", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        rep_epoch *e = realloc(r->epochs, sizeof(*e) * (size_t)(r->n_epochs + 1));
        if (!e) {
            rc = PATCTL_ERR_NOMEM;
            break;
        }
        r->epochs = e;
        e = &e[r->n_epochs++];
        e->epoch = sqlite3_column_int(st, 0);
        e->steps = (long)sqlite3_column_int64(st, 1);
        e->loss = dbl_col(st, 2);
        e->train_acc = dbl_col(st, 3);
        e->test_acc = dbl_col(st, 4);
        e->seconds = dbl_col(st, 5);
        e->queries = sqlite3_column_int64(st, 6);
        e->t = dbl_col(st, 7);
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    /* schema 3: patctl eval --prune's evaluations (prunable_entries > 0, of
     * a checkpoint) are kept apart; training's own evaluations after train
     * --prune (no checkpoint) stay on the accuracy curve */
    sqlite3_stmt *probe = NULL;
    int has_prune = sqlite3_prepare_v2(r->db, "SELECT prunable_entries FROM evaluation LIMIT 0", -1, &probe,
                                       NULL) == SQLITE_OK;
    sqlite3_finalize(probe);
    st = prep(r, has_prune ? "SELECT id, step, epoch, n, accuracy, seconds, device_queries, classes, confusion, t,"
                             " pruned, pruned_entries, prunable_entries, checkpoint, nrmse FROM evaluation ORDER BY id"
                           : "SELECT id, step, epoch, n, accuracy, seconds, device_queries, classes, confusion, t"
                             " FROM evaluation ORDER BY id",
              err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        if (has_prune && sqlite3_column_int64(st, 12) > 0 && sqlite3_column_type(st, 13) != SQLITE_NULL) {
            rep_prune *p = realloc(r->prunes, sizeof(*p) * (size_t)(r->n_prunes + 1));
            if (!p) {
                rc = PATCTL_ERR_NOMEM;
                break;
            }
            r->prunes = p;
            p = &p[r->n_prunes++];
            p->fraction = dbl_col(st, 10);
            p->accuracy = dbl_col(st, 4);
            p->pruned = (long)sqlite3_column_int64(st, 11);
            p->prunable = (long)sqlite3_column_int64(st, 12);
            p->checkpoint = (long)sqlite3_column_int64(st, 13);
            continue;
        }
        rep_eval *e = realloc(r->evals, sizeof(*e) * (size_t)(r->n_evals + 1));
        if (!e) {
            rc = PATCTL_ERR_NOMEM;
            break;
        }
        r->evals = e;
        e = &e[r->n_evals++];
        memset(e, 0, sizeof(*e));
        e->id = (long)sqlite3_column_int64(st, 0);
        e->step = (long)sqlite3_column_int64(st, 1);
        e->epoch = sqlite3_column_int(st, 2);
        e->n = (long)sqlite3_column_int64(st, 3);
        e->accuracy = dbl_col(st, 4);
        e->seconds = dbl_col(st, 5);
        e->nrmse = has_prune ? dbl_col(st, 14) : NAN;
        if (has_prune && sqlite3_column_int64(st, 12) > 0)
            e->pruned = (double)sqlite3_column_int64(st, 11) / (double)sqlite3_column_int64(st, 12);
        e->queries = sqlite3_column_int64(st, 6);
        e->classes = sqlite3_column_int(st, 7);
        e->t = dbl_col(st, 9);
        const unsigned char *b = sqlite3_column_blob(st, 8);
        long cc = (long)e->classes * e->classes;
        if (b && e->classes > 0 && e->classes <= 1000 && sqlite3_column_bytes(st, 8) == 4 * cc) {
            e->confusion = malloc(sizeof(int) * (size_t)cc);
            if (!e->confusion) {
                rc = PATCTL_ERR_NOMEM;
                break;
            }
            for (long i = 0; i < cc; i++)   /* little-endian int32 */
                e->confusion[i] = (int)((uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                                        (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24);
        }
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    st = prep(r, "SELECT id, step, epoch, final, t FROM checkpoint ORDER BY id", err, errlen);
    if (!st)
        return PATCTL_ERR_FORMAT;
    while (sqlite3_step(st) == SQLITE_ROW) {
        rep_ckpt *c = realloc(r->ckpts, sizeof(*c) * (size_t)(r->n_ckpts + 1));
        if (!c)
            return sqlite3_finalize(st), PATCTL_ERR_NOMEM;
        r->ckpts = c;
        c = &c[r->n_ckpts++];
        c->id = (long)sqlite3_column_int64(st, 0);
        c->step = (long)sqlite3_column_int64(st, 1);
        c->epoch = sqlite3_column_int(st, 2);
        c->final = sqlite3_column_int(st, 3);
        c->t = dbl_col(st, 4);
    }
    sqlite3_finalize(st);
    return 0;
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1 || cap > (1u << 26))
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
        } else {
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

/* Without run.sqlite: what summary.json says (epochs, the evaluation). */
static int load_from_summary(rep_run *r)
{
    const cJSON *s = r->summary;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(s, "mode");
    r->mode = strdup(cJSON_IsString(m) ? m->valuestring : "?");
    r->uid = strdup("");
    r->created = strdup("");
    r->host = strdup("");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "patctl_version");
    r->version = strdup(cJSON_IsString(v) ? v->valuestring : "");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, "blas");
    r->blas = strdup(cJSON_IsString(b) ? b->valuestring : "");
    r->config = strdup("");
    r->config_source = strdup("");
    r->argv = strdup("");
    r->created_unix = NAN;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(s, "seed");
    r->seed = cJSON_IsNumber(seed) ? (long long)seed->valuedouble : 0;
    if (!r->mode || !r->uid || !r->created || !r->host || !r->version || !r->blas || !r->config ||
        !r->config_source || !r->argv)
        return PATCTL_ERR_NOMEM;
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(s, "epoch_metrics"), *e;
    int ne = cJSON_GetArraySize(em);
    if (ne > 0 && !(r->epochs = calloc((size_t)ne, sizeof(rep_epoch))))
        return PATCTL_ERR_NOMEM;
    double cum = 0;
    cJSON_ArrayForEach(e, em)
    {
        rep_epoch *x = &r->epochs[r->n_epochs++];
        const cJSON *a;
        x->epoch = r->n_epochs;
        x->loss = cJSON_IsNumber(a = cJSON_GetObjectItemCaseSensitive(e, "loss")) ? a->valuedouble : NAN;
        x->train_acc = cJSON_IsNumber(a = cJSON_GetObjectItemCaseSensitive(e, "train_accuracy")) ? a->valuedouble
                                                                                                 : NAN;
        x->seconds = cJSON_IsNumber(a = cJSON_GetObjectItemCaseSensitive(e, "seconds")) ? a->valuedouble : NAN;
        cum += isfinite(x->seconds) ? x->seconds : 0;
        x->t = cum;  /* training seconds (no wall clock in summary.json) */
        x->test_acc = NAN;
        x->queries = -1;
    }
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(s, "test_accuracy");
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(s, "confusion");
    if (cJSON_IsNumber(acc)) {
        if (!(r->evals = calloc(1, sizeof(rep_eval))))
            return PATCTL_ERR_NOMEM;
        rep_eval *x = &r->evals[r->n_evals++];
        x->accuracy = acc->valuedouble;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "steps");
        x->step = cJSON_IsNumber(st) ? (long)st->valuedouble : 0;
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(s, "test_limit");
        x->n = cJSON_IsNumber(tl) ? (long)tl->valuedouble : 0;
        x->t = NAN;
        int k = cJSON_GetArraySize(conf);
        if (k > 0 && k <= 1000 && (x->confusion = calloc((size_t)k * (size_t)k, sizeof(int)))) {
            x->classes = k;
            for (int i = 0; i < k; i++) {
                const cJSON *row = cJSON_GetArrayItem(conf, i);
                for (int j = 0; j < k; j++) {
                    const cJSON *c = cJSON_GetArrayItem(row, j);
                    x->confusion[i * k + j] = cJSON_IsNumber(c) ? (int)c->valuedouble : 0;
                }
            }
        }
    }
    return 0;
}

static void make_label(rep_run *r)
{
    size_t len = strlen(r->dir);
    char name[64];
    /* the directory's last component, without a trailing slash */
    while (len > 1 && r->dir[len - 1] == '/')
        len--;
    const char *base = r->dir;
    for (size_t i = 0; i < len; i++)
        if (r->dir[i] == '/' && i + 1 < len)
            base = r->dir + i + 1;
    size_t bl = (size_t)(r->dir + len - base);
    snprintf(name, sizeof(name), "%.*s", (int)(bl < 40 ? bl : 40), base);
    snprintf(r->label, sizeof(r->label), "%s s%lld (%s)", r->mode ? r->mode : "?", r->seed, name);
}

int rep_run_load(rep_run *r, const char *dir, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->created_unix = NAN;
    if (!(r->dir = strdup(dir)))
        return PATCTL_ERR_NOMEM;
    char path[1200];
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a run directory (%s)", dir,
                 stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
        return PATCTL_ERR_NOT_FOUND;
    }
    snprintf(path, sizeof(path), "%s/summary.json", dir);
    r->summary = read_json(path);
    snprintf(path, sizeof(path), "%s/%s", dir, RUNSTORE_FILE);
    int rc = 0;
    if (stat(path, &sb) == 0) {
        /* read-only: a report never changes the run (and may read a run in progress) */
        if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "cannot open");
            return PATCTL_ERR_IO;
        }
        sqlite3_busy_timeout(r->db, 5000);
        r->has_db = 1;
        if ((rc = load_start(r, err, errlen)) || (rc = load_devices(r, err, errlen)) ||
            (rc = load_sessions(r, err, errlen)) || (rc = load_metrics(r, err, errlen)))
            return rc;
        r->cfg = malloc(sizeof(*r->cfg));
        if (!r->cfg)
            return PATCTL_ERR_NOMEM;
        char name[1100];
        snprintf(name, sizeof(name), "%s/%s (config)", dir, RUNSTORE_FILE);
        if (config_parse_text(r->cfg, r->config, name, r->cfg_err, sizeof(r->cfg_err)) != 0) {
            free(r->cfg);
            r->cfg = NULL;
        }
    } else if (r->summary) {
        if ((rc = load_from_summary(r)))
            return rc;
    } else {
        snprintf(err, errlen, "%s: neither %s nor summary.json: not a patctl run directory", dir, RUNSTORE_FILE);
        return PATCTL_ERR_NOT_FOUND;
    }
    make_label(r);
    return 0;
}

void rep_run_free(rep_run *r)
{
    if (!r)
        return;
    if (r->db)
        sqlite3_close(r->db);
    cJSON_Delete(r->summary);
    free(r->dir);
    char **s[] = {&r->uid, &r->created, &r->host, &r->version, &r->blas, &r->mode, &r->config,
                  &r->config_source, &r->argv};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        free(*s[i]);
    free(r->cfg);
    for (int i = 0; i < r->n_dev; i++) {
        free(r->dev[i].driver);
        free(r->dev[i].options);
        free(r->dev[i].surrogate);
        free(r->dev[i].about);
    }
    for (int i = 0; i < r->n_sessions; i++) {
        free(r->sessions[i].kind);
        free(r->sessions[i].argv);
        free(r->sessions[i].status);
        free(r->sessions[i].reason);
    }
    free(r->sessions);
    free(r->st_step), free(r->st_epoch), free(r->st_loss), free(r->st_acc);
    free(r->st_time), free(r->st_queries), free(r->st_t);
    free(r->epochs);
    for (int i = 0; i < r->n_evals; i++)
        free(r->evals[i].confusion);
    free(r->prunes);
    free(r->evals);
    free(r->ckpts);
    memset(r, 0, sizeof(*r));
}

float *rep_checkpoint_params(rep_run *r, long id, rep_ckpt *ck, long *n)
{
    if (!r->db)
        return NULL;
    sqlite3_stmt *st = NULL;
    const char *sql = id > 0 ? "SELECT id, step, epoch, final, t, n_params, params FROM checkpoint WHERE id = ?"
                             : "SELECT id, step, epoch, final, t, n_params, params FROM checkpoint"
                               " ORDER BY id DESC LIMIT 1";
    float *p = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        long np = (long)sqlite3_column_int64(st, 5);
        if (np > 0 && (p = malloc(sizeof(float) * (size_t)np)) && rep_blob_f32(st, 6, p, np) == 0) {
            if (ck) {
                ck->id = (long)sqlite3_column_int64(st, 0);
                ck->step = (long)sqlite3_column_int64(st, 1);
                ck->epoch = sqlite3_column_int(st, 2);
                ck->final = sqlite3_column_int(st, 3);
                ck->t = dbl_col(st, 4);
            }
            *n = np;
        } else {
            free(p);
            p = NULL;
        }
    }
    sqlite3_finalize(st);
    return p;
}

float *rep_setting(rep_run *r, long setting_id, long n_theta)
{
    sqlite3_stmt *st = NULL;
    float *p = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT theta FROM setting WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, setting_id);
        if (sqlite3_step(st) == SQLITE_ROW && (p = malloc(sizeof(float) * (size_t)(n_theta + 1))) &&
            rep_blob_f32(st, 0, p, n_theta) != 0) {
            free(p);
            p = NULL;
        }
    }
    sqlite3_finalize(st);
    return p;
}

static const char *const fmnist[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

const char *const *rep_class_names(const rep_run *r, int classes)
{
    const char *set = NULL;
    if (r->cfg)
        set = r->cfg->data_set;
    else if (r->summary) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(r->summary, "data");
        set = cJSON_IsString(d) ? d->valuestring : NULL;
    }
    return set && strcmp(set, "fashion-mnist") == 0 && classes == 10 ? fmnist : NULL;
}

double rep_rel_time(const rep_run *r, double t)
{
    return isfinite(r->created_unix) && isfinite(t) ? t - r->created_unix : NAN;
}
