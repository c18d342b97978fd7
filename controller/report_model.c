/* patctl report: the trained coupling matrix of each oscillator device as a
 * heat map (coupling_DEV.png), from the last checkpoint's parameters (the
 * journal's last setting when there is no checkpoint). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_sort_float.h>
#include <gsl/gsl_statistics_float.h>

#include "controller/report_int.h"
#include "patctl/error.h"

/* The block holding an oscillator device's coupling C [N, N], or -1. */
static int coupling_block(const rep_device *d)
{
    if (strcmp(d->model, "oscillators") != 0)
        return -1;
    for (int b = 0; b < d->n_blocks; b++)
        if (strcmp(d->blocks[b].name, "C") == 0 && d->blocks[b].rows == d->blocks[b].cols && d->blocks[b].rows > 1)
            return b;
    return -1;
}

/* The first or last (last != 0) journal setting of device d [n_theta]; *t:
 * its first use (run seconds), *step. */
static float *journal_setting(rep_run *r, const rep_device *d, int last, double *t, long *step)
{
    sqlite3_stmt *st = NULL;
    float *p = NULL;
    const char *sql = last ? "SELECT setting, t_start, step FROM query WHERE device = ? ORDER BY id DESC LIMIT 1"
                           : "SELECT setting, t_start, step FROM query WHERE device = ? ORDER BY id LIMIT 1";
    if (r->db && sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, d->idx);
        if (sqlite3_step(st) == SQLITE_ROW) {
            p = rep_setting(r, (long)sqlite3_column_int64(st, 0), d->n_theta);
            *t = rep_rel_time(r, sqlite3_column_double(st, 1));
            *step = (long)sqlite3_column_int64(st, 2);
        }
    }
    sqlite3_finalize(st);
    return p;
}

/* Q = (C + C^T)/2 off the diagonal, NaN on it (the diagonal is minus the
 * column sums: it would swamp the colour scale).  q [N*N]. */
static void symmetrise(const float *C, int N, float *q)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            q[i * N + j] = i == j ? NAN : 0.5f * (C[i * N + j] + C[j * N + i]);
}

/* 99th percentile of |q| over the finite entries (colour range). */
static double abs_p99(const float *q, long n)
{
    float *a = malloc(sizeof(float) * (size_t)(n + 1));
    if (!a)
        return 1;
    long k = 0;
    for (long i = 0; i < n; i++)
        if (isfinite(q[i]))
            a[k++] = fabsf(q[i]);
    double v = 0;
    if (k > 0) {
        gsl_sort_float(a, 1, (size_t)k);
        v = gsl_stats_float_quantile_from_sorted_data(a, 1, (size_t)k, 0.99);
    }
    free(a);
    return v > 0 ? v : 1e-6;
}

static void write_matrix(FILE *f, const char *name, const float *q, int N)
{
    fprintf(f, "%s << EOD\n", name);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            if (j)
                fputc(' ', f);
            if (isfinite(q[i * N + j]))
                fprintf(f, "%.4g", q[i * N + j]);
            else
                fputs("NaN", f);
        }
        fputc('\n', f);
    }
    fprintf(f, "EOD\n");
}

