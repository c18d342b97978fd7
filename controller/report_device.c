/* patctl report: the devices over time and the surrogate's quality, from the
 * device journal (query/setting/log tables) and the checkpoints.
 *
 * device_DEV.png, one per device, panels on one time axis (seconds since the
 * run started):
 *   - each parameter block: the band min..max over its entries, their rms,
 *     the NTRACK entries that moved most, the hard limits when they are in
 *     view (else their distance is written on the panel);
 *   - output drift: rms and mean of (measured - surrogate) per query, the
 *     surrogate evaluated at the very inputs and setting sent;
 *   - events: faults, retries, clamps, refusals, ramp steps.
 * surrogate.png: per device, parity (surrogate vs measured) and the residual
 * histogram against the noise floor (when a `patctl fit` output measured
 * one). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_histogram.h>
#include <gsl/gsl_sort_float.h>
#include <gsl/gsl_statistics_float.h>

#include "controller/report_int.h"
#include "controller/runstore.h"
#include "controller/surrogates.h"
#include "devices/device.h"
#include "patctl/error.h"

#define NTRACK 4             /* entries of a block drawn one by one */
#define MAX_SETTINGS 300     /* trajectory points per device */
#define MAX_QUERIES 160      /* journal queries the surrogate is evaluated on */
#define ROWS_PER_QUERY 32    /* samples of each */
#define MAX_PARITY 6000      /* points in a parity plot */
#define MAX_PANEL_BLOCKS 3

/* ---- parameter trajectories ---- */

typedef struct blk_traj {
    double *mn, *mx, *rms;   /* [n] over the block's entries */
    int ntr;
    long tr_idx[NTRACK];     /* entries drawn one by one */
    double *tr[NTRACK];      /* [n] their values */
    double dmin, dmax;       /* range seen */
} blk_traj;

typedef struct dev_traj {
    long n;
    double *t;               /* [n] run seconds */
    blk_traj b[PATCTL_MAX_BLOCKS];
    char src[200];           /* where the points come from */
} dev_traj;

static void traj_free(dev_traj *tr)
{
    free(tr->t);
    for (int b = 0; b < PATCTL_MAX_BLOCKS; b++) {
        free(tr->b[b].mn), free(tr->b[b].mx), free(tr->b[b].rms);
        for (int k = 0; k < NTRACK; k++)
            free(tr->b[b].tr[k]);
    }
    memset(tr, 0, sizeof(*tr));
}

/* theta [n_theta] of device d from the checkpoint's flat parameters (NULL
 * when a block's place in them is unknown). */
static float *theta_from_ckpt(rep_run *r, const rep_device *d, long id)
{
    long np = 0;
    float *p = rep_checkpoint_params(r, id, NULL, &np);
    float *th = p ? malloc(sizeof(float) * (size_t)(d->n_theta + 1)) : NULL;
    int ok = th != NULL;
    for (int b = 0; ok && b < d->n_blocks; b++) {
        const rep_block *k = &d->blocks[b];
        long sz = (long)k->rows * k->cols;
        if (k->param_offset < 0 || k->param_offset + sz > np || k->theta_offset + sz > d->n_theta)
            ok = 0;
        else
            memcpy(th + k->theta_offset, p + k->param_offset, sizeof(float) * (size_t)sz);
    }
    free(p);
    if (!ok) {
        free(th);
        return NULL;
    }
    return th;
}

/* Fill tr from the journal's settings, else the checkpoints.  0, or 1 with
 * the reason in why. */
