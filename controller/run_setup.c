#include "controller/run_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "patctl/error.h"

int run_load_data(const run_config *c, dataset *train, dataset *test, char *err, size_t errlen)
{
    int rc = 0;
    if (train)
        memset(train, 0, sizeof(*train));
    memset(test, 0, sizeof(*test));
    if (dataset_is_series(c->data_set)) {
        if (train)
            rc = dataset_series(train, c->data_set, c->train_limit ? c->train_limit : 2000, c->window, c->horizon,
                                c->seed, 0, err, errlen);
        if (!rc)
            rc = dataset_series(test, c->data_set, c->test_limit ? c->test_limit : 1000, c->window, c->horizon,
                                c->seed, 1, err, errlen);
    } else if (strcmp(c->data_set, "synthetic") == 0) {
        if (train)
            rc = dataset_synthetic(train, c->train_limit ? c->train_limit : 2000, 14, c->seed + 1);
        if (!rc)
            rc = dataset_synthetic(test, c->test_limit ? c->test_limit : 1000, 14, c->seed + 1000003);
        if (rc)
            snprintf(err, errlen, "synthetic data: %s", patctl_strerror(rc));
    } else {
        if (train)
            rc = dataset_load_idx(train, c->data_path, "train", c->pool, c->train_limit, err, errlen);
        if (!rc)
            rc = dataset_load_idx(test, c->data_path, "t10k", c->pool, c->test_limit, err, errlen);
    }
    if (rc) {
        if (train)
            dataset_free(train);
        dataset_free(test);
    }
    return rc;
}

int run_lock(const char *dir, char *err, size_t errlen)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/run.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "run %s is in use by another patctl process", dir);
        close(fd);
        return -1;
    }
    return fd;
}

int run_config_from_store(runstore *rs, const char *dir, run_config *c, char *err, size_t errlen)
{
    char *text = runstore_config_text(rs);
    if (!text) {
        snprintf(err, errlen, "%s: the run store has no start record", dir);
        return PATCTL_ERR_FORMAT;
    }
    char name[1100];
    snprintf(name, sizeof(name), "%s/%s (config)", dir, RUNSTORE_FILE);
    int rc = config_parse_text(c, text, name, err, errlen);
    free(text);
    return rc;
}

char *run_argv_text(int argc, char **argv)
{
    size_t n = 1;
    for (int i = 0; i < argc; i++)
        n += strlen(argv[i]) + 1;
    char *s = malloc(n);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}
