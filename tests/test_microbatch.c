/* Training micro-batches (controller/microbatch.c, [train] microbatches):
 * K = 2, 3, 4 give bit-identical parameters to K = 1 on row-exact devices,
 * in-process and behind remote servers (pipelined over lanes there); each
 * physical layer's batch is one query sent in parts (one id, row0 = the
 * slice's first row); a failing part skips the step exactly as K = 1 skips
 * it (nothing applied, the same query ids consumed, so training continues
 * bit-identically); a stop request lets the step in flight finish.
 *
 * Remote devices: the quickstart's two oscillators served by remote_serve
 * (the code of `patctl serve`) in threads of this process over ipc; the
 * served osc266 goes through a wrapper driver that can fail chosen parts
 * and set the stop flag. */
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
#include <unistd.h>
#include <cmocka.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/microbatch.h"
#include "controller/model.h"
#include "controller/rng.h"
#include "controller/train.h"
#include "devices/device.h"
#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/remote/remote.h"

static dataset tr, te;
static FILE *devnull;

static void quiet_log(void *user, const char *dev, int level, const char *msg)
{
    (void)user, (void)dev, (void)level, (void)msg;
}

/* ---- the wrapper driver of the served osc266 ---- */

static volatile sig_atomic_t fail_last_rows; /* fail every query holding row 31 (the batch's last) */
static volatile sig_atomic_t stop_on_part;   /* set train_stop at the next part with row0 > 0 */
static volatile sig_atomic_t train_stop;
static volatile long parts_seen;             /* served queries with row0 > 0 */

static int wrap_run(void *state, const struct patctl_query *q, float *y)
{
    if (q->batch > 0 && q->row0 > 0)
        parts_seen++;
    if (q->batch > 0 && fail_last_rows && q->row0 + q->batch == 32)
        return PATCTL_ERR_DEVICE;
    if (q->batch > 0 && q->row0 > 0 && stop_on_part) {
        stop_on_part = 0;
        train_stop = 1;
    }
    return patctl_driver_oscillators.run(state, q, y);
}

static struct patctl_driver wrap_driver;

/* ---- devices served in threads ---- */

typedef struct srv {
    pthread_t t;
    device *d;
    pt_server *s;
    volatile sig_atomic_t stop;
    serve_opts so;
    char opts[256];
    const struct patctl_driver *drv;
    uint64_t seed;
    serve_stats st;
} srv;

static int srv_open(srv *v, device **d, uint64_t seed, char *err, size_t errlen)
{
    struct patctl_option *o;
    int no = options_parse(v->opts, &o);
    int rc = device_open_driver(d, "served", v->drv, o, no, seed, err, errlen);
    free(o);
    if (!rc) {
        (*d)->retries = 0;
        if (!getenv("PATCTL_TEST_VERBOSE"))
            device_set_logger(*d, quiet_log, NULL);
    }
    return rc;
}

static int srv_reopen(void *user, device **d, uint64_t seed, char *err, size_t errlen)
{
    srv *v = user;
    if (seed == v->seed)
        return 0;
    device *nd;
    int rc = srv_open(v, &nd, seed, err, errlen);
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
    remote_serve(&v->d, v->s, &v->so, &v->stop, 0, &v->st);
    return NULL;
}

static srv S[2];
static char addr[2][128];
static const char *osc_opts[2] = {"n=64,eta=0.1,j_noise=0.2,sigma=0.02,noise_std=0.01,row_exact=1",
                                  "n=266,eta=0.1,j_noise=0.2,sigma=0.02,noise_std=0.01,row_exact=1"};

