/* Remote devices end to end: the quickstart model trained with its devices
 * behind `patctl serve` (tcp loopback) and behind servers on a pty serial
 * pair gives results identical to in-process; the exact VJP forwarded;
 * pools split batches and survive a member's death; fault injection (server
 * killed and restarted mid-epoch, replies delayed past the timeout, NaN and
 * wrong-sized results, 1 % of serial bytes corrupted): training completes,
 * faults are counted, nothing bad is used; CURVE with the remote driver;
 * the server keeps the device's limits. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/overlap.h"
#include "controller/runstore.h"
#include "controller/train.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/remote/remote.h"
#include "ptypair.h"

extern char **environ;

/* ---- servers in threads (in-process devices behind a link) ---- */

typedef struct srv {
    pthread_t t;
    device *d;
    pt_server *s;
    volatile sig_atomic_t stop;
    serve_opts so;
    char driver[64], opts[256];
    uint64_t seed;
    serve_stats st;
    int rc;
} srv;

static int srv_reopen(void *user, device **d, uint64_t seed, char *err, size_t errlen)
{
    srv *v = user;
    if (seed == v->seed)
        return 0;
    struct patctl_option *o;
    int no = options_parse(v->opts, &o);
    device *nd;
    int rc = device_open(&nd, "served", v->driver, o, no, seed, err, errlen);
    free(o);
    if (rc)
        return rc;
    device_close(d);
    *d = nd;
    v->seed = seed;
    return 0;
}

static void *srv_main(void *arg)
{
    srv *v = arg;
    v->rc = remote_serve(&v->d, v->s, &v->so, &v->stop, 0, &v->st);
    return NULL;
}

/* Serve driver(opts) on addr in a thread; returns the bound address. */
static const char *srv_start(srv *v, const char *driver, const char *opts, const char *addr,
                             const pt_link_opts *lo)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->driver, sizeof(v->driver), "%s", driver);
    snprintf(v->opts, sizeof(v->opts), "%s", opts);
    struct patctl_option *o;
    int no = options_parse(opts, &o);
    char err[512];
    int rc = device_open(&v->d, "served", driver, o, no, 0, err, sizeof(err));
    free(o);
    if (rc)
        fail_msg("device_open: %s", err);
    rc = pt_server_open(&v->s, addr, lo, err, sizeof(err));
    if (rc)
        fail_msg("pt_server_open %s: %s", addr, err);
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    v->so.driver = driver;
    v->so.reopen = srv_reopen;
    v->so.reopen_user = v;
    v->so.log = getenv("PATCTL_TEST_VERBOSE") ? stderr : devnull;
    pthread_create(&v->t, NULL, srv_main, v);
    return pt_server_address(v->s);
}

static void srv_stop(srv *v)
{
    v->stop = 1;
    pthread_join(v->t, NULL);
    pt_server_close(&v->s);
    device_close(&v->d);
}

/* ---- servers as processes: the real `patctl serve` ---- */

typedef struct proc {
    pid_t pid;
    char addr[256];
} proc;

/* Every server started, so that a failed test (cmocka longjmps out of it)
 * still stops them in its teardown. */
static pid_t spawned[32];
static int n_spawned;

static int kill_spawned(void **state)
{
    (void)state;
    for (int i = 0; i < n_spawned; i++)
        if (spawned[i] > 0 && kill(spawned[i], SIGKILL) == 0)
            waitpid(spawned[i], NULL, 0);
    n_spawned = 0;
    return 0;
}

/* Start `patctl serve ARGS...` and wait for its "ready on ADDR" line. */
static int proc_start(proc *p, const char *const *args)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = PATCTL_BIN;
    argv[n++] = "serve";
    for (int i = 0; args[i] && n < 38; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fd[2];
    if (pipe(fd))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    if (!getenv("PATCTL_TEST_VERBOSE"))
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&p->pid, PATCTL_BIN, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc == 0 && n_spawned < (int)(sizeof(spawned) / sizeof(spawned[0])))
        spawned[n_spawned++] = p->pid;
    if (rc) {
        close(fd[0]);
        return -1;
    }
    FILE *f = fdopen(fd[0], "r");
    char line[512];
    p->addr[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        const char *r = strstr(line, "ready on ");
        if (r) {
            snprintf(p->addr, sizeof(p->addr), "%s", r + 9);
            p->addr[strcspn(p->addr, "\n")] = '\0';
            break;
        }
    }
    fclose(f); /* the server's later output goes to a closed pipe: it never writes more than a line */
    return p->addr[0] ? 0 : -1;
}

static int proc_stop(proc *p)
{
    int status = 0;
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, &status, 0);
        for (int i = 0; i < n_spawned; i++)
            if (spawned[i] == p->pid)
                spawned[i] = 0;
        p->pid = 0;
    }
    return status;
}

/* ---- training the quickstart model on synthetic data ---- */

static dataset tr, te;

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (dataset_synthetic(&tr, 192, 14, 11) || dataset_synthetic(&te, 100, 14, 12))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dataset_free(&tr);
    dataset_free(&te);
    return 0;
}

static void base_config(run_config *c, train_mode mode)
{
    config_quickstart(c);
    c->mode = mode;
    c->seed = 3;
    c->epochs = 1;
    c->eval_batch = 50;
    c->batch = 32;
}

/* Put device i behind `remote` at addr (extra options appended). */
static void make_remote(run_config *c, int i, const char *addr, const char *extra)
{
    snprintf(c->devices[i].driver, sizeof(c->devices[i].driver), "remote");
    snprintf(c->devices[i].options, sizeof(c->devices[i].options), "endpoint=%s%s%s", addr, extra ? "," : "",
             extra ? extra : "");
}

