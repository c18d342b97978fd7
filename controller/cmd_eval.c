/* patctl eval RUN: run a checkpoint of a run on the device (its config's
 * devices and test set) and print the accuracy and the confusion matrix.
 * The evaluation is a session of the run: its queries go into the journal,
 * the result into the evaluation table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controller/commands.h"
#include "controller/model.h"
#include "controller/progress.h"
#include "controller/regularize.h"
#include "controller/rng.h"
#include "controller/run_setup.h"
#include "controller/runstore.h"
#include "controller/train.h"

static const char *const fmnist_classes[10] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: patctl eval RUN [--checkpoint ID] [--test-limit N] [--batch N] [--eval-inflight N]\n"
               "                   [--prune F[,F...]] [--prune-physical 0|1] [--quiet]\n"
               "\n"
               "Loads a checkpoint of run directory RUN (default: the last one), builds its\n"
               "model with the run's devices, evaluates the run's test set on the devices and\n"
               "prints the accuracy and the confusion matrix [true class x predicted class].\n"
               "The device query counters are restored from the checkpoint, so a seeded\n"
               "simulated device measures with the same noise as the run would have.\n"
               "The evaluation (and its device journal) is recorded in RUN/run.sqlite.\n"
               "--eval-inflight N: test batches in flight (1..8; default: the run's\n"
               "[train] eval_inflight); pipelined only when every physical device is\n"
               "remote; the results are the same.\n"
               "--prune F[,F...]: evaluate the checkpoint after zeroing the fraction F (0..1)\n"
               "of smallest-magnitude entries of every digital linear weight matrix and\n"
               "(--prune-physical 1, default) every physical coupling matrix (oscillator\n"
               "couplings as symmetric pairs (C_ij, C_ji), the unused diagonal kept), once\n"
               "per F, each from the checkpoint's own parameters and device counters; every\n"
               "evaluation is recorded with its pruning (evaluation.pruned, pruned_entries,\n"
               "prunable_entries) and patctl report draws pruning.png.\n");
}

static void print_confusion(const run_config *c, const int conf[10][10], int classes)
{
    int named = strcmp(c->data_set, "fashion-mnist") == 0 && classes == 10;
    printf("confusion matrix (rows: true class, columns: predicted class)\n%12s", "");
    for (int j = 0; j < classes; j++)
        printf("%6d", j);
    printf("  recall\n");
    for (int i = 0; i < classes; i++) {
        int row = 0;
        for (int j = 0; j < classes; j++)
            row += conf[i][j];
        if (named)
            printf("%d %-10s", i, fmnist_classes[i]);
        else
            printf("%-12d", i);
        for (int j = 0; j < classes; j++)
            printf("%6d", conf[i][j]);
        printf("  %5.1f%%\n", row ? 100.0 * conf[i][i] / row : 0.0);
    }
}

int cmd_eval(int argc, char **argv)
{
    const char *run = NULL;
    long long ck_id = 0;
    long test_limit = -1, batch = 0, inflight = 0;
    int quiet = 0, prune_physical = 1;
    enum { MAX_PRUNE = 32 };
    double prune[MAX_PRUNE];
    int n_prune = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            eval_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc) {
            ck_id = strtoll(argv[++i], &end, 10);
            if (*end || ck_id <= 0)
                goto bad;
        } else if (strcmp(argv[i], "--test-limit") == 0 && i + 1 < argc) {
            test_limit = strtol(argv[++i], &end, 10);
            if (*end || test_limit < 0)
                goto bad;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = strtol(argv[++i], &end, 10);
            if (*end || batch < 1 || batch > 65536)
                goto bad;
        } else if (strcmp(argv[i], "--eval-inflight") == 0 && i + 1 < argc) {
            inflight = strtol(argv[++i], &end, 10);
            if (*end || inflight < 1 || inflight > 8)
                goto bad;
        } else if (strcmp(argv[i], "--prune") == 0 && i + 1 < argc) {
            char list[512];
            snprintf(list, sizeof(list), "%s", argv[++i]);
            char *save = NULL;
            n_prune = 0;
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                double v = strtod(t, &end);
                if (*end || end == t || !(v >= 0 && v <= 1) || n_prune == MAX_PRUNE)
                    goto bad;
                prune[n_prune++] = v;
            }
            if (!n_prune)
                goto bad;
        } else if (strcmp(argv[i], "--prune-physical") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || (v != 0 && v != 1))
                goto bad;
            prune_physical = (int)v;
        } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
            quiet = 1;
        } else if (argv[i][0] != '-' && !run) {
            run = argv[i];
        } else {
            fprintf(stderr, "patctl eval: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
        continue;
    bad:
        fprintf(stderr, "patctl eval: bad value for %s (see --help)\n", argv[i - 1]);
        return EXIT_USAGE;
    }
    if (!run) {
        eval_usage(stderr);
        return EXIT_USAGE;
    }

    char err[1024] = "";
    runstore *rs = NULL;
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    run_config c;
    dataset te;
    memset(&te, 0, sizeof(te));
    model m;
    memset(&m, 0, sizeof(m));
    rng_streams rng;
    memset(&rng, 0, sizeof(rng));
    int conf[10][10];
    double acc = 0, t0 = now_seconds();
    int lock = run_lock(run, err, sizeof(err)), rc = lock < 0 ? PATCTL_ERR_STATE : 0;
    if (!rc)
        rc = runstore_open(&rs, run, 1, err, sizeof(err));
    if (!rc)
        rc = run_config_from_store(rs, run, &c, err, sizeof(err));
    if (!rc) {
        if (test_limit >= 0)
            c.test_limit = test_limit;
        if (batch > 0)
            c.eval_batch = (int)batch;
        if (inflight > 0)
            c.eval_inflight = (int)inflight;
        rc = run_load_data(&c, NULL, &te, err, sizeof(err));
    }
    if (!rc)
        rc = runstore_checkpoint_load(rs, ck_id, &ck, err, sizeof(err));
    if (!rc)
        rc = rng_streams_init(&rng, c.seed);
    if (!rc)
        rc = model_build(&m, &c, te.h, te.w, c.eval_batch, &rng, err, sizeof(err));
    if (!rc && ck.n_params != m.n_params) {
        snprintf(err, sizeof(err), "checkpoint %lld has %ld parameters, the model %ld", (long long)ck.id,
                 ck.n_params, m.n_params);
        rc = PATCTL_ERR_FORMAT;
    }
    char *argv_text = run_argv_text(argc, argv);
    int session = 0;
    if (!rc) {
        memcpy(m.params, ck.params, sizeof(float) * (size_t)m.n_params);
        rc = runstore_session_begin(rs, "eval", argv_text, ck.id);
        session = rc == 0;
        for (int i = 0; i < m.n_devices && !rc; i++)
            rc = runstore_attach(rs, m.devices[i], i, c.journal, c.journal_every);
        if (!rc)
            rc = train_restore_devices(&m, &ck, err, sizeof(err));
        if (rc && !err[0])
            snprintf(err, sizeof(err), "%s", runstore_error(rs));
    }
    device_stats before = model_device_stats(&m);
    int passes = n_prune ? n_prune : 1;
    double last_acc = 0;
    for (int k = 0; k < passes && !rc; k++) {
        double t1 = now_seconds();
        long pruned = 0, prunable = 0;
        device_stats b0 = model_device_stats(&m);
        if (k > 0) /* every pass from the checkpoint's own device state: the same noise */
            rc = train_restore_devices(&m, &ck, err, sizeof(err));
        if (!rc && n_prune) {
            memcpy(m.params, ck.params, sizeof(float) * (size_t)m.n_params);
            rc = model_prune(&m, m.params, prune[k], prune_physical, &pruned, &prunable, NULL);
            if (!rc && prunable == 0) {
                snprintf(err, sizeof(err), "--prune: the model has no weight or coupling matrix to prune");
                rc = PATCTL_ERR_ARG;
            }
        }
        if (!rc) {
            runstore_set_context(rs, ck.step, "eval");
            if (!quiet && k == 0)
                printf("patctl eval: run %s, checkpoint %lld (step %ld, epoch %d), %ld test images on the device\n",
                       run, (long long)ck.id, ck.step, ck.epoch, te.n);
            if (!quiet && k == 0 && n_prune)
                printf("pruning (%s): fraction  pruned / prunable  accuracy\n",
                       prune_physical ? "digital weights and physical couplings" : "digital weights only");
            rc = train_evaluate_inflight(&m, &te, c.eval_batch, c.eval_inflight, 1, NULL, &patctl_stop, &acc, conf,
                                         err, sizeof(err));
        }
        device_stats u = model_device_stats(&m);
        if (!rc) {
            int reg = te.n_targets > 0; /* acc is then the NRMSE */
            eval_record er = {.step = ck.step, .epoch = ck.epoch, .checkpoint = ck.id, .n = te.n,
                              .accuracy = reg ? NAN : acc, .nrmse = reg ? acc : NAN,
                              .seconds = now_seconds() - t1, .device_queries = u.queries - b0.queries,
                              .classes = reg ? 0 : 10, .confusion = &conf[0][0], .pruned = n_prune ? prune[k] : 0,
                              .pruned_entries = pruned, .prunable_entries = prunable};
            if (runstore_evaluation(rs, &er)) {
                snprintf(err, sizeof(err), "%s", runstore_error(rs));
                rc = PATCTL_ERR_IO;
            }
            last_acc = acc;
            if (n_prune && reg)
                printf("  %.3f  %ld / %ld  NRMSE %.4f\n", prune[k], pruned, prunable, acc);
            else if (n_prune)
                printf("  %.3f  %ld / %ld  %.2f%%\n", prune[k], pruned, prunable, 100.0 * acc);
        }
    }
    acc = last_acc;
    device_stats used = model_device_stats(&m);
    used.queries -= before.queries, used.samples -= before.samples, used.seconds -= before.seconds;
    int safe = m.n_devices ? model_make_safe(&m) == 0 : 1;
    if (session) {
        runstore_stop stop = {.status = rc == 0 ? "success" : rc == PATCTL_ERR_INTERRUPTED ? "abort" : "fail",
                              .reason = rc ? err : NULL, .steps = ck.step, .epochs_done = ck.epoch,
                              .dev = used, .test_accuracy = rc || te.n_targets > 0 ? -1 : acc, .devices_safe = safe};
        runstore_session_end(rs, &stop);
    }
    if (rc) {
        fprintf(stderr, "patctl eval: %s\n", err[0] ? err : patctl_strerror(rc));
    } else {
        if (!quiet && !n_prune && te.n_targets == 0)
            print_confusion(&c, (const int(*)[10])conf, m.classes < 10 ? m.classes : 10);
        if (te.n_targets > 0)
            printf("NRMSE %.4f (%ld test samples on the device, %llu device queries, %.1f s)\n", acc, te.n,
                   (unsigned long long)used.queries, now_seconds() - t0);
        else
            printf("accuracy %.2f%% (%ld test images on the device, %llu device queries, %.1f s)\n", 100.0 * acc,
                   te.n, (unsigned long long)used.queries, now_seconds() - t0);
    }
    free(argv_text);
    model_free(&m);
    rng_streams_free(&rng);
    checkpoint_free(&ck);
    dataset_free(&te);
    runstore_close(&rs);
    if (lock >= 0)
        close(lock);
    return rc == 0 ? EXIT_OK : rc == PATCTL_ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_FAIL;
}