static void servers_start(void)
{
    for (int i = 0; i < 2; i++) {
        srv *v = &S[i];
        memset(v, 0, sizeof(*v));
        snprintf(v->opts, sizeof(v->opts), "%s", osc_opts[i]);
        v->drv = i == 1 ? &wrap_driver : &patctl_driver_oscillators;
        v->seed = 0;
        char err[512];
        if (srv_open(v, &v->d, 0, err, sizeof(err)))
            fail_msg("device_open: %s", err);
        snprintf(addr[i], sizeof(addr[i]), "ipc:///tmp/patctl-test-%d-mb%d.ipc", (int)getpid(), i);
        if (pt_server_open(&v->s, addr[i], NULL, err, sizeof(err)))
            fail_msg("pt_server_open %s: %s", addr[i], err);
        v->so.driver = "oscillators";
        v->so.reopen = srv_reopen;
        v->so.reopen_user = v;
        v->so.log = getenv("PATCTL_TEST_VERBOSE") ? stderr : devnull;
        assert_int_equal(pthread_create(&v->t, NULL, srv_main, v), 0);
    }
}

static void servers_stop(void)
{
    for (int i = 0; i < 2; i++) {
        S[i].stop = 1;
        pthread_join(S[i].t, NULL);
        pt_server_close(&S[i].s);
        device_close(&S[i].d);
    }
}

/* ---- a training run ---- */

enum { MAX_STEPS = 16 };

/* Every step's outcome and a hash of the parameters after it. */
typedef struct watch {
    long n_params;
    float *params;                  /* [n_params] after the last step */
    uint64_t hash[MAX_STEPS];       /* after step view k (applied or skipped) */
    int skipped[MAX_STEPS];
    int n;
    int bad;                        /* a skipped step changed the parameters */
    int arm_fail_after, arm_stop_after;  /* applied steps; 0 = never */
} watch;

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static void on_step(void *user, const train_step_view *s)
{
    watch *w = user;
    if (!w->params) {
        w->n_params = s->n_params;
        w->params = malloc(sizeof(float) * (size_t)s->n_params);
        assert_non_null(w->params);
    } else if (s->skipped && memcmp(w->params, s->params, sizeof(float) * (size_t)w->n_params)) {
        w->bad++;
    }
    memcpy(w->params, s->params, sizeof(float) * (size_t)w->n_params);
    if (w->n < MAX_STEPS) {
        w->hash[w->n] = fnv(s->params, sizeof(float) * (size_t)s->n_params);
        w->skipped[w->n] = s->skipped;
    }
    w->n++;
    fail_last_rows = w->arm_fail_after > 0 && !s->skipped && s->steps == w->arm_fail_after;
    if (w->arm_stop_after > 0 && !s->skipped && s->steps == w->arm_stop_after)
        stop_on_part = 1;
}

typedef struct run_out {
    int rc;
    long steps, skipped;
    double acc;
    watch w;
    uint64_t queries;
    char err[1024];
} run_out;

static void run_free(run_out *o) { free(o->w.params); }

static void train_once(int remote, train_mode mode, int K, int fail_after, int stop_after, run_out *o)
{
    run_config c;
    config_quickstart(&c);
    c.seed = 5;
    c.mode = mode;
    c.epochs = 2;
    c.batch = 32;
    c.eval_batch = 20;
    c.microbatches = K;
    c.max_failed_steps = 3;
    for (int i = 0; i < 2; i++) {
        if (remote) {
            snprintf(c.devices[i].driver, sizeof(c.devices[i].driver), "remote");
            snprintf(c.devices[i].options, sizeof(c.devices[i].options), "endpoint=%s,retries=0", addr[i]);
        } else {
            snprintf(c.devices[i].options, sizeof(c.devices[i].options), "%s", osc_opts[i]);
        }
    }
    static train_result res;
    memset(o, 0, sizeof(*o));
    o->w.arm_fail_after = fail_after;
    o->w.arm_stop_after = stop_after;
    train_stop = 0;
    stop_on_part = 0;
    fail_last_rows = 0;
    train_options to = {.quiet = 1, .stop = &train_stop, .on_step = on_step, .on_step_user = &o->w};
    o->rc = train_run(&c, &tr, &te, &to, &res, o->err, sizeof(o->err));
    fail_last_rows = 0;
    o->steps = res.steps;
    o->skipped = res.skipped_steps;
    o->acc = res.test_accuracy;
    o->queries = res.train_dev.queries;
}