static void train_ok(const run_config *c, train_result *r, const char *what)
{
    char err[512] = "";
    train_options o = {.quiet = 1};
    int rc = train_run(c, &tr, &te, &o, r, err, sizeof(err));
    if (rc)
        fail_msg("%s: train_run: %s", what, err);
    printf("  %-28s test accuracy %.3f, loss %.6f, %llu device queries, %llu faults, %llu retries\n", what,
           r->test_accuracy, r->epochs[0].loss, (unsigned long long)r->all_dev.queries,
           (unsigned long long)r->all_dev.faults, (unsigned long long)r->all_dev.retries);
}

static void expect_identical(const train_result *a, const train_result *b)
{
    assert_true(a->test_accuracy == b->test_accuracy);
    assert_true(a->epochs[0].loss == b->epochs[0].loss);
    assert_true(a->epochs[0].train_acc == b->epochs[0].train_acc);
    assert_int_equal(a->steps, b->steps);
    assert_memory_equal(a->confusion, b->confusion, sizeof(a->confusion));
}

static const char *osc_opts[2] = {"n=64,eta=0.1,j_noise=0.2,sigma=0.02", "n=266,eta=0.1,j_noise=0.2,sigma=0.02"};

/* The done-when: `patctl serve` over tcp loopback == in-process, PAT and ideal. */
static void test_serve_tcp_identical(void **state)
{
    (void)state;
    train_mode modes[2] = {MODE_PAT, MODE_IDEAL};
    for (int k = 0; k < 2; k++) {
        run_config c;
        static train_result local_s, rem_s;
        train_result *local = &local_s, *rem = &rem_s;
        base_config(&c, modes[k]);
        train_ok(&c, local, modes[k] == MODE_PAT ? "pat in-process" : "ideal in-process");
        proc p[2];
        for (int i = 0; i < 2; i++) {
            char o[128];
            snprintf(o, sizeof(o), "%s", osc_opts[i]);
            const char *args[] = {"--device", "oscillators", "--options", o, "--zmq", "tcp://127.0.0.1:*", NULL};
            assert_int_equal(proc_start(&p[i], args), 0);
            make_remote(&c, i, p[i].addr, NULL);
        }
        train_ok(&c, rem, modes[k] == MODE_PAT ? "pat via patctl serve (tcp)" : "ideal via patctl serve (tcp)");
        for (int i = 0; i < 2; i++)
            assert_int_equal(proc_stop(&p[i]), 0);
        expect_identical(local, rem);
        assert_int_equal(rem->all_dev.faults, 0);
    }
}

/* Keeping the device busy (the surrogate's forward pass computed while the
 * device works) changes nothing: identical to one after the other, in-process
 * and through a server (where the overlap hides the network wait). */
static void test_overlap_identical(void **state)
{
    (void)state;
    static train_result seq_s, ovl_s, rseq_s, rovl_s;
    run_config c;
    base_config(&c, MODE_PAT);
    pat_overlap = 0;
    train_ok(&c, &seq_s, "pat sequential");
    pat_overlap = 1;
    train_ok(&c, &ovl_s, "pat overlapped");
    expect_identical(&seq_s, &ovl_s);
    static srv s[2];
    for (int i = 0; i < 2; i++) {
        char addr[128];
        snprintf(addr, sizeof(addr), "ipc:///tmp/patctl-test-%d-o%d.ipc", (int)getpid(), i);
        srv_start(&s[i], "oscillators", osc_opts[i], addr, NULL);
        make_remote(&c, i, addr, NULL);
    }
    pat_overlap = 0;
    train_ok(&c, &rseq_s, "pat remote sequential");
    pat_overlap = 1;
    train_ok(&c, &rovl_s, "pat remote overlapped");
    for (int i = 0; i < 2; i++)
        srv_stop(&s[i]);
    expect_identical(&seq_s, &rseq_s);
    expect_identical(&seq_s, &rovl_s);
}

/* The same over a pty serial pair: servers on one end, the remote driver
 * on the other, both through libserialport. */
static void test_serial_identical(void **state)
{
    (void)state;
    ptypair pp[2];
    if (ptypair_open(&pp[0], 0, 1) || ptypair_open(&pp[1], 0, 2)) {
        printf("  no pseudo-terminals here: skipped\n");
        skip();
    }
    run_config c;
    static train_result local_s, rem_s;
    train_result *local = &local_s, *rem = &rem_s;
    base_config(&c, MODE_PAT);
    train_ok(&c, local, "pat in-process");
    static srv s[2];
    pt_link_opts lo;
    pt_link_opts_default(&lo);
    for (int i = 0; i < 2; i++) {
        char addr[200];
        snprintf(addr, sizeof(addr), "serial:%s", pp[i].port_a);
        srv_start(&s[i], "oscillators", osc_opts[i], addr, &lo);
        snprintf(addr, sizeof(addr), "serial:%s", pp[i].port_b);
        make_remote(&c, i, addr, "timeout_ms=5000,link_timeout_ms=100");
    }
    train_ok(&c, rem, "pat via serial (pty pair)");
    expect_identical(local, rem);
    for (int i = 0; i < 2; i++) {
        srv_stop(&s[i]);
        printf("  serial line %d: %llu bytes relayed\n", i, (unsigned long long)pp[i].relayed);
        ptypair_close(&pp[i]);
    }
}

/* ---- fault injection ---- */

typedef struct {
    proc *p;
    const char *const *args; /* for the restart (no fault options) */
    volatile int done;
    int restarts;
} monitor_t;

/* Wait for the server to die, start a new one on the same address. */
static void *monitor_main(void *arg)
{
    monitor_t *m = arg;
    int status;
    if (waitpid(m->p->pid, &status, 0) == m->p->pid && WIFSIGNALED(status)) {
        m->p->pid = 0;
        if (proc_start(m->p, m->args) == 0)
            m->restarts++;
    }
    m->done = 1;
    return NULL;
}

