/* Pipelined evaluation (controller/eval_pipe.c): several test batches in
 * flight over remote devices give exactly the sequential results (accuracy,
 * confusion matrix, every device's query ids and hence its noise), faults
 * are retried and reported as sequentially, a stop request stops it, and
 * (printed only) the wall time saved with emulated device latency.
 *
 * The devices are the quickstart's two oscillators, each served by
 * remote_serve (the code of `patctl serve`) in a thread of this process
 * over ipc, with seeded measurement noise (noise_std), so a query answered
 * under another id would give other numbers. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/eval_pipe.h"
#include "controller/model.h"
#include "controller/rng.h"
#include "controller/train.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/remote/remote.h"

/* ---- a device served in a thread ---- */

typedef struct srv {
    pthread_t t;
    device *d;
    pt_server *s;
    volatile sig_atomic_t stop;
    serve_opts so;
    char opts[256];
    uint64_t seed;
    serve_stats st;
} srv;

static FILE *devnull;

static void quiet_log(void *user, const char *dev, int level, const char *msg)
{
    (void)user, (void)dev, (void)level, (void)msg;
}

/* Faults are expected here: no messages unless PATCTL_TEST_VERBOSE; no
 * retries inside device_run, so that a dropped query fails its batch. */
static void quiet(device *d)
{
    d->retries = 0;
    if (!getenv("PATCTL_TEST_VERBOSE"))
        device_set_logger(d, quiet_log, NULL);
}

static int srv_reopen(void *user, device **d, uint64_t seed, char *err, size_t errlen)
{
    srv *v = user;
    if (seed == v->seed)
        return 0;
    struct patctl_option *o;
    int no = options_parse(v->opts, &o);
    device *nd;
    int rc = device_open(&nd, "served", "oscillators", o, no, seed, err, errlen);
    free(o);
    if (rc)
        return rc;
    device_close(d);
    *d = nd;
    quiet(nd);
    v->seed = seed;
    return 0;
}

static void *srv_main(void *arg)
{
    srv *v = arg;
    remote_serve(&v->d, v->s, &v->so, &v->stop, 0, &v->st);
    return NULL;
}

static void srv_start(srv *v, const char *opts, const char *addr)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->opts, sizeof(v->opts), "%s", opts);
    struct patctl_option *o;
    int no = options_parse(opts, &o);
    char err[512];
    int rc = device_open(&v->d, "served", "oscillators", o, no, 0, err, sizeof(err));
    free(o);
    if (rc)
        fail_msg("device_open: %s", err);
    quiet(v->d);
    if (pt_server_open(&v->s, addr, NULL, err, sizeof(err)))
        fail_msg("pt_server_open %s: %s", addr, err);
    v->so.driver = "oscillators";
    v->so.reopen = srv_reopen;
    v->so.reopen_user = v;
    v->so.log = getenv("PATCTL_TEST_VERBOSE") ? stderr : devnull;
    assert_int_equal(pthread_create(&v->t, NULL, srv_main, v), 0);
}

static void srv_stop(srv *v)
{
    v->stop = 1;
    pthread_join(v->t, NULL);
    pt_server_close(&v->s);
    device_close(&v->d);
}

/* ---- the model over the two servers ---- */

static dataset te;
static srv S[2];
static char addr[2][128];
static const char *osc_base[2] = {"n=64,eta=0.1,j_noise=0.2,sigma=0.02,noise_std=0.01",
                                  "n=266,eta=0.1,j_noise=0.2,sigma=0.02,noise_std=0.01"};

/* (Re)start the servers, device i with extra options ex[i] (may be NULL). */
static void servers(const char *ex0, const char *ex1)
{
    const char *ex[2] = {ex0, ex1};
    for (int i = 0; i < 2; i++) {
        char o[256];
        snprintf(o, sizeof(o), "%s%s%s", osc_base[i], ex[i] ? "," : "", ex[i] ? ex[i] : "");
        snprintf(addr[i], sizeof(addr[i]), "ipc:///tmp/patctl-test-%d-ep%d.ipc", (int)getpid(), i);
        srv_start(&S[i], o, addr[i]);
    }
}

