/* patctl report: report.html, one self-contained page (figures embedded as
 * base64 data URIs; the PNG files stay beside it) with the start record,
 * the stop records, tables of the metrics and what is missing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/report_int.h"
#include "patctl/error.h"
#include "patctl/version.h"

void html_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The file as base64 (RFC 4648) to f.  0 or PATCTL_ERR_IO. */
static int base64_file(FILE *f, const char *path)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *in = fopen(path, "rb");
    if (!in)
        return PATCTL_ERR_IO;
    unsigned char b[3 * 1024];
    size_t n;
    while ((n = fread(b, 1, sizeof(b), in)) > 0) {
        /* full chunks are multiples of 3, so padding only happens at the end */
        for (size_t i = 0; i < n; i += 3) {
            unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) |
                         (i + 2 < n ? b[i + 2] : 0);
            fputc(tab[v >> 18 & 63], f);
            fputc(tab[v >> 12 & 63], f);
            fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
            fputc(i + 2 < n ? tab[v & 63] : '=', f);
        }
    }
    int bad = ferror(in);
    fclose(in);
    return bad ? PATCTL_ERR_IO : 0;
}

static void when(FILE *f, double t)
{
    if (!isfinite(t)) {
        fputs("&ndash;", f);
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    char buf[40];
    gmtime_r(&s, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
    fputs(buf, f);
}

static void num(FILE *f, double v, const char *fmt)
{
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fputs("&ndash;", f);
}

static void row2(FILE *f, const char *k, const char *v)
{
    fputs("<tr><th>", f);
    html_text(f, k);
    fputs("</th><td>", f);
    html_text(f, v);
    fputs("</td></tr>\n", f);
}

static const char *last_status(const rep_run *r, const char **reason)
{
    *reason = "";
    for (int i = r->n_sessions - 1; i >= 0; i--)
        if (strcmp(r->sessions[i].kind, "train") == 0 || strcmp(r->sessions[i].kind, "resume") == 0) {
            *reason = r->sessions[i].reason;
            return r->sessions[i].status ? r->sessions[i].status : "running or killed (no stop record)";
        }
    if (r->summary) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(r->summary, "status");
        if (cJSON_IsString(s))
            return s->valuestring;
    }
    return "no training session";
}

static double final_accuracy(const rep_run *r)
{
    return r->n_evals ? r->evals[r->n_evals - 1].accuracy : NAN;
}

static double train_queries(const rep_run *r)
{
    return r->n_steps ? r->st_queries[r->n_steps - 1] : NAN;
}

static double train_time(const rep_run *r)
{
    if (r->n_steps)
        return r->st_time[r->n_steps - 1];
    return r->n_epochs ? r->epochs[r->n_epochs - 1].t : NAN;
}

static void start_record(FILE *f, const rep_run *r)
{
    char buf[256];
    fputs("<table class=kv>\n", f);
    row2(f, "run directory", r->dir);
    if (!r->has_db) {
        row2(f, "run store", "none (no run.sqlite): from summary.json only");
    } else {
        row2(f, "run uid", r->uid);
        fputs("<tr><th>started</th><td>", f);
        when(f, r->created_unix);
        fputs("</td></tr>\n", f);
        row2(f, "host", r->host);
        row2(f, "command", r->argv);
        row2(f, "config source", r->config_source);
    }
    row2(f, "mode", r->mode);
    snprintf(buf, sizeof(buf), "%lld", r->seed);
    row2(f, "seed", buf);
    row2(f, "patctl version", r->version);
    row2(f, "BLAS", r->blas);
    if (r->cfg) {
        snprintf(buf, sizeof(buf), "%s, %s, %d epochs, batch %d, %s lr %g (%s)", r->cfg->data_set,
                 r->cfg->journal == JOURNAL_ALL ? "journal all"
                 : r->cfg->journal == JOURNAL_OFF ? "journal off" : "journal every N",
                 r->cfg->epochs, r->cfg->batch, optimizer_name(r->cfg->optimizer), r->cfg->lr,
                 schedule_name(r->cfg->schedule));
        row2(f, "experiment", buf);
    } else if (r->cfg_err[0]) {
        row2(f, "config", r->cfg_err);
    }
    fputs("</table>\n", f);
    if (r->n_dev) {
        fputs("<h3>Devices</h3>\n<table><tr><th>#</th><th>name</th><th>driver</th><th>options</th><th>model</th>"
              "<th>inputs &rarr; outputs</th><th>input limits</th><th>kind</th><th>surrogate</th>"
              "<th>limits / steps policy</th><th>seed</th><th>journal rows</th></tr>\n", f);
        for (int i = 0; i < r->n_dev; i++) {
            const rep_device *d = &r->dev[i];
            fprintf(f, "<tr><td>%d</td><td>", d->idx);
            html_text(f, d->name);
            fputs("</td><td>", f);
            html_text(f, d->driver);
            fputs("</td><td><code>", f);
            html_text(f, d->options);
            fputs("</code></td><td title=\"", f);
            html_text(f, d->about);
            fputs("\">", f);
            html_text(f, d->model);
            fprintf(f, "</td><td>%d [", d->n_in);
            html_text(f, d->in_unit);
            fprintf(f, "] &rarr; %d [", d->n_out);
            html_text(f, d->out_unit);
            fprintf(f, "]</td><td>[%g, %g] ", d->in_lo, d->in_hi);
            html_text(f, d->in_unit);
            fprintf(f, "</td><td>%s%s</td><td>", d->simulated ? "simulated" : "hardware",
                    d->has_vjp ? ", exact VJP" : "");
            html_text(f, d->surrogate[0] ? d->surrogate : "nominal");
            fputs("</td><td>", f);
            html_text(f, d->limits);
            fputs(" / ", f);
            html_text(f, d->steps);
            fputs("</td><td>", f);
            html_text(f, d->seed[0] ? d->seed : "-");
            fprintf(f, "</td><td>%ld (%ld with data, %ld faults, %ld settings)</td></tr>\n", d->j_rows, d->j_data,
                    d->j_faults, d->settings);
        }
        fputs("</table>\n<h3>Parameter blocks</h3>\n<table><tr><th>device</th><th>block</th><th>shape</th>"
              "<th>unit</th><th>hard limits</th><th>max step</th><th>safe</th><th>initialisation</th>"
              "<th>meaning</th></tr>\n", f);
        for (int i = 0; i < r->n_dev; i++)
            for (int b = 0; b < r->dev[i].n_blocks; b++) {
                const rep_block *k = &r->dev[i].blocks[b];
                fputs("<tr><td>", f);
                html_text(f, r->dev[i].name);
                fputs("</td><td>", f);
                html_text(f, k->name);
                fprintf(f, "</td><td>%d &times; %d</td><td>", k->rows, k->cols);
                html_text(f, k->unit);
                fprintf(f, "</td><td>[%g, %g]</td><td>%s</td><td>%g</td><td>U(%g, %g)</td><td>", k->lo, k->hi,
                        k->max_step > 0 ? (snprintf(buf, sizeof(buf), "%g", k->max_step), buf) : "unlimited",
                        k->safe, k->init_lo, k->init_hi);
                html_text(f, k->about);
                fputs("</td></tr>\n", f);
            }
        fputs("</table>\n", f);
    }
    if (r->config && r->config[0]) {
        fputs("<details><summary>Effective config (as stored in the start record)</summary><pre>", f);
        html_text(f, r->config);
        fputs("</pre></details>\n", f);
    }
}

static void stop_records(FILE *f, const rep_run *r)
{
    if (!r->n_sessions) {
        const char *reason;
        const char *st = last_status(r, &reason);
        fputs("<p>No sessions in a run store; summary.json says status <b>", f);
        html_text(f, st);
        fputs("</b>.</p>\n", f);
        return;
    }
    fputs("<table><tr><th>session</th><th>kind</th><th>started</th><th>duration</th><th>status</th>"
          "<th>reason</th><th>steps</th><th>epochs</th><th>device queries</th><th>samples</th><th>ramp steps</th>"
          "<th>clamped</th><th>rejected</th><th>faults</th><th>retries</th><th>device time</th>"
          "<th>test accuracy</th><th>devices safe</th></tr>\n", f);
    for (int i = 0; i < r->n_sessions; i++) {
        const rep_session *s = &r->sessions[i];
        fprintf(f, "<tr class=\"%s\"><td>%ld%s</td><td>", !s->status ? "warn" : strcmp(s->status, "success") ? "bad" : "",
                s->id, s->resumed_from ? " (from ckpt)" : "");
        html_text(f, s->kind);
        fputs("</td><td>", f);
        when(f, s->started);
        fputs("</td><td>", f);
        num(f, s->stopped - s->started, "%.1f s");
        fputs("</td><td>", f);
        html_text(f, s->status ? s->status : "no stop record");
        fputs("</td><td>", f);
        html_text(f, s->reason);
        fprintf(f, "</td><td>%ld</td><td>%ld</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td>"
                   "<td>%lld</td><td>%lld</td><td>",
                s->steps, s->epochs_done, s->queries, s->samples, s->ramp_steps, s->clamped, s->rejected, s->faults,
                s->retries);
        num(f, s->device_seconds, "%.1f s");
        fputs("</td><td>", f);
        num(f, 100 * s->test_accuracy, "%.2f %%");
        fprintf(f, "</td><td>%s</td></tr>\n", s->devices_safe < 0 ? "&ndash;" : s->devices_safe ? "yes" : "NO");
    }
    fputs("</table>\n", f);
}

static void metrics_tables(FILE *f, const rep_run *r)
{
    if (r->n_epochs) {
        fputs("<h3>Epochs</h3>\n<table><tr><th>epoch</th><th>steps</th><th>loss</th><th>train accuracy</th>"
              "<th>test accuracy</th><th>seconds</th><th>device queries (cumulative)</th></tr>\n", f);
        for (int e = 0; e < r->n_epochs; e++) {
            const rep_epoch *x = &r->epochs[e];
            fprintf(f, "<tr><td>%d</td><td>%ld</td><td>", x->epoch, x->steps);
            num(f, x->loss, "%.4f");
            fputs("</td><td>", f);
            num(f, 100 * x->train_acc, "%.2f %%");
            fputs("</td><td>", f);
            num(f, 100 * x->test_acc, "%.2f %%");
            fputs("</td><td>", f);
            num(f, x->seconds, "%.1f");
            fputs("</td><td>", f);
            num(f, x->queries >= 0 ? (double)x->queries : NAN, "%.0f");
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
    if (r->n_evals) {
        int reg = isfinite(r->evals[0].nrmse);
        int pruned = 0;  /* train --prune: the share held at zero, a column */
        for (int e = 0; e < r->n_evals; e++)
            pruned |= r->evals[e].pruned > 0;
        fprintf(f, "<h3>Evaluations on the device</h3>\n<table><tr><th>#</th><th>step</th><th>epoch</th><th>%s</th>"
                "<th>%s</th><th>seconds</th><th>device queries</th>%s</tr>\n", reg ? "samples" : "images",
                reg ? "NRMSE" : "accuracy", pruned ? "<th>weights / couplings held at zero</th>" : "");
        for (int e = 0; e < r->n_evals; e++) {
            const rep_eval *x = &r->evals[e];
            fprintf(f, "<tr><td>%ld</td><td>%ld</td><td>%d</td><td>%ld</td><td>", x->id, x->step, x->epoch, x->n);
            if (reg)
                num(f, x->nrmse, "%.4f");
            else
                num(f, 100 * x->accuracy, "%.2f %%");
            fputs("</td><td>", f);
            num(f, x->seconds, "%.1f");
            fprintf(f, "</td><td>%lld</td>", x->queries);
            if (pruned)
                fprintf(f, "<td>%.1f %%</td>", 100.0 * x->pruned);
            fputs("</tr>\n", f);
        }
        fputs("</table>\n", f);
        const rep_eval *x = &r->evals[r->n_evals - 1];
        if (x->confusion && x->classes <= 20) {
            int k = x->classes;
            const char *const *names = rep_class_names(r, k);
            fputs("<details><summary>Confusion matrix of the last evaluation (rows: true, columns: predicted)"
                  "</summary><table class=num><tr><th></th>", f);
            for (int j = 0; j < k; j++)
                fprintf(f, "<th>%d</th>", j);
            fputs("<th>recall</th></tr>\n", f);
            for (int i = 0; i < k; i++) {
                long row = 0;
                for (int j = 0; j < k; j++)
                    row += x->confusion[i * k + j];
                fprintf(f, "<tr><th>%d ", i);
                html_text(f, names ? names[i] : "");
                fputs("</th>", f);
                for (int j = 0; j < k; j++)
                    fprintf(f, "<td%s>%d</td>", i == j ? " class=diag" : "", x->confusion[i * k + j]);
                fprintf(f, "<td>%.1f %%</td></tr>\n", row ? 100.0 * x->confusion[i * k + i] / row : 0.0);
            }
            fputs("</table></details>\n", f);
        }
    }
    if (r->n_prunes) {
        fputs("<h3>Evaluations after pruning (patctl eval --prune)</h3>\n<table><tr><th>checkpoint</th>"
              "<th>fraction asked</th><th>weights / couplings zeroed</th><th>accuracy</th></tr>\n", f);
        for (int e = 0; e < r->n_prunes; e++) {
            const rep_prune *x = &r->prunes[e];
            fprintf(f, "<tr><td>%ld</td><td>%.3f</td><td>%ld of %ld</td><td>", x->checkpoint, x->fraction, x->pruned,
                    x->prunable);
            num(f, 100 * x->accuracy, "%.2f %%");
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
}

static void gap_table(FILE *f, const rep_ctx *c)
{
    const rep_run *r = &c->runs[0];
    if (!r->n_dev)
        return;
    fputs("<h3>Simulation-reality gap seen in the journal</h3>\n<table><tr><th>device</th><th>surrogate</th>"
          "<th>queries / values evaluated</th><th>residual rms</th><th>mean</th><th>NRMSE</th>"
          "<th>noise floor</th><th>rms first &rarr; last 10 %</th></tr>\n", f);
    for (int i = 0; i < r->n_dev; i++) {
        const rep_gap *g = &c->gap[i];
        fputs("<tr><td>", f);
        html_text(f, r->dev[i].name);
        fputs("</td>", f);
        if (!g->ok) {
            fputs("<td colspan=7 class=missing>", f);
            html_text(f, g->why[0] ? g->why : "not computed");
            fputs("</td></tr>\n", f);
            continue;
        }
        fputs("<td>", f);
        html_text(f, g->surrogate);
        fprintf(f, "</td><td>%ld / %ld</td><td>%.4g ", g->queries, g->values, g->rms);
        html_text(f, r->dev[i].out_unit);
        fprintf(f, "</td><td>%.3g</td><td>%.4f</td><td>", g->mean, g->nrmse);
        if (isfinite(g->noise_rms)) {
            fprintf(f, "%.4g (", g->noise_rms);
            html_text(f, g->noise_from);
            fputs(")", f);
        } else {
            fputs("not measured", f);
        }
        fprintf(f, "</td><td>%.4g &rarr; %.4g</td></tr>\n", g->rms_first, g->rms_last);
    }
    fputs("</table>\n", f);
}

static void fit_section(FILE *f, const rep_ctx *c)
{
    fputs("<h3>Fitted surrogates (patctl fit)</h3>\n", f);
    if (!c->fit) {
        fputs("<p class=missing>", f);
        html_text(f, c->fit_note);
        fputs("</p>\n", f);
        return;
    }
    fputs("<p>From <code>", f);
    html_text(f, c->fit->dir);
    fputs("/report.json</code>", f);
    if (isfinite(c->fit->noise_rms))
        fprintf(f, "; noise floor rms %.4g", c->fit->noise_rms);
    fputs(".</p>\n<table><tr><th>surrogate</th><th>kind</th><th>held-out NRMSE</th><th>noise NRMSE</th>"
          "<th>NRMSE / noise</th><th>fit seconds</th></tr>\n", f);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c->fit->report, "surrogates"))
    {
        const cJSON *test = cJSON_GetObjectItemCaseSensitive(e, "test");
        const cJSON *v;
        fputs("<tr><td>", f);
        html_text(f, cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(e, "name")) ? v->valuestring : "?");
        fputs("</td><td>", f);
        html_text(f, cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(e, "kind")) ? v->valuestring : "?");
        const char *keys[] = {"nrmse", "noise_nrmse", "nrmse_over_noise"};
        for (int k = 0; k < 3; k++) {
            fputs("</td><td>", f);
            v = cJSON_GetObjectItemCaseSensitive(test, keys[k]);
            num(f, cJSON_IsNumber(v) ? v->valuedouble : NAN, "%.4f");
        }
        fputs("</td><td>", f);
        v = cJSON_GetObjectItemCaseSensitive(e, "fit_seconds");
        num(f, cJSON_IsNumber(v) ? v->valuedouble : NAN, "%.1f");
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static int fig_rank(const char *name)
{
    static const char *const order[] = {"training", "confusion", "surrogate", "fit", "device", "coupling"};
    for (int i = 0; i < 6; i++)
        if (strncmp(name, order[i], strlen(order[i])) == 0)
            return i;
    return 6;
}

static void figures(FILE *f, const rep_ctx *c)
{
    const report_result *res = c->res;
    fputs("<h2 id=figures>Figures</h2>\n", f);
    if (!c->gp->ok) {
        fputs("<p class=warn><b>Figures are not drawn:</b> ", f);
        html_text(f, c->gp->why);
        fputs(". Each figure's gnuplot script (with its data) is in the report directory; after installing gnuplot "
              "run <code>patctl report</code> again, or <code>gnuplot NAME.gp</code> there.</p>\n", f);
    }
    for (int rank = 0; rank <= 6; rank++)
        for (int i = 0; i < res->n_figs; i++) {
            const report_figure *m = &res->figs[i];
            if (fig_rank(m->name) != rank)
                continue;
            fprintf(f, "<section class=fig id=\"%s\"><h3>", m->name);
            html_text(f, m->title);
            fputs("</h3>\n", f);
            char path[1200];
            snprintf(path, sizeof(path), "%s/%s.png", c->dir, m->name);
            if (m->status == FIG_DRAWN) {
                fprintf(f, "<a href=\"%s.png\"><img alt=\"", m->name);
                html_text(f, m->title);
                fputs("\" src=\"data:image/png;base64,", f);
                if (base64_file(f, path) != 0)
                    fputs("\" data-error=\"cannot read the PNG", f);
                fputs("\"></a>\n", f);
            } else if (m->status == FIG_MISSING) {
                fputs("<p class=missing><b>Not drawn: the data is missing.</b> ", f);
                html_text(f, m->note);
                fputs("</p>\n", f);
            } else if (m->status == FIG_NO_GNUPLOT) {
                fprintf(f, "<p class=warn>Not drawn (no gnuplot); script: <code>%s.gp</code></p>\n", m->name);
            } else {
                fputs("<p class=bad><b>gnuplot failed:</b> ", f);
                html_text(f, m->note);
                fputs("</p>\n", f);
            }
            if (m->caption[0]) {
                fputs("<p class=caption>", f);
                html_text(f, m->caption);
                fputs("</p>\n", f);
            }
            if (m->note[0] && m->status != FIG_MISSING && m->status != FIG_FAILED) {
                fputs("<p class=note>Note: ", f);
                html_text(f, m->note);
                fputs("</p>\n", f);
            }
            fputs("</section>\n", f);
        }
}

static const char *const CSS =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1420px;color:#222;"
    "line-height:1.4}\n"
    "h1{font-size:1.6em;margin-bottom:0.2em}h2{border-bottom:2px solid #08306b;padding-bottom:2px;margin-top:1.6em}\n"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.88em}td,th{border:1px solid #ccc;padding:3px 7px;"
    "text-align:left;vertical-align:top}th{background:#eef3f9}table.kv th{width:12em}\n"
    "table.num td{text-align:right}td.diag{background:#dbe9f6;font-weight:bold}\n"
    "tr.bad td{background:#fde0dc}tr.warn td{background:#fff4d6}\n"
    "p.missing,td.missing{color:#8a1c1c;background:#fdf0ee;padding:6px 10px;border-left:4px solid #c0392b}\n"
    "p.warn{background:#fff4d6;padding:6px 10px;border-left:4px solid #e69f00}\n"
    "p.bad{background:#fde0dc;padding:6px 10px;border-left:4px solid #c0392b}\n"
    "p.caption{color:#444;font-size:0.92em;max-width:70em}p.note{color:#555;font-size:0.88em}\n"
    "img{max-width:100%;border:1px solid #ddd}section.fig{margin-bottom:2em}\n"
    "pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:0.85em}code{background:#f6f8fa}\n"
    ".summary{font-size:1.05em}.summary b{color:#08306b}nav li{margin:0.1em 0}\n";

int report_html(rep_ctx *c, char *err, size_t errlen)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof(path), "%s/report.html", c->dir);
    snprintf(tmp, sizeof(tmp), "%s/.report.html.%ld", c->dir, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return PATCTL_ERR_IO;
    }
    const rep_run *r0 = &c->runs[0];
    fputs("<!DOCTYPE html>\n<html lang=en><head><meta charset=\"utf-8\">\n<title>patctl report: ", f);
    html_text(f, c->n_runs == 1 ? r0->label : "comparison");
    fprintf(f, "</title>\n<style>\n%s</style></head><body>\n", CSS);
    time_t now = time(NULL);
    if (c->n_runs == 1) {
        fputs("<h1>patctl report: ", f);
        html_text(f, r0->dir);
        fputs("</h1>\n<p class=summary>", f);
        const char *reason, *st = last_status(r0, &reason);
        fputs("mode <b>", f);
        html_text(f, r0->mode);
        fputs("</b>, status <b>", f);
        html_text(f, st);
        if (reason && reason[0]) {
            fputs("</b> (", f);
            html_text(f, reason);
            fputs(")<b>", f);
        }
        fputs("</b>, test accuracy on the device <b>", f);
        num(f, 100 * final_accuracy(r0), "%.2f %%");
        fputs("</b>, ", f);
        num(f, r0->n_steps ? (double)r0->n_steps : NAN, "%.0f");
        fputs(" steps, ", f);
        num(f, train_queries(r0), "%.0f");
        fputs(" device queries in training, ", f);
        num(f, train_time(r0), "%.1f");
        fputs(" s of training.</p>\n", f);
    } else {
        fprintf(f, "<h1>patctl report: %d runs compared</h1>\n", c->n_runs);
        fputs("<table><tr><th>run</th><th>directory</th><th>mode</th><th>seed</th><th>status</th>"
              "<th>test accuracy (device)</th><th>device queries in training</th><th>training time</th>"
              "<th>steps</th><th>devices</th></tr>\n", f);
        for (int i = 0; i < c->n_runs; i++) {
            const rep_run *r = &c->runs[i];
            const char *reason, *st = last_status(r, &reason);
            fprintf(f, "<tr><td style=\"color:%s\"><b>", gp_color(i));
            html_text(f, r->label);
            fputs("</b></td><td>", f);
            html_text(f, r->dir);
            fputs("</td><td>", f);
            html_text(f, r->mode);
            fprintf(f, "</td><td>%lld</td><td>", r->seed);
            html_text(f, st);
            fputs("</td><td>", f);
            num(f, 100 * final_accuracy(r), "%.2f %%");
            fputs("</td><td>", f);
            num(f, train_queries(r), "%.0f");
            fputs("</td><td>", f);
            num(f, train_time(r), "%.1f s");
            fprintf(f, "</td><td>%ld</td><td>", r->n_steps);
            for (int d = 0; d < r->n_dev; d++) {
                html_text(f, r->dev[d].name);
                fputs(" (", f);
                html_text(f, r->dev[d].driver);
                fputs(": ", f);
                html_text(f, r->dev[d].options);
                fputs(d + 1 < r->n_dev ? ")<br>" : ")", f);
            }
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
    fputs("<p class=note>Generated ", f);
    when(f, (double)now);
    fprintf(f, " by patctl %s from the stored data alone (run.sqlite, summary.json%s). Report directory: <code>",
            PATCTL_VERSION_STRING, c->fit ? ", patctl fit outputs" : "");
    html_text(f, c->dir);
    fputs("</code> (PNG files and their gnuplot scripts beside this page).</p>\n<nav><ul>\n", f);
    for (int rank = 0; rank <= 6; rank++)
        for (int i = 0; i < c->res->n_figs; i++) {
            const report_figure *m = &c->res->figs[i];
            if (fig_rank(m->name) != rank)
                continue;
            fprintf(f, "<li><a href=\"#%s\">", m->name);
            html_text(f, m->title);
            fprintf(f, "</a> &ndash; %s</li>\n", report_status_name(m->status));
        }
    fputs("<li><a href=\"#start\">Start record</a>, <a href=\"#stop\">stop records</a>, "
          "<a href=\"#metrics\">metrics</a></li></ul></nav>\n", f);
    figures(f, c);
    for (int i = 0; i < c->n_runs; i++) {
        const rep_run *r = &c->runs[i];
        if (c->n_runs > 1) {
            fputs("<h2>Run ", f);
            html_text(f, r->label);
            fputs("</h2>\n<details><summary>start record, stop records, metrics</summary>\n", f);
        }
        fprintf(f, "<h2 id=start%s>Start record</h2>\n", i ? "x" : "");
        start_record(f, r);
        fprintf(f, "<h2 id=stop%s>Stop records (one per session)</h2>\n", i ? "x" : "");
        stop_records(f, r);
        fprintf(f, "<h2 id=metrics%s>Metrics</h2>\n", i ? "x" : "");
        metrics_tables(f, r);
        if (c->n_runs == 1) {
            gap_table(f, c);
            fit_section(f, c);
        }
        if (c->n_runs > 1)
            fputs("</details>\n", f);
    }
    fputs("</body></html>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return PATCTL_ERR_IO;
    }
    snprintf(c->res->html, sizeof(c->res->html), "%s", path);
    return 0;
}