static void test_server_killed_and_restarted(void **state)
{
    (void)state;
    char a0[128], a1[128];
    snprintf(a0, sizeof(a0), "ipc:///tmp/patctl-test-%d-k0.ipc", (int)getpid());
    snprintf(a1, sizeof(a1), "ipc:///tmp/patctl-test-%d-k1.ipc", (int)getpid());
    /* device 1 (osc266) dies at its 4th run request, mid-epoch, and comes back */
    const char *args0[] = {"--device", "oscillators", "--options", osc_opts[0], "--zmq", a0, NULL};
    const char *args1_die[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1,
                               "--fault-die-after", "3", NULL};
    const char *args1[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1, NULL};
    proc p0, p1;
    assert_int_equal(proc_start(&p0, args0), 0);
    assert_int_equal(proc_start(&p1, args1_die), 0);
    monitor_t mon = {&p1, args1, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, monitor_main, &mon);
    run_config c;
    base_config(&c, MODE_PAT);
    make_remote(&c, 0, a0, NULL);
    make_remote(&c, 1, a1, "timeout_ms=500,retries=6,backoff_ms=20,backoff_max_ms=200");
    static train_result rs;
    train_result *r = &rs;
    train_ok(&c, r, "osc266 server killed");
    pthread_join(t, NULL);
    assert_int_equal(mon.restarts, 1);
    assert_int_equal(r->steps, 6);                 /* every step done */
    assert_true(isfinite(r->epochs[0].loss));
    assert_true(r->test_accuracy > 0.1);
    proc_stop(&p0);
    proc_stop(&p1);
}

static void test_delays_nan_short(void **state)
{
    (void)state;
    char a0[128], a1[128];
    snprintf(a0, sizeof(a0), "ipc:///tmp/patctl-test-%d-f0.ipc", (int)getpid());
    snprintf(a1, sizeof(a1), "ipc:///tmp/patctl-test-%d-f1.ipc", (int)getpid());
    const char *args0[] = {"--device", "oscillators", "--options", osc_opts[0], "--zmq", a0,
                           "--fault-delay-every", "4", "--fault-delay-ms", "2500", NULL};
    const char *args1[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1,
                           "--fault-nan-every", "3", "--fault-short-every", "5", NULL};
    proc p0, p1;
    assert_int_equal(proc_start(&p0, args0), 0);
    assert_int_equal(proc_start(&p1, args1), 0);
    run_config c;
    base_config(&c, MODE_PAT);
    make_remote(&c, 0, a0, "timeout_ms=1500,retries=4,backoff_ms=10");
    make_remote(&c, 1, a1, NULL);
    static train_result rs;
    train_result *r = &rs;
    train_ok(&c, r, "delays, NaN, short results");
    /* nothing bad was used: every step done, all numbers finite, and every
     * bad reply was a counted fault that was retried */
    assert_int_equal(r->steps, 6);
    assert_true(isfinite(r->epochs[0].loss));
    assert_true(r->all_dev.faults >= 4);
    assert_true(r->all_dev.retries >= r->all_dev.faults);
    proc_stop(&p0);
    proc_stop(&p1);
}

/* ---- failed steps are skipped (train.h, max_failed_steps) ---- */

/* Watches every step: a skipped step must leave parameters, optimiser
 * moments, optimiser step counter and applied-step counter exactly as the
 * step before left them, and advance the data position by one batch. */
typedef struct {
    long n;
    float *params, *m, *v;   /* [n] state after the previous step (or NULL before the first) */
    uint64_t opt_t;
    long steps, pos, skipped, checked, bad;
    int have;
} step_watch;

static void watch_step(void *user, const train_step_view *s)
{
    step_watch *w = user;
    if (!w->params) {
        w->n = s->n_params;
        w->params = malloc(sizeof(float) * (size_t)w->n);
        w->m = malloc(sizeof(float) * (size_t)w->n);
        w->v = malloc(sizeof(float) * (size_t)w->n);
    }
    if (s->skipped) {
        w->skipped++;
        if (w->have) {
            w->checked++;
            if (memcmp(w->params, s->params, sizeof(float) * (size_t)w->n) ||
                memcmp(w->m, s->opt_m, sizeof(float) * (size_t)w->n) ||
                memcmp(w->v, s->opt_v, sizeof(float) * (size_t)w->n) || w->opt_t != s->opt_t ||
                w->steps != s->steps || (s->pos != 0 && s->pos <= w->pos && s->epoch == 0))
                w->bad++;
        }
        if (s->rc >= 0)
            w->bad++; /* a skipped step names its fault */
    }
    memcpy(w->params, s->params, sizeof(float) * (size_t)w->n);
    memcpy(w->m, s->opt_m, sizeof(float) * (size_t)w->n);
    memcpy(w->v, s->opt_v, sizeof(float) * (size_t)w->n);
    w->opt_t = s->opt_t;
    w->steps = s->steps;
    w->pos = s->pos;
    w->have = 1;
}

typedef struct {
    proc *p;
    const char *const *args;
    int down_ms;             /* kept down this long after it died */
    int restarts;
} downtime_t;

