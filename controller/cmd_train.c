/* patctl train: the quickstart by default, every setting an option. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/commands.h"
#include "controller/config.h"
#include "controller/data.h"
#include "controller/summary.h"
#include "controller/train.h"

static void train_usage(FILE *f)
{
    fprintf(f,
        "usage: patctl train [OPTIONS]\n"
        "\n"
        "Trains a physical neural network.  Without options: the built-in quickstart\n"
        "(Fashion-MNIST pooled to 14x14; 4 patches of 7x7 padded to 64 through one shared\n"
        "64-oscillator device; 256 outputs + 10 class oscillators through a 266-oscillator\n"
        "device; logits = scale * the 10 class oscillators; PAT, Adam lr 1e-3, batch 32,\n"
        "2 epochs over 10000 images; tested on 10000 images through the device).\n"
        "\n"
        "options (given after --config, they override the file's values):\n"
        "  --config FILE     the experiment as an INI file (see examples/*.ini,\n"
        "                    patctl train --help-config)\n"
        "  --mode M          pat (default) | insilico | ideal\n"
        "                      pat: device forward, surrogate VJP at what was sent\n"
        "                      insilico: surrogate both ways, evaluated on the device\n"
        "                      ideal: the simulated device's own exact gradient\n"
        "  --epochs N        epochs (default 2)\n"
        "  --train-limit N   first N training images (default 10000, 0 = all 60000)\n"
        "  --test-limit N    first N test images (default 10000)\n"
        "  --batch N         batch size (default 32)\n"
        "  --lr X            learning rate (default 1e-3)\n"
        "  --optimizer O     adam (default) | sgd\n"
        "  --seed N          run seed: data order, initialisation, device noise (default 0)\n"
        "  --data DIR        Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)\n"
        "  --synthetic       use the built-in synthetic 14x14 dataset instead\n"
        "  --eta X           device truth: nonlinearity detuning (default 0.1)\n"
        "  --j-noise X       device truth: random coupling std (default 0.2)\n"
        "  --sigma X         device truth: input noise std in rad (default 0.02)\n"
        "  --out DIR         run directory (default runs/<time>-<mode>-s<seed>)\n"
        "  --quiet           print only the result line\n"
        "  --help            this text\n"
        "  --help-config     the config file format with every key and its default\n"
        "\n"
        "Writes DIR/summary.json (mode, seed, epochs, accuracies, times, device queries).\n"
        "Ctrl-C stops after the current step, makes every device safe and exits 130.\n");
}

/* "--key value" or "--key=value"; advances *i. */
static const char *opt_value(int argc, char **argv, int *i, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(argv[*i], key, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
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
           "  name of a fitted surrogate (default: the nominal model); every other key\n"
           "  is a driver option (the driver rejects unknown ones).\n"
           "[model] layer kinds: patches K (image -> KxK patches, one row each),\n"
           "  pad N (zero-pad rows to N), concat K (K rows -> one), physical DEVICE\n"
           "  (all rows through one device: weights shared across patches), readout M\n"
           "  (trainable scale x the last M values), linear N (affine), tanh.\n"
           "[train] mode = pat | insilico | ideal | spsa; optimizer = adam | sgd;\n"
           "  schedule = constant | step | cosine; spsa_c / spsa_samples: SPSA's\n"
           "  perturbation size and pairs per step.\n"
           "[logging] journal = all | every N | off; checkpoint_every = N steps (0 =\n"
           "  epoch ends only); progress = auto | bar | lines | off.\n"
           "\n"
           "Every key with its default (devices and layers have none):\n\n%s",
           text ? text : "(out of memory)\n");
    free(text);
}

