/* patctl report: training curves (training.png) and the confusion matrix of
 * the final evaluation (confusion.png); one line / one panel per run when
 * runs are compared. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/report_int.h"
#include "patctl/error.h"

/* Centred moving average of v[n] over `w` points, NaN skipped (out[n]). */
static void moving_average(const double *v, long n, long w, double *out)
{
    long h = w / 2;
    for (long k = 0; k < n; k++) {
        double s = 0;
        long c = 0;
        for (long j = k - h < 0 ? 0 : k - h; j <= k + h && j < n; j++)
            if (isfinite(v[j]))
                s += v[j], c++;
        out[k] = c ? s / c : NAN;
    }
}

/* Index of the step row with step number s (st_step is sorted), or -1. */
static long step_index(const rep_run *r, long s)
{
    long lo = 0, hi = r->n_steps - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if ((long)r->st_step[mid] == s)
            return mid;
        if ((long)r->st_step[mid] < s)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Why a run has no training curve, in words. */
static void why_no_steps(const rep_run *r, char *buf, size_t n)
{
    const rep_session *last = NULL;
    int train = 0;
    for (int i = 0; i < r->n_sessions; i++)
        if (strcmp(r->sessions[i].kind, "train") == 0 || strcmp(r->sessions[i].kind, "resume") == 0)
            train++, last = &r->sessions[i];
    if (!r->has_db)
        snprintf(buf, n, "%s: no run.sqlite and no epoch_metrics in summary.json", r->dir);
    else if (!train)
        snprintf(buf, n, "%s: no training session in the run store", r->dir);
    else if (!last->status)
        snprintf(buf, n, "%s: no training step recorded yet (the training session has no stop record: still "
                 "running, or killed before its first step)", r->dir);
    else
        snprintf(buf, n, "%s: no training step recorded (the training session ended with status %s%s%s before "
                 "its first step)", r->dir, last->status, last->reason[0] ? ": " : "", last->reason);
}

typedef struct curve {
    const rep_run *r;
    int ok;                /* has step rows */
    int queries;           /* has device queries during training */
    double *loss_ma, *acc_ma;
} curve;

int report_training(rep_ctx *c)
{
    const char *name = "training", *title = "Training curves";
    curve cv[REPORT_MAX_RUNS];
    memset(cv, 0, sizeof(cv));
    int n_ok = 0, n_epochs_only = 0;
    double tmax = 0, qmin = INFINITY, qmax = 0, lmin = INFINITY, lmax = 0;
    char missing[2048] = "";
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = &c->runs[i];
        cv[i].r = r;
        if (r->n_steps > 0) {
            cv[i].ok = 1;
            n_ok++;
            long w = r->n_steps / 25;
            w = w < 1 ? 1 : w > 101 ? 101 : w;
            cv[i].loss_ma = malloc(sizeof(double) * (size_t)r->n_steps);
            cv[i].acc_ma = malloc(sizeof(double) * (size_t)r->n_steps);
            if (!cv[i].loss_ma || !cv[i].acc_ma) {
                for (int j = 0; j <= i; j++)
                    free(cv[j].loss_ma), free(cv[j].acc_ma);
                return PATCTL_ERR_NOMEM;
            }
            moving_average(r->st_loss, r->n_steps, w, cv[i].loss_ma);
            moving_average(r->st_acc, r->n_steps, w, cv[i].acc_ma);
            double q = r->st_queries[r->n_steps - 1];
            cv[i].queries = isfinite(q) && q > 0;
            if (r->st_time[r->n_steps - 1] > tmax)
                tmax = r->st_time[r->n_steps - 1];
            if (cv[i].queries) {
                qmin = fmin(qmin, q);
                qmax = fmax(qmax, q);
            }
            for (long k = 0; k < r->n_steps; k++)
                if (isfinite(cv[i].loss_ma[k]) && cv[i].loss_ma[k] > 0) {
                    lmin = fmin(lmin, cv[i].loss_ma[k]);
                    lmax = fmax(lmax, cv[i].loss_ma[k]);
                }
        }
        for (int e = 0; e < r->n_epochs; e++)
            if (isfinite(r->epochs[e].loss) && r->epochs[e].loss > 0) {
                lmin = fmin(lmin, r->epochs[e].loss);
                lmax = fmax(lmax, r->epochs[e].loss);
            }
        if (r->n_steps > 0)
            continue;
        if (r->n_epochs > 0) {
            n_epochs_only++;
            tmax = fmax(tmax, r->epochs[r->n_epochs - 1].t);
        } else {
            char why[600];
            why_no_steps(r, why, sizeof(why));
            size_t u = strlen(missing);
            snprintf(missing + u, sizeof(missing) - u, "%s%s", u ? "; " : "", why);
        }
    }
    if (!n_ok && !n_epochs_only) {
        fig_missing(c, name, title, "%s", missing);
        return 0;
    }
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, 1400, 900))
        return PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "Loss (cross-entropy of the training forward pass: measured on the device in pat, ideal, spsa, pc, dfa and adfa "
             "mode (spsa: the mean of its two perturbed passes), "
             "computed by the surrogate in insilico mode) and training accuracy per step, as a centred moving "
             "average over about 4 %% of the steps%s; circles with bars: epoch means over the span of their epoch; "
             "diamonds: test accuracy measured on the device. Left: against training time (device + compute seconds of the steps, "
             "without evaluations and pauses). Right: against the cumulative number of device queries made by "
             "training (batches sent to the physical layers).",
             c->n_runs == 1 ? " (dots: every step)" : ", one colour per run");
    if (missing[0])
        fig_note(m, "no curve for %s", missing);
    for (int i = 0; i < c->n_runs; i++)
        if (c->runs[i].n_skipped > 0)
            fig_note(m, "%s%s%ld training step%s skipped after device faults (nothing applied, batch dropped): "
                     "no points; their time is in the time axis", c->n_runs > 1 ? c->runs[i].dir : "",
                     c->n_runs > 1 ? ": " : "", c->runs[i].n_skipped, c->runs[i].n_skipped == 1 ? "" : "s");
    FILE *f = fg.f;
    const char *tu;
    double tdiv = gp_time_unit(tmax, &tu);
    /* a regression task (narma10, mackey-glass): the lower panels show the
     * test NRMSE measured on the device instead of accuracies */
    int reg = 0;
    for (int i = 0; i < c->n_runs; i++)
        for (int e = 0; e < c->runs[i].n_evals; e++)
            reg |= isfinite(c->runs[i].evals[e].nrmse);
    if (reg)
        fig_note(m, "a regression task: below, the test NRMSE on the device (lower is better); the loss is the mean "
                    "squared error");
    int logq = c->n_runs > 1 && qmax > 30 * qmin && qmin > 0;
    if (!(lmax > 0))
        lmin = 0.1, lmax = 1;
    int logl = lmax > 30 * lmin;
    /* data */
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = cv[i].r;
        if (cv[i].ok) {
            fprintf(f, "$S%d << EOD\n# time[%s] queries loss_ma acc_ma[%%] loss acc[%%] step\n", i, tu);
            long stride = r->n_steps > 4000 ? (r->n_steps + 3999) / 4000 : 1;
            for (long k = 0; k < r->n_steps; k++) {
                if (k % stride && k != r->n_steps - 1)
                    continue;
                gp_num(f, r->st_time[k] / tdiv), fputc(' ', f);
                gp_num(f, r->st_queries[k]), fputc(' ', f);
                gp_num(f, cv[i].loss_ma[k]), fputc(' ', f);
                gp_num(f, 100 * cv[i].acc_ma[k]), fputc(' ', f);
                gp_num(f, r->st_loss[k]), fputc(' ', f);
                gp_num(f, 100 * r->st_acc[k]);
                fprintf(f, " %ld\n", (long)r->st_step[k]);
            }
            fprintf(f, "EOD\n");
        }
        /* epoch means, drawn over the span of their epoch */
        fprintf(f, "$E%d << EOD\n# t_mid t_half[%s] q_mid q_half loss train_acc[%%]\n", i, tu);
        double t_prev = 0, q_prev = 0;
        for (int e = 0; e < r->n_epochs; e++) {
            const rep_epoch *ep = &r->epochs[e];
            double t = ep->t, q = ep->queries >= 0 ? (double)ep->queries : NAN;
            if (cv[i].ok) {
                long first = -1, last = -1;
                for (long k = 0; k < r->n_steps; k++)
                    if ((int)r->st_epoch[k] == ep->epoch) {
                        if (first < 0)
                            first = k;
                        last = k;
                    }
                if (last < 0)
                    continue;
                t = r->st_time[last];
                q = r->st_queries[last];
                t_prev = first > 0 ? r->st_time[first - 1] : 0;
                q_prev = first > 0 ? r->st_queries[first - 1] : 0;
            }
            gp_num(f, 0.5 * (t + t_prev) / tdiv), fputc(' ', f);
            gp_num(f, 0.5 * (t - t_prev) / tdiv), fputc(' ', f);
            gp_num(f, 0.5 * (q + q_prev)), fputc(' ', f);
            gp_num(f, 0.5 * (q - q_prev)), fputc(' ', f);
            gp_num(f, ep->loss), fputc(' ', f);
            gp_num(f, 100 * ep->train_acc), fputc('\n', f);
            t_prev = t, q_prev = q;
        }
        fprintf(f, "EOD\n");
        /* evaluations on the device at their step */
        fprintf(f, "$V%d << EOD\n# time[%s] queries test_acc[%%]\n", i, tu);
        for (int e = 0; e < r->n_evals; e++) {
            const rep_eval *ev = &r->evals[e];
            double t = NAN, q = NAN;
            if (cv[i].ok) {
                long k = step_index(r, ev->step);
                if (k >= 0)
                    t = r->st_time[k], q = r->st_queries[k];
                else if (ev->step == 0)
                    t = 0, q = 0;
            } else if (r->n_epochs > 0) {
                t = r->epochs[r->n_epochs - 1].t;
            }
            if (!isfinite(t))
                continue;
            gp_num(f, t / tdiv), fputc(' ', f);
            gp_num(f, q), fputc(' ', f);
            gp_num(f, reg ? ev->nrmse : 100 * ev->accuracy), fputc('\n', f);
        }
        fprintf(f, "EOD\n");
    }
    char t1[300], t2[300];
    fprintf(f, "set multiplot layout 2,2 title %s font ',14'\n",
            gp_str(t1, sizeof(t1), c->n_runs == 1 ? c->runs[0].label : "Training curves of the compared runs"));
    fprintf(f, "set key top right\nset mxtics\nset mytics\n");
    for (int panel = 0; panel < 4; panel++) {
        int acc = panel >= 2, byq = panel % 2;
        fprintf(f, "unset label\nunset logscale\n");
        if (byq) {
            fprintf(f, "set xlabel 'device queries made by training (cumulative)%s'\n", logq ? ", log scale" : "");
            if (logq)
                fprintf(f, "set logscale x\n");
            if (logq)
                fprintf(f, "set xrange [*:%g]\n", qmax * 1.3);
            else
                fprintf(f, "set xrange [0:%g]\n", (qmax > 0 ? qmax : 1) * 1.05);
        } else {
            /* room on the right for the last test-accuracy marker and its label */
            fprintf(f, "set xlabel 'training time [%s]'\nset xrange [0:%g]\n", tu, (tmax > 0 ? tmax / tdiv : 1) * 1.05);
        }
        if (acc && reg)
            fprintf(f, "set ylabel 'test NRMSE (on the device)'\nset yrange [0:*]\nset key bottom left\n");
        else if (acc)
            fprintf(f, "set ylabel 'accuracy [%%]'\nset yrange [0:100]\nset key top left\n");
        else if (logl)
            fprintf(f, "set ylabel 'loss (%s), log scale'\nset yrange [%g:%g]\nset key top right\n",
                    reg ? "mean squared error" : "cross-entropy", lmin / 1.2, lmax * 2.5);
        else
            fprintf(f, "set ylabel 'loss (%s)'\nset yrange [0:%g]\nset key top right\n",
                    reg ? "mean squared error" : "cross-entropy", lmax * 1.35);
        if (!acc && logl)
            fprintf(f, "set logscale y\n");
        int col = acc ? 4 : 3, raw = acc ? 6 : 5;
        int xc = byq ? 2 : 1;
        int shown = 0;
        char plot[16384];
        size_t pu = 0;
#define P(...) (pu += (size_t)snprintf(plot + pu, pu < sizeof(plot) ? sizeof(plot) - pu : 0, __VA_ARGS__))
        P("plot ");
        for (int i = 0; i < c->n_runs; i++) {
            const rep_run *r = cv[i].r;
            const char *col_i = c->n_runs == 1 ? gp_color(0) : gp_color(i);
            if (byq && (!cv[i].ok || !cv[i].queries)) {
                /* said in the key, where it cannot hide behind a curve */
                const char *why = !cv[i].ok ? "no per-step data" : "no training queries";
                int at0 = !logq && acc && cv[i].ok && r->n_evals;
                snprintf(t2, sizeof(t2), "%s: %s%s", r->label, why, at0 ? ", tested at 0" : "");
                if (at0)
                    P("%s$V%d using (0):3 with points pt 13 ps 2 lc rgb '%s' title %s", shown++ ? ", " : "", i, col_i,
                      gp_str(t1, sizeof(t1), t2));
                else
                    P("%sNaN with lines lw 2.2 dt 3 lc rgb '%s' title %s", shown++ ? ", " : "", col_i,
                      gp_str(t1, sizeof(t1), t2));
                continue;
            }
            if (cv[i].ok && !(acc && reg)) {
                if (c->n_runs == 1)
                    P("%s$S%d using %d:%d with points pt 7 ps 0.25 lc rgb '#a0%s' title 'every step'",
                      shown++ ? ", " : "", i, xc, raw, col_i + 1);
                P("%s$S%d using %d:%d with lines lw 2.2 lc rgb '%s' title %s", shown++ ? ", " : "", i, xc, col,
                  col_i, gp_str(t1, sizeof(t1), c->n_runs == 1 ? "moving average" : r->label));
            }
            if (r->n_epochs > 0 && !(byq && !cv[i].ok) && !(acc && reg))
                P("%s$E%d using %d:%d:%d with xerrorbars pt 6 ps 1.4 lw 1.5 lc rgb '%s' title %s",
                  shown++ ? ", " : "", i, byq ? 3 : 1, acc ? 6 : 5, byq ? 4 : 2, col_i,
                  c->n_runs == 1 || !cv[i].ok
                      ? gp_str(t1, sizeof(t1), acc ? "epoch mean, training (bar: the epoch)" : "epoch mean (bar: the epoch)")
                      : "''");
            if (acc && r->n_evals > 0) {
                P("%s$V%d using %d:3 with points pt 13 ps 2.2 lc rgb '%s' %s", shown++ ? ", " : "", i, xc, col_i,
                  c->n_runs == 1 || i == 0 ? (reg ? "title 'test NRMSE (on the device)'"
                                                  : "title 'test accuracy (on the device)'")
                                           : "notitle");
                if (reg)
                    P(", $V%d using %d:3:(sprintf('%%.3f', $3)) with labels offset 0,1.2 font ',9' tc rgb '%s' "
                      "notitle", i, xc, col_i);
                else
                    P(", $V%d using %d:3:(sprintf('%%.1f %%%%', $3)) with labels offset 0,1.2 font ',9' tc rgb '%s' "
                      "notitle", i, xc, col_i);
            }
        }
        if (!shown)
            P("NaN notitle");
        P("\n");
#undef P
        if (pu >= sizeof(plot)) {
            fclose(f);
            free(fg.buf);
            for (int i = 0; i < c->n_runs; i++)
                free(cv[i].loss_ma), free(cv[i].acc_ma);
            m->status = FIG_FAILED;
            fig_note(m, "too many runs for one plot command");
            return PATCTL_ERR_ARG;
        }
        fputs(plot, f);
    }
    fprintf(f, "unset multiplot\n");
    for (int i = 0; i < c->n_runs; i++)
        free(cv[i].loss_ma), free(cv[i].acc_ma);
    return fig_end(c, &fg);
}