/* Wait for the server to die, keep it down for down_ms, start it again. */
static void *downtime_main(void *arg)
{
    downtime_t *m = arg;
    int status;
    if (waitpid(m->p->pid, &status, 0) == m->p->pid && WIFSIGNALED(status)) {
        m->p->pid = 0;
        struct timespec ts = {m->down_ms / 1000, (long)(m->down_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (proc_start(m->p, m->args) == 0)
            m->restarts++;
    }
    return NULL;
}

/* The osc266 server dies mid-epoch and stays down longer than the client's
 * whole retry budget (3 device tries x 2 link tries x 150 ms): the steps
 * in between fail, are skipped with nothing applied, and training completes
 * once the server is back. */
static void test_failed_steps_skipped(void **state)
{
    (void)state;
    char a0[128], a1[128];
    snprintf(a0, sizeof(a0), "ipc:///tmp/patctl-test-%d-s0.ipc", (int)getpid());
    snprintf(a1, sizeof(a1), "ipc:///tmp/patctl-test-%d-s1.ipc", (int)getpid());
    const char *args0[] = {"--device", "oscillators", "--options", osc_opts[0], "--zmq", a0, NULL};
    const char *args1_die[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1,
                               "--fault-die-after", "3", NULL};
    const char *args1[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1, NULL};
    proc p0, p1;
    assert_int_equal(proc_start(&p0, args0), 0);
    assert_int_equal(proc_start(&p1, args1_die), 0);
    downtime_t dt = {&p1, args1, 2500, 0};
    pthread_t th;
    pthread_create(&th, NULL, downtime_main, &dt);
    run_config c;
    base_config(&c, MODE_PAT);
    c.epochs = 2;
    c.max_failed_steps = 50; /* generous: how many fail depends on the machine's load */
    make_remote(&c, 0, a0, NULL);
    make_remote(&c, 1, a1, "timeout_ms=150,retries=1,backoff_ms=10,backoff_max_ms=50");
    static train_result rs;
    train_result *r = &rs;
    step_watch w = {0};
    char err[512] = "";
    train_options o = {.quiet = 1, .on_step = watch_step, .on_step_user = &w};
    int rc = train_run(&c, &tr, &te, &o, r, err, sizeof(err));
    pthread_join(th, NULL);
    printf("  server down 2.5 s: %ld steps applied, %ld skipped (%ld checked), accuracy %.3f, %s\n", r->steps,
           r->skipped_steps, w.checked, r->test_accuracy, rc ? err : "success");
    assert_int_equal(rc, 0);
    assert_int_equal(dt.restarts, 1);
    assert_true(r->skipped_steps >= 1);
    assert_int_equal(r->skipped_steps, w.skipped);
    assert_int_equal(r->steps + r->skipped_steps, 12);  /* 2 epochs x 6 batches, each used or dropped */
    assert_true(w.checked >= 1);
    assert_int_equal(w.bad, 0);
    assert_int_equal(r->epochs_done, 2);
    assert_true(isfinite(r->epochs[1].loss));
    assert_true(r->test_accuracy >= 0.0);  /* evaluated, from good results only */
    assert_true(r->all_dev.faults >= 3);
    free(w.params);
    free(w.m);
    free(w.v);
    proc_stop(&p0);
    proc_stop(&p1);
}

/* The server dies and stays dead: `patctl train --max-failed-steps 3` skips
 * three steps, then stops with status fail, a checkpoint, the skipped steps
 * in the stop record, the log table and summary.json; the same with 0
 * stops at the first fault without skipping. */
static void test_failed_steps_stop_run(void **state)
{
    (void)state;
    char a0[128], a1[128], dir[256], ini[300], cmd[1200];
    snprintf(a0, sizeof(a0), "ipc:///tmp/patctl-test-%d-x0.ipc", (int)getpid());
    snprintf(a1, sizeof(a1), "ipc:///tmp/patctl-test-%d-x1.ipc", (int)getpid());
    const char *args0[] = {"--device", "oscillators", "--options", osc_opts[0], "--zmq", a0, NULL};
    for (int k = 0; k < 2; k++) {
        int max_failed = k == 0 ? 3 : 0;
        const char *args1_die[] = {"--device", "oscillators", "--options", osc_opts[1], "--zmq", a1,
                                   "--fault-die-after", "2", NULL};
        proc p0, p1;
        assert_int_equal(proc_start(&p0, args0), 0);
        assert_int_equal(proc_start(&p1, args1_die), 0);
        run_config c;
        base_config(&c, MODE_PAT);
        snprintf(c.data_set, sizeof(c.data_set), "synthetic");
        c.train_limit = 192;
        c.test_limit = 100;
        make_remote(&c, 0, a0, NULL);
        /* 500 ms: well above a live server's answer under ASan and load (a
         * request that times out still counts towards the server's death
         * after 2, which would leave 1 step, not 2) */
        make_remote(&c, 1, a1, "timeout_ms=500,retries=1,backoff_ms=10,backoff_max_ms=20");
        snprintf(dir, sizeof(dir), "/tmp/patctl-test-%d-stop%d", (int)getpid(), k);
        snprintf(ini, sizeof(ini), "%s.ini", dir);
        char *text = config_format(&c);
        assert_non_null(text);
        FILE *f = fopen(ini, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        free(text);
        snprintf(cmd, sizeof(cmd), "rm -rf %s; %s train --config %s --out %s --max-failed-steps %d --quiet "
                 "2>/dev/null", dir, PATCTL_BIN, ini, dir, max_failed);
        int st = system(cmd);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        runstore *rs;
        char err[512];
        assert_int_equal(runstore_open(&rs, dir, 0, err, sizeof(err)), 0);
        sqlite3 *db = runstore_db(rs);
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT status, reason, steps, skipped_steps FROM session", -1, &q,
                                            NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        const char *status = (const char *)sqlite3_column_text(q, 0);
        const char *reason = (const char *)sqlite3_column_text(q, 1);
        printf("  max_failed_steps %d: status %s, %d steps, %d skipped: %s\n", max_failed, status,
               sqlite3_column_int(q, 2), sqlite3_column_int(q, 3), reason);
        assert_string_equal(status, "fail");
        assert_int_equal(sqlite3_column_int(q, 2), 2);           /* two steps done before the death */
        assert_int_equal(sqlite3_column_int(q, 3), max_failed);  /* then 3 skipped (or none) */
        if (max_failed)
            assert_non_null(strstr(reason, "3 training steps in a row failed"));
        sqlite3_finalize(q);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM log WHERE device = 'train' AND level = "
                                            "'fault' AND message LIKE '%skipped, nothing applied%'", -1, &q,
                                            NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(q, 0), max_failed);
        sqlite3_finalize(q);
        if (max_failed) {
            /* the checkpoint at the stop: 2 steps applied, 3 skipped, 5 batches used */
            assert_int_equal(sqlite3_prepare_v2(db, "SELECT step, skipped, pos FROM checkpoint ORDER BY id DESC",
                                                -1, &q, NULL), SQLITE_OK);
            assert_int_equal(sqlite3_step(q), SQLITE_ROW);
            assert_int_equal(sqlite3_column_int(q, 0), 2);
            assert_int_equal(sqlite3_column_int(q, 1), 3);
            assert_int_equal(sqlite3_column_int(q, 2), 5 * 32);
            sqlite3_finalize(q);
            char path[400], buf[8192];
            snprintf(path, sizeof(path), "%s/summary.json", dir);
            f = fopen(path, "r");
            assert_non_null(f);
            size_t len = fread(buf, 1, sizeof(buf) - 1, f);
            buf[len] = '\0';
            fclose(f);
            assert_non_null(strstr(buf, "\"skipped_steps\":\t3"));
        }
        runstore_close(&rs);
        proc_stop(&p0);
        proc_stop(&p1);
        snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, ini);
        assert_int_equal(system(cmd), 0);
    }
}

/* 1 % of the bytes on the serial line corrupted both ways: a small model
 * still trains, and the link counts what it repaired. */
static void test_serial_noise(void **state)
{
    (void)state;
    ptypair pp;
    if (ptypair_open(&pp, 0.01, 7)) {
        printf("  no pseudo-terminals here: skipped\n");
        skip();
    }
    static srv s;
    pt_link_opts lo;
    pt_link_opts_default(&lo);
    lo.mtu = 64;
    lo.link_timeout_ms = 10;
    char addr[200];
    snprintf(addr, sizeof(addr), "serial:%s", pp.port_a);
    srv_start(&s, "oscillators", "n=12,sigma=0.01", addr, &lo);
    run_config c;
    config_quickstart(&c);
    c.n_devices = 1;
    snprintf(c.devices[0].name, sizeof(c.devices[0].name), "osc12");
    snprintf(addr, sizeof(addr), "serial:%s", pp.port_b);
    make_remote(&c, 0, addr, "mtu=64,link_timeout_ms=10,timeout_ms=20000");
    layer_spec L[] = {{LAYER_LINEAR, 12, ""}, {LAYER_PHYSICAL, 0, "osc12"}, {LAYER_LINEAR, 10, ""}};
    c.n_layers = 3;
    memcpy(c.layers, L, sizeof(L));
    c.epochs = 1;
    c.batch = 16;
    c.eval_batch = 50;
    c.lr = 0.01;
    static train_result rs;
    train_result *r = &rs;
    train_ok(&c, r, "1% serial noise");
    srv_stop(&s);
    printf("  line: %llu of %llu bytes corrupted\n", (unsigned long long)pp.corrupted,
           (unsigned long long)pp.relayed);
    assert_int_equal(r->steps, 12);
    assert_true(isfinite(r->epochs[0].loss));
    assert_true(pp.corrupted > 0);
    ptypair_close(&pp);
}

/* ---- pools ---- */

static void run_direct(device *d, const float *th, const float *x, int B, float *y)
{
    assert_int_equal(device_run(d, th, x, B, y), 0);
}

/* Rows of a batch computed separately may differ from the whole batch in
 * the last bit (BLAS blocking depends on the batch size). */
static void expect_close(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-6f * (1.0f + fabsf(a[i])))
            fail_msg("value %d: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
}

static void test_pool(void **state)
{
    (void)state;
    /* sigma = 0: the device is deterministic per row, so a pool must give
     * what one device gives (to rounding) */
    const char *opts = "n=8,sigma=0,j_noise=0.3";
    static srv s[3];
    char addrs[3][128], ep[512] = "";
    for (int i = 0; i < 3; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "ipc:///tmp/patctl-test-%d-p%d.ipc", (int)getpid(), i);
        srv_start(&s[i], "oscillators", opts, addrs[i], NULL);
        snprintf(ep + strlen(ep), sizeof(ep) - strlen(ep), "%s%s", i ? "|" : "", addrs[i]);
    }
    char o[700];
    snprintf(o, sizeof(o), "endpoint=%s,timeout_ms=300,retries=1,backoff_ms=5,backoff_max_ms=60000", ep);
    struct patctl_option *po;
    int no = options_parse(o, &po);
    device *pool, *one;
    char err[512];
    assert_int_equal(device_open(&pool, "pool", "remote", po, no, 9, err, sizeof(err)), 0);
    free(po);
    no = options_parse(opts, &po);
    assert_int_equal(device_open(&one, "one", "oscillators", po, no, 9, err, sizeof(err)), 0);
    free(po);
    int B = 10, n = 8;
    float th[72], x[80], y1[80], y2[80];
    for (int i = 0; i < 72; i++)
        th[i] = 0.3f * sinf((float)i);
    for (int i = 0; i < 80; i++)
        x[i] = cosf(0.7f * (float)i);
    run_direct(one, th, x, B, y1);
    remote_stats st;
    assert_int_equal(remote_get_stats(pool, &st), 0);
    uint64_t before = st.requests;
    run_direct(pool, th, x, B, y2);
    expect_close(y1, y2, B * n);
    assert_int_equal(remote_get_stats(pool, &st), 0);
    assert_int_equal(st.requests - before, 3); /* three parts in parallel */
    /* member 1 stops answering: its part moves, the result is still exact */
    srv_stop(&s[1]);
    memset(y2, 0, sizeof(y2));
    run_direct(pool, th, x, B, y2);
    expect_close(y1, y2, B * n);
    assert_int_equal(remote_get_stats(pool, &st), 0);
    printf("  pool: %llu dropped, %llu parts moved, %d of %d alive\n", (unsigned long long)st.dropped,
           (unsigned long long)st.moved, st.alive, st.members);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.moved, 1);
    assert_int_equal(st.alive, 2);
    /* the next batch goes to the two live members only */
    run_direct(pool, th, x, 7, y2);
    expect_close(y1, y2, 7 * n);
    device_close(&pool);
    device_close(&one);
    srv_stop(&s[0]);
    srv_stop(&s[2]);
}

