/* patctl train: the quickstart by default, an INI config with --config,
 * every setting an option; --resume RUN continues a run from its last
 * checkpoint.  Every run writes its run store (run.sqlite) and summary.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/cli_args.h"
#include "controller/commands.h"
#include "controller/config.h"
#include "controller/data.h"
#include "controller/run_setup.h"
#include "controller/runstore.h"
#include "controller/summary.h"
#include "controller/train.h"

static void train_usage(FILE *f)
{
    fprintf(f,
        "usage: patctl train [--config FILE] [OPTIONS]\n"
        "       patctl train --resume RUN\n"
        "\n"
        "Trains a physical neural network.  Without options: the built-in quickstart\n"
        "(examples/quickstart.ini: Fashion-MNIST pooled to 14x14; 4 patches of 7x7\n"
        "padded to 64 through one shared 64-oscillator device; 256 outputs + 10 class\n"
        "oscillators through a 266-oscillator device; logits = scale * the 10 class\n"
        "oscillators; PAT, Adam lr 1e-3, batch 32, 2 epochs over 10000 images; tested\n"
        "on 10000 images through the device).\n"
        "\n"
        "options (given with --config, they override the file's values):\n"
        "  --config FILE     the experiment as an INI file (see examples/*.ini,\n"
        "                    patctl train --help-config)\n"
        "  --resume RUN      continue run directory RUN from its last checkpoint\n"
        "                    (with its own config; only --quiet/--progress apply)\n"
        "  --mode M          pat (default) | insilico | ideal | spsa | pc | dfa | adfa | bpstdp\n"
        "                      pat: device forward, surrogate VJP at what was sent\n"
        "                      insilico: surrogate both ways, evaluated on the device\n"
        "                      ideal: the simulated device's own exact gradient\n"
        "                      spsa: simultaneous perturbation on the device alone\n"
        "                      (gradient-free; --spsa-c, --spsa-samples)\n"
        "                      pc: predictive coding (Rosenbaum 2022): beliefs and\n"
        "                      prediction errors relaxed layer by layer; a physical\n"
        "                      layer's local Jacobian is its surrogate's VJP at what\n"
        "                      was sent (--pc-variant, --pc-eta, --pc-iters)\n"
        "                      dfa: direct feedback alignment (Nokland 2016): fixed\n"
        "                      random matrices carry the output error to the input of\n"
        "                      every physical layer; no surrogate, no backward pass\n"
        "                      through any device; physical parameters by local rules\n"
        "                      adfa: augmented DFA (Nakajima et al. 2022): dfa with\n"
        "                      the unknown f' replaced by g(x) (--dfa-g)\n"
        "                      bpstdp: BP-STDP (Tavanaei & Maida 2019) for spiking\n"
        "                      layers: the error at a layer's output gated by its\n"
        "                      neurons having spiked, weight updates error x presynaptic\n"
        "                      activity, carried down through the layer's own weights\n"
        "  --pc-variant V    strict | fixedpred (default) | exact: strict measures the\n"
        "                    predictions at the beliefs on the device ((iters-1) extra\n"
        "                    queries per physical layer per step, phase pc in the\n"
        "                    journal); fixedpred keeps the feedforward predictions;\n"
        "                    exact = backpropagation written as prediction errors\n"
        "  --pc-eta X        belief update rate, in (0, 2) (default 0.1; fixedpred with\n"
        "                    1 and --pc-iters >= the number of layers = the PAT gradient)\n"
        "  --pc-iters N      inference iterations per step (default 20)\n"
        "  --dfa-g G         adfa's g: cos (default) | sin | tanh | sech2 | one\n"
        "  --bean X          BEAN regularisation strength (default 0 = off): neurons\n"
        "                    joined by strong second-order connections are pulled to\n"
        "                    similar outgoing weights, on every digital linear weight\n"
        "                    matrix and (--bean-physical 1, default) every physical\n"
        "                    coupling matrix; see patctl eval --prune\n"
        "  --bean-physical B 1 (default) | 0: BEAN on physical coupling matrices too\n"
        "  --prune F         prune and fine-tune: after --prune-after epochs (default 1)\n"
        "                    zero the fraction F (0..1) of the smallest entries of each\n"
        "                    digital weight and (--prune-physical 1, default) physical\n"
        "                    coupling matrix, as patctl eval --prune does, and train\n"
        "                    the remaining epochs with them held at zero\n"
        "  --prune-after E   epochs trained before pruning (default 1; < --epochs)\n"
        "  --prune-ramp R    prune gradually: the fraction grows from 0 to F over R\n"
        "                    epochs, step by step on a cubic schedule (Zhu & Gupta\n"
        "                    2017), each step zeroing the smallest entries again\n"
        "                    (default 0 = all at once; E + R < --epochs)\n"
        "  --prune-physical B 1 (default) | 0: prune physical coupling matrices too\n"
        "  --epochs N        epochs (default 2)\n"
        "  --train-limit N   first N training images (default 10000, 0 = all 60000)\n"
        "  --test-limit N    first N test images (default 10000)\n"
        "  --batch N         batch size (default 32)\n"
        "  --lr X            learning rate (default 1e-3)\n"
        "  --schedule S      constant (default) | step | cosine\n"
        "  --optimizer O     adam (default) | sgd\n"
        "  --seed N          run seed: data order, initialisation, device noise (default 0)\n"
        "  --eval-every N    test on the device every N epochs (default 0: at the end)\n"
        "  --eval-inflight N test batches in flight (1..8, default 2; 1 = one after the\n"
        "                    other): pipelined evaluation when every physical device is\n"
        "                    remote, identical results\n"
        "  --microbatches K  split each training batch's forward pass into K row slices\n"
        "                    (1..64, default 1): while slice k is on a device, slice k+1\n"
        "                    computes its digital layers and uses the other devices\n"
        "                    (pipelined when every physical device is remote); each\n"
        "                    layer's batch stays one device query, identical results\n"
        "                    on row-exact devices\n"
        "  --spsa-c X        SPSA perturbation size (default 0.1; use with --lr 0.01)\n"
        "  --spsa-samples N  SPSA perturbation pairs per step (default 1)\n"
        "  --max-failed-steps N  a step whose device query fails (timeout, I/O, bad\n"
        "                    reply, disconnected) after the retries is skipped: nothing\n"
        "                    applied, the fault logged, the batch dropped; N failed\n"
        "                    steps in a row (or N failed tries of one evaluation batch)\n"
        "                    stop the run with status fail (default 5; 0 = stop at the\n"
        "                    first)\n"
        "  --data DIR        Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)\n"
        "  --synthetic       use the built-in synthetic 14x14 dataset instead\n"
        "  --eta X           device truth: nonlinearity detuning (default 0.1)\n"
        "  --j-noise X       device truth: random coupling std (default 0.2)\n"
        "  --sigma X         device truth: input noise std in rad (default 0.02)\n"
        "  --surrogate NAME=SPEC  the surrogate of device NAME: nominal | fitted:PATH | strsbp\n"
        "                    (spiking chips: the ST-RSBP spike-train level gradient)\n"
        "                    (a NAME.json written by patctl fit); repeatable\n"
        "  --journal J       device journal: all (default) | off | every:N\n"
        "  --checkpoint-every N  steps between checkpoints (default 100; 0 = epoch ends)\n"
        "  --progress P      auto (default) | bar | lines | off\n"
        "  --out DIR         run directory (default runs/<time>-<mode>-s<seed>)\n"
        "  --quiet           print only the result line\n"
        "  --help            this text\n"
        "  --help-config     the config file format with every key and its default\n"
        "\n"
        "Writes DIR/run.sqlite (the run store: config, devices, metrics, device\n"
        "journal, checkpoints, stop record; see README) and DIR/summary.json.\n"
        "Ctrl-C (or SIGTERM) stops after the current step, writes a checkpoint and\n"
        "the stop record, makes every device safe and exits 130; resume with\n"
        "patctl train --resume DIR.\n");
}


static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static void help_config(void)
{
    run_config c;
    config_defaults(&c);
    char *text = config_format(&c);
    printf("patctl experiment configs (INI)\n"
           "\n"
           "Sections: [data], [device NAME] (one per device), [model] (ordered\n"
           "`layer = KIND ARG` lines), [train], [logging].  Unknown sections and keys\n"
           "are errors naming FILE:LINE.  Comments: lines starting with # or ;, and\n"
           "inline after a blank.\n"
           "\n"
           "[device NAME]: driver = a built-in driver (see `patctl devices`) or a plugin\n"
           "  .so path; limits = clamp | reject; steps = ramp | refuse; surrogate = the\n"
           "  name of a fitted surrogate (default: the nominal model); dfa_roles =\n"
           "  BLOCK:ROLE,... (mode dfa/adfa: the local rule of each parameter block,\n"
           "  ROLE = weight | bias_out | gain_diag | bias_diag | fixed; default: the\n"
           "  device model's, see README); every other key is a driver option (the\n"
           "  driver rejects unknown ones).\n"
           "[model] layer kinds: patches K (image -> KxK patches, one row each),\n"
           "  pad N (zero-pad rows to N), concat K (K rows -> one), physical DEVICE\n"
           "  (all rows through one device: weights shared across patches), readout M\n"
           "  (trainable scale x the last M values), linear N (affine), tanh.\n"
           "[train] mode = pat | insilico | ideal | spsa | pc | dfa | adfa | bpstdp; optimizer = adam | sgd;\n"
           "  schedule = constant | step (x lr_gamma every lr_step epochs) | cosine (to 0\n"
           "  over the run), warmup = N steps; eval_every = N epochs (0 = at the end);\n"
           "  eval_inflight = N test batches in flight on remote devices (1..8);\n"
           "  microbatches = K training micro-batches per batch (1..64, see --microbatches);\n"
           "  spsa_c / spsa_samples: SPSA's perturbation size and pairs per step;\n"
           "  pc_variant = strict | fixedpred | exact, pc_eta = X in (0, 2), pc_iters = N:\n"
           "  predictive coding (only with mode = pc; defaults fixedpred, 0.1, 20);\n"
           "  dfa_g = cos | sin | tanh | sech2 | one: aDFA's g (only with mode = adfa;\n"
           "  default cos); bean = alpha (BEAN regularisation, default 0 = off),\n"
           "  bean_physical = 1 | 0 (also on physical coupling matrices, default 1);\n"
           "  prune = F in [0, 1) (default 0 = off), prune_after = E epochs (default 1),\n"
           "  prune_ramp = R epochs (default 0 = at once), prune_physical = 1 | 0:\n"
           "  prune and fine-tune, see --prune;\n"
           "  max_failed_steps = N device-faulted steps in a row skipped before the run\n"
           "  stops (0 = stop at the first).\n"
           "[logging] journal = all | every N | off; checkpoint_every = N steps (0 =\n"
           "  epoch ends only); keep_checkpoints = N mid-epoch ones; progress = auto |\n"
           "  bar | lines | off.\n"
           "\n"
           "Every key with its default (devices and layers have none):\n\n%s",
           text ? text : "(out of memory)\n");
    free(text);
}

typedef struct train_cli {
    run_config c;
    char *file_text;          /* --config file's text, owned */
    const char *out;
    const char *resume;
    int quiet;
    int progress_set;
    int n_overrides;          /* options that change the experiment */
    const char *pc_opt;       /* the first --pc-* option given (checked against the mode) */
    int dfa_g_opt;            /* --dfa-g given */
    int surrogate_opt;        /* --surrogate given */
} train_cli;