static int load_traj(rep_run *r, const rep_device *d, dev_traj *tr, char *why, size_t wn)
{
    memset(tr, 0, sizeof(*tr));
    long n = 0, cap = 0, *ids = NULL;
    double *ts = NULL;
    int from_ckpt = 0;
    if (r->db && d->settings > 0) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(r->db, "SELECT setting, min(t_start) AS t FROM query WHERE device = ? AND"
                                      " superseded = 0 GROUP BY setting ORDER BY t", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int(st, 1, d->idx);
            while (sqlite3_step(st) == SQLITE_ROW) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 1024;
                    long *ni = realloc(ids, sizeof(long) * (size_t)cap);
                    double *nt = realloc(ts, sizeof(double) * (size_t)cap);
                    if (ni)
                        ids = ni;
                    if (nt)
                        ts = nt;
                    if (!ni || !nt)
                        break;
                }
                ids[n] = (long)sqlite3_column_int64(st, 0);
                ts[n++] = rep_rel_time(r, sqlite3_column_double(st, 1));
            }
        }
        sqlite3_finalize(st);
        snprintf(tr->src, sizeof(tr->src), "%ld settings sent, in the journal", n);
    }
    if (n == 0 && r->n_ckpts > 0) {
        from_ckpt = 1;
        ids = malloc(sizeof(long) * (size_t)r->n_ckpts);
        ts = malloc(sizeof(double) * (size_t)r->n_ckpts);
        for (int i = 0; ids && ts && i < r->n_ckpts; i++) {
            ids[n] = r->ckpts[i].id;
            ts[n++] = rep_rel_time(r, r->ckpts[i].t);
        }
        snprintf(tr->src, sizeof(tr->src), "%ld checkpoints (no journal settings%s)", n,
                 r->cfg && r->cfg->journal == JOURNAL_OFF ? ": journal = off" : "");
    }
    if (n == 0) {
        free(ids), free(ts);
        snprintf(why, wn, "no parameter settings of %s stored: no journal rows%s and no checkpoint (the run was "
                 "interrupted before its first checkpoint)", d->name,
                 r->cfg && r->cfg->journal == JOURNAL_OFF ? " (journal = off)" : "");
        return 1;
    }
    long m = n > MAX_SETTINGS ? MAX_SETTINGS : n;
    tr->t = malloc(sizeof(double) * (size_t)m);
    int rc = tr->t ? 0 : 1;
    for (int b = 0; b < d->n_blocks && !rc; b++) {
        blk_traj *bt = &tr->b[b];
        bt->mn = malloc(sizeof(double) * (size_t)m);
        bt->mx = malloc(sizeof(double) * (size_t)m);
        bt->rms = malloc(sizeof(double) * (size_t)m);
        bt->dmin = INFINITY, bt->dmax = -INFINITY;
        if (!bt->mn || !bt->mx || !bt->rms)
            rc = 1;
    }
    /* the entries that moved most between the first and the last point */
    float *first = from_ckpt ? theta_from_ckpt(r, d, ids[0]) : rep_setting(r, ids[0], d->n_theta);
    float *last = from_ckpt ? theta_from_ckpt(r, d, ids[n - 1]) : rep_setting(r, ids[n - 1], d->n_theta);
    if (!first || !last)
        rc = 1;
    for (int b = 0; b < d->n_blocks && !rc; b++) {
        const rep_block *k = &d->blocks[b];
        blk_traj *bt = &tr->b[b];
        long sz = (long)k->rows * k->cols;
        for (long e = 0; e < sz; e++) {
            double dlt = fabs((double)last[k->theta_offset + e] - first[k->theta_offset + e]);
            if (!(dlt > 0))
                continue;
            int pos = bt->ntr;
            while (pos > 0 && fabs((double)last[k->theta_offset + bt->tr_idx[pos - 1]] -
                                   first[k->theta_offset + bt->tr_idx[pos - 1]]) < dlt)
                pos--;
            if (pos >= NTRACK)
                continue;
            int end = bt->ntr < NTRACK ? bt->ntr : NTRACK - 1;
            memmove(&bt->tr_idx[pos + 1], &bt->tr_idx[pos], sizeof(long) * (size_t)(end - pos));
            bt->tr_idx[pos] = e;
            if (bt->ntr < NTRACK)
                bt->ntr++;
        }
        for (int j = 0; j < bt->ntr; j++)
            if (!(bt->tr[j] = malloc(sizeof(double) * (size_t)m)))
                rc = 1;
    }
    free(first), free(last);
    for (long i = 0; i < m && !rc; i++) {
        long src = m == n ? i : (long)llround((double)i * (double)(n - 1) / (double)(m - 1));
        float *th = from_ckpt ? theta_from_ckpt(r, d, ids[src]) : rep_setting(r, ids[src], d->n_theta);
        if (!th) {
            rc = 1;
            break;
        }
        tr->t[i] = ts[src];
        for (int b = 0; b < d->n_blocks; b++) {
            const rep_block *k = &d->blocks[b];
            blk_traj *bt = &tr->b[b];
            long sz = (long)k->rows * k->cols;
            const float *v = th + k->theta_offset;
            double mn = INFINITY, mx = -INFINITY, s2 = 0;
            for (long e = 0; e < sz; e++) {
                mn = fmin(mn, v[e]);
                mx = fmax(mx, v[e]);
                s2 += (double)v[e] * v[e];
            }
            bt->mn[i] = mn, bt->mx[i] = mx, bt->rms[i] = sz ? sqrt(s2 / (double)sz) : NAN;
            bt->dmin = fmin(bt->dmin, mn), bt->dmax = fmax(bt->dmax, mx);
            for (int j = 0; j < bt->ntr; j++)
                bt->tr[j][i] = v[bt->tr_idx[j]];
        }
        free(th);
    }
    tr->n = rc ? 0 : m;
    free(ids), free(ts);
    if (rc) {
        snprintf(why, wn, "the parameter settings of %s could not be read back (out of memory or a malformed "
                 "BLOB)", d->name);
        traj_free(tr);
        return 1;
    }
    return 0;
}

/* ---- the surrogate at the journal's queries ---- */

typedef struct dev_drift {
    long n;
    double *t, *rms, *mean;  /* [n] per evaluated query */
    int *eval;               /* [n] 1 = evaluation phase */
    float *res;              /* [nres] every residual value */
    long nres;
    float *pm, *pp;          /* [npar] parity: measured, predicted */
    long npar;
} dev_drift;

static void drift_free(dev_drift *dr)
{
    free(dr->t), free(dr->rms), free(dr->mean), free(dr->eval);
    free(dr->res), free(dr->pm), free(dr->pp);
    memset(dr, 0, sizeof(*dr));
}

/* The surrogate the run used for device d (nominal or fitted, the device's
 * `surrogate` spec), built from the stored description alone: the device is
 * not opened. */
static int make_surrogate(const rep_device *d, surrogate **s, char *name, size_t nn, char *why, size_t wn)
{
    *s = NULL;
    struct patctl_device_desc *k = calloc(1, sizeof(*k));
    if (!k)
        return PATCTL_ERR_NOMEM;
    snprintf(k->model, sizeof(k->model), "%s", d->model);
    snprintf(k->about, sizeof(k->about), "%s", d->about);
    k->n_in = d->n_in, k->n_out = d->n_out;
    snprintf(k->in_unit, sizeof(k->in_unit), "%s", d->in_unit);
    snprintf(k->out_unit, sizeof(k->out_unit), "%s", d->out_unit);
    k->in_lo = (float)d->in_lo, k->in_hi = (float)d->in_hi;
    k->n_blocks = d->n_blocks;
    k->flags = (d->simulated ? PATCTL_DEV_SIMULATED : 0u) | (d->has_vjp ? PATCTL_DEV_HAS_VJP : 0u);
    for (int b = 0; b < d->n_blocks; b++) {
        struct patctl_param_block *p = &k->blocks[b];
        const rep_block *q = &d->blocks[b];
        snprintf(p->name, sizeof(p->name), "%s", q->name);
        snprintf(p->unit, sizeof(p->unit), "%s", q->unit);
        snprintf(p->about, sizeof(p->about), "%s", q->about);
        p->rows = q->rows, p->cols = q->cols;
        p->lo = (float)q->lo, p->hi = (float)q->hi, p->max_step = (float)q->max_step, p->safe = (float)q->safe;
        p->init_lo = (float)q->init_lo, p->init_hi = (float)q->init_hi;
    }
    char err[768] = "";
    int rc = surrogate_make(s, d->name, k, d->options, d->surrogate, err, sizeof(err));
    free(k);
    if (rc) {
        snprintf(why, wn, "no surrogate for %s: %.400s", d->name, err[0] ? err : patctl_strerror(rc));
        return rc;
    }
    if ((*s)->n_in != d->n_in || (*s)->n_out != d->n_out || (*s)->n_theta != d->n_theta) {
        snprintf(why, wn, "the surrogate of %s does not match its stored description (%d->%d, %ld parameters)",
                 d->name, d->n_in, d->n_out, d->n_theta);
        surrogate_destroy(s);
        return PATCTL_ERR_FORMAT;
    }
    if (!d->surrogate[0] || strcmp(d->surrogate, "nominal") == 0)
        snprintf(name, nn, "nominal %s model", d->model);
    else {
        const char *base = strrchr(d->surrogate, '/');
        base = base ? base + 1 : strncmp(d->surrogate, "fitted:", 7) == 0 ? d->surrogate + 7 : d->surrogate;
        snprintf(name, nn, "fitted %s (%.80s)", (*s)->ops->kind, base);
    }
    return 0;
}