/* The final parameters of a run (copied from the last step view). */
typedef struct {
    float *p;
    long n;
} last_params;

static void keep_params(void *user, const train_step_view *v)
{
    last_params *lp = user;
    if (lp->n != v->n_params) {
        free(lp->p);
        lp->p = malloc(sizeof(float) * (size_t)v->n_params);
        lp->n = v->n_params;
    }
    if (lp->p)
        memcpy(lp->p, v->params, sizeof(float) * (size_t)v->n_params);
}

static void train_params(const run_config *c, train_result *r, last_params *lp, const char *what)
{
    char err[512] = "";
    train_options o = {.quiet = 1, .on_step = keep_params, .on_step_user = lp};
    int rc = train_run(c, &tr, &te, &o, r, err, sizeof(err));
    if (rc)
        fail_msg("%s: train_run: %s", what, err);
    assert_non_null(lp->p);
    printf("  %-34s test accuracy %.3f, loss %.6f, %ld steps\n", what, r->test_accuracy, r->epochs[0].loss,
           r->steps);
}

/* A pool gives bit-identical results: every part of a split batch carries
 * its row offset (RUN row0), so seeded noise (input noise sigma, the common
 * output noise) is drawn per absolute row, as in-process and on one server.
 * The quickstart's devices, PAT and ideal (the exact VJP through the pool). */
