/* patctl report: load the runs, draw the figures, write report.html. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/report_int.h"
#include "controller/summary.h"
#include "patctl/error.h"

static void default_dir(char *out, size_t n, const char *const *runs, int nr)
{
    if (nr == 1) {
        snprintf(out, n, "%s/report", runs[0]);
        return;
    }
    /* comparisons go beside the first run: <its parent>/compare-<time> */
    char parent[1024];
    snprintf(parent, sizeof(parent), "%s", runs[0]);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
    snprintf(out, n, "%s/compare-%s", dirname(parent), when);
}

int report_make(const char *const *runs, int n, const report_options *o, report_result *res_out, char *err,
                size_t errlen)
{
    if (n < 1 || n > REPORT_MAX_RUNS) {
        snprintf(err, errlen, "patctl report takes 1 to %d runs (got %d)", REPORT_MAX_RUNS, n);
        return PATCTL_ERR_ARG;
    }
    report_result *res = calloc(1, sizeof(*res));
    rep_run *rr = calloc((size_t)n, sizeof(*rr));
    gnuplot *gp = calloc(1, sizeof(*gp));
    rep_ctx *c = calloc(1, sizeof(*c));
    rep_fit fit;
    memset(&fit, 0, sizeof(fit));
    int rc = res && rr && gp && c ? 0 : PATCTL_ERR_NOMEM;
    for (int i = 0; i < n && !rc; i++)
        rc = rep_run_load(&rr[i], runs[i], err, errlen);
    if (!rc) {
        if (o && o->out)
            snprintf(res->dir, sizeof(res->dir), "%s", o->out);
        else
            default_dir(res->dir, sizeof(res->dir), runs, n);
        if (make_dirs(res->dir) != 0) {
            snprintf(err, errlen, "%s: cannot create the report directory: %s", res->dir, strerror(errno));
            rc = PATCTL_ERR_IO;
        }
    }
    if (!rc) {
        gp_init(gp, o ? o->gnuplot : NULL);
        res->gnuplot_ok = gp->ok;
        snprintf(res->gnuplot_note, sizeof(res->gnuplot_note), "%s", gp->why);
        c->runs = rr;
        c->n_runs = n;
        c->dir = res->dir;
        c->gp = gp;
        c->res = res;
        if (n == 1) {
            char note[600] = "";
            int frc = rep_fit_find(&fit, &rr[0], o ? o->fit : NULL, note, sizeof(note));
            if (frc == 0)
                c->fit = &fit;
            else if (o && o->fit) {
                snprintf(err, errlen, "--fit %s: %s", o->fit, note);
                rc = frc;
            }
            snprintf(c->fit_note, sizeof(c->fit_note), "%s", note);
        }
    }
    /* figures: a failed figure is recorded in res and does not stop the report */
    if (!rc) {
        int frc = report_training(c);
        if (frc == PATCTL_ERR_NOMEM)
            rc = frc;
        if (!rc && (frc = report_confusion(c)) == PATCTL_ERR_NOMEM)
            rc = frc;
        if (!rc && (frc = report_pruning(c)) == PATCTL_ERR_NOMEM)
            rc = frc;
        if (!rc && n == 1) {
            if ((frc = report_device(c)) == PATCTL_ERR_NOMEM)
                rc = frc;
            if (!rc && (frc = report_coupling(c)) == PATCTL_ERR_NOMEM)
                rc = frc;
            if (!rc && (frc = report_fit(c)) == PATCTL_ERR_NOMEM)
                rc = frc;
        }
        if (rc)
            snprintf(err, errlen, "out of memory while drawing the figures");
    }
    if (!rc)
        rc = report_html(c, err, errlen);
    if (res_out && res)
        *res_out = *res;
    rep_fit_free(&fit);
    for (int i = 0; rr && i < n; i++)  /* accepts zeroed and half-loaded runs */
        rep_run_free(&rr[i]);
    free(rr), free(res), free(gp), free(c);
    return rc;
}
