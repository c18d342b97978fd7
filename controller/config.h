/* An experiment: data, devices, the model graph, training and logging
 * settings.  config_quickstart() is the built-in default; it equals what
 * examples/quickstart.ini describes (a test checks that).
 *
 * Files are INI (libinih), see config_ini.c and examples/quickstart.ini;
 * config_format() writes a config back as INI text that parses to the same
 * config (stored in every run's start record). */
#ifndef PATCTL_CONFIG_H
#define PATCTL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_DEVICES 16
#define CFG_MAX_LAYERS 32
#define CFG_MAX_KEYS 32     /* keys remembered per device section (for errors) */

/* Where a key came from: its line in the config file (0 = not from a file). */
typedef struct cfg_key_origin {
    char key[32];
    int line;
} cfg_key_origin;

typedef struct device_spec {
    char name[32];          /* instance name referenced by physical layers */
    char driver[256];       /* built-in name or plugin .so path */
    char options[1024];     /* "key=value,key=value" passed to the driver */
    char limits[8];         /* "clamp" | "reject" */
    char steps[8];          /* "ramp" | "refuse" */
    char surrogate[256];    /* "" = the nominal model; else the name of a fitted
                               surrogate (used by `patctl fit`, issue 4) */
    char dfa_roles[128];    /* DFA/aDFA: local rule of each parameter block,
                               "BLOCK:ROLE,..." (controller/dfa.h); "" = the
                               device model's defaults */
    /* origin (not part of the experiment; ignored by config_equal) */
    int line;               /* line of the [device NAME] header */
    int n_keys;
    cfg_key_origin keys[CFG_MAX_KEYS];
} device_spec;

typedef enum {
    LAYER_PATCHES,          /* arg = k: image -> k x k patches */
    LAYER_PAD,              /* arg = width after zero padding */
    LAYER_CONCAT,           /* arg = rows to concatenate */
    LAYER_PHYSICAL,         /* device = instance name */
    LAYER_READOUT,          /* arg = m last outputs times a trainable scale */
    LAYER_LINEAR,           /* arg = output width (affine) */
    LAYER_TANH,
} layer_kind;

typedef struct layer_spec {
    layer_kind kind;
    int arg;
    char device[32];
} layer_spec;

typedef enum { MODE_PAT, MODE_INSILICO, MODE_IDEAL, MODE_SPSA, MODE_PC, MODE_DFA, MODE_ADFA, MODE_BPSTDP } train_mode;
#define N_MODES 8
/* The rules that use no surrogate and no backward pass through a device
 * (controller/dfa.h): dfa, adfa, bpstdp. */
#define MODE_IS_LOCAL(m) ((m) == MODE_DFA || (m) == MODE_ADFA || (m) == MODE_BPSTDP)
/* Predictive coding (controller/pc.h), after Rosenbaum 2022 / Torch2PC. */
typedef enum { PC_STRICT, PC_FIXEDPRED, PC_EXACT } pc_variant_kind;
/* aDFA: the function g that replaces f' at the input of a physical layer
 * (controller/dfa.h); DFA uses g = 1. */
typedef enum { DFA_G_ONE, DFA_G_COS, DFA_G_SIN, DFA_G_TANH, DFA_G_SECH2 } dfa_g_kind;
typedef enum { OPT_ADAM, OPT_SGD } optimizer_kind;
typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } lr_schedule;
typedef enum { JOURNAL_ALL, JOURNAL_EVERY, JOURNAL_OFF } journal_mode;
typedef enum { PROGRESS_AUTO, PROGRESS_BAR, PROGRESS_LINES, PROGRESS_OFF } progress_mode;