static void test_pool_identical(void **state)
{
    (void)state;
    const char *opts[2] = {"n=64,eta=0.1,j_noise=0.2,sigma=0.02,noise_std=0.01,row_exact=1",
                           "n=266,eta=0.1,j_noise=0.2,sigma=0.02,row_exact=1"};
    train_mode modes[2] = {MODE_PAT, MODE_IDEAL};
    static srv s[2][3];
    char addr[2][3][64];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            snprintf(addr[i][j], sizeof(addr[i][j]), "ipc:///tmp/patctl-test-%d-q%d%d.ipc", (int)getpid(), i, j);
            srv_start(&s[i][j], "oscillators", opts[i], addr[i][j], NULL);
        }
    for (int k = 0; k < 2; k++) {
        static train_result loc, one, pool2, pool3;
        last_params lp[4] = {{0}};
        run_config c;
        base_config(&c, modes[k]);
        for (int i = 0; i < 2; i++)
            snprintf(c.devices[i].options, sizeof(c.devices[i].options), "%s", opts[i]);
        train_params(&c, &loc, &lp[0], modes[k] == MODE_PAT ? "pat in-process" : "ideal in-process");
        for (int i = 0; i < 2; i++)
            make_remote(&c, i, addr[i][0], NULL);
        train_params(&c, &one, &lp[1], modes[k] == MODE_PAT ? "pat one server" : "ideal one server");
        for (int i = 0; i < 2; i++) {
            char ep[512];
            snprintf(ep, sizeof(ep), "%s|%s", addr[i][1], addr[i][2]);
            make_remote(&c, i, ep, NULL);
        }
        train_params(&c, &pool2, &lp[2], modes[k] == MODE_PAT ? "pat pool of 2" : "ideal pool of 2");
        for (int i = 0; i < 2; i++) {
            char ep[512];
            snprintf(ep, sizeof(ep), "%s|%s|%s", addr[i][0], addr[i][1], addr[i][2]);
            make_remote(&c, i, ep, NULL);
        }
        train_params(&c, &pool3, &lp[3], modes[k] == MODE_PAT ? "pat pool of 3" : "ideal pool of 3");
        /* parameters bit-identical to in-process (ideal: the exact VJP runs
         * on one member with the whole batch) */
        for (int j = 1; j < 4; j++) {
            assert_int_equal(lp[j].n, lp[0].n);
            assert_memory_equal(lp[j].p, lp[0].p, sizeof(float) * (size_t)lp[0].n);
        }
        expect_identical(&loc, &one);
        expect_identical(&loc, &pool2);
        expect_identical(&loc, &pool3);
        assert_int_equal(pool3.all_dev.faults, 0);
        for (int j = 0; j < 4; j++)
            free(lp[j].p);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            srv_stop(&s[i][j]);
}

/* ---- CURVE through the remote driver ---- */

static void test_remote_curve(void **state)
{
    (void)state;
    pt_link_opts lo;
    pt_link_opts_default(&lo);
    if (pt_curve_keypair(lo.curve_public, lo.curve_secret)) {
        skip();
    }
    static srv s; /* outlives a failed assertion's longjmp */
    const char *addr = srv_start(&s, "oscillators", "n=4", "tcp://127.0.0.1:*", &lo);
    char o[512], err[512];
    device *d = NULL;
    struct patctl_option *po;
    /* without the server's key: no description, the open fails */
    snprintf(o, sizeof(o), "endpoint=%s,timeout_ms=200,retries=0", addr);
    int no = options_parse(o, &po);
    int rc = device_open(&d, "r", "remote", po, no, 1, err, sizeof(err));
    printf("  without the key: %s\n", err);
    assert_int_equal(rc, PATCTL_ERR_TIMEOUT);
    free(po);
    assert_int_equal(s.st.requests, 0); /* the server saw nothing */
    /* with it: works */
    snprintf(o, sizeof(o), "endpoint=%s,server_key=%s", addr, lo.curve_public);
    no = options_parse(o, &po);
    rc = device_open(&d, "r", "remote", po, no, 1, err, sizeof(err));
    if (rc)
        fail_msg("with the key: %s", err);
    free(po);
    float th[20] = {0}, x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[4];
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    device_close(&d);
    srv_stop(&s);
}