/* Load --config FILE (wherever it is on the command line) into c. */
static int load_config_arg(int argc, char **argv, run_config *c)
{
    config_quickstart(c);
    for (int i = 1; i < argc; i++) {
        const char *v = opt_value(argc, argv, &i, "--config");
        if (!v)
            continue;
        char err[1024];
        if (config_load(c, v, err, sizeof(err))) {
            fprintf(stderr, "patctl train: %s\n", err);
            return -1;
        }
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    run_config c;
    if (load_config_arg(argc, argv, &c))
        return EXIT_USAGE;
    const char *out = NULL;
    int synthetic = strcmp(c.data_set, "synthetic") == 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        double d;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            train_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--help-config") == 0) {
            help_config();
            return EXIT_OK;
        } else if ((v = opt_value(argc, argv, &i, "--config"))) {
            continue; /* loaded first */
        } else if ((v = opt_value(argc, argv, &i, "--mode"))) {
            if (mode_parse(v, &c.mode) || c.mode == MODE_SPSA) {
                fprintf(stderr, "patctl train: --mode: expected pat, insilico or ideal, got '%s'\n", v);
                return EXIT_USAGE;
            }
        } else if ((v = opt_value(argc, argv, &i, "--epochs"))) {
            if (parse_long(v, 0, TRAIN_MAX_EPOCHS, &l)) goto bad;
            c.epochs = (int)l;
        } else if ((v = opt_value(argc, argv, &i, "--train-limit"))) {
            if (parse_long(v, 0, 100000000, &l)) goto bad;
            c.train_limit = l;
        } else if ((v = opt_value(argc, argv, &i, "--test-limit"))) {
            if (parse_long(v, 0, 100000000, &l)) goto bad;
            c.test_limit = l;
        } else if ((v = opt_value(argc, argv, &i, "--batch"))) {
            if (parse_long(v, 1, 65536, &l)) goto bad;
            c.batch = (int)l;
        } else if ((v = opt_value(argc, argv, &i, "--lr"))) {
            if (parse_double(v, &d) || !(d > 0)) goto bad;
            c.lr = d;
        } else if ((v = opt_value(argc, argv, &i, "--optimizer"))) {
            if (strcmp(v, "adam") == 0) c.optimizer = OPT_ADAM;
            else if (strcmp(v, "sgd") == 0) c.optimizer = OPT_SGD;
            else goto bad;
        } else if ((v = opt_value(argc, argv, &i, "--seed"))) {
            if (parse_long(v, 0, 0x7fffffffL, &l)) goto bad;
            c.seed = (uint64_t)l;
        } else if ((v = opt_value(argc, argv, &i, "--data"))) {
            snprintf(c.data_path, sizeof(c.data_path), "%s", v);
        } else if (strcmp(a, "--synthetic") == 0) {
            synthetic = 1;
        } else if ((v = opt_value(argc, argv, &i, "--eta"))) {
            if (parse_double(v, &d)) goto bad;
            config_device_option(&c, "oscillators", "eta", v);
        } else if ((v = opt_value(argc, argv, &i, "--j-noise"))) {
            if (parse_double(v, &d) || d < 0) goto bad;
            config_device_option(&c, "oscillators", "j_noise", v);
        } else if ((v = opt_value(argc, argv, &i, "--sigma"))) {
            if (parse_double(v, &d) || d < 0) goto bad;
            config_device_option(&c, "oscillators", "sigma", v);
        } else if ((v = opt_value(argc, argv, &i, "--out"))) {
            out = v;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else {
            fprintf(stderr, "patctl train: unknown option '%s' (see patctl train --help)\n", a);
            return EXIT_USAGE;
        }
        continue;
    bad:
        fprintf(stderr, "patctl train: bad value for %s (see patctl train --help)\n", a);
        return EXIT_USAGE;
    }

    char err[1024] = "";
    dataset tr, te;
    memset(&tr, 0, sizeof(tr));
    memset(&te, 0, sizeof(te));
    int rc;
    if (synthetic) {
        snprintf(c.data_set, sizeof(c.data_set), "synthetic");
        rc = dataset_synthetic(&tr, c.train_limit ? c.train_limit : 2000, 14, c.seed + 1);
        if (!rc)
            rc = dataset_synthetic(&te, c.test_limit ? c.test_limit : 1000, 14, c.seed + 1000003);
        if (rc)
            snprintf(err, sizeof(err), "synthetic data: %s", patctl_strerror(rc));
    } else {
        rc = dataset_load_idx(&tr, c.data_path, "train", c.pool, c.train_limit, err, sizeof(err));
        if (!rc)
            rc = dataset_load_idx(&te, c.data_path, "t10k", c.pool, c.test_limit, err, sizeof(err));
    }
    if (rc) {
        fprintf(stderr, "patctl train: %s\n", err);
        dataset_free(&tr);
        dataset_free(&te);
        return EXIT_FAIL;
    }

    char dir[1024];
    if (out) {
        snprintf(dir, sizeof(dir), "%s", out);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
        snprintf(dir, sizeof(dir), "runs/%s-%s-s%llu", stamp, mode_name(c.mode), (unsigned long long)c.seed);
    }
    if (make_dirs(dir)) {
        fprintf(stderr, "patctl train: cannot create run directory %s: %s\n", dir, strerror(errno));
        dataset_free(&tr);
        dataset_free(&te);
        return EXIT_FAIL;
    }

    if (!quiet)
        printf("patctl train: mode %s, seed %llu, %d epochs x %ld images (%dx%d), %ld test images; run dir %s\n",
               mode_name(c.mode), (unsigned long long)c.seed, c.epochs, tr.n, tr.h, tr.w, te.n, dir);
    train_options to = {.tty = isatty(STDERR_FILENO), .quiet = quiet, .stop = &patctl_stop};
    train_result *res = calloc(1, sizeof(*res));
    if (!res) {
        dataset_free(&tr);
        dataset_free(&te);
        return EXIT_FAIL;
    }
    rc = train_run(&c, &tr, &te, &to, res, err, sizeof(err));
    const char *status = rc == 0 ? "success" : rc == PATCTL_ERR_INTERRUPTED ? "abort" : "fail";
    int wrc = summary_write(dir, &c, res, status, rc ? err : NULL);
    if (wrc)
        fprintf(stderr, "patctl train: cannot write %s/summary.json: %s\n", dir, patctl_strerror(wrc));
    int status_code = EXIT_OK;
    if (rc) {
        fprintf(stderr, "patctl train: %s\n", err);
        status_code = rc == PATCTL_ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_FAIL;
    } else {
        double per_epoch = res->epochs_done ? res->train_seconds / res->epochs_done : 0;
        printf("result: mode %s  test accuracy %.2f%% (on the device)  train %.1f s (%.1f s/epoch)  "
               "device queries %llu (%llu training)  summary %s/summary.json\n",
               mode_name(c.mode), 100.0 * res->test_accuracy, res->train_seconds, per_epoch,
               (unsigned long long)res->all_dev.queries, (unsigned long long)res->train_dev.queries, dir);
    }
    free(res);
    dataset_free(&tr);
    dataset_free(&te);
    return wrc && !status_code ? EXIT_FAIL : status_code;
}