static void expect_same(const run_out *a, const run_out *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->steps, b->steps);
    assert_int_equal(a->skipped, b->skipped);
    assert_int_equal(a->w.n, b->w.n);
    assert_int_equal(a->w.n_params, b->w.n_params);
    assert_memory_equal(a->w.hash, b->w.hash, sizeof(a->w.hash));
    assert_memory_equal(a->w.params, b->w.params, sizeof(float) * (size_t)a->w.n_params);
    assert_true(a->acc == b->acc);
    assert_int_equal(a->queries, b->queries); /* a query in parts counts once */
}

/* ---- tests ---- */

/* The forward pass itself: K slices give the K = 1 logits bit for bit, and
 * every physical layer's batch is one query id sent in K parts. */
typedef struct parts_rec {
    uint64_t ids[64];
    int part_rows[64];
    int n;
} parts_rec;

static void rec_journal(void *user, const device *d, const device_journal_entry *e)
{
    (void)d;
    parts_rec *r = user;
    if (e->batch > 0 && r->n < 64) {
        r->ids[r->n] = e->id;
        r->part_rows[r->n] = e->part_row;
        r->n++;
    }
}

static void test_forward_parts(void **state)
{
    (void)state;
    run_config c;
    config_quickstart(&c);
    for (int i = 0; i < 2; i++)
        snprintf(c.devices[i].options, sizeof(c.devices[i].options), "%s", osc_opts[i]);
    float *ref = NULL;
    for (int K = 1; K <= 4; K++) {
        rng_streams rng;
        assert_int_equal(rng_streams_init(&rng, 7), 0);
        static model m;
        char err[1024] = "";
        if (model_build(&m, &c, tr.h, tr.w, 32, &rng, err, sizeof(err)))
            fail_msg("model_build: %s", err);
        assert_int_equal(microbatch_lanes(&m, K), 1); /* in-process: one after the other */
        parts_rec rec[2] = {0};
        for (int i = 0; i < 2; i++)
            device_set_journal(m.devices[i], rec_journal, &rec[i]);
        int rc = model_forward_micro(&m, tr.x, 30, PASS_PAT, K, err, sizeof(err));
        if (rc)
            fail_msg("forward K=%d: %s", K, err);
        size_t nz = sizeof(float) * 30 * (size_t)m.classes;
        if (!ref) {
            ref = malloc(nz);
            memcpy(ref, model_logits(&m), nz);
        } else {
            assert_memory_equal(ref, model_logits(&m), nz);
        }
        for (int i = 0; i < 2; i++) {
            assert_int_equal(rec[i].n, K);
            int rows = i == 0 ? 4 : 1; /* rows per sample at each physical layer */
            for (int k = 0; k < K; k++) {
                assert_int_equal(rec[i].ids[k], rec[i].ids[0]);
                assert_int_equal(rec[i].part_rows[k], (k * 30 / K) * rows);
            }
            assert_int_equal(m.devices[i]->sent_B, 30 * rows);
            assert_int_equal(m.devices[i]->st.queries, 1);
        }
        model_free(&m);
        rng_streams_free(&rng);
    }
    free(ref);
}

/* PAT, ideal and SPSA in-process: K = 2, 3, 4 train exactly as K = 1. */
static void test_inprocess_identical(void **state)
{
    (void)state;
    train_mode modes[3] = {MODE_PAT, MODE_IDEAL, MODE_SPSA};
    for (int mi = 0; mi < 3; mi++) {
        run_out a, b;
        train_once(0, modes[mi], 1, 0, 0, &a);
        assert_int_equal(a.rc, 0);
        assert_int_equal(a.steps, 6);
        for (int K = 2; K <= (modes[mi] == MODE_PAT ? 4 : 2); K++) {
            train_once(0, modes[mi], K, 0, 0, &b);
            if (b.rc)
                fail_msg("mode %d K=%d: %s", (int)modes[mi], K, b.err);
            expect_same(&a, &b);
            run_free(&b);
        }
        printf("  mode %d: K=1..%d identical, accuracy %.3f\n", (int)modes[mi], modes[mi] == MODE_PAT ? 4 : 2, a.acc);
        run_free(&a);
    }
}

