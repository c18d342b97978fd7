/* Skipped training steps in the run store (controller/train.c skip_step,
 * controller/runstore.c schema 2):
 * - a step skipped after a device fault has a step row (status 'skipped',
 *   loss/accuracy NULL, rc, error) at the number of the step it would have
 *   been; `patctl export` (npy, csv) and `patctl report` still work;
 * - checkpoints keep the count of failed steps in a row: a run stopped after
 *   k failed steps and resumed into a dead device stops after
 *   max_failed_steps - k more;
 * - a schema-1 store (made here by turning a new one back into schema 1)
 *   is read as it is by export and report, and migrated in place and
 *   resumed when opened for writing.
 *
 * The device is the recording plugin (tests/plugins/recording.c) with
 * fail_runs=A-B: its A-th to B-th batch queries fail.  A failing step costs
 * three queries (the device's two retries). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/runstore.h"
#include "controller/train.h"
#include "patctl/error.h"

#ifndef PATCTL_BIN
#error "PATCTL_BIN must name the patctl binary"
#endif

static char tmp[200];
static dataset tr, te;

enum { N_TRAIN = 640, BATCH = 32, MAX_FAILED = 5 };  /* 20 steps per epoch */

static void config(run_config *c, const char *opts)
{
    config_quickstart(c);
    c->n_devices = 1;
    c->devices[0] = (device_spec){.name = "rec", .limits = "clamp", .steps = "ramp"};
    snprintf(c->devices[0].driver, sizeof(c->devices[0].driver), "%s", RECORDING_PLUGIN);
    snprintf(c->devices[0].options, sizeof(c->devices[0].options), "%s", opts);
    layer_spec L[] = {{LAYER_LINEAR, 8, ""}, {LAYER_PHYSICAL, 0, "rec"}, {LAYER_READOUT, 10, ""}};
    c->n_layers = 3;
    memcpy(c->layers, L, sizeof(L));
    c->mode = MODE_IDEAL; /* a plugin brings no surrogate */
    c->epochs = 1;
    c->batch = BATCH;
    c->eval_batch = 100;
    c->eval_every = 0;
    c->checkpoint_every = 0;
    c->lr = 1e-2;
    c->max_failed_steps = MAX_FAILED;
}

/* Stop the run (as Ctrl-C would) after `stop_after_skips` skipped steps. */
typedef struct stopper {
    volatile sig_atomic_t stop;
    long stop_after_skips;
} stopper;

static void on_step(void *user, const train_step_view *v)
{
    stopper *s = user;
    if (s->stop_after_skips > 0 && v->skipped && v->skipped_steps == s->stop_after_skips)
        s->stop = 1;
}

/* Train (fresh: resume = 0) or resume the run in dir with the device
 * options opts, recording into its store as `patctl train` does. */
static int run(const char *dir, const char *opts, int resume, long stop_after_skips, train_result *res,
               char *err, size_t errlen)
{
    run_config c;
    config(&c, opts);
    runstore *rs = NULL;
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    int rc;
    if (!resume) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", dir, dir);
        assert_int_equal(system(cmd), 0);
        rc = runstore_create(&rs, dir, err, errlen);
        if (!rc && !(rc = runstore_write_run(rs, &c, NULL, "test")))
            rc = runstore_session_begin(rs, "train", "test", 0);
    } else {
        rc = runstore_open(&rs, dir, 1, err, errlen);
        if (!rc) {
            runstore_close_dangling(rs);
            rc = runstore_checkpoint_load(rs, 0, &ck, err, errlen);
        }
        if (!rc && !(rc = runstore_session_begin(rs, "resume", "test", ck.id)))
            rc = runstore_rewind(rs, &ck);
    }
    if (rc) {
        printf("  store: %s %s\n", err, rs ? runstore_error(rs) : "");
        runstore_close(&rs);
        return rc;
    }
    stopper s = {.stop = 0, .stop_after_skips = stop_after_skips};
    train_options o = {.quiet = 1, .stop = &s.stop, .store = rs, .resume = resume ? &ck : NULL,
                       .on_step = on_step, .on_step_user = &s};
    rc = train_run(&c, &tr, &te, &o, res, err, errlen);
    runstore_stop stop = {.status = rc == 0 ? "success" : rc == PATCTL_ERR_INTERRUPTED ? "abort" : "fail",
                          .reason = rc ? err : NULL, .steps = res->steps, .skipped_steps = res->skipped_steps,
                          .epochs_done = res->epochs_done, .dev = res->all_dev,
                          .test_accuracy = res->test_accuracy, .devices_safe = res->devices_safe};
    assert_int_equal(runstore_session_end(rs, &stop), 0);
    checkpoint_free(&ck);
    runstore_close(&rs);
    return rc;
}