static int one_device(rep_ctx *c, rep_run *r, const rep_device *d, int b)
{
    const rep_block *k = &d->blocks[b];
    int N = k->rows;
    char name[96], title[200];
    snprintf(name, sizeof(name), "coupling_%s", d->name);
    snprintf(title, sizeof(title), "Trained coupling matrix of %s", d->name);
    /* the trained C: last checkpoint, else the last setting sent */
    float *C = NULL, *C0 = NULL, *params = NULL;
    char from[300] = "";
    rep_ckpt ck;
    long np = 0;
    if (k->param_offset >= 0 && (params = rep_checkpoint_params(r, 0, &ck, &np)) &&
        k->param_offset + (long)N * N <= np) {
        C = params + k->param_offset;
        snprintf(from, sizeof(from), "checkpoint %ld (step %ld, epoch %d%s)", ck.id, ck.step, ck.epoch,
                 ck.final ? ", final" : "");
    }
    float *last = NULL;
    double t_last = NAN, t0 = NAN;
    long s_last = 0, s0 = 0;
    if (!C && (last = journal_setting(r, d, 1, &t_last, &s_last))) {
        C = last + k->theta_offset;
        snprintf(from, sizeof(from), "the last setting sent to the device (journal, step %ld; no checkpoint)",
                 s_last);
    }
    if (!C) {
        free(params);
        fig_missing(c, name, title,
                    "no parameters of %s stored: the run has no checkpoint%s and no journal rows of this device (it "
                    "was interrupted before its first checkpoint%s)",
                    d->name, r->n_ckpts ? " with this layout" : "",
                    r->cfg && r->cfg->journal == JOURNAL_OFF ? ", with journal = off" : "");
        return 0;
    }
    float *first = journal_setting(r, d, 0, &t0, &s0);
    if (first)
        C0 = first + k->theta_offset;
    float *q = malloc(sizeof(float) * (size_t)N * N), *q0 = C0 ? malloc(sizeof(float) * (size_t)N * N) : NULL;
    if (!q || (C0 && !q0)) {
        free(q), free(q0), free(params), free(last), free(first);
        return PATCTL_ERR_NOMEM;
    }
    symmetrise(C, N, q);
    double v = abs_p99(q, (long)N * N);
    if (C0)
        symmetrise(C0, N, q0);
    rep_fig fg;
    int panels = C0 ? 2 : 1;
    int side = N > 100 ? 640 : 560;
    if (!fig_begin(c, &fg, name, title, side * panels + 60, side))
        return free(q), free(q0), free(params), free(last), free(first), PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "The coupling the oscillators feel, Q = (C + C^T)/2 off the diagonal, in %s, from %s%s. The diagonal "
             "(minus the column sums) is grey, not coloured. Colour scale: symmetric, saturating at the 99th "
             "percentile of the trained |Q|%s. Hard limits of C: [%g, %g] %s.",
             k->unit, from, C0 ? "; left: the first setting sent (the initialisation), same colour scale" : "",
             C0 ? " (both panels)" : "", k->lo, k->hi, k->unit);
    FILE *f = fg.f;
    char t[300], t2[300];
    write_matrix(f, "$Q", q, N);
    if (C0)
        write_matrix(f, "$Q0", q0, N);
    if (panels > 1)
        fprintf(f, "set multiplot layout 1,2 title %s font ',13'\n", gp_str(t, sizeof(t), title));
    fprintf(f, "set palette defined (-1 '#2166ac', -0.5 '#92c5de', 0 '#f7f7f7', 0.5 '#f4a582', 1 '#b2182b')\n"
               "unset grid\nunset key\nset size ratio -1\nset tics out scale 0.5\n"
               "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n"
               "set xlabel 'oscillator j'\nset ylabel 'oscillator i'\n"
               "set object 1 rectangle from graph 0,0 to graph 1,1 behind fc rgb '#999999' fs solid noborder\n",
               N - 1, N - 1);
    fprintf(f, "set cbrange [%g:%g]\nset cblabel %s\n", -v, v,
            gp_str(t, sizeof(t), (snprintf(t2, sizeof(t2), "Q_ij [%s]", k->unit), t2)));
    if (C0) {
        snprintf(t2, sizeof(t2), "%s: Q as first sent (step %ld)", d->name, s0);
        fprintf(f, "set title %s\nplot $Q0 matrix with image notitle\n", gp_str(t, sizeof(t), t2));
    }
    snprintf(t2, sizeof(t2), "%s: Q after training", d->name);
    fprintf(f, "set title %s\nplot $Q matrix with image notitle\n", gp_str(t, sizeof(t), t2));
    if (C0)
        fprintf(f, "unset multiplot\n");
    free(q), free(q0), free(params), free(last), free(first);
    return fig_end(c, &fg);
}

int report_coupling(rep_ctx *c)
{
    rep_run *r = &c->runs[0];
    int found = 0, rc = 0;
    for (int i = 0; i < r->n_dev && !rc; i++) {
        int b = coupling_block(&r->dev[i]);
        if (b < 0)
            continue;
        found++;
        rc = one_device(c, r, &r->dev[i], b);
    }
    (void)found; /* devices of other models have no coupling matrix: no figure, nothing missing */
    return rc;
}