/* Behind `serve` (pipelined over lanes): K = 2, 4 train exactly as K = 1,
 * and the servers saw parts. */
static void test_remote_identical(void **state)
{
    (void)state;
    servers_start();
    run_out a, b;
    train_once(1, MODE_PAT, 1, 0, 0, &a);
    if (a.rc)
        fail_msg("K=1: %s", a.err);
    long p0 = parts_seen;
    for (int K = 2; K <= 4; K += 2) {
        train_once(1, MODE_PAT, K, 0, 0, &b);
        if (b.rc)
            fail_msg("K=%d: %s", K, b.err);
        expect_same(&a, &b);
        run_free(&b);
    }
    assert_true(parts_seen > p0);
    printf("  remote K=1,2,4 identical (%ld parts served), accuracy %.3f\n", parts_seen - p0, a.acc);
    run_free(&a);
    servers_stop();
}

/* The query of osc266 holding the batch's last row fails (every attempt)
 * for the step after step 2: with K = 1 the whole query fails, with K = 2, 4
 * only the last part.  Either way the step is skipped with nothing applied
 * and the same query ids used, so the runs stay identical. */
static void test_part_fault_skips_step(void **state)
{
    (void)state;
    servers_start();
    run_out a, b;
    train_once(1, MODE_PAT, 1, 2, 0, &a);
    if (a.rc)
        fail_msg("K=1: %s", a.err);
    assert_int_equal(a.skipped, 1);
    assert_int_equal(a.steps, 5);
    assert_int_equal(a.w.skipped[2], 1);
    assert_int_equal(a.w.bad, 0);
    for (int K = 2; K <= 4; K += 2) {
        train_once(1, MODE_PAT, K, 2, 0, &b);
        if (b.rc)
            fail_msg("K=%d: %s", K, b.err);
        assert_int_equal(b.w.skipped[2], 1);
        assert_int_equal(b.w.bad, 0);
        expect_same(&a, &b);
        run_free(&b);
    }
    run_free(&a);
    servers_stop();
}

/* A stop request during a step (set by the device while a later part is
 * served): the step in flight completes and is applied, then the run stops,
 * with the parameters the uninterrupted run had after that step. */
static void test_stop_mid_step(void **state)
{
    (void)state;
    servers_start();
    run_out a, b;
    train_once(1, MODE_PAT, 1, 0, 0, &a);
    if (a.rc)
        fail_msg("K=1: %s", a.err);
    train_once(1, MODE_PAT, 2, 0, 3, &b);
    assert_int_equal(b.rc, PATCTL_ERR_INTERRUPTED);
    assert_int_equal(b.steps, 4);
    assert_int_equal(b.w.n, 4);
    assert_memory_equal(a.w.hash, b.w.hash, 4 * sizeof(uint64_t));
    run_free(&a);
    run_free(&b);
    servers_stop();
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    devnull = fopen("/dev/null", "w");
    wrap_driver = patctl_driver_oscillators;
    wrap_driver.run = wrap_run;
    if (!devnull || dataset_synthetic(&tr, 96, 14, 11) || dataset_synthetic(&te, 40, 14, 12))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dataset_free(&tr);
    dataset_free(&te);
    fclose(devnull);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_parts),
        cmocka_unit_test(test_inprocess_identical),
        cmocka_unit_test(test_remote_identical),
        cmocka_unit_test(test_part_fault_skips_step),
        cmocka_unit_test(test_stop_mid_step),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