typedef struct run_config {
    char source[256];       /* file the config came from, "built-in" (origin) */
    /* [data] */
    char data_set[32];      /* "fashion-mnist" | "synthetic" | "narma10" | "mackey-glass" */
    char data_path[512];
    int pool;               /* 1 = none, 2 = 2x2 average pooling */
    long train_limit;       /* first N training images, 0 = all */
    long test_limit;        /* first N test images, 0 = all */
    int window;             /* series tasks: input steps per sample */
    int horizon;            /* mackey-glass: samples ahead to predict */
    /* [device NAME] */
    int n_devices;
    device_spec devices[CFG_MAX_DEVICES];
    /* [model] */
    int n_layers;
    layer_spec layers[CFG_MAX_LAYERS];
    int layer_lines[CFG_MAX_LAYERS];  /* origin: config line of each layer (0 = none) */
    /* [train] */
    train_mode mode;
    optimizer_kind optimizer;
    double lr;
    double momentum;        /* SGD */
    lr_schedule schedule;   /* lr(t): constant, step (x lr_gamma every
                               lr_step epochs), cosine (to 0 over the run) */
    double lr_gamma;
    int lr_step;            /* epochs */
    long warmup;            /* steps of linear warm-up from 0 (0 = none) */
    int epochs;
    int batch;
    int eval_batch;
    int eval_every;         /* evaluate on the test set every N epochs (0 = at the end only) */
    int eval_inflight;      /* evaluation batches in flight (1..8; 1 = one after the other;
                               > 1 only when every physical device is remote) */
    int microbatches;       /* training micro-batches per batch (1..64; 1 = the batch as one
                               piece): the forward pass runs in row slices, each physical
                               layer's batch one device query sent in parts; pipelined over
                               lanes when every physical device is remote (microbatch.h) */
    uint64_t seed;
    double spsa_c;          /* SPSA: perturbation size (parameter units) */
    int spsa_samples;       /* SPSA: perturbation pairs averaged per step */
    pc_variant_kind pc_variant; /* PC: strict | fixedpred | exact */
    double pc_eta;          /* PC: belief update rate (0, 2) */
    int pc_iters;           /* PC: inference iterations per step (>= 1) */
    dfa_g_kind dfa_g;       /* aDFA: g replacing f' (DFA: always 1) */
    double bean;            /* BEAN regularisation strength alpha (0 = off) */
    int bean_physical;      /* 1 = BEAN also on physical coupling matrices */
    double prune;           /* fraction (0..1) of each matrix's smallest entries zeroed after
                               prune_after epochs and held at zero for the rest (0 = off) */
    int prune_after;        /* epochs trained before pruning (< epochs when prune > 0) */
    int prune_ramp;         /* epochs over which the pruned fraction grows from 0 to prune,
                               cubically, step by step (Zhu & Gupta 2017); 0 = all at once */
    int prune_physical;     /* 1 = prune physical coupling matrices too */
    int pc_line, dfa_line;  /* origin: line of the first pc_* / dfa_g key (0 = none;
                               ignored by config_equal) */
    int max_failed_steps;   /* consecutive training steps (or retries of one evaluation
                               batch) that may fail with a device fault before the run
                               stops; a failed step is skipped, nothing applied (0 =
                               stop at the first device fault) */
    /* [logging] */
    journal_mode journal;
    long journal_every;     /* JOURNAL_EVERY: every N-th query of each device */
    long checkpoint_every;  /* steps between checkpoints (0 = at epoch ends only) */
    int keep_checkpoints;   /* mid-epoch checkpoints kept (older ones deleted) */
    progress_mode progress;
} run_config;

/* Defaults of everything a config file need not say (no devices, no layers). */
void config_defaults(run_config *c);
/* The built-in quickstart (= examples/quickstart.ini). */
void config_quickstart(run_config *c);

const char *mode_name(train_mode m);
int mode_parse(const char *s, train_mode *m);
const char *pc_variant_name(pc_variant_kind v);
int pc_variant_parse(const char *s, pc_variant_kind *v);
const char *dfa_g_name(dfa_g_kind g);
int dfa_g_parse(const char *s, dfa_g_kind *g);
const char *layer_kind_name(layer_kind k);
int layer_kind_parse(const char *s, layer_kind *k);
const char *optimizer_name(optimizer_kind k);
const char *schedule_name(lr_schedule s);
const char *progress_name(progress_mode p);

/* A learning rule's keys from a file given with another mode (after the
 * command line's overrides): PATCTL_ERR_CONFIG with "FILE:LINE: [train] KEY:
 * only used with mode = ...". */
int config_check_rules(const run_config *c, char *err, size_t errlen);

/* Put the settings of learning rules other than c->mode back to their
 * defaults (a config file with mode = pc run with --mode pat keeps no pc_*
 * settings), so that config_format() round-trips. */
void config_normalize(run_config *c);

/* Append "key=value" to every device whose driver is `driver` (NULL = all). */
int config_device_option(run_config *c, const char *driver, const char *key, const char *value);

/* Parse an INI config from a file / from text (`name` is used in messages).
 * On error, err holds "FILE:LINE: [section] key: what was expected".
 * *c is fully overwritten. */
int config_load(run_config *c, const char *path, char *err, size_t errlen);
/* The whole text of a file (NUL-terminated, caller frees), or NULL with a
 * message. */
char *config_read_file(const char *path, char *err, size_t errlen);
int config_parse_text(run_config *c, const char *text, const char *name, char *err, size_t errlen);

/* The config as INI text (caller frees).  config_parse_text(config_format(c))
 * gives a config equal to c. */
char *config_format(const run_config *c);

/* 1 if a and b describe the same experiment (origins ignored); else 0 and,
 * when diff != NULL, the first difference in words. */
int config_equal(const run_config *a, const run_config *b, char *diff, size_t difflen);

/* Rewrite a device-open error in terms of the config file: when msg names
 * one of device i's option keys, prefix "FILE:LINE: [device NAME] KEY: ".
 * Writes into out (may not alias msg). */
void config_explain_device_error(const run_config *c, int i, const char *msg, char *out, size_t outlen);

#endif