static int push_res(dev_drift *dr, long *cap, float v)
{
    if (dr->nres == *cap) {
        long nc = *cap ? 2 * *cap : 65536;
        float *n = realloc(dr->res, sizeof(float) * (size_t)nc);
        if (!n)
            return PATCTL_ERR_NOMEM;
        dr->res = n;
        *cap = nc;
    }
    dr->res[dr->nres++] = v;
    return 0;
}

/* Evaluate the surrogate at up to MAX_QUERIES successful journal queries of d
 * (evenly over the run).  0, or 1 with the reason in g->why. */
static int load_drift(rep_run *r, const rep_device *d, dev_drift *dr, rep_gap *g)
{
    memset(dr, 0, sizeof(*dr));
    if (!r->db) {
        snprintf(g->why, sizeof(g->why), "no run store (run.sqlite): no device journal");
        return 1;
    }
    if (d->j_data == 0) {
        if (r->cfg && r->cfg->journal == JOURNAL_OFF)
            snprintf(g->why, sizeof(g->why), "journal = off: the run stored no device measurements (only faults), "
                     "so the surrogate cannot be compared with the device; set [logging] journal = all or every N, "
                     "or validate the surrogate with patctl collect + patctl fit");
        else
            snprintf(g->why, sizeof(g->why), "the journal holds no successful query of %s (the run made none%s)",
                     d->name, r->mode && strcmp(r->mode, "insilico") == 0 ? " before its evaluation" : "");
        return 1;
    }
    surrogate *s = NULL;
    if (make_surrogate(d, &s, g->surrogate, sizeof(g->surrogate), g->why, sizeof(g->why)))
        return 1;
    /* the candidate queries, in time order */
    long n = 0, cap = 0, *ids = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(r->db, "SELECT id FROM query WHERE device = ? AND rc = 0 AND batch > 0 AND"
                                  " y IS NOT NULL ORDER BY t_start, id", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, d->idx);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                long *ni = realloc(ids, sizeof(long) * (size_t)cap);
                if (!ni) {
                    rc = PATCTL_ERR_NOMEM;
                    break;
                }
                ids = ni;
            }
            ids[n++] = (long)sqlite3_column_int64(st, 0);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    long m = n > MAX_QUERIES ? MAX_QUERIES : n;
    int nin = d->n_in, nout = d->n_out;
    float *x = malloc(sizeof(float) * (size_t)ROWS_PER_QUERY * (size_t)nin);
    float *ymeas = malloc(sizeof(float) * (size_t)ROWS_PER_QUERY * (size_t)nout);
    float *ysur = malloc(sizeof(float) * (size_t)ROWS_PER_QUERY * (size_t)nout);
    float *theta = malloc(sizeof(float) * (size_t)(d->n_theta + 1));
    double *ys = calloc((size_t)nout, sizeof(double)), *yss = calloc((size_t)nout, sizeof(double));
    dr->t = malloc(sizeof(double) * (size_t)(m + 1));
    dr->rms = malloc(sizeof(double) * (size_t)(m + 1));
    dr->mean = malloc(sizeof(double) * (size_t)(m + 1));
    dr->eval = malloc(sizeof(int) * (size_t)(m + 1));
    long par_cap = MAX_PARITY + 2 * ROWS_PER_QUERY * (long)nout;
    dr->pm = malloc(sizeof(float) * (size_t)par_cap);
    dr->pp = malloc(sizeof(float) * (size_t)par_cap);
    if (!rc && (!x || !ymeas || !ysur || !theta || !ys || !yss || !dr->t || !dr->rms || !dr->mean || !dr->eval ||
                !dr->pm || !dr->pp))
        rc = PATCTL_ERR_NOMEM;
    if (!rc && sqlite3_prepare_v2(r->db, "SELECT q.batch, q.t_start, q.phase, q.x, q.y, s.theta FROM query q"
                                         " JOIN setting s ON s.id = q.setting WHERE q.id = ?", -1, &st,
                                  NULL) != SQLITE_OK)
        rc = PATCTL_ERR_FORMAT;
    long res_cap = 0, cnt = 0, bad = 0;
    double sum = 0, sum2 = 0;
    long per_query_par = m > 0 ? (MAX_PARITY + m - 1) / m : 0;
    for (long i = 0; i < m && !rc; i++) {
        long qi = m == n ? i : (long)llround((double)i * (double)(n - 1) / (double)(m - 1));
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[qi]);
        if (sqlite3_step(st) != SQLITE_ROW)
            continue;
        int B = sqlite3_column_int(st, 0);
        int rows = B < ROWS_PER_QUERY ? B : ROWS_PER_QUERY;
        long bx = sqlite3_column_bytes(st, 3), by = sqlite3_column_bytes(st, 4);
        const void *px = sqlite3_column_blob(st, 3), *py = sqlite3_column_blob(st, 4);
        if (!px || !py || bx != 4L * B * nin || by != 4L * B * nout || rep_blob_f32(st, 5, theta, d->n_theta)) {
            bad++;
            continue;
        }
        runstore_f32_from_le(x, px, (long)rows * nin);
        runstore_f32_from_le(ymeas, py, (long)rows * nout);
        if (surrogate_forward(s, theta, x, rows, ysur) != 0) {
            bad++;
            continue;
        }
        double qs = 0, qs2 = 0;
        long qc = 0, total = (long)rows * nout, stride = total > per_query_par ? total / per_query_par : 1;
        for (long v = 0; v < total && !rc; v++) {
            double a = ymeas[v], b = ysur[v];
            if (!isfinite(a) || !isfinite(b))
                continue;
            double e = a - b;
            qs += e, qs2 += e * e, qc++;
            ys[v % nout] += a, yss[v % nout] += a * a;
            rc = push_res(dr, &res_cap, (float)e);
            if (v % stride == 0 && dr->npar < par_cap)
                dr->pm[dr->npar] = (float)a, dr->pp[dr->npar++] = (float)b;
        }
        if (!qc)
            continue;
        const unsigned char *ph = sqlite3_column_text(st, 2);
        dr->t[dr->n] = rep_rel_time(r, sqlite3_column_double(st, 1));
        dr->rms[dr->n] = sqrt(qs2 / (double)qc);
        dr->mean[dr->n] = qs / (double)qc;
        dr->eval[dr->n] = ph && strcmp((const char *)ph, "eval") == 0;
        dr->n++;
        sum += qs, sum2 += qs2, cnt += qc;
    }
    sqlite3_finalize(st);
    if (!rc && cnt > 0) {
        g->ok = 1;
        g->queries = dr->n;
        g->values = cnt;
        g->rms = sqrt(sum2 / (double)cnt);
        g->mean = sum / (double)cnt;
        double var = 0;
        long per = cnt / nout;  /* values per output (approximately equal) */
        for (int o = 0; o < nout && per > 1; o++) {
            double mu = ys[o] / (double)per;
            var += yss[o] / (double)per - mu * mu;
        }
        g->std_y = var > 0 ? sqrt(var / nout) : NAN;
        g->nrmse = g->rms / g->std_y;
        long k10 = dr->n / 10 > 0 ? dr->n / 10 : 1;
        double a = 0, b = 0;
        for (long i = 0; i < k10; i++)
            a += dr->rms[i] * dr->rms[i], b += dr->rms[dr->n - 1 - i] * dr->rms[dr->n - 1 - i];
        g->rms_first = sqrt(a / (double)k10), g->rms_last = sqrt(b / (double)k10);
    } else if (!rc) {
        snprintf(g->why, sizeof(g->why), "none of the %ld journal queries of %s could be evaluated (%ld malformed)",
                 m, d->name, bad);
    } else {
        snprintf(g->why, sizeof(g->why), "evaluating the surrogate of %s: %s", d->name, patctl_strerror(rc));
    }
    free(ids), free(x), free(ymeas), free(ysur), free(theta), free(ys), free(yss);
    surrogate_destroy(&s);
    if (!g->ok) {
        drift_free(dr);
        return 1;
    }
    return 0;
}

