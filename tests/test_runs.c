/* Whole runs of the patctl binary on a small synthetic config
 * (tests/configs/tiny.ini): killed with SIGKILL at random points and resumed,
 * the result is bit-identical to an uninterrupted run; SIGTERM/SIGINT stop
 * cleanly (checkpoint, stop record, devices safe, exit 130); eval reproduces
 * the run's own evaluation; export writes files numpy reads (checked with
 * /usr/bin/python3 + numpy when present).
 *
 * Random kill points come from PATCTL_TEST_SEED (default: the time); the
 * seed is printed so a failure can be replayed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#ifndef PATCTL_BIN
#error "PATCTL_BIN must name the patctl binary"
#endif

#define CONFIG PATCTL_SOURCE_DIR "/tests/configs/tiny.ini"

static char tmp[256];          /* this suite's scratch directory */
static char base_dir[300];     /* the uninterrupted reference run */

/* Start patctl with args (NULL-terminated), output into log. */
static pid_t spawn(const char *log, const char *const *args)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *argv[32];
        int n = 0;
        argv[n++] = (char *)PATCTL_BIN;
        for (int i = 0; args[i] && n < 31; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(PATCTL_BIN, argv);
        _exit(127);
    }
    return pid;
}

/* Exit status, or 128 + signal. */
static int wait_for(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_sync(const char *log, const char *const *args) { return wait_for(spawn(log, args)); }

static void print_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        printf("    | %s", line);
    fclose(f);
}