/* Load --config FILE (wherever it is on the command line) into cli->c. */
static int load_config_arg(int argc, char **argv, train_cli *cli)
{
    config_quickstart(&cli->c);
    for (int i = 1; i < argc; i++) {
        const char *v = cli_opt_value(argc, argv, &i, "--config");
        if (!v)
            continue;
        char err[1024];
        free(cli->file_text);
        cli->file_text = config_read_file(v, err, sizeof(err));
        if (!cli->file_text || config_parse_text(&cli->c, cli->file_text, v, err, sizeof(err))) {
            fprintf(stderr, "patctl train: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* Options after the config; returns -1 (usage error), 1 (help printed) or 0. */
static int parse_options(int argc, char **argv, train_cli *cli)
{
    run_config *c = &cli->c;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        double d;
        const char *a = argv[i];
        int experiment = 1; /* does the option change the experiment? */
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            train_usage(stdout);
            return 1;
        } else if (strcmp(a, "--help-config") == 0) {
            help_config();
            return 1;
        } else if ((v = cli_opt_value(argc, argv, &i, "--config"))) {
            continue; /* loaded first */
        } else if ((v = cli_opt_value(argc, argv, &i, "--resume"))) {
            cli->resume = v;
            experiment = 0;
        } else if ((v = cli_opt_value(argc, argv, &i, "--mode"))) {
            if (mode_parse(v, &c->mode)) {
                fprintf(stderr, "patctl train: --mode: expected pat, insilico, ideal, spsa, pc, dfa, adfa or bpstdp, "
                        "got '%s'\n", v);
                return -1;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--pc-variant"))) {
            if (pc_variant_parse(v, &c->pc_variant)) {
                fprintf(stderr, "patctl train: --pc-variant: expected strict, fixedpred or exact, got '%s'\n", v);
                return -1;
            }
            cli->pc_opt = cli->pc_opt ? cli->pc_opt : "--pc-variant";
        } else if ((v = cli_opt_value(argc, argv, &i, "--pc-eta"))) {
            if (parse_double(v, &d) || !(d > 0 && d < 2)) goto bad;
            c->pc_eta = d;
            cli->pc_opt = cli->pc_opt ? cli->pc_opt : "--pc-eta";
        } else if ((v = cli_opt_value(argc, argv, &i, "--pc-iters"))) {
            if (parse_long(v, 1, 100000, &l)) goto bad;
            c->pc_iters = (int)l;
            cli->pc_opt = cli->pc_opt ? cli->pc_opt : "--pc-iters";
        } else if ((v = cli_opt_value(argc, argv, &i, "--dfa-g"))) {
            if (dfa_g_parse(v, &c->dfa_g)) {
                fprintf(stderr, "patctl train: --dfa-g: expected one, cos, sin, tanh or sech2, got '%s'\n", v);
                return -1;
            }
            cli->dfa_g_opt = 1;
        } else if ((v = cli_opt_value(argc, argv, &i, "--bean"))) {
            if (parse_double(v, &d) || !(d >= 0 && d <= 1e6)) goto bad;
            c->bean = d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--bean-physical"))) {
            if (parse_long(v, 0, 1, &l)) goto bad;
            c->bean_physical = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--prune"))) {
            if (parse_double(v, &d) || !(d >= 0 && d < 1)) goto bad;
            c->prune = d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--prune-after"))) {
            if (parse_long(v, 0, TRAIN_MAX_EPOCHS, &l)) goto bad;
            c->prune_after = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--prune-ramp"))) {
            if (parse_long(v, 0, TRAIN_MAX_EPOCHS, &l)) goto bad;
            c->prune_ramp = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--prune-physical"))) {
            if (parse_long(v, 0, 1, &l)) goto bad;
            c->prune_physical = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--epochs"))) {
            if (parse_long(v, 0, TRAIN_MAX_EPOCHS, &l)) goto bad;
            c->epochs = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--train-limit"))) {
            if (parse_long(v, 0, 100000000, &l)) goto bad;
            c->train_limit = l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--test-limit"))) {
            if (parse_long(v, 0, 100000000, &l)) goto bad;
            c->test_limit = l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--batch"))) {
            if (parse_long(v, 1, 65536, &l)) goto bad;
            c->batch = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--lr"))) {
            if (parse_double(v, &d) || !(d > 0)) goto bad;
            c->lr = d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--schedule"))) {
            if (strcmp(v, "constant") == 0) c->schedule = SCHED_CONSTANT;
            else if (strcmp(v, "step") == 0) c->schedule = SCHED_STEP;
            else if (strcmp(v, "cosine") == 0) c->schedule = SCHED_COSINE;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--optimizer"))) {
            if (strcmp(v, "adam") == 0) c->optimizer = OPT_ADAM;
            else if (strcmp(v, "sgd") == 0) c->optimizer = OPT_SGD;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (parse_long(v, 0, 0x7fffffffL, &l)) goto bad;
            c->seed = (uint64_t)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--eval-every"))) {
            if (parse_long(v, 0, 1000, &l)) goto bad;
            c->eval_every = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--eval-inflight"))) {
            if (parse_long(v, 1, 8, &l)) goto bad;
            c->eval_inflight = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--microbatches"))) {
            if (parse_long(v, 1, 64, &l)) goto bad;
            c->microbatches = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--spsa-c"))) {
            if (parse_double(v, &d) || !(d > 0)) goto bad;
            c->spsa_c = d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-failed-steps"))) {
            if (parse_long(v, 0, 1000000, &l)) goto bad;
            c->max_failed_steps = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--spsa-samples"))) {
            if (parse_long(v, 1, 1000, &l)) goto bad;
            c->spsa_samples = (int)l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--data"))) {
            snprintf(c->data_path, sizeof(c->data_path), "%s", v);
        } else if (strcmp(a, "--synthetic") == 0) {
            snprintf(c->data_set, sizeof(c->data_set), "synthetic");
        } else if ((v = cli_opt_value(argc, argv, &i, "--eta"))) {
            if (parse_double(v, &d) || config_device_option(c, "oscillators", "eta", v)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--j-noise"))) {
            if (parse_double(v, &d) || d < 0 || config_device_option(c, "oscillators", "j_noise", v)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--sigma"))) {
            if (parse_double(v, &d) || d < 0 || config_device_option(c, "oscillators", "sigma", v)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--surrogate"))) {
            const char *eq = strchr(v, '=');
            int found = 0;
            for (int k = 0; eq && k < c->n_devices; k++)
                if (strlen(c->devices[k].name) == (size_t)(eq - v) &&
                    strncmp(c->devices[k].name, v, (size_t)(eq - v)) == 0) {
                    if (snprintf(c->devices[k].surrogate, sizeof(c->devices[k].surrogate), "%s", eq + 1) >=
                        (int)sizeof(c->devices[k].surrogate))
                        goto bad;
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "patctl train: --surrogate %s: expected DEVICE=SPEC with a device of the "
                        "config\n", v);
                return -1;
            }
            cli->surrogate_opt = 1;
        } else if ((v = cli_opt_value(argc, argv, &i, "--journal"))) {
            if (strcmp(v, "all") == 0) c->journal = JOURNAL_ALL, c->journal_every = 1;
            else if (strcmp(v, "off") == 0) c->journal = JOURNAL_OFF;
            else if (strncmp(v, "every:", 6) == 0 && !parse_long(v + 6, 1, 1000000000L, &l))
                c->journal = l == 1 ? JOURNAL_ALL : JOURNAL_EVERY, c->journal_every = l;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--checkpoint-every"))) {
            if (parse_long(v, 0, 100000000, &l)) goto bad;
            c->checkpoint_every = l;
        } else if ((v = cli_opt_value(argc, argv, &i, "--progress"))) {
            if (strcmp(v, "auto") == 0) c->progress = PROGRESS_AUTO;
            else if (strcmp(v, "bar") == 0) c->progress = PROGRESS_BAR;
            else if (strcmp(v, "lines") == 0) c->progress = PROGRESS_LINES;
            else if (strcmp(v, "off") == 0) c->progress = PROGRESS_OFF;
            else goto bad;
            cli->progress_set = 1;
            experiment = 0;
        } else if ((v = cli_opt_value(argc, argv, &i, "--out"))) {
            cli->out = v;
            experiment = 0;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            cli->quiet = 1;
            experiment = 0;
        } else {
            fprintf(stderr, "patctl train: unknown option '%s' (see patctl train --help)\n", a);
            return -1;
        }
        cli->n_overrides += experiment;
        continue;
    bad:
        fprintf(stderr, "patctl train: bad value for %s (see patctl train --help)\n", a);
        return -1;
    }
    /* options of one learning rule with another mode are mistakes */
    if (cli->pc_opt && c->mode != MODE_PC) {
        fprintf(stderr, "patctl train: %s is only used with --mode pc (the mode is %s)\n", cli->pc_opt,
                mode_name(c->mode));
        return -1;
    }
    if (cli->dfa_g_opt && c->mode != MODE_ADFA) {
        fprintf(stderr, "patctl train: --dfa-g is only used with --mode adfa (the mode is %s%s)\n",
                mode_name(c->mode), c->mode == MODE_DFA ? ": dfa uses g = 1" : "");
        return -1;
    }
    if (cli->surrogate_opt && (MODE_IS_LOCAL(c->mode) || c->mode == MODE_SPSA)) {
        fprintf(stderr, "patctl train: --surrogate has no effect with --mode %s (it uses no surrogate)\n",
                mode_name(c->mode));
        return -1;
    }
    char rerr[1024];
    if (config_check_rules(c, rerr, sizeof(rerr))) {
        fprintf(stderr, "patctl train: %s\n", rerr);
        return -1;
    }
    config_normalize(c);
    return 0;
}

static void default_run_dir(const run_config *c, char *dir, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    snprintf(dir, n, "runs/%s-%s-s%llu", stamp, mode_name(c->mode), (unsigned long long)c->seed);
}

/* Open the run store of a new run, or of the run to resume (with its
 * config and last checkpoint). */
static int open_store(train_cli *cli, const char *dir, const char *argv_text, runstore **rs, checkpoint *ck,
                      char *err, size_t errlen)
{
    int rc;
    if (!cli->resume) {
        if ((rc = runstore_create(rs, dir, err, errlen)))
            return rc;
        if ((rc = runstore_write_run(*rs, &cli->c, cli->file_text, argv_text)) ||
            (rc = runstore_session_begin(*rs, "train", argv_text, 0))) {
            snprintf(err, errlen, "%.400s/%s: %.400s", dir, RUNSTORE_FILE, runstore_error(*rs));
            return rc;
        }
        return 0;
    }
    if ((rc = runstore_open(rs, dir, 1, err, errlen)))
        return rc;
    run_config keep = cli->c;
    if ((rc = run_config_from_store(*rs, dir, &cli->c, err, errlen)))
        return rc;
    if (cli->progress_set)
        cli->c.progress = keep.progress;
    runstore_close_dangling(*rs);
    if (runstore_finished(*rs)) {
        snprintf(err, errlen, "run %.900s has already finished (status success); nothing to resume", dir);
        return PATCTL_ERR_STATE;
    }
    if ((rc = runstore_checkpoint_load(*rs, 0, ck, err, errlen)))
        return rc;
    if ((rc = runstore_session_begin(*rs, "resume", argv_text, ck->id)) || (rc = runstore_rewind(*rs, ck))) {
        snprintf(err, errlen, "%.400s/%s: %.400s", dir, RUNSTORE_FILE, runstore_error(*rs));
        return rc;
    }
    return 0;
}

static void print_result(const run_config *c, const train_result *res, const char *dir, double store_s)
{
    double per_epoch = res->epochs_done ? res->train_seconds / res->epochs_done : 0;
    if (res->test_nrmse >= 0) {
        printf("result: mode %s  test NRMSE %.4f (on the device)  train %.1f s (%.1f s/epoch)  device queries %llu "
               "(%llu training)  run store %.1f s  run %s (run.sqlite, summary.json)\n",
               mode_name(c->mode), res->test_nrmse, res->train_seconds, per_epoch,
               (unsigned long long)res->all_dev.queries, (unsigned long long)res->train_dev.queries, store_s, dir);
        return;
    }
    printf("result: mode %s  test accuracy %.2f%% (on the device)  train %.1f s (%.1f s/epoch)  "
           "device queries %llu (%llu training)  run store %.1f s  run %s (run.sqlite, summary.json)\n",
           mode_name(c->mode), 100.0 * res->test_accuracy, res->train_seconds, per_epoch,
           (unsigned long long)res->all_dev.queries, (unsigned long long)res->train_dev.queries, store_s, dir);
}

int cmd_train(int argc, char **argv)
{
    train_cli cli;
    memset(&cli, 0, sizeof(cli));
    int prc = load_config_arg(argc, argv, &cli);
    if (!prc)
        prc = parse_options(argc, argv, &cli);
    if (prc) {
        free(cli.file_text);
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (cli.resume && (cli.n_overrides > 0 || cli.file_text || cli.out)) {
        fprintf(stderr, "patctl train: --resume continues a run with its own config; only --quiet and "
                        "--progress may be given with it\n");
        free(cli.file_text);
        return EXIT_USAGE;
    }
    char dir[1024];
    if (cli.resume)
        snprintf(dir, sizeof(dir), "%s", cli.resume);
    else if (cli.out)
        snprintf(dir, sizeof(dir), "%s", cli.out);
    else
        default_run_dir(&cli.c, dir, sizeof(dir));
    if (!cli.resume && make_dirs(dir)) {
        fprintf(stderr, "patctl train: cannot create run directory %s: %s\n", dir, strerror(errno));
        free(cli.file_text);
        return EXIT_FAIL;
    }

    char err[1024] = "";
    char *argv_text = run_argv_text(argc, argv);
    runstore *rs = NULL;
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    dataset tr, te;
    memset(&tr, 0, sizeof(tr));
    memset(&te, 0, sizeof(te));
    train_result *res = calloc(1, sizeof(*res));
    int lock = run_lock(dir, err, sizeof(err));
    int rc = lock < 0 ? PATCTL_ERR_STATE : 0;
    if (!rc && !res)
        rc = PATCTL_ERR_NOMEM;
    /* a new run checks its data before it creates the store; a resumed one
     * learns its config (and so its data) from the store */
    if (!rc && !cli.resume)
        rc = run_load_data(&cli.c, &tr, &te, err, sizeof(err));
    if (!rc)
        rc = open_store(&cli, dir, argv_text, &rs, &ck, err, sizeof(err));
    if (!rc && cli.resume)
        rc = run_load_data(&cli.c, &tr, &te, err, sizeof(err));
    int setup_failed = rc != 0;

    const run_config *c = &cli.c;
    if (!rc) {
        int quiet = cli.quiet || c->progress == PROGRESS_OFF;
        int tty = c->progress == PROGRESS_BAR || (c->progress == PROGRESS_AUTO && isatty(STDERR_FILENO));
        if (!quiet) {
            if (cli.resume)
                printf("patctl train: resuming %s from checkpoint %lld (step %ld, epoch %d)\n", dir,
                       (long long)ck.id, ck.step, ck.epoch + (ck.pos > 0));
            printf("patctl train: mode %s, seed %llu, %d epochs x %ld images (%dx%d), %ld test images; run dir %s\n",
                   mode_name(c->mode), (unsigned long long)c->seed, c->epochs, tr.n, tr.h, tr.w, te.n, dir);
        }
        train_options to = {.tty = tty && !quiet, .quiet = quiet, .stop = &patctl_stop, .store = rs,
                            .resume = cli.resume ? &ck : NULL};
        rc = train_run(c, &tr, &te, &to, res, err, sizeof(err));
    }
    const char *status = rc == 0 ? "success" : rc == PATCTL_ERR_INTERRUPTED ? "abort" : "fail";
    int status_code = rc == 0 ? EXIT_OK : rc == PATCTL_ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_FAIL;
    /* the stop record, on every path once the store is open */
    if (rs) {
        runstore_stop stop = {.status = status, .reason = rc ? err : NULL, .steps = res ? res->steps : 0,
                              .skipped_steps = res ? res->skipped_steps : 0,
                              .epochs_done = res ? res->epochs_done : 0,
                              .dev = res ? res->all_dev : (device_stats){0},
                              .test_accuracy = res && rc == 0 ? res->test_accuracy : -1,
                              .devices_safe = res ? res->devices_safe : 1};
        if (runstore_session_end(rs, &stop))
            fprintf(stderr, "patctl train: %s/%s: cannot write the stop record: %s\n", dir, RUNSTORE_FILE,
                    runstore_error(rs));
    }
    int wrc = 0;
    if (res && !setup_failed) {
        wrc = summary_write(dir, c, res, status, rc ? err : NULL);
        if (wrc)
            fprintf(stderr, "patctl train: cannot write %s/summary.json: %s\n", dir, patctl_strerror(wrc));
    }
    if (rc)
        fprintf(stderr, "patctl train: %s\n", err);
    else
        print_result(c, res, dir, rs ? runstore_seconds(rs) : 0);
    runstore_close(&rs);
    checkpoint_free(&ck);
    if (lock >= 0)
        close(lock);
    free(res);
    free(argv_text);
    free(cli.file_text);
    dataset_free(&tr);
    dataset_free(&te);
    return wrc && !status_code ? EXIT_FAIL : status_code;
}