/* ---- events ---- */

enum { EV_FAULT, EV_RETRY, EV_CLAMP, EV_REFUSE, EV_RAMP, EV_OTHER, EV_KINDS };
static const char *const ev_name[EV_KINDS] = {"faults", "retries", "clamps", "refused", "ramp steps", "other"};
static const char *const ev_style[EV_KINDS] = {"pt 2 ps 1.4 lc rgb '#d62728'", "pt 6 ps 1.2 lc rgb '#ff7f0e'",
                                               "pt 8 ps 1.2 lc rgb '#9467bd'", "pt 4 ps 1.2 lc rgb '#8c564b'",
                                               "pt 1 ps 0.8 lc rgb '#7f7f7f'", "pt 3 ps 1.0 lc rgb '#17becf'"};

typedef struct dev_events {
    long n, cap;
    double *t;
    int *kind;
    long count[EV_KINDS];
} dev_events;

static int ev_push(dev_events *e, double t, int kind)
{
    e->count[kind]++;
    if (!isfinite(t))
        return 0;
    if (e->n == e->cap) {
        long nc = e->cap ? 2 * e->cap : 256;
        double *nt = realloc(e->t, sizeof(double) * (size_t)nc);
        if (nt)
            e->t = nt;
        int *nk = realloc(e->kind, sizeof(int) * (size_t)nc);
        if (nk)
            e->kind = nk;
        if (!nt || !nk)
            return PATCTL_ERR_NOMEM;
        e->cap = nc;
    }
    e->t[e->n] = t;
    e->kind[e->n++] = kind;
    return 0;
}

static void load_events(rep_run *r, const rep_device *d, dev_events *ev)
{
    memset(ev, 0, sizeof(*ev));
    if (!r->db)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT t_start, rc, ramp FROM query WHERE device = ? AND (rc != 0 OR ramp != 0)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, d->idx);
        while (sqlite3_step(st) == SQLITE_ROW)
            ev_push(ev, rep_rel_time(r, sqlite3_column_double(st, 0)),
                    sqlite3_column_int(st, 1) != 0 ? EV_FAULT : EV_RAMP);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT t, level, message FROM log WHERE device = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, d->name, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *msg = (const char *)sqlite3_column_text(st, 2);
            double t = rep_rel_time(r, sqlite3_column_double(st, 0));
            if (!msg)
                continue;
            if (strstr(msg, "retrying"))
                ev_push(ev, t, EV_RETRY);
            else if (strstr(msg, "clamped"))
                ev_push(ev, t, EV_CLAMP);
            else if (strstr(msg, "refused"))
                ev_push(ev, t, EV_REFUSE);
            else if (strncmp(msg, "query failed", 12) != 0) /* failed queries are journaled as faults */
                ev_push(ev, t, EV_OTHER);
        }
    }
    sqlite3_finalize(st);
}