static sqlite3 *db_open(const char *dir)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/run.sqlite", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static long long q_int(const char *dir, const char *sql)
{
    sqlite3 *db = db_open(dir);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -999;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void exec_sql(const char *dir, const char *sql)
{
    sqlite3 *db = db_open(dir);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

static int shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shell(const char *fmt, ...)
{
    char cmd[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Lines of a text file (0 if missing); with `with`, only lines containing it. */
static long count_lines(const char *path, const char *with)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    long n = 0;
    while (fgets(line, sizeof(line), f))
        n += !with || strstr(line, with) != NULL;
    fclose(f);
    return n;
}

/* export (npy and csv) and report of dir succeed */
static void export_and_report(const char *dir)
{
    assert_int_equal(shell("rm -rf %s.npy %s.csv %s.rep; %s export %s --npy %s.npy >/dev/null && "
                           "%s export %s --csv %s.csv >/dev/null",
                           dir, dir, dir, PATCTL_BIN, dir, dir, PATCTL_BIN, dir, dir), 0);
    assert_int_equal(shell("%s report %s --out %s.rep >/dev/null 2>&1", PATCTL_BIN, dir, dir), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s.rep/report.html", dir);
    assert_true(count_lines(path, NULL) > 0);
}

/* One failing step (step 4: queries 4-6 fail): exactly one skipped row at
 * step 4, the applied step 4 after it; export and report work and do not
 * draw it. */
static void test_one_skipped_row(void **state)
{
    (void)state;
    char dir[300], err[1024] = "";
    snprintf(dir, sizeof(dir), "%s/one", tmp);
    static train_result res;
    int rc = run(dir, "fail_runs=4-6", 0, 0, &res, err, sizeof(err));
    if (rc)
        fail_msg("train: %s", err);
    printf("  %ld steps applied, %ld skipped, test accuracy %.3f\n", res.steps, res.skipped_steps,
           res.test_accuracy);
    assert_int_equal(res.skipped_steps, 1);
    assert_int_equal(res.steps, N_TRAIN / BATCH - 1);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step"), N_TRAIN / BATCH);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped'"), 1);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'ok'"), res.steps);
    assert_int_equal(q_int(dir, "SELECT step FROM step WHERE status = 'skipped'"), 4);
    assert_int_equal(q_int(dir, "SELECT attempt FROM step WHERE status = 'skipped'"), 4);
    assert_int_equal(q_int(dir, "SELECT attempt FROM step WHERE status = 'ok' AND step = 4"), 5);
    assert_int_equal(q_int(dir, "SELECT max(attempt) FROM step"), N_TRAIN / BATCH);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped' AND loss IS NULL AND"
                                " accuracy IS NULL AND batch = 32 AND epoch = 1"), 1);
    assert_int_equal(q_int(dir, "SELECT rc FROM step WHERE status = 'skipped'"), PATCTL_ERR_DEVICE);
    assert_int_equal(q_int(dir, "SELECT length(error) > 0 FROM step WHERE status = 'skipped'"), 1);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'ok' AND (loss IS NULL OR rc IS NOT"
                                " NULL OR error IS NOT NULL)"), 0);
    /* the failed queries are journaled under the same step number */
    assert_int_equal(q_int(dir, "SELECT count(*) FROM query WHERE rc != 0 AND step = 4"), 3);
    assert_int_equal(q_int(dir, "SELECT schema_version FROM run"), RUNSTORE_SCHEMA_VERSION);

    export_and_report(dir);
    char path[400];
    snprintf(path, sizeof(path), "%s.csv/step.csv", dir);
    assert_int_equal(count_lines(path, NULL), 1 + N_TRAIN / BATCH);
    assert_int_equal(count_lines(path, ",skipped,"), 1);
    /* the report's training figure: the skipped step is no point (the data
     * rows end in the step number: 19 applied steps, step 4 once) and a
     * note says so */
    snprintf(path, sizeof(path), "%s.rep/report.html", dir);
    assert_int_equal(count_lines(path, "1 training step skipped after device faults"), 1);
    snprintf(path, sizeof(path), "/usr/bin/python3 -c 'import numpy' 2>/dev/null");
    if (shell("%s", path) == 0)
        assert_int_equal(shell("/usr/bin/python3 %s/tests/check_export.py %s %s.npy %s.csv", PATCTL_SOURCE_DIR,
                               dir, dir, dir), 0);
}