/* ---- confusion ---- */

static const rep_eval *last_eval(const rep_run *r)
{
    for (int e = r->n_evals - 1; e >= 0; e--)
        if (r->evals[e].confusion && r->evals[e].classes > 0)
            return &r->evals[e];
    return NULL;
}

static void why_no_eval(const rep_run *r, char *buf, size_t n)
{
    const rep_session *last = NULL;
    for (int i = 0; i < r->n_sessions; i++)
        last = &r->sessions[i];
    if (r->n_evals > 0)
        snprintf(buf, n, "%s: its evaluation has no confusion matrix", r->dir);
    else if (last && !last->status)
        snprintf(buf, n, "%s: no evaluation yet (the run is still training, or was killed before its final "
                 "evaluation: patctl train --resume %s, or patctl eval %s)", r->dir, r->dir, r->dir);
    else if (last && strcmp(last->status, "success") != 0)
        snprintf(buf, n, "%s: no evaluation (the run ended with status %s%s%s before its final evaluation; "
                 "patctl eval %s evaluates its last checkpoint)", r->dir, last->status,
                 last->reason[0] ? ": " : "", last->reason, r->dir);
    else
        snprintf(buf, n, "%s: no evaluation recorded (patctl eval %s makes one)", r->dir, r->dir);
}