/* ---- drawing ---- */

static void block_label(const rep_block *k, long e, char *buf, size_t n)
{
    if (k->rows > 1 && k->cols > 1)
        snprintf(buf, n, "%s[%ld,%ld]", k->name, e / k->cols, e % k->cols);
    else
        snprintf(buf, n, "%s[%ld]", k->name, e);
}

/* Session boundaries (after the first session) as vertical lines. */
static void session_marks(FILE *f, const rep_run *r, double tdiv, int with_labels)
{
    char t[200];
    for (int i = 1; i < r->n_sessions; i++) {
        double s = rep_rel_time(r, r->sessions[i].started);
        if (!isfinite(s))
            continue;
        fprintf(f, "set arrow %d from %g, graph 0 to %g, graph 1 nohead dt 2 lc rgb '#555555'\n", 20 + i, s / tdiv,
                s / tdiv);
        if (with_labels)
            fprintf(f, "set label %d %s at %g, graph 0.97 right rotate by 90 font ',8' tc rgb '#555555'\n", 20 + i,
                    gp_str(t, sizeof(t), r->sessions[i].kind), s / tdiv);
    }
}

/* A panel that says what is missing instead of drawing nothing. */
static void empty_panel(FILE *f, const char *title, const char *ylabel, const char *msg)
{
    char t[1200], t2[200], t3[300];
    fprintf(f, "unset arrow\nunset label\nset title %s\nset ylabel %s\nset yrange [0:1]\nset ytics ('' 0)\n"
               "set label 1 %s at graph 0.5, graph 0.5 center font ',10' tc rgb '#aa3333'\nplot NaN notitle\n"
               "set ytics auto\nunset label 1\n",
            gp_str(t3, sizeof(t3), title), gp_str(t2, sizeof(t2), ylabel), gp_str(t, sizeof(t), msg));
}

/* Wrap long text for a gnuplot label: "\n" every ~width characters. */
static void wrap(char *dst, size_t n, const char *src, int width)
{
    size_t k = 0;
    int col = 0;
    for (const char *p = src; *p && k + 3 < n; p++) {
        if (*p == ' ' && col >= width) {
            dst[k++] = '\n';
            col = 0;
            continue;
        }
        dst[k++] = *p;
        col++;
    }
    dst[k] = '\0';
}