static void servers_stop(void)
{
    for (int i = 0; i < 2; i++)
        srv_stop(&S[i]);
}

/* Every query a device was sent, by query id: a hash of rc, x and y. */
enum { MAX_IDS = 128 };
typedef struct journal_rec {
    int n_in, n_out;
    uint64_t hash[MAX_IDS];
    int bad;                        /* an id out of range */
} journal_rec;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static void rec_journal(void *user, const device *d, const device_journal_entry *e)
{
    journal_rec *r = user;
    if (e->id >= MAX_IDS) {
        r->bad = 1;
        return;
    }
    uint64_t h = fnv(14695981039346656037ULL, &e->rc, sizeof(e->rc));
    h = fnv(h, &e->batch, sizeof(e->batch));
    if (e->x)
        h = fnv(h, e->x, sizeof(float) * (size_t)e->batch * (size_t)d->desc.n_in);
    if (e->y)
        h = fnv(h, e->y, sizeof(float) * (size_t)e->batch * (size_t)d->desc.n_out);
    r->hash[e->id] = h;
}

typedef struct outcome {
    journal_rec rec[2];
    int rc;
    double acc;
    int conf[10][10];
    long retries;
    uint64_t next_id[2], queries[2];
    double seconds;
    char err[1024];
} outcome;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A fresh model (query ids from 0) over the servers, evaluated once. */
static void eval_once(int inflight, int max_tries, int eval_batch, volatile sig_atomic_t *stop, outcome *o)
{
    run_config c;
    config_quickstart(&c);
    c.seed = 3;
    for (int i = 0; i < 2; i++) {
        snprintf(c.devices[i].driver, sizeof(c.devices[i].driver), "remote");
        snprintf(c.devices[i].options, sizeof(c.devices[i].options), "endpoint=%s,retries=0", addr[i]);
    }
    rng_streams rng;
    assert_int_equal(rng_streams_init(&rng, c.seed), 0);
    static model m;
    char err[1024] = "";
    int rc = model_build(&m, &c, te.h, te.w, eval_batch, &rng, err, sizeof(err));
    if (rc)
        fail_msg("model_build: %s", err);
    assert_true(eval_pipe_usable(&m));
    for (int i = 0; i < m.n_devices; i++)
        quiet(m.devices[i]);
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < m.n_devices; i++)
        device_set_journal(m.devices[i], rec_journal, &o->rec[i]);
    double t0 = now();
    o->rc = train_evaluate_inflight(&m, &te, eval_batch, inflight, max_tries, &o->retries, stop, &o->acc, o->conf,
                                    o->err, sizeof(o->err));
    o->seconds = now() - t0;
    for (int i = 0; i < 2; i++)
        o->next_id[i] = m.devices[i]->next_id, o->queries[i] = m.devices[i]->st.queries;
    model_free(&m);
    rng_streams_free(&rng);
}

static void expect_same(const outcome *a, const outcome *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_true(a->acc == b->acc);
    assert_memory_equal(a->conf, b->conf, sizeof(a->conf));
    assert_int_equal(a->retries, b->retries);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a->next_id[i], b->next_id[i]);
        assert_int_equal(a->queries[i], b->queries[i]);
        /* every query id: the same inputs, the same (noisy) outputs */
        assert_false(a->rec[i].bad || b->rec[i].bad);
        assert_memory_equal(a->rec[i].hash, b->rec[i].hash, sizeof(a->rec[i].hash));
    }
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    devnull = fopen("/dev/null", "w");
    return devnull && dataset_synthetic(&te, 100, 14, 12) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    dataset_free(&te);
    fclose(devnull);
    return 0;
}

