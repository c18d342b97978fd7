/* patctl report: a run (or several, compared) as figures and one
 * self-contained report.html, from the stored data alone: the run
 * directory's run.sqlite (start record, sessions/stop records, step, epoch
 * and evaluation metrics, device journal, log, checkpoints), its
 * summary.json (fallback when there is no run store), and the outputs of
 * `patctl fit` when present.  Devices are never opened.
 *
 * Figures are PNG files drawn by gnuplot (pngcairo) run as a child process
 * on a script with its data inline ($DATA << EOD blocks); each script is
 * kept beside its PNG (NAME.gp: `gnuplot NAME.gp` in the report directory
 * redraws it).  Without gnuplot the scripts and the HTML (with tables) are
 * still written, and the HTML says how to install gnuplot.
 *
 * Files (report_*.c): report_data.c loads runs, report_gnuplot.c runs
 * gnuplot, report_train.c / report_device.c / report_model.c /
 * report_fit.c write the figures, report_html.c the page, cmd_report.c is
 * the command. */
#ifndef PATCTL_REPORT_H
#define PATCTL_REPORT_H

#include <stddef.h>

#define REPORT_MAX_RUNS 16
#define REPORT_MAX_FIGS 48

typedef struct report_options {
    const char *out;       /* report directory (created); NULL: RUN/report for
                              one run, runs/compare-<time> for several */
    const char *gnuplot;   /* gnuplot program; NULL: $PATCTL_GNUPLOT if set
                              (empty = no gnuplot), else "gnuplot" on PATH */
    const char *fit;       /* a `patctl fit` output directory (report.json);
                              NULL: RUN/fit, or the directory of a fitted
                              surrogate the run used */
    int quiet;             /* print only the report's path */
} report_options;

typedef enum {
    FIG_DRAWN = 0,         /* PNG written and checked */
    FIG_MISSING,           /* the data it needs is not in the run: note says what and why */
    FIG_NO_GNUPLOT,        /* script written, not drawn */
    FIG_FAILED,            /* gnuplot failed: note has its message */
} fig_status;

typedef struct report_figure {
    char name[64];         /* file stem: "training", "device_osc64" */
    char title[160];
    char caption[1024];    /* how to read it */
    fig_status status;
    char note[1024];       /* what is missing and why / gnuplot's error / remarks */
} report_figure;

typedef struct report_result {
    char dir[1024];        /* the report directory */
    char html[1200];       /* its report.html */
    int gnuplot_ok;
    char gnuplot_note[512];
    int n_figs;
    report_figure figs[REPORT_MAX_FIGS];
} report_result;

/* Make the report of runs[0..n-1] (n == 1: one run; n > 1: a comparison).
 * Returns 0 when report.html was written (figures may be missing: see
 * res->figs[].status), else PATCTL_ERR_* with a message naming the run or
 * file.  res may be NULL. */
int report_make(const char *const *runs, int n, const report_options *o, report_result *res,
                char *err, size_t errlen);

/* "drawn", "missing", "not drawn (no gnuplot)", "failed". */
const char *report_status_name(fig_status s);

#endif