static int draw_device(rep_ctx *c, rep_run *r, const rep_device *d, const dev_traj *tr, const char *traj_why,
                       const dev_drift *dr, const rep_gap *g, const dev_events *ev)
{
    char name[96], title[200], t[1200], t2[1200];
    snprintf(name, sizeof(name), "device_%s", d->name);
    snprintf(title, sizeof(title), "Device %s over time", d->name);
    int nb = d->n_blocks < MAX_PANEL_BLOCKS ? d->n_blocks : MAX_PANEL_BLOCKS;
    if (!tr->n)
        nb = 1;
    int panels = nb + 2;
    /* the time axis: the whole run */
    double tmax = 0;
    for (long i = 0; i < tr->n; i++)
        tmax = fmax(tmax, tr->t[i]);
    for (long i = 0; i < dr->n; i++)
        tmax = fmax(tmax, dr->t[i]);
    for (long i = 0; i < ev->n; i++)
        tmax = fmax(tmax, ev->t[i]);
    for (int i = 0; i < r->n_sessions; i++) {
        double s = rep_rel_time(r, r->sessions[i].stopped);
        if (isfinite(s))
            tmax = fmax(tmax, s);
    }
    if (!(tmax > 0))
        tmax = 1;
    const char *tu;
    double tdiv = gp_time_unit(tmax, &tu);
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, 1300, 250 * panels + 90))
        return PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "Time runs along the run (wall clock since it started; dashed lines: later sessions such as resume "
             "or eval). Parameters: the band spans the smallest to largest entry of each block, the thick line is "
             "their rms, thin lines are the %d entries that changed most (from %s). Output drift: rms and mean of "
             "measured minus surrogate per query, the surrogate evaluated at the very inputs and setting sent. "
             "While training moves the parameters this gap also changes with them (the surrogate is better in some "
             "regions than others); during the evaluation the setting is fixed and the inputs are stationary, so a "
             "trend there is the device drifting. Events: faults, retries, clamps, refusals and ramp steps.",
             NTRACK, tr->n ? tr->src : "no data");
    if (d->n_blocks > MAX_PANEL_BLOCKS && tr->n)
        fig_note(m, "%d of %d parameter blocks shown", MAX_PANEL_BLOCKS, d->n_blocks);
    if (!tr->n)
        fig_note(m, "%s", traj_why);
    if (!g->ok)
        fig_note(m, "no output drift: %s", g->why);
    FILE *f = fg.f;
    /* data */
    for (int b = 0; b < nb && tr->n; b++) {
        const blk_traj *bt = &tr->b[b];
        fprintf(f, "$P%d << EOD\n# t[%s] min max rms tracked...\n", b, tu);
        for (long i = 0; i < tr->n; i++) {
            gp_num(f, tr->t[i] / tdiv), fputc(' ', f);
            gp_num(f, bt->mn[i]), fputc(' ', f);
            gp_num(f, bt->mx[i]), fputc(' ', f);
            gp_num(f, bt->rms[i]);
            for (int j = 0; j < bt->ntr; j++)
                fputc(' ', f), gp_num(f, bt->tr[j][i]);
            fputc('\n', f);
        }
        fprintf(f, "EOD\n");
    }
    if (g->ok) {
        for (int ph = 0; ph < 2; ph++) {
            fprintf(f, "$D%d << EOD\n# t[%s] rms mean (%s queries)\n", ph, tu, ph ? "evaluation" : "training");
            for (long i = 0; i < dr->n; i++)
                if (dr->eval[i] == ph) {
                    gp_num(f, dr->t[i] / tdiv), fputc(' ', f);
                    gp_num(f, dr->rms[i]), fputc(' ', f);
                    gp_num(f, dr->mean[i]), fputc('\n', f);
                }
            fprintf(f, "EOD\n");
        }
    }
    for (int k = 0; k < EV_KINDS; k++) {
        fprintf(f, "$V%d << EOD\n", k);
        for (long i = 0; i < ev->n; i++)
            if (ev->kind[i] == k)
                fprintf(f, "%g %d\n", ev->t[i] / tdiv, EV_KINDS - k);
        fprintf(f, "EOD\n");
    }
    fprintf(f, "set multiplot layout %d,1 margins 0.085,0.80,%.3f,%.3f spacing 0,%.3f title %s font ',14'\n", panels,
            60.0 / (250 * panels + 90), 1 - 70.0 / (250 * panels + 90), 45.0 / (250 * panels + 90),
            gp_str(t, sizeof(t), (snprintf(t2, sizeof(t2), "%s (%s, %s): %s", d->name, d->model,
                                           d->simulated ? "simulated" : "hardware", r->label), t2)));
    fprintf(f, "set xrange [0:%g]\nset format x ''\nunset xlabel\nset key outside right top vertical Left reverse "
               "font ',9' samplen 2 spacing 1.0 noopaque nobox\nset mxtics\n", tmax / tdiv * 1.01);
    /* parameter panels */
    for (int b = 0; b < nb; b++) {
        fprintf(f, "unset arrow\nunset label\nset yrange [*:*]\n");
        if (!tr->n) {
            empty_panel(f, "parameters", "parameters", (wrap(t2, sizeof(t2), traj_why, 100), t2));
            continue;
        }
        const rep_block *k = &d->blocks[b];
        const blk_traj *bt = &tr->b[b];
        session_marks(f, r, tdiv, b == 0);
        double span = fmax(bt->dmax - bt->dmin, 1e-12);
        int show_lim = isfinite(k->lo) && isfinite(k->hi) && k->lo >= bt->dmin - span && k->hi <= bt->dmax + span;
        /* how far towards a hard limit the entries went, from the safe value */
        double up = k->hi > k->safe ? (bt->dmax - k->safe) / (k->hi - k->safe) : 0;
        double down = k->safe > k->lo ? (k->safe - bt->dmin) / (k->safe - k->lo) : 0;
        double used = 100 * fmax(up, down);
        snprintf(t2, sizeof(t2), "block %s (%d x %d, from %s): entries in [%.3g, %.3g] %s; hard limits [%g, %g]%s, "
                 "%.1f %% of the way from the safe value %g", k->name, k->rows, k->cols, tr->src, bt->dmin, bt->dmax,
                 k->unit, k->lo, k->hi, show_lim ? " (dashed)" : " off this scale", used, k->safe);
        fprintf(f, "set title %s font ',10'\n", gp_str(t, sizeof(t), t2));
        snprintf(t2, sizeof(t2), "%s [%s]", k->name, k->unit);
        fprintf(f, "set ylabel %s\n", gp_str(t, sizeof(t), t2));
        if (show_lim)
            fprintf(f, "set yrange [%g:%g]\n", fmin(k->lo, bt->dmin) - 0.05 * (k->hi - k->lo),
                    fmax(k->hi, bt->dmax) + 0.05 * (k->hi - k->lo));
        else
            fprintf(f, "set yrange [%g:%g]\n", bt->dmin - 0.08 * span, bt->dmax + 0.08 * span);
        /* few points (checkpoints only): mark them, a band needs two */
        const char *pts = tr->n <= 30 ? "linespoints pt 7 ps 0.8" : "lines";
        if (tr->n >= 2)
            fprintf(f, "plot $P%d using 1:2:3 with filledcurves fc rgb '#cfe0f3' fs solid 1 noborder title 'min..max', ",
                    b);
        else
            fprintf(f, "plot $P%d using 1:2:3:2:3 with yerrorbars pt 7 lc rgb '#9ecae1' title 'min..max', ", b);
        fprintf(f, "$P%d using 1:4 with %s lw 2.5 lc rgb '#08306b' title 'rms'", b, pts);
        for (int j = 0; j < bt->ntr; j++) {
            char lb[64];
            block_label(k, bt->tr_idx[j], lb, sizeof(lb));
            fprintf(f, ", $P%d using 1:%d with %s lw 1.2 lc rgb '%s' title %s", b, 5 + j, pts, gp_color(j + 1),
                    gp_str(t, sizeof(t), lb));
        }
        if (show_lim)
            fprintf(f, ", %g with lines dt 2 lw 1.5 lc rgb '#d62728' title 'hard limits', %g with lines dt 2 lw 1.5 "
                       "lc rgb '#d62728' notitle", k->lo, k->hi);
        fprintf(f, "\n");
    }
    /* output drift */
    fprintf(f, "unset arrow\nunset label\nset yrange [*:*]\n");
    snprintf(t2, sizeof(t2), "measured - surrogate [%s]", d->out_unit);
    if (!g->ok) {
        empty_panel(f, "output drift", t2, (wrap(t, sizeof(t), g->why, 100), t));
    } else {
        session_marks(f, r, tdiv, 0);
        fprintf(f, "set ylabel %s\n", gp_str(t, sizeof(t), t2));
        snprintf(t2, sizeof(t2), "output drift: device minus %s, NRMSE %.3f; rms %.4g %s over the first 10 %% of the "
                 "queries, %.4g over the last", g->surrogate, g->nrmse, g->rms_first, d->out_unit, g->rms_last);
        fprintf(f, "set title %s font ',10'\n", gp_str(t, sizeof(t), t2));
        double ymax = 0, ymin = 0;
        for (long i = 0; i < dr->n; i++)
            ymax = fmax(ymax, dr->rms[i]), ymin = fmin(ymin, dr->mean[i]);
        fprintf(f, "set yrange [%g:%g]\n", ymin - 0.05 * (ymax - ymin), ymax + 0.1 * (ymax - ymin));
        fprintf(f, "plot 0 with lines lc rgb '#999999' notitle, "
                   "$D0 using 1:2 with linespoints pt 7 ps 0.5 lw 1.2 lc rgb '#0072B2' title 'rms per query "
                   "(training)', $D1 using 1:2 with points pt 5 ps 0.6 lc rgb '#009E73' title 'rms per query "
                   "(evaluation)', $D0 using 1:3 with lines lw 1 dt 3 lc rgb '#D55E00' title 'mean per query', "
                   "$D1 using 1:3 with points pt 4 ps 0.5 lc rgb '#D55E00' notitle");
        if (isfinite(g->noise_rms))
            fprintf(f, ", %g with lines dt 2 lw 1.5 lc rgb '#d62728' title 'noise floor'", g->noise_rms);
        fprintf(f, "\n");
    }
    /* events */
    fprintf(f, "unset arrow\nunset label\nset format x '%%g'\nset xlabel 'wall time since the run started [%s]'\n"
               "set title 'device events' font ',10'\n", tu);
    session_marks(f, r, tdiv, 0);
    long total = 0;
    for (int k = 0; k < EV_KINDS; k++)
        total += ev->count[k];
    fprintf(f, "set yrange [0.3:%d.7]\nset ytics (", EV_KINDS);
    for (int k = 0; k < EV_KINDS; k++)
        fprintf(f, "%s'%s (%ld)' %d", k ? ", " : "", ev_name[k], ev->count[k], EV_KINDS - k);
    fprintf(f, ") font ',9'\nset ylabel 'events'\nunset key\n");
    if (!total) {
        snprintf(t2, sizeof(t2), "no faults, retries, clamps, refusals or ramp steps (%ld queries journaled%s)",
                 d->j_rows, r->cfg && r->cfg->journal == JOURNAL_OFF ? "; journal = off keeps faults only" : "");
        fprintf(f, "set label 1 %s at graph 0.5, graph 0.5 center font ',10' tc rgb '#2a7a2a'\n",
                gp_str(t, sizeof(t), t2));
    }
    fprintf(f, "plot NaN notitle");
    for (int k = 0; k < EV_KINDS; k++)
        if (ev->count[k])
            fprintf(f, ", $V%d using 1:2 with points %s notitle", k, ev_style[k]);
    fprintf(f, "\nunset multiplot\n");
    return fig_end(c, &fg);
}

