#include "controller/summary.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patctl/error.h"
#include "patctl/version.h"
#include "surrogate/blas.h"

int make_dirs(const char *dir)
{
    char buf[1024];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return PATCTL_ERR_ARG;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return PATCTL_ERR_IO;
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return PATCTL_ERR_IO;
    return 0;
}

static cJSON *stats_json(const device_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "queries", (double)s->queries);
    cJSON_AddNumberToObject(o, "samples", (double)s->samples);
    cJSON_AddNumberToObject(o, "ramp_steps", (double)s->ramp_steps);
    cJSON_AddNumberToObject(o, "clamped", (double)s->clamped);
    cJSON_AddNumberToObject(o, "rejected", (double)s->rejected);
    cJSON_AddNumberToObject(o, "faults", (double)s->faults);
    cJSON_AddNumberToObject(o, "retries", (double)s->retries);
    cJSON_AddNumberToObject(o, "seconds", s->seconds);
    return o;
}

int summary_write(const char *dir, const run_config *c, const train_result *r,
                  const char *status, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return PATCTL_ERR_NOMEM;
    cJSON_AddStringToObject(o, "patctl_version", PATCTL_VERSION_STRING);
    cJSON_AddStringToObject(o, "status", status);
    if (reason)
        cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddStringToObject(o, "mode", mode_name(c->mode));
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON_AddNumberToObject(o, "epochs_done", r->epochs_done);
    cJSON_AddNumberToObject(o, "train_limit", (double)c->train_limit);
    cJSON_AddNumberToObject(o, "test_limit", (double)c->test_limit);
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddStringToObject(o, "optimizer", c->optimizer == OPT_ADAM ? "adam" : "sgd");
    cJSON_AddStringToObject(o, "data", c->data_set);
    cJSON_AddStringToObject(o, "schedule", schedule_name(c->schedule));
    if (c->mode == MODE_SPSA) {
        cJSON_AddNumberToObject(o, "spsa_c", c->spsa_c);
        cJSON_AddNumberToObject(o, "spsa_samples", c->spsa_samples);
    }
    if (c->mode == MODE_PC) {
        cJSON_AddStringToObject(o, "pc_variant", pc_variant_name(c->pc_variant));
        cJSON_AddNumberToObject(o, "pc_eta", c->pc_eta);
        cJSON_AddNumberToObject(o, "pc_iters", c->pc_iters);
    }
    if (c->mode == MODE_ADFA)
        cJSON_AddStringToObject(o, "dfa_g", dfa_g_name(c->dfa_g));
    if (c->bean > 0) {
        cJSON_AddNumberToObject(o, "bean", c->bean);
        cJSON_AddBoolToObject(o, "bean_physical", c->bean_physical);
    }
    if (c->prune > 0) {
        cJSON_AddNumberToObject(o, "prune", c->prune);
        cJSON_AddNumberToObject(o, "prune_after", c->prune_after);
        cJSON_AddNumberToObject(o, "prune_ramp", c->prune_ramp);
        cJSON_AddBoolToObject(o, "prune_physical", c->prune_physical);
    }
    cJSON_AddStringToObject(o, "config_source", c->source);
    cJSON_AddStringToObject(o, "run_store", "run.sqlite");
    cJSON_AddBoolToObject(o, "resumed", r->resumed);
    cJSON_AddNumberToObject(o, "last_checkpoint", (double)r->last_checkpoint);
    cJSON_AddBoolToObject(o, "devices_safe", r->devices_safe);
    if (r->test_accuracy >= 0)
        cJSON_AddNumberToObject(o, "test_accuracy", r->test_accuracy);
    else
        cJSON_AddNullToObject(o, "test_accuracy");
    if (r->test_nrmse >= 0) /* regression tasks (narma10, mackey-glass) */
        cJSON_AddNumberToObject(o, "test_nrmse", r->test_nrmse);
    cJSON_AddNumberToObject(o, "train_seconds", r->train_seconds);
    cJSON_AddNumberToObject(o, "eval_seconds", r->eval_seconds);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "skipped_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(o, "eval_retries", (double)r->eval_retries);
    cJSON_AddNumberToObject(o, "device_queries", (double)r->all_dev.queries);
    cJSON_AddNumberToObject(o, "device_queries_training", (double)r->train_dev.queries);
    cJSON_AddItemToObject(o, "device_training", stats_json(&r->train_dev));
    cJSON_AddItemToObject(o, "device_total", stats_json(&r->all_dev));
    cJSON *eps = cJSON_AddArrayToObject(o, "epoch_metrics");
    for (int i = 0; i < r->epochs_done; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "epoch", i + 1);
        cJSON_AddNumberToObject(e, "loss", r->epochs[i].loss);
        cJSON_AddNumberToObject(e, "train_accuracy", r->epochs[i].train_acc);
        cJSON_AddNumberToObject(e, "seconds", r->epochs[i].seconds);
        cJSON_AddNumberToObject(e, "device_seconds", r->epochs[i].device_seconds);
        if (r->epochs[i].test_acc >= 0)
            cJSON_AddNumberToObject(e, "test_accuracy", r->epochs[i].test_acc);
        cJSON_AddItemToArray(eps, e);
    }
    cJSON *devs = cJSON_AddArrayToObject(o, "devices");
    for (int i = 0; i < c->n_devices; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", c->devices[i].name);
        cJSON_AddStringToObject(d, "driver", c->devices[i].driver);
        cJSON_AddStringToObject(d, "options", c->devices[i].options);
        cJSON_AddItemToArray(devs, d);
    }
    if (r->test_accuracy >= 0) {
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        for (int i = 0; i < 10; i++)
            cJSON_AddItemToArray(cm, cJSON_CreateIntArray(r->confusion[i], 10));
    }
    cJSON_AddStringToObject(o, "blas", blas_library());

    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return PATCTL_ERR_NOMEM;
    char path[1100], tmp[1110];
    snprintf(path, sizeof(path), "%s/summary.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) == EOF || fputc('\n', f) == EOF || fflush(f) || fsync(fileno(f)))
        rc = PATCTL_ERR_IO;
    if (f && fclose(f))
        rc = PATCTL_ERR_IO;
    if (!rc && rename(tmp, path))
        rc = PATCTL_ERR_IO;
    free(text);
    return rc;
}