/* ---- CURVE client allowlist (serve --allow-keys, a ZAP handler) ---- */

/* Open a remote device on addr with server_key and extra options; returns
 * the device_open code, the error text in err. */
static int open_remote(device **d, const char *addr, const char *server_pub, const char *extra, char *err,
                       size_t errlen)
{
    char o[1024];
    snprintf(o, sizeof(o), "endpoint=%s,server_key=%s,timeout_ms=300,retries=1,backoff_ms=10%s%s", addr,
             server_pub, extra[0] ? "," : "", extra);
    struct patctl_option *po;
    int no = options_parse(o, &po);
    int rc = device_open(d, "r", "remote", po, no, 1, err, errlen);
    free(po);
    return rc;
}

static void write_keyfile(const char *path, const char *pub, const char *sec)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# patctl CURVE key pair: keep secret\npublic = %s\nsecret = %s\n", pub, sec);
    fclose(f);
}

static void test_allow_keys(void **state)
{
    (void)state;
    pt_link_opts lo;
    pt_link_opts_default(&lo);
    char a_pub[41], a_sec[41], b_pub[41], b_sec[41], c_pub[41], c_sec[41];
    if (pt_curve_keypair(lo.curve_public, lo.curve_secret))
        skip();
    assert_int_equal(pt_curve_keypair(a_pub, a_sec), 0);
    assert_int_equal(pt_curve_keypair(b_pub, b_sec), 0);
    assert_int_equal(pt_curve_keypair(c_pub, c_sec), 0);
    /* the allowlist: A as in its .pub, C bare with a comment; B not listed */
    char allow[128], akey[128], bkey[128];
    snprintf(allow, sizeof(allow), "/tmp/patctl-test-%d-allow.txt", (int)getpid());
    snprintf(akey, sizeof(akey), "/tmp/patctl-test-%d-a.key", (int)getpid());
    snprintf(bkey, sizeof(bkey), "/tmp/patctl-test-%d-b.key", (int)getpid());
    FILE *f = fopen(allow, "w");
    assert_non_null(f);
    fprintf(f, "# lab clients\n\n# patctl CURVE public key\npublic = %s\n  %s   # another client\n", a_pub, c_pub);
    fclose(f);
    write_keyfile(akey, a_pub, a_sec);
    write_keyfile(bkey, b_pub, b_sec);
    snprintf(lo.curve_allow_file, sizeof(lo.curve_allow_file), "%s", allow);
    static srv s; /* outlives a failed assertion's longjmp */
    const char *addr = srv_start(&s, "oscillators", "n=4,sigma=0", "tcp://127.0.0.1:*", &lo);
    char extra[256], err[1024];
    device *d = NULL;
    float th[20] = {0}, x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[4] = {NAN, NAN, NAN, NAN}, yref[4];

    /* a listed client (client_key = its keygen .key file): results, equal to
     * the served device's own */
    snprintf(extra, sizeof(extra), "client_key=%s", akey);
    int rc = open_remote(&d, addr, lo.curve_public, extra, err, sizeof(err));
    if (rc)
        fail_msg("listed client: %s", err);
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    device_close(&d);
    uint64_t served = s.st.requests;
    assert_true(served >= 2); /* DESCRIBE + RUN at least */
    for (int i = 0; i < 4; i++)
        assert_true(isfinite(y[i]));
    memcpy(yref, y, sizeof(y));

    /* a valid key pair that is not on the list: no data, an error naming the
     * endpoint and the refusal */
    snprintf(extra, sizeof(extra), "client_key=%s", bkey);
    rc = open_remote(&d, addr, lo.curve_public, extra, err, sizeof(err));
    printf("  unlisted key: %s\n", err);
    assert_int_not_equal(rc, 0);
    assert_null(d);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "authentication refused"));
    /* detected from the handshake, not after timeout x retries: no retry */
    assert_non_null(strstr(err, "(attempt 1 of 2)"));
    assert_int_equal(s.st.requests, served); /* the server answered nothing */

    /* no client_key: an ephemeral key pair, not on the list either */
    rc = open_remote(&d, addr, lo.curve_public, "", err, sizeof(err));
    printf("  ephemeral key: %s\n", err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "authentication refused"));
    assert_non_null(strstr(err, "(attempt 1 of 2)"));
    assert_int_equal(s.st.requests, served);

    /* the bare-key line works too (C), and A again gives the same result */
    snprintf(extra, sizeof(extra), "client_key=%s", akey);
    assert_int_equal(open_remote(&d, addr, lo.curve_public, extra, err, sizeof(err)), 0);
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    assert_memory_equal(y, yref, sizeof(y));
    device_close(&d);
    write_keyfile(bkey, c_pub, c_sec);
    snprintf(extra, sizeof(extra), "client_key=%s", bkey);
    rc = open_remote(&d, addr, lo.curve_public, extra, err, sizeof(err));
    if (rc)
        fail_msg("bare-key client: %s", err);
    device_close(&d);

    /* client_key without server_key: a clear error, not silently ignored */
    char o[512];
    snprintf(o, sizeof(o), "endpoint=%s,client_key=%s", addr, akey);
    struct patctl_option *po;
    int no = options_parse(o, &po);
    assert_int_equal(device_open(&d, "r", "remote", po, no, 1, err, sizeof(err)), PATCTL_ERR_ARG);
    free(po);
    assert_non_null(strstr(err, "server_key"));
    srv_stop(&s);
    remove(allow);
    remove(akey);
    remove(bkey);
}

/* The real `patctl serve --curve-key --allow-keys`: a listed client gets
 * results, an unlisted one nothing, and the server (its ZAP thread joined)
 * exits cleanly on SIGTERM. */