/* surrogate.png: parity and residual histogram, one row per device. */
static int draw_surrogate(rep_ctx *c, rep_run *r, dev_drift *drs, const rep_gap *gaps)
{
    const char *name = "surrogate", *title = "Surrogate vs device at the queries of the run";
    int rows = 0;
    char missing[2048] = "";
    for (int i = 0; i < r->n_dev; i++) {
        if (gaps[i].ok)
            rows++;
        else if (!strstr(missing, gaps[i].why)) {  /* the same reason once */
            size_t u = strlen(missing);
            snprintf(missing + u, sizeof(missing) - u, "%s%s", u ? "; " : "", gaps[i].why);
        }
    }
    if (!rows) {
        fig_missing(c, name, title, "%s", r->n_dev ? missing : "the run store lists no device");
        return 0;
    }
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, 1300, 520 * rows + 40))
        return PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "Left: what the surrogate predicts against what the device measured, at the very inputs and "
             "parameter settings the run sent (a sample of up to %d queries x %d samples per device, spread over "
             "the run); on the diagonal the two agree. Right: histogram of the residuals (measured - surrogate, "
             "log scale) with a Gaussian of the same rms, and the noise floor measured by patctl collect/fit when "
             "available: residuals much wider than the noise floor are model error, not noise.",
             MAX_QUERIES, ROWS_PER_QUERY);
    if (missing[0])
        fig_note(m, "%s", missing);
    FILE *f = fg.f;
    char t[600], t2[600];
    fprintf(f, "set multiplot layout %d,2 title %s font ',14'\n", rows, gp_str(t, sizeof(t), r->label));
    for (int i = 0; i < r->n_dev; i++) {
        const rep_gap *g = &gaps[i];
        const dev_drift *dr = &drs[i];
        const rep_device *d = &r->dev[i];
        if (!g->ok)
            continue;
        /* parity */
        double lo = INFINITY, hi = -INFINITY;
        fprintf(f, "$P%d << EOD\n# measured predicted [%s]\n", i, d->out_unit);
        for (long k = 0; k < dr->npar; k++) {
            lo = fmin(lo, fmin(dr->pm[k], dr->pp[k]));
            hi = fmax(hi, fmax(dr->pm[k], dr->pp[k]));
            fprintf(f, "%.5g %.5g\n", dr->pm[k], dr->pp[k]);
        }
        fprintf(f, "EOD\n");
        double pad = 0.03 * fmax(hi - lo, 1e-9);
        fprintf(f, "unset logscale\nset size noratio\nset key top left font ',9'\n"
                   "set xrange [%g:%g]\nset yrange [%g:%g]\nset size ratio -1\n",
                lo - pad, hi + pad, lo - pad, hi + pad);
        snprintf(t2, sizeof(t2), "measured by %s [%s]", d->name, d->out_unit);
        fprintf(f, "set xlabel %s\n", gp_str(t, sizeof(t), t2));
        snprintf(t2, sizeof(t2), "surrogate prediction [%s]", d->out_unit);
        fprintf(f, "set ylabel %s\n", gp_str(t, sizeof(t), t2));
        snprintf(t2, sizeof(t2), "%s: %s, NRMSE %.3f (%ld values, %ld queries)", d->name, g->surrogate, g->nrmse,
                 g->values, g->queries);
        fprintf(f, "set title %s font ',10'\n", gp_str(t, sizeof(t), t2));
        fprintf(f, "plot $P%d using 1:2 with points pt 7 ps 0.3 lc rgb '#b00072B2' title 'samples', x with lines "
                   "lw 1.5 lc rgb '#d62728' title 'surrogate = measured'\n",
                i);
        /* residual histogram */
        long n = dr->nres;
        gsl_sort_float(dr->res, 1, (size_t)n);
        double q1 = gsl_stats_float_quantile_from_sorted_data(dr->res, 1, (size_t)n, 0.001);
        double q9 = gsl_stats_float_quantile_from_sorted_data(dr->res, 1, (size_t)n, 0.999);
        double half = 1.3 * fmax(fmax(fabs(q1), fabs(q9)), isfinite(g->noise_rms) ? 4 * g->noise_rms : 0);
        if (!(half > 0))
            half = 1e-6;
        gsl_histogram *h = gsl_histogram_alloc(81);
        if (!h) {
            fclose(f);
            free(fg.buf);
            m->status = FIG_FAILED;
            return PATCTL_ERR_NOMEM;
        }
        gsl_histogram_set_ranges_uniform(h, -half, half);
        long outside = 0;
        for (long k = 0; k < n; k++)
            if (gsl_histogram_increment(h, dr->res[k]) != 0)
                outside++;
        double bw = 2 * half / 81;
        fprintf(f, "$H%d << EOD\n# residual_centre count\n", i);
        for (size_t k = 0; k < 81; k++) {
            double a, b;
            gsl_histogram_get_range(h, k, &a, &b);
            fprintf(f, "%.6g %g\n", 0.5 * (a + b), gsl_histogram_get(h, k));
        }
        fprintf(f, "EOD\n");
        gsl_histogram_free(h);
        fprintf(f, "set size noratio\nset xrange [%g:%g]\nset yrange [0.8:*]\nset logscale y\n"
                   "set style fill solid 0.6 noborder\nset key top right font ',9'\n", -half, half);
        snprintf(t2, sizeof(t2), "measured - surrogate [%s]", d->out_unit);
        fprintf(f, "set xlabel %s\nset ylabel 'values per bin (log scale)'\n", gp_str(t, sizeof(t), t2));
        if (isfinite(g->noise_rms))
            snprintf(t2, sizeof(t2), "residual rms %.4g %s = %.1f x the noise floor %.4g (%s)", g->rms, d->out_unit,
                     g->rms / g->noise_rms, g->noise_rms, g->noise_from);
        else
            snprintf(t2, sizeof(t2), "residual rms %.4g %s, mean %.3g; noise floor not measured (no patctl fit "
                     "outputs)", g->rms, d->out_unit, g->mean);
        fprintf(f, "set title %s font ',10'\n", gp_str(t, sizeof(t), t2));
        fprintf(f, "gauss(x, s) = %ld * %g / (s * sqrt(2 * pi)) * exp(-0.5 * (x / s)**2)\n", n - outside, bw);
        fprintf(f, "set samples 400\nplot $H%d using 1:2 with boxes lc rgb '#6baed6' title 'residuals', "
                   "gauss(x, %g) with lines lw 1.5 dt 2 lc rgb '#333333' title 'Gaussian, same rms'",
                i, g->rms);
        if (isfinite(g->noise_rms))
            fprintf(f, ", gauss(x, %g) with lines lw 2 lc rgb '#d62728' title 'noise floor (Gaussian)'", g->noise_rms);
        fprintf(f, "\nunset logscale y\nset style fill empty\n");
        if (outside)
            fig_note(m, "%s: %ld of %ld residuals beyond +-%.3g %s not drawn", d->name, outside, n, half,
                     d->out_unit);
    }
    fprintf(f, "unset multiplot\n");
    return fig_end(c, &fg);
}

