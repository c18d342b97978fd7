/* Inside patctl report: a run as loaded from its directory, the gnuplot
 * runner, and the figure writers (see report.h).  Not a public interface. */
#ifndef PATCTL_REPORT_INT_H
#define PATCTL_REPORT_INT_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "controller/config.h"
#include "controller/report.h"
#include "patctl/device.h"

/* ---- a run, loaded (report_data.c) ---- */

typedef struct rep_block {
    char name[32], unit[24], about[96];
    int rows, cols;
    long theta_offset;     /* in the device's theta */
    long param_offset;     /* in the model's flat parameter vector (param_view), -1 = unknown */
    double lo, hi, max_step, safe, init_lo, init_hi;
} rep_block;

typedef struct rep_device {
    int idx;
    char name[64], model[48], in_unit[24], out_unit[24], limits[16], steps[16], seed[32];
    char *driver, *options, *surrogate, *about;   /* owned, never NULL */
    int n_in, n_out, simulated, has_vjp;
    double in_lo, in_hi;
    long n_theta;
    int n_blocks;
    rep_block blocks[PATCTL_MAX_BLOCKS];
    /* journal of this device (rows of the query table) */
    long j_rows, j_data;   /* all rows; successful rows with B > 0 */
    long j_faults, j_retries, j_ramps, j_superseded;
    long settings;         /* setting rows */
    long log_warn, log_fault;
} rep_device;

typedef struct rep_session {
    long id, resumed_from;
    char *kind, *argv, *status, *reason;   /* owned; status NULL = no stop record */
    double started, stopped;               /* Unix s; stopped NAN without stop record */
    long steps, epochs_done;
    long long queries, samples, ramp_steps, clamped, rejected, faults, retries;
    double device_seconds, test_accuracy;  /* NAN = none */
    int devices_safe;                      /* -1 unknown */
} rep_session;

typedef struct rep_epoch {
    int epoch;
    long steps;
    double loss, train_acc, test_acc, seconds, t;  /* test_acc NAN = none */
    long long queries;
} rep_epoch;

typedef struct rep_eval {
    long id, step;
    int epoch, classes;
    long n;
    double t, accuracy, seconds;
    double nrmse;          /* regression tasks (accuracy then NAN); NAN otherwise */
    double pruned;         /* train --prune: share of the entries held at zero (0 = none) */
    long long queries;
    int *confusion;        /* [classes, classes] true x predicted, owned (NULL = none) */
} rep_eval;

/* An evaluation of pruned parameters (patctl eval --prune; schema 3). */
typedef struct rep_prune {
    long checkpoint;
    double fraction, accuracy;   /* fraction asked, accuracy on the device */
    long pruned, prunable;       /* weights/couplings zeroed, of how many */
} rep_prune;

typedef struct rep_ckpt {
    long id, step;
    int epoch, final;
    double t;
} rep_ckpt;

typedef struct rep_run {
    char *dir;             /* as given */
    char label[96];        /* short name in legends: "pat s0 (run dir)" */
    int has_db;
    sqlite3 *db;           /* read-only; NULL without run.sqlite */
    cJSON *summary;        /* summary.json or NULL */
    /* start record */
    char *uid, *created, *host, *version, *blas, *mode, *config, *config_source, *argv;
    double created_unix;   /* t0 of the time axes (NAN: unknown) */
    long long seed;
    run_config *cfg;       /* parsed config, NULL if it did not parse (cfg_err) */
    char cfg_err[512];
    int n_dev;
    rep_device dev[CFG_MAX_DEVICES];
    long n_params;         /* of the model (param_view), 0 = unknown */
    int n_sessions;
    rep_session *sessions;
    /* metrics */
    long n_steps;             /* applied steps (the points below) */
    long n_skipped;           /* skipped steps (device faults; rows with status 'skipped', not drawn) */
    double *st_step, *st_epoch, *st_loss, *st_acc, *st_time, *st_queries, *st_t;  /* [n_steps]; st_time = cumulative training s */
    int n_epochs;
    rep_epoch *epochs;
    int n_evals;
    rep_eval *evals;       /* evaluations of the parameters as trained */
    int n_prunes;
    rep_prune *prunes;     /* evaluations after pruning (not in evals) */
    int n_ckpts;
    rep_ckpt *ckpts;
    long n_log;
} rep_run;

/* Load run directory dir (run.sqlite and/or summary.json).  0, or
 * PATCTL_ERR_NOT_FOUND when it holds neither, PATCTL_ERR_FORMAT, ... with a
 * message naming the file. */
int rep_run_load(rep_run *r, const char *dir, char *err, size_t errlen);
void rep_run_free(rep_run *r);
/* Parameters of checkpoint id (0 = the newest) [n_params] (caller frees), or
 * NULL.  *ck gets its row. */