/* (1) 1, 2, 3 and 8 lanes: identical accuracy, confusion matrix, query ids. */
static void test_identical(void **state)
{
    (void)state;
    servers(NULL, NULL);
    static outcome seq, pip;
    eval_once(1, 1, 10, NULL, &seq);
    assert_int_equal(seq.rc, 0);
    assert_int_equal(seq.queries[0], 10);
    int lanes[] = {2, 3, 8};
    for (int k = 0; k < 3; k++) {
        eval_once(lanes[k], 1, 10, NULL, &pip);
        printf("  %d lanes: accuracy %.3f (sequential %.3f), query ids %llu/%llu\n", lanes[k], pip.acc, seq.acc,
               (unsigned long long)pip.next_id[0], (unsigned long long)pip.next_id[1]);
        expect_same(&seq, &pip);
    }
    /* a last batch smaller than the others */
    eval_once(1, 1, 30, NULL, &seq);
    eval_once(2, 1, 30, NULL, &pip);
    expect_same(&seq, &pip);
    servers_stop();
}

/* (2) with emulated device latency: wall time, printed only. */
static void test_latency(void **state)
{
    (void)state;
    servers("latency_ms=20", "latency_ms=20");
    static outcome seq, pip;
    eval_once(1, 1, 10, NULL, &seq);
    eval_once(2, 1, 10, NULL, &pip);
    expect_same(&seq, &pip);
    printf("  100 images, 10 batches, 2 devices with latency_ms=20 behind serve: sequential %.3f s, "
           "2 in flight %.3f s (%.2fx)\n", seq.seconds, pip.seconds, seq.seconds / pip.seconds);
    servers_stop();
}

/* (3) faults: retried batches and a failed evaluation as sequentially. */
static void test_faults(void **state)
{
    (void)state;
    static outcome seq, pip;
    /* the first device drops queries: a failed call does not pass its turn
     * on, so even the retries are the sequential ones, query for query */
    servers("dropout=0.3", NULL);
    eval_once(1, 8, 10, NULL, &seq);
    eval_once(2, 8, 10, NULL, &pip);
    printf("  dropout on the first device: %ld batches retried, accuracy %.3f / %.3f\n", seq.retries, seq.acc,
           pip.acc);
    assert_int_equal(seq.rc, 0);
    assert_true(seq.retries > 0);
    expect_same(&seq, &pip);
    servers_stop();

    /* the second device drops queries: retried, every image counted (the
     * retry's queries may get other ids than sequentially) */
    servers(NULL, "dropout=0.3");
    eval_once(2, 8, 10, NULL, &pip);
    printf("  dropout on the second device: %ld batches retried, accuracy %.3f\n", pip.retries, pip.acc);
    assert_int_equal(pip.rc, 0);
    assert_true(pip.retries > 0);
    assert_true(pip.acc >= 0 && pip.acc <= 1);
    long n = 0;
    for (int a = 0; a < 10; a++)
        for (int b = 0; b < 10; b++)
            n += pip.conf[a][b];
    assert_int_equal(n, te.n);
    servers_stop();

    /* the second device (nearly) always drops: the evaluation fails after max_tries
     * tries of the first batch, with the sequential error */
    servers(NULL, "dropout=0.999");
    eval_once(1, 3, 10, NULL, &seq);
    eval_once(3, 3, 10, NULL, &pip);
    printf("  dead device: %s\n", pip.err);
    assert_int_not_equal(seq.rc, 0);
    assert_int_equal(pip.rc, seq.rc);
    assert_int_equal(pip.retries, seq.retries);
    assert_string_equal(pip.err, seq.err);
    assert_non_null(strstr(pip.err, "images 0-9 failed 3 times in a row"));
    servers_stop();
}

/* A stop request: interrupted, cleanly. */
static void test_stop(void **state)
{
    (void)state;
    servers(NULL, NULL);
    static outcome o;
    volatile sig_atomic_t stop = 1;
    eval_once(2, 1, 10, &stop, &o);
    assert_int_equal(o.rc, PATCTL_ERR_INTERRUPTED);
    assert_non_null(strstr(o.err, "interrupted after 0 of 100 images"));
    servers_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