/* The noise floor of device d from the fit outputs, if they are of it. */
static void noise_floor(const rep_ctx *c, const rep_device *d, rep_gap *g)
{
    g->noise_rms = NAN;
    const rep_fit *ft = c->fit;
    if (!ft || !isfinite(ft->noise_rms))
        return;
    if (ft->device[0] && strcmp(ft->device, d->name) != 0)
        return;
    if (ft->noise_std && ft->n_noise != d->n_out)
        return;
    g->noise_rms = ft->noise_rms;
    snprintf(g->noise_from, sizeof(g->noise_from), "patctl fit, %.150s", ft->dir);
}

int report_device(rep_ctx *c)
{
    rep_run *r = &c->runs[0];
    if (!r->has_db) {
        fig_missing(c, "device", "Devices over time and surrogate quality",
                    "%s has no run store (run.sqlite): no device journal, settings or checkpoints to draw", r->dir);
        return 0;
    }
    if (r->n_dev == 0) {
        fig_missing(c, "device", "Devices over time", "the run store lists no device");
        return 0;
    }
    dev_drift drs[CFG_MAX_DEVICES];
    memset(drs, 0, sizeof(drs));
    int rc = 0;
    for (int i = 0; i < r->n_dev && !rc; i++) {
        const rep_device *d = &r->dev[i];
        rep_gap *g = &c->gap[i];
        memset(g, 0, sizeof(*g));
        noise_floor(c, d, g);
        dev_traj tr;
        char traj_why[600] = "";
        load_traj(r, d, &tr, traj_why, sizeof(traj_why));
        load_drift(r, d, &drs[i], g);
        dev_events ev;
        load_events(r, d, &ev);
        rc = draw_device(c, r, d, &tr, traj_why, &drs[i], g, &ev);
        traj_free(&tr);
        free(ev.t), free(ev.kind);
    }
    if (!rc)
        rc = draw_surrogate(c, r, drs, c->gap);
    for (int i = 0; i < r->n_dev; i++)
        drift_free(&drs[i]);
    return rc;
}
