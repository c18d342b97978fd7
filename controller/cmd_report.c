/* patctl report RUN [RUN...]: figures and report.html of a run, or of runs
 * compared (see controller/report.h). */
#include <stdio.h>
#include <string.h>

#include "controller/commands.h"
#include "controller/report.h"
#include "patctl/error.h"

static void report_usage(FILE *f)
{
    fprintf(f,
            "usage: patctl report RUN [RUN...] [--out DIR] [--fit DIR] [--gnuplot PROG] [--quiet]\n"
            "\n"
            "Draws a run from its stored data alone (RUN/run.sqlite, RUN/summary.json, and the\n"
            "outputs of patctl fit when present) and writes DIR/report.html, one self-contained\n"
            "page (figures embedded) with the start record, the stop records and these PNGs:\n"
            "  training.png       loss and accuracy per step against training time and device\n"
            "                     queries, epoch means, test accuracy on the device\n"
            "  confusion.png      confusion matrix of the last evaluation\n"
            "  surrogate.png      surrogate vs device at the queries the run made: parity plot\n"
            "                     and residual histogram (against the noise floor with --fit)\n"
            "  device_DEV.png     each device over time: parameter trajectories within their\n"
            "                     limits, output drift, faults, retries, clamps, ramp steps\n"
            "  coupling_DEV.png   oscillator devices: the trained coupling matrix Q\n"
            "  fit.png            patctl fit outputs: held-out parity, RMSE per output vs noise\n"
            "With several runs: one comparison (training curves one line per run, confusion\n"
            "matrices side by side, a table of the runs).  Figures whose data is missing are\n"
            "named with the reason instead of being drawn empty.\n"
            "\n"
            "options:\n"
            "  --out DIR       report directory (default RUN/report; with several runs\n"
            "                  compare-<time> beside the first run)\n"
            "  --fit DIR       a patctl fit output directory (report.json) to draw and to take\n"
            "                  the noise floor from (default: RUN/fit if present)\n"
            "  --gnuplot PROG  the gnuplot program (default $PATCTL_GNUPLOT, else gnuplot;\n"
            "                  empty: draw nothing, write the scripts and the HTML)\n"
            "  --quiet         print only the path of report.html\n"
            "\n"
            "Needs gnuplot with the pngcairo terminal for the PNGs (Debian: apt-get install\n"
            "gnuplot-nox); without it the HTML with its tables and each figure's script\n"
            "(DIR/NAME.gp, data inline: `gnuplot NAME.gp` in DIR draws it) are written.\n");
}

int cmd_report(int argc, char **argv)
{
    const char *runs[REPORT_MAX_RUNS];
    int n = 0;
    report_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            report_usage(stdout);
            return EXIT_OK;
        } else if ((strcmp(a, "--out") == 0 || strcmp(a, "--fit") == 0 || strcmp(a, "--gnuplot") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "patctl report: %s needs a value (see --help)\n", a);
                return EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (strcmp(a, "--out") == 0)
                o.out = v;
            else if (strcmp(a, "--fit") == 0)
                o.fit = v;
            else
                o.gnuplot = v;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o.quiet = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "patctl report: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        } else if (n == REPORT_MAX_RUNS) {
            fprintf(stderr, "patctl report: at most %d runs at once\n", REPORT_MAX_RUNS);
            return EXIT_USAGE;
        } else {
            runs[n++] = a;
        }
    }
    if (!n) {
        report_usage(stderr);
        return EXIT_USAGE;
    }
    static report_result res;
    char err[1024] = "";
    int rc = report_make(runs, n, &o, &res, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "patctl report: %s\n", err[0] ? err : patctl_strerror(rc));
        return EXIT_FAIL;
    }
    if (!o.quiet) {
        if (!res.gnuplot_ok)
            printf("patctl report: %s\n", res.gnuplot_note);
        for (int i = 0; i < res.n_figs; i++) {
            const report_figure *m = &res.figs[i];
            printf("  %-22s %s", m->name, report_status_name(m->status));
            if (m->status == FIG_DRAWN)
                printf("  %s/%s.png", res.dir, m->name);
            if (m->status == FIG_MISSING || m->status == FIG_FAILED)
                printf(": %s", m->note);
            printf("\n");
        }
    }
    printf("report: %s\n", res.html);
    return EXIT_OK;
}