int report_confusion(rep_ctx *c)
{
    const char *name = "confusion", *title = "Confusion matrix of the final evaluation";
    int n_ok = 0, classes = 0;
    char missing[2048] = "";
    for (int i = 0; i < c->n_runs; i++) {
        const rep_eval *e = last_eval(&c->runs[i]);
        if (e) {
            n_ok++;
            if (e->classes > classes)
                classes = e->classes;
        } else {
            char why[700];
            why_no_eval(&c->runs[i], why, sizeof(why));
            size_t u = strlen(missing);
            snprintf(missing + u, sizeof(missing) - u, "%s%s", u ? "; " : "", why);
        }
    }
    if (!n_ok) {
        fig_missing(c, name, title, "%s", missing);
        return 0;
    }
    int cols = n_ok < 3 ? n_ok : 3, rows = (n_ok + cols - 1) / cols;
    int cell = classes <= 10 ? 720 : 900;
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, cell * cols + (cols > 1 ? 0 : 80), (cell - 60) * rows))
        return PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "The last evaluation on the device: rows are the true classes (with the recall of each), columns the "
             "predicted ones; numbers are image counts, colour the share of the true class.%s",
             c->n_runs > 1 ? " One panel per run." : "");
    if (missing[0])
        fig_note(m, "%s", missing);
    FILE *f = fg.f;
    char t[400], t2[400];
    if (n_ok > 1)
        fprintf(f, "set multiplot layout %d,%d\n", rows, cols);
    fprintf(f, "set palette defined (0 '#ffffff', 0.5 '#6baed6', 1 '#08306b')\n"
               "set cbrange [0:100]\nset cblabel '%% of the true class'\n"
               "unset grid\nunset key\nset tics scale 0\nset xtics rotate by 35 right font ',10'\nset ytics font ',10'\n"
               "set xlabel 'predicted class'\nset ylabel 'true class (recall)'\n");
    int panel = 0;
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = &c->runs[i];
        const rep_eval *e = last_eval(r);
        if (!e)
            continue;
        int k = e->classes;
        const char *const *names = rep_class_names(r, k);
        fprintf(f, "$C%d << EOD\n", panel);
        for (int a = 0; a < k; a++) {
            long row = 0;
            for (int b = 0; b < k; b++)
                row += e->confusion[a * k + b];
            for (int b = 0; b < k; b++)
                fprintf(f, "%s%.3f", b ? " " : "", row ? 100.0 * e->confusion[a * k + b] / row : 0.0);
            fputc('\n', f);
        }
        fprintf(f, "EOD\n$D%d << EOD\n", panel);  /* counts on light cells */
        for (int pass = 0; pass < 2; pass++) {
            if (pass)
                fprintf(f, "EOD\n$L%d << EOD\n", panel);  /* counts on dark cells */
            for (int a = 0; a < k; a++) {
                long row = 0;
                for (int b = 0; b < k; b++)
                    row += e->confusion[a * k + b];
                for (int b = 0; b < k; b++) {
                    double p = row ? 100.0 * e->confusion[a * k + b] / row : 0;
                    if ((p > 50) == pass && e->confusion[a * k + b])
                        fprintf(f, "%d %d %d\n", b, a, e->confusion[a * k + b]);
                }
            }
        }
        fprintf(f, "EOD\n");
        /* tics: class names, recall on the rows */
        fprintf(f, "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset xtics (", k - 1, k - 1);
        for (int b = 0; b < k; b++) {
            char nm[64];
            snprintf(nm, sizeof(nm), "%s", names ? names[b] : "");
            if (!names)
                snprintf(nm, sizeof(nm), "%d", b);
            fprintf(f, "%s%s %d", b ? ", " : "", gp_str(t, sizeof(t), nm), b);
        }
        fprintf(f, ")\nset ytics (");
        for (int a = 0; a < k; a++) {
            long row = 0;
            for (int b = 0; b < k; b++)
                row += e->confusion[a * k + b];
            char nm[96];
            snprintf(nm, sizeof(nm), "%s (%.0f %%%%)", names ? names[a] : "", row ? 100.0 * e->confusion[a * k + a] / row : 0.0);
            if (!names)
                snprintf(nm, sizeof(nm), "%d (%.0f %%%%)", a, row ? 100.0 * e->confusion[a * k + a] / row : 0.0);
            fprintf(f, "%s%s %d", a ? ", " : "", gp_str(t, sizeof(t), nm), a);
        }
        fprintf(f, ")\n");
        snprintf(t2, sizeof(t2), "%s%stest accuracy %.2f %% on the device (%ld images, step %ld)",
                 c->n_runs > 1 ? r->label : "", c->n_runs > 1 ? "\n" : "", 100 * e->accuracy, e->n, e->step);
        fprintf(f, "set title %s\n", gp_str(t, sizeof(t), t2));
        fprintf(f, "plot $C%d matrix with image notitle, $D%d using 1:2:3 with labels font ',%d' tc rgb '#222222' "
                   "notitle, $L%d using 1:2:3 with labels font ',%d' tc rgb '#ffffff' notitle\n",
                panel, panel, k <= 10 ? 10 : 7, panel, k <= 10 ? 10 : 7);
        panel++;
    }
    if (n_ok > 1)
        fprintf(f, "unset multiplot\n");
    return fig_end(c, &fg);
}