float *rep_checkpoint_params(rep_run *r, long id, rep_ckpt *ck, long *n);
/* A stored setting (setting.id) of device `dev` [n_theta] (caller frees). */
float *rep_setting(rep_run *r, long setting_id, long n_theta);
/* Little-endian float32 BLOB of a column into dst[n] (0 if its size fits). */
int rep_blob_f32(sqlite3_stmt *st, int col, float *dst, long n);
/* Class names of the run's data set (fashion-mnist), or NULL. */
const char *const *rep_class_names(const rep_run *r, int classes);
/* Seconds of t since the run started (NAN when unknown). */
double rep_rel_time(const rep_run *r, double t);

/* ---- fit outputs (report_fit.c) ---- */

typedef struct rep_fit {
    char dir[1024];        /* the fit output directory */
    cJSON *report;         /* its report.json */
    char device[64];       /* device name it was collected from ("" unknown) */
    double noise_rms;      /* NAN: no noise floor */
    float *noise_std;      /* [n_noise] per output, from the collected data, or NULL */
    long n_noise;
} rep_fit;

/* Find and load fit outputs for run r (explicit dir first).  0 = found;
 * PATCTL_ERR_NOT_FOUND = none (why in note); other errors: a broken
 * report.json (message in note). */
int rep_fit_find(rep_fit *f, const rep_run *r, const char *explicit_dir, char *note, size_t notelen);
void rep_fit_free(rep_fit *f);

/* ---- gnuplot (report_gnuplot.c) ---- */

typedef struct gnuplot {
    char prog[512];
    int ok;                /* found, and has the pngcairo terminal */
    char why[512];         /* when !ok: what happened and how to install */
} gnuplot;

/* Resolve the program (prog, else $PATCTL_GNUPLOT, else "gnuplot") and
 * check it can draw PNG (pngcairo). */
void gp_init(gnuplot *g, const char *prog);
/* Run `prog script` in directory dir; 0, or PATCTL_ERR_IO with gnuplot's
 * message (first lines of its stderr) in msg. */
int gp_run(const gnuplot *g, const char *dir, const char *script, char *msg, size_t msglen);
/* 1 if path is a PNG file (signature) of at least min_bytes bytes. */
int png_file_ok(const char *path, long min_bytes);

/* ---- figure writing (report_*.c) ---- */

/* The simulation-reality gap of one device as the run's journal shows it:
 * measured minus surrogate at the very inputs and settings sent. */
typedef struct rep_gap {
    int ok;                /* residuals computed */
    char why[600];         /* when !ok: what is missing */
    char surrogate[160];   /* which surrogate */
    long queries, values;  /* evaluated (a sample of the journal) */
    double rms, mean, std_y, nrmse;   /* residual rms/mean, spread of the outputs (output units) */
    double noise_rms;      /* noise floor (NAN: not measured) */
    char noise_from[200];
    double rms_first, rms_last;       /* rms over the first / last 10 % of the evaluated queries */
} rep_gap;

/* The context every figure writer gets. */
typedef struct rep_ctx {
    rep_run *runs;
    int n_runs;
    const char *dir;       /* report directory */
    const gnuplot *gp;
    rep_fit *fit;          /* of runs[0] (single-run reports), NULL = none */
    char fit_note[600];    /* why there is none */
    rep_gap gap[CFG_MAX_DEVICES];  /* of runs[0]'s devices (report_device) */
    report_result *res;
} rep_ctx;

/* A figure in progress: the script goes to f (open_memstream). */
typedef struct rep_fig {
    report_figure *meta;
    char *buf;
    size_t len;
    FILE *f;
} rep_fig;

/* Add a figure (name, title) to the result and start its script with the
 * terminal (width x height pixels) and output.  NULL when there is no room. */
rep_fig *fig_begin(rep_ctx *c, rep_fig *fg, const char *name, const char *title, int w, int h);
/* Record that the figure cannot be drawn: status missing with the reason. */
void fig_missing(rep_ctx *c, const char *name, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Finish: write NAME.gp, run gnuplot (if any), check NAME.png. */
int fig_end(rep_ctx *c, rep_fig *fg);
/* Append to a figure's note ("; "-separated). */
void fig_note(report_figure *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* gnuplot string literal: text in double quotes (backslash, quote and newline escaped; units
 * ^2, ^-1 as superscripts).  Returns buf. */
const char *gp_str(char *buf, size_t n, const char *text);
/* Colour of series i (a fixed qualitative palette). */
const char *gp_color(int i);
/* Time axis of run-relative seconds: divisor and label ("s", "min", "h"). */
double gp_time_unit(double span_s, const char **unit);
/* Write a number for a data block: "NaN" for non-finite. */
void gp_num(FILE *f, double v);

int report_training(rep_ctx *c);      /* training.png (runs compared in one figure) */
int report_confusion(rep_ctx *c);     /* confusion.png */
int report_coupling(rep_ctx *c);      /* coupling_DEV.png per oscillator device */
int report_device(rep_ctx *c);        /* device_DEV.png per device (parameters, drift, events) and surrogate.png */
int report_fit(rep_ctx *c);           /* fit.png from patctl fit outputs */
int report_pruning(rep_ctx *c);       /* pruning.png: accuracy vs fraction pruned (runs compared) */
int report_html(rep_ctx *c, char *err, size_t errlen);

/* HTML-escape text to f. */
void html_text(FILE *f, const char *s);

#endif