static sqlite3 *open_db(const char *dir)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/run.sqlite", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* First column of the first row as an integer (-1: none / error). */
static long long q_int(const char *dir, const char *sql)
{
    sqlite3 *db = open_db(dir);
    if (!db)
        return -1;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static char *q_text(const char *dir, const char *sql)
{
    sqlite3 *db = open_db(dir);
    assert_non_null(db);
    sqlite3_stmt *st = NULL;
    char *v = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* A BLOB (caller frees), its size in *n. */
static void *q_blob(const char *dir, const char *sql, int *n)
{
    sqlite3 *db = open_db(dir);
    assert_non_null(db);
    sqlite3_stmt *st = NULL;
    void *v = NULL;
    *n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *n = sqlite3_column_bytes(st, 0);
        v = malloc((size_t)*n + 1);
        memcpy(v, sqlite3_column_blob(st, 0), (size_t)*n);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The run's final parameters, bit for bit, and its step losses. */
static void assert_same_result(const char *a, const char *b)
{
    int na, nb;
    void *pa = q_blob(a, "SELECT params FROM checkpoint WHERE final = 1 ORDER BY id DESC LIMIT 1", &na);
    void *pb = q_blob(b, "SELECT params FROM checkpoint WHERE final = 1 ORDER BY id DESC LIMIT 1", &nb);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    if (memcmp(pa, pb, (size_t)na) != 0)
        fail_msg("final parameters of %s and %s differ", a, b);
    free(pa);
    free(pb);
    /* every step's loss (the journal of the derived metrics) and the final
     * evaluation agree too */
    char *la = q_text(a, "SELECT group_concat(printf('%.17g', loss)) FROM (SELECT loss FROM step ORDER BY step)");
    char *lb = q_text(b, "SELECT group_concat(printf('%.17g', loss)) FROM (SELECT loss FROM step ORDER BY step)");
    assert_non_null(la);
    assert_non_null(lb);
    assert_string_equal(la, lb);
    free(la);
    free(lb);
    char *ea = q_text(a, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
    char *eb = q_text(b, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
    assert_string_equal(ea, eb);
    free(ea);
    free(eb);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/patctl-runs-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(base_dir, sizeof(base_dir), "%s/base", tmp);
    char log[400];
    snprintf(log, sizeof(log), "%s/base.log", tmp);
    const char *args[] = {"train", "--config", CONFIG, "--out", base_dir, NULL};
    int st = run_sync(log, args);
    if (st != 0)
        print_log(log);
    assert_int_equal(st, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (getenv("PATCTL_KEEP_TEST_RUNS") == NULL && system(cmd) != 0)
        return -1;
    return 0;
}

static void test_reference_run(void **state)
{
    (void)state;
    long long steps = q_int(base_dir, "SELECT MAX(step) FROM step");
    printf("  reference run: %lld steps, %lld queries journaled, %lld checkpoints kept\n", steps,
           q_int(base_dir, "SELECT COUNT(*) FROM query"), q_int(base_dir, "SELECT COUNT(*) FROM checkpoint"));
    assert_int_equal(steps, 60);
    char *st = q_text(base_dir, "SELECT status FROM session ORDER BY id DESC LIMIT 1");
    assert_string_equal(st, "success");
    free(st);
    /* every device query is journaled (journal = all): queries + ramps */
    assert_int_equal(q_int(base_dir, "SELECT COUNT(*) FROM query WHERE batch > 0 AND rc = 0"),
                     q_int(base_dir, "SELECT device_queries FROM session ORDER BY id DESC LIMIT 1"));
    assert_int_equal(q_int(base_dir, "SELECT devices_safe FROM session"), 1);
}

/* Wait until the run in dir has done at least `step` steps (or the process
 * ended); returns 1 if the process is still running. */
static int wait_step(pid_t pid, const char *dir, long step)
{
    for (int i = 0; i < 20000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return 0;
        if (q_int(dir, "SELECT MAX(step) FROM step") >= step)
            return 1;
        usleep(2000);
    }
    return 1;
}

static void test_sigkill_resume(void **state)
{
    (void)state;
    unsigned seed = getenv("PATCTL_TEST_SEED") ? (unsigned)atoi(getenv("PATCTL_TEST_SEED")) : (unsigned)time(NULL);
    printf("  kill points from PATCTL_TEST_SEED=%u\n", seed);
    srand(seed);
    for (int k = 0; k < 4; k++) {
        char dir[400], log[420];
        snprintf(dir, sizeof(dir), "%s/kill%d", tmp, k);
        snprintf(log, sizeof(log), "%s/kill%d.log", tmp, k);
        long at = 1 + rand() % 62; /* 61, 62: during the final evaluation / at the end */
        const char *args[] = {"train", "--config", CONFIG, "--out", dir, "--quiet", NULL};
        pid_t pid = spawn(log, args);
        int alive = wait_step(pid, dir, at > 60 ? 60 : at);
        if (alive && at > 60)
            usleep(1000 * (unsigned)(rand() % 200));
        kill(pid, SIGKILL);
        int st = wait_for(pid);
        long long done = q_int(dir, "SELECT MAX(step) FROM step");
        long long ck = q_int(dir, "SELECT MAX(step) FROM checkpoint");
        printf("  kill %d: SIGKILL at step %lld (target %ld, exit %d), last checkpoint at step %lld\n", k, done, at,
               st, ck);
        if (q_int(dir, "SELECT COUNT(*) FROM checkpoint") <= 0) {
            /* killed before the first checkpoint: nothing to resume; a
             * resume must say so */
            const char *r[] = {"train", "--resume", dir, "--quiet", NULL};
            assert_int_not_equal(run_sync(log, r), 0);
            continue;
        }
        /* killed after its stop record said success (or not killed at all) */
        char *last = q_text(dir, "SELECT status FROM session ORDER BY id DESC LIMIT 1");
        int finished = st == 0 || (last && strcmp(last, "success") == 0);
        free(last);
        const char *r[] = {"train", "--resume", dir, "--quiet", NULL};
        if (!finished && k == 0 && done < 50) {
            /* the resumed run is killed as well, later; resume again */
            pid_t p2 = spawn(log, r);
            long at2 = done + 2 + rand() % (58 - done);
            wait_step(p2, dir, at2);
            kill(p2, SIGKILL);
            int st2 = wait_for(p2);
            printf("  kill %d: the resumed run killed too, at step %lld (exit %d)\n", k,
                   q_int(dir, "SELECT MAX(step) FROM step"), st2);
            char *l2 = q_text(dir, "SELECT status FROM session ORDER BY id DESC LIMIT 1");
            finished = st2 == 0 || (l2 && strcmp(l2, "success") == 0);
            free(l2);
        }
        int rs = run_sync(log, r);
        if (finished) {
            /* the run had finished: resume refuses */
            assert_int_not_equal(rs, 0);
            assert_same_result(base_dir, dir);
            continue;
        }
        if (rs != 0)
            print_log(log);
        assert_int_equal(rs, 0);
        /* the killed session got a stop record on resume */
        char *why = q_text(dir, "SELECT reason FROM session WHERE id = 1");
        assert_non_null(why);
        assert_non_null(strstr(why, "killed"));
        free(why);
        assert_same_result(base_dir, dir);
    }
}

static void test_sigterm_and_sigint(void **state)
{
    (void)state;
    int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        char dir[400], log[420];
        snprintf(dir, sizeof(dir), "%s/sig%d", tmp, k);
        snprintf(log, sizeof(log), "%s/sig%d.log", tmp, k);
        const char *args[] = {"train", "--config", CONFIG, "--out", dir, "--quiet", NULL};
        pid_t pid = spawn(log, args);
        assert_true(wait_step(pid, dir, 10 + 13 * k));
        kill(pid, sigs[k]);
        int st = wait_for(pid);
        print_log(log);
        assert_int_equal(st, 130);
        char *status = q_text(dir, "SELECT status FROM session ORDER BY id DESC LIMIT 1");
        assert_string_equal(status, "abort");
        free(status);
        long long steps = q_int(dir, "SELECT steps FROM session ORDER BY id DESC LIMIT 1");
        printf("  %s: stopped after %lld steps; checkpoint at step %lld\n", k ? "SIGINT" : "SIGTERM", steps,
               q_int(dir, "SELECT step FROM checkpoint ORDER BY id DESC LIMIT 1"));
        assert_int_equal(q_int(dir, "SELECT step FROM checkpoint ORDER BY id DESC LIMIT 1"), steps);
        assert_int_equal(q_int(dir, "SELECT devices_safe FROM session ORDER BY id DESC LIMIT 1"), 1);
        assert_int_equal(q_int(dir, "SELECT MAX(step) FROM step"), steps);
        /* summary.json says abort too */
        char path[450];
        snprintf(path, sizeof(path), "%s/summary.json", dir);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char text[4096];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        assert_non_null(strstr(text, "\"abort\""));
        const char *r[] = {"train", "--resume", dir, "--quiet", NULL};
        assert_int_equal(run_sync(log, r), 0);
        assert_same_result(base_dir, dir);
        /* a finished run is not resumed again */
        assert_int_equal(run_sync(log, r), 1);
    }
}

/* patctl eval on the final checkpoint measures what the run measured (its
 * final evaluation came right after that checkpoint). */
static void test_eval_reproduces(void **state)
{
    (void)state;
    char dir[400], log[420];
    snprintf(dir, sizeof(dir), "%s/evalrun", tmp);
    snprintf(log, sizeof(log), "%s/evalrun.log", tmp);
    const char *args[] = {"train", "--config", CONFIG, "--out", dir, "--eval-every", "0", "--epochs", "1",
                          "--quiet", NULL};
    assert_int_equal(run_sync(log, args), 0);
    char *acc = q_text(dir, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
    const char *e[] = {"eval", dir, NULL};
    int st = run_sync(log, e);
    print_log(log);
    assert_int_equal(st, 0);
    char *acc2 = q_text(dir, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
    printf("  run's evaluation %s, patctl eval %s\n", acc, acc2);
    assert_string_equal(acc, acc2);
    assert_int_equal(q_int(dir, "SELECT COUNT(*) FROM session WHERE kind = 'eval' AND status = 'success'"), 1);
    assert_int_equal(q_int(dir, "SELECT COUNT(*) FROM evaluation"), 2);
    free(acc);
    const char *bad[] = {"eval", "/nonexistent/run", NULL};
    assert_int_equal(run_sync(log, bad), 1);
    /* pruning: each fraction from the checkpoint's own state; fraction 0 is
     * the plain evaluation; the rows say what was pruned */
    const char *pr[] = {"eval", dir, "--prune", "0,0.5,1", "--quiet", NULL};
    st = run_sync(log, pr);
    print_log(log);
    assert_int_equal(st, 0);
    assert_int_equal(q_int(dir, "SELECT COUNT(*) FROM evaluation WHERE prunable_entries > 0"), 3);
    long long total = q_int(dir, "SELECT prunable_entries FROM evaluation ORDER BY id DESC LIMIT 1");
    /* tiny.ini: linear 26 x 208, coupling pairs of a (52) and b (26) */
    assert_int_equal(total, 26 * 208 + 52 * 51 / 2 + 26 * 25 / 2);
    assert_int_equal(q_int(dir, "SELECT pruned_entries FROM evaluation ORDER BY id DESC LIMIT 1"), total);
    char *a0 = q_text(dir, "SELECT printf('%.17g', accuracy) FROM evaluation WHERE prunable_entries > 0 AND pruned = 0");
    assert_string_equal(a0, acc2 ? acc2 : "");
    free(a0);
    const char *pbad[] = {"eval", dir, "--prune", "1.5", NULL};
    assert_int_equal(run_sync(log, pbad), 2);
    free(acc2);
}

static void test_export(void **state)
{
    (void)state;
    char npy[400], csv[400], log[420];
    snprintf(npy, sizeof(npy), "%s/export-npy", tmp);
    snprintf(csv, sizeof(csv), "%s/export-csv", tmp);
    snprintf(log, sizeof(log), "%s/export.log", tmp);
    const char *a[] = {"export", base_dir, "--npy", npy, NULL};
    const char *b[] = {"export", base_dir, "--csv", csv, NULL};
    assert_int_equal(run_sync(log, a), 0);
    assert_int_equal(run_sync(log, b), 0);
    print_log(log);
    char path[500];
    snprintf(path, sizeof(path), "%s/journal_b_x.npy", npy);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        printf("  SKIPPED the numpy read-back: /usr/bin/python3 with numpy is not installed "
               "(apt-get install python3-numpy)\n");
        return;
    }
    char cmd[2000];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/check_export.py '%s' '%s' '%s'", PATCTL_SOURCE_DIR,
             base_dir, npy, csv);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* The learning rules beyond PAT (pc strict/fixedpred, dfa, adfa, BEAN):
 * a run stopped by SIGTERM mid-run and resumed ends bit-identical to the
 * same run uninterrupted; strict's extra measurements are journaled with
 * phase pc. */
static void test_rules_resume(void **state)
{
    (void)state;
    const char *rules[][12] = {
        {"--mode", "pc", "--pc-variant", "strict", "--pc-iters", "3", NULL},
        {"--mode", "pc", "--pc-iters", "4", NULL},
        {"--mode", "dfa", NULL},
        {"--mode", "adfa", "--dfa-g", "sin", NULL},
        {"--mode", "pat", "--bean", "0.01", NULL},
        {"--mode", "bpstdp", NULL},
        /* pruned at the start (the kill comes after: the resume finds the
         * mask again), and after epoch 1 (the kill comes before it); only
         * the final evaluation, so patctl eval below measures with the
         * same device noise draws */
        {"--mode", "pat", "--prune", "0.5", "--prune-after", "0", "--eval-every", "0", NULL},
        {"--mode", "pat", "--prune", "0.5", "--prune-after", "1", "--epochs", "3", "--eval-every", "0", NULL},
        /* ramped over the first epoch: the kill comes mid-ramp */
        {"--mode", "pat", "--prune", "0.5", "--prune-after", "0", "--prune-ramp", "1", "--eval-every", "0", NULL},
    };
    for (int k = 0; k < 9; k++) {
        char ref[400], dir[400], log[420];
        snprintf(ref, sizeof(ref), "%s/rule%d-ref", tmp, k);
        snprintf(dir, sizeof(dir), "%s/rule%d", tmp, k);
        snprintf(log, sizeof(log), "%s/rule%d.log", tmp, k);
        const char *args[24] = {"train", "--config", CONFIG, "--out", ref, "--quiet"};
        int n = 6;
        for (int j = 0; rules[k][j]; j++)
            args[n++] = rules[k][j];
        args[n] = NULL;
        int st = run_sync(log, args);
        if (st)
            print_log(log);
        assert_int_equal(st, 0);
        args[4] = dir;
        pid_t pid = spawn(log, args);
        assert_true(wait_step(pid, dir, 25));
        kill(pid, SIGTERM);
        assert_int_equal(wait_for(pid), 130);
        long long at = q_int(dir, "SELECT MAX(step) FROM step");
        const char *r[] = {"train", "--resume", dir, "--quiet", NULL};
        st = run_sync(log, r);
        if (st)
            print_log(log);
        assert_int_equal(st, 0);
        char *mode = q_text(dir, "SELECT mode FROM run");
        char *racc = q_text(ref, "SELECT printf('%.4f', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
        printf("  %s %s%s%s: stopped at step %lld, resumed: same result; test accuracy %s\n", rules[k][1],
               rules[k][2] ? rules[k][2] : "", rules[k][2] ? " " : "", rules[k][2] ? rules[k][3] : "", at,
               racc ? racc : "?");
        free(racc);
        assert_string_equal(mode, rules[k][1]);
        free(mode);
        assert_same_result(ref, dir);
        if (k == 0) {
            /* strict, 3 iterations: 2 extra measurements per device per step */
            long long pc = q_int(ref, "SELECT COUNT(*) FROM query WHERE phase = 'pc' AND batch > 0 AND rc = 0");
            long long tr = q_int(ref, "SELECT COUNT(*) FROM query WHERE phase = 'train' AND batch > 0 AND rc = 0");
            printf("  strict: %lld journaled train queries, %lld pc queries\n", tr, pc);
            assert_int_equal(tr, 2 * 60);
            assert_int_equal(pc, 2 * 2 * 60);
        }
        if (k >= 6) {
            /* the pruned half held at zero to the end: the final evaluation
             * says so, and patctl eval --prune 0.5 of the last checkpoint
             * finds nothing more to zero, so it measures the same */
            long long total = q_int(ref, "SELECT prunable_entries FROM evaluation ORDER BY id DESC LIMIT 1");
            long long cut = q_int(ref, "SELECT pruned_entries FROM evaluation ORDER BY id DESC LIMIT 1");
            assert_int_equal(total, 26 * 208 + 52 * 51 / 2 + 26 * 25 / 2);
            assert_int_equal(cut, 26 * 208 / 2 + (52 * 51 / 2 + 1) / 2 + (26 * 25 / 2 + 1) / 2);
            assert_int_equal(q_int(ref, "SELECT COUNT(*) FROM log WHERE message LIKE 'pruned % of % weights and "
                                        "couplings after epoch %'"), 1);
            assert_int_equal(q_int(ref, "SELECT COUNT(*) FROM log WHERE message LIKE 'pruning from epoch 1 on: %'"),
                             k == 8);
            char *acc = q_text(ref, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
            const char *e[] = {"eval", ref, "--prune", "0.5", "--quiet", NULL};
            st = run_sync(log, e);
            if (st)
                print_log(log);
            assert_int_equal(st, 0);
            char *acc2 = q_text(ref, "SELECT printf('%.17g', accuracy) FROM evaluation ORDER BY id DESC LIMIT 1");
            printf("  pruned %lld of %lld; the run's evaluation %s, patctl eval --prune 0.5 %s\n", cut, total, acc,
                   acc2);
            assert_string_equal(acc, acc2);
            free(acc);
            free(acc2);
        }
    }
    /* prune_after must leave an epoch to fine-tune */
    char log[420], dir[400];
    snprintf(log, sizeof(log), "%s/prunebad.log", tmp);
    snprintf(dir, sizeof(dir), "%s/prunebad", tmp);
    const char *bad[] = {"train", "--config", CONFIG, "--out", dir, "--quiet", "--prune", "0.5", "--prune-after", "2",
                         NULL};
    assert_int_not_equal(run_sync(log, bad), 0);
    FILE *f = fopen(log, "r");
    char text[4000] = "";
    assert_non_null(f);
    text[fread(text, 1, sizeof(text) - 1, f)] = 0;
    fclose(f);
    assert_non_null(strstr(text, "prune_after + prune_ramp below epochs (2)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_run),
        cmocka_unit_test(test_sigkill_resume),
        cmocka_unit_test(test_sigterm_and_sigint),
        cmocka_unit_test(test_eval_reproduces),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_rules_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