/* The last evaluation of a run trained with train --prune (pruned and
 * fine-tuned), or NULL. */
static const rep_eval *fine_tuned_eval(const rep_run *r)
{
    const rep_eval *e = r->n_evals ? &r->evals[r->n_evals - 1] : NULL;
    return e && e->pruned > 0 && isfinite(e->accuracy) ? e : NULL;
}

/* pruning.png: test accuracy on the device against the fraction of weights
 * and couplings pruned (patctl eval --prune), one line per run: how much a
 * regulariser such as BEAN lets be removed; a run pruned during training
 * (train --prune) and fine-tuned is a star at its fraction.  Drawn only
 * when some run has either (else the figure does not apply). */
int report_pruning(rep_ctx *c)
{
    int any = 0;
    for (int i = 0; i < c->n_runs; i++)
        any |= c->runs[i].n_prunes > 0 || fine_tuned_eval(&c->runs[i]);
    if (!any)
        return 0;
    const char *name = "pruning", *title = "Accuracy against the fraction pruned";
    rep_fig fg;
    if (!fig_begin(c, &fg, name, title, 1100, 650))
        return PATCTL_ERR_NOMEM;
    report_figure *m = fg.meta;
    snprintf(m->caption, sizeof(m->caption),
             "patctl eval --prune: each point is an evaluation on the device of a checkpoint after zeroing the "
             "given fraction of smallest-magnitude entries of every digital weight matrix and physical coupling "
             "matrix (oscillator couplings as symmetric pairs); the number is the accuracy. A star: a run pruned "
             "during training (patctl train --prune) and fine-tuned with the pruned entries held at zero, its "
             "last evaluation.%s",
             c->n_runs > 1 ? " One colour per run." : "");
    FILE *f = fg.f;
    char t[400];
    fprintf(f, "set xlabel 'fraction of weights / couplings pruned'\nset ylabel 'test accuracy on the device (%%)'\n"
               "set xrange [-0.02:1.02]\nset key bottom left\nset grid\n");
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = &c->runs[i];
        const rep_eval *ft = fine_tuned_eval(r);
        if (ft) {
            fprintf(f, "$F%d << EOD\n", i);
            gp_num(f, ft->pruned);
            fputc(' ', f);
            gp_num(f, 100.0 * ft->accuracy);
            fprintf(f, "\nEOD\n");
        }
        if (!r->n_prunes)
            continue;
        fprintf(f, "$P%d << EOD\n", i);
        /* in fraction order (the sweep's order as stored may differ) */
        for (int pass = 0; pass < r->n_prunes; pass++)
            for (int a = 0; a < r->n_prunes; a++) {
                int rank = 0;
                for (int b = 0; b < r->n_prunes; b++)
                    rank += r->prunes[b].fraction < r->prunes[a].fraction ||
                            (r->prunes[b].fraction == r->prunes[a].fraction && b < a);
                if (rank != pass)
                    continue;
                double frac = r->prunes[a].prunable ? (double)r->prunes[a].pruned / r->prunes[a].prunable
                                                    : r->prunes[a].fraction;
                gp_num(f, frac);
                fputc(' ', f);
                gp_num(f, 100.0 * r->prunes[a].accuracy);
                fputc('\n', f);
            }
        fprintf(f, "EOD\n");
    }
    fprintf(f, "plot ");
    int k = 0;
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = &c->runs[i];
        if (fine_tuned_eval(r)) {
            char lab[300];
            snprintf(lab, sizeof(lab), "%s: pruned in training, fine-tuned", r->label);
            fprintf(f, "%s$F%d using 1:2 with points pt 3 ps 3 lw 2 lc rgb '%s' title %s, "
                       "$F%d using 1:2:(sprintf('%%.1f', $2)) with labels offset 0,-1.5 font ',9' tc rgb '%s' notitle",
                    k ? ", " : "", i, gp_color(i), gp_str(t, sizeof(t), lab), i,
                    gp_color(i));
            k++;
        }
        if (!r->n_prunes)
            continue;
        fprintf(f, "%s$P%d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title %s, "
                   "$P%d using 1:2:(sprintf('%%.1f', $2)) with labels offset 0,1 font ',9' tc rgb '%s' notitle",
                k ? ", " : "", i, gp_color(i), gp_str(t, sizeof(t), r->label), i, gp_color(i));
        k++;
    }
    fprintf(f, "\n");
    return fig_end(c, &fg);
}