/* Stopped after k = 2 failed steps in a row (Ctrl-C), resumed into a dead
 * device: stops after max_failed_steps - k = 3 more, not 5. */
static void test_resume_counts_on(void **state)
{
    (void)state;
    char dir[300], err[1024] = "";
    snprintf(dir, sizeof(dir), "%s/resume", tmp);
    static train_result res;
    /* steps 1-8 applied, then every query fails; stop after 2 skipped */
    int rc = run(dir, "fail_runs=9-", 0, 2, &res, err, sizeof(err));
    assert_int_equal(rc, PATCTL_ERR_INTERRUPTED);
    assert_int_equal(res.steps, 8);
    assert_int_equal(res.skipped_steps, 2);
    assert_int_equal(q_int(dir, "SELECT failed_in_row FROM checkpoint ORDER BY id DESC LIMIT 1"), 2);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped' AND step = 9"), 2);

    rc = run(dir, "fail_runs=1-", 1, 0, &res, err, sizeof(err));
    printf("  resumed after 2 failed steps into a dead device: %s\n", err);
    assert_int_equal(rc, PATCTL_ERR_DEVICE);
    assert_int_equal(res.steps, 8);
    assert_int_equal(res.skipped_steps, 2 + (MAX_FAILED - 2));
    assert_non_null(strstr(err, "5 training steps in a row failed"));
    assert_int_equal(q_int(dir, "SELECT failed_in_row FROM checkpoint ORDER BY id DESC LIMIT 1"), MAX_FAILED);
    /* the rows of the first session stay; the resumed one added 3 */
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped' AND step = 9"), MAX_FAILED);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped' AND attempt BETWEEN 9 AND 13"),
                     MAX_FAILED);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'ok'"), 8);

    /* resumed again (k = 5 = max_failed_steps): one try, then it stops */
    rc = run(dir, "fail_runs=1-", 1, 0, &res, err, sizeof(err));
    assert_int_equal(rc, PATCTL_ERR_DEVICE);
    assert_int_equal(res.skipped_steps, MAX_FAILED + 1);
    /* and once the device is back, the run completes */
    rc = run(dir, "", 1, 0, &res, err, sizeof(err));
    if (rc)
        fail_msg("resume with the device back: %s", err);
    assert_int_equal(res.steps + res.skipped_steps, N_TRAIN / BATCH);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step"), N_TRAIN / BATCH);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'ok'"), res.steps);
    export_and_report(dir);
}

/* A store of schema 1 (skipped steps without rows, checkpoints without
 * failed_in_row): read as it is, migrated when resumed. */