static void test_allow_keys_serve(void **state)
{
    (void)state;
    char s_pub[41], s_sec[41], a_pub[41], a_sec[41], b_pub[41], b_sec[41];
    if (pt_curve_keypair(s_pub, s_sec))
        skip();
    assert_int_equal(pt_curve_keypair(a_pub, a_sec), 0);
    assert_int_equal(pt_curve_keypair(b_pub, b_sec), 0);
    char skey[128], akey[128], bkey[128], allow[128];
    snprintf(skey, sizeof(skey), "/tmp/patctl-test-%d-s.key", (int)getpid());
    snprintf(akey, sizeof(akey), "/tmp/patctl-test-%d-sa.key", (int)getpid());
    snprintf(bkey, sizeof(bkey), "/tmp/patctl-test-%d-sb.key", (int)getpid());
    snprintf(allow, sizeof(allow), "/tmp/patctl-test-%d-sallow.pub", (int)getpid());
    write_keyfile(skey, s_pub, s_sec);
    write_keyfile(akey, a_pub, a_sec);
    write_keyfile(bkey, b_pub, b_sec);
    FILE *f = fopen(allow, "w");
    assert_non_null(f);
    fprintf(f, "# patctl CURVE public key\npublic = %s\n", a_pub);
    fclose(f);
    proc p;
    const char *args[] = {"--device", "oscillators", "n=4", "--zmq", "tcp://127.0.0.1:*", "--curve-key", skey,
                          "--allow-keys", allow, NULL};
    assert_int_equal(proc_start(&p, args), 0);
    char extra[256], err[1024];
    device *d = NULL;
    snprintf(extra, sizeof(extra), "client_key=%s", bkey);
    assert_int_not_equal(open_remote(&d, p.addr, s_pub, extra, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "authentication refused"));
    snprintf(extra, sizeof(extra), "client_key=%s", akey);
    if (open_remote(&d, p.addr, s_pub, extra, err, sizeof(err)))
        fail_msg("listed client: %s", err);
    float th[20] = {0}, x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[4];
    assert_int_equal(device_run(d, th, x, 1, y), 0);
    device_close(&d);
    int status = proc_stop(&p);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    remove(skey);
    remove(akey);
    remove(bkey);
    remove(allow);
}

/* ---- the server keeps its own limits ---- */

static void test_server_boundary(void **state)
{
    (void)state;
    char addr[128];
    snprintf(addr, sizeof(addr), "ipc:///tmp/patctl-test-%d-b.ipc", (int)getpid());
    static srv s;
    srv_start(&s, "oscillators", "n=2,sigma=0", addr, NULL);
    s.d->limits = LIMIT_REJECT;
    /* a client that talks the protocol directly, bypassing any client-side
     * boundary, is refused by the server's */
    pt_client *c;
    char err[256];
    assert_int_equal(pt_client_open(&c, addr, NULL, err, sizeof(err)), 0);
    float th[6] = {0, 0, 0, 0, 9.0f /* > hi = 4 */, 0}, x[2] = {0, 0};
    uint8_t head[PT_RUN_HEAD];
    pt_run_head(head, 1, 1, 6, 2, 0);
    pt_part parts[3] = {{head, sizeof(head)}, {th, sizeof(th)}, {x, sizeof(x)}};
    uint32_t seq;
    pt_msg rep;
    assert_int_equal(pt_client_send(c, PT_RUN, parts, 3, &seq), 0);
    assert_int_equal(pt_client_wait(c, seq, 3000, &rep), 0);
    assert_int_equal(rep.type, PT_ERROR);
    int32_t code;
    const char *text;
    size_t tl;
    assert_int_equal(pt_error_parse(rep.data, rep.len, &code, &text, &tl), 0);
    assert_int_equal(code, PATCTL_ERR_LIMIT);
    th[4] = NAN;
    assert_int_equal(pt_client_send(c, PT_RUN, parts, 3, &seq), 0);
    assert_int_equal(pt_client_wait(c, seq, 3000, &rep), 0);
    assert_int_equal(pt_error_parse(rep.data, rep.len, &code, &text, &tl), 0);
    assert_int_equal(code, PATCTL_ERR_NONFINITE);
    /* wrong shapes: an error, not a crash */
    pt_run_head(head, 1, 1, 5, 2, 0);
    parts[1].n = 20;
    assert_int_equal(pt_client_send(c, PT_RUN, parts, 3, &seq), 0);
    assert_int_equal(pt_client_wait(c, seq, 3000, &rep), 0);
    assert_int_equal(rep.type, PT_ERROR);
    /* unknown type */
    assert_int_equal(pt_client_send(c, 0x7E, NULL, 0, &seq), 0);
    assert_int_equal(pt_client_wait(c, seq, 3000, &rep), 0);
    assert_int_equal(pt_error_parse(rep.data, rep.len, &code, &text, &tl), 0);
    assert_int_equal(code, PATCTL_ERR_PROTOCOL);
    assert_int_equal(s.d->st.queries, 0); /* the driver never ran */
    pt_client_close(&c);
    srv_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_boundary),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_identical),
        cmocka_unit_test(test_remote_curve),
        cmocka_unit_test(test_allow_keys),
        cmocka_unit_test_teardown(test_allow_keys_serve, kill_spawned),
        cmocka_unit_test_teardown(test_serve_tcp_identical, kill_spawned),
        cmocka_unit_test(test_overlap_identical),
        cmocka_unit_test(test_serial_identical),
        cmocka_unit_test_teardown(test_server_killed_and_restarted, kill_spawned),
        cmocka_unit_test_teardown(test_delays_nan_short, kill_spawned),
        cmocka_unit_test(test_serial_noise),
        cmocka_unit_test_teardown(test_failed_steps_skipped, kill_spawned),
        cmocka_unit_test_teardown(test_failed_steps_stop_run, kill_spawned),
    };
    if (getenv("PATCTL_TEST_FILTER")) /* e.g. PATCTL_TEST_FILTER='test_failed_*' */
        cmocka_set_test_filter(getenv("PATCTL_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