static void test_schema1_store(void **state)
{
    (void)state;
    char dir[300], err[1024] = "";
    snprintf(dir, sizeof(dir), "%s/old", tmp);
    static train_result res;
    int rc = run(dir, "fail_runs=9-", 0, 2, &res, err, sizeof(err));
    assert_int_equal(rc, PATCTL_ERR_INTERRUPTED);
    /* back to schema 1: its step table (key step), no skipped rows, no
     * checkpoint.failed_in_row */
    exec_sql(dir, "BEGIN;"
                  "CREATE TABLE step_v1(step INTEGER PRIMARY KEY, session INTEGER, epoch INTEGER, t REAL,"
                  " batch INTEGER, lr REAL, loss REAL, accuracy REAL, device_seconds REAL, compute_seconds REAL,"
                  " device_queries INTEGER);"
                  "INSERT INTO step_v1 SELECT step, session, epoch, t, batch, lr, loss, accuracy, device_seconds,"
                  " compute_seconds, device_queries FROM step WHERE status = 'ok';"
                  "DROP TABLE step; ALTER TABLE step_v1 RENAME TO step;"
                  "ALTER TABLE checkpoint DROP COLUMN failed_in_row;"
                  "UPDATE run SET schema_version = 1; COMMIT;");
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step"), 8);

    /* read-only: opens as schema 1, nothing changed; export and report work */
    runstore *rs = NULL;
    assert_int_equal(runstore_open(&rs, dir, 0, err, sizeof(err)), 0);
    assert_int_equal(runstore_schema_version(rs), 1);
    checkpoint ck;
    assert_int_equal(runstore_checkpoint_load(rs, 0, &ck, err, sizeof(err)), 0);
    assert_int_equal(ck.step, 8);
    assert_int_equal(ck.skipped, 2);
    assert_int_equal(ck.failed_in_row, 0);
    checkpoint_free(&ck);
    runstore_close(&rs);
    export_and_report(dir);
    assert_int_equal(q_int(dir, "SELECT schema_version FROM run"), 1);
    char path[400];
    snprintf(path, sizeof(path), "%s.csv/step.csv", dir);
    assert_int_equal(count_lines(path, NULL), 1 + 8);

    /* a newer schema is refused with a clear message */
    exec_sql(dir, "UPDATE run SET schema_version = 99");
    assert_int_equal(runstore_open(&rs, dir, 0, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "newer patctl"));
    exec_sql(dir, "UPDATE run SET schema_version = 1");

    /* resumed into a dead device: migrated in place, then (the old
     * checkpoint's failed steps in a row unknown: 0) 5 more tries */
    rc = run(dir, "fail_runs=1-", 1, 0, &res, err, sizeof(err));
    assert_int_equal(rc, PATCTL_ERR_DEVICE);
    assert_int_equal(res.skipped_steps, 2 + MAX_FAILED);
    assert_int_equal(q_int(dir, "SELECT schema_version FROM run"), RUNSTORE_SCHEMA_VERSION);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'ok' AND attempt = step"), 8);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM step WHERE status = 'skipped' AND step = 9"), MAX_FAILED);
    assert_int_equal(q_int(dir, "SELECT min(attempt) FROM step WHERE status = 'skipped'"), 8 + 2 + 1);
    assert_int_equal(q_int(dir, "SELECT count(*) FROM checkpoint WHERE failed_in_row = 0"),
                     q_int(dir, "SELECT count(*) FROM checkpoint") - 1);
    assert_int_equal(q_int(dir, "SELECT failed_in_row FROM checkpoint ORDER BY id DESC LIMIT 1"), MAX_FAILED);
    /* then with the device back it completes, and everything reads it */
    rc = run(dir, "", 1, 0, &res, err, sizeof(err));
    if (rc)
        fail_msg("resume with the device back: %s", err);
    assert_int_equal(res.steps + res.skipped_steps, N_TRAIN / BATCH);
    export_and_report(dir);
    printf("  schema 1 store: read, migrated to 2, resumed: %ld steps, %ld skipped, accuracy %.3f\n", res.steps,
           res.skipped_steps, res.test_accuracy);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/patctl-test-skipped-%d", (int)getpid());
    if (shell("rm -rf %s && mkdir -p %s", tmp, tmp))
        return -1;
    if (dataset_synthetic(&tr, N_TRAIN, 14, 11) || dataset_synthetic(&te, 200, 14, 12))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dataset_free(&tr);
    dataset_free(&te);
    if (!getenv("PATCTL_TEST_KEEP"))
        shell("rm -rf %s", tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_skipped_row),
        cmocka_unit_test(test_resume_counts_on),
        cmocka_unit_test(test_schema1_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
