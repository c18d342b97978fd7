/* The run store: the device journal (all / every N / off, settings stored
 * once, faults and retries recorded), checkpoints (round trip, pruning),
 * stop records, rewind for resume, and the .npy writer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "controller/config.h"
#include "controller/npy.h"
#include "controller/runstore.h"
#include "devices/device.h"

/* ---- a tiny test driver: y = x + w; query ids 1, 4, 7, ... fail once ---- */
typedef struct {
    int fail_mod;  /* ids with id % fail_mod == 1 fail (0 = never) */
} tdrv;

static int t_open(void **state, const struct patctl_option *o, int no, struct patctl_device_desc *d,
                  char *err, size_t errlen)
{
    (void)err, (void)errlen;
    tdrv *t = calloc(1, sizeof(*t));
    for (int i = 0; i < no; i++)
        if (strcmp(o[i].key, "fail_mod") == 0)
            t->fail_mod = atoi(o[i].value);
    memset(d, 0, sizeof(*d));
    snprintf(d->model, sizeof(d->model), "adder");
    d->n_in = d->n_out = 4;
    d->in_lo = -10, d->in_hi = 10;
    d->n_blocks = 1;
    d->blocks[0] = (struct patctl_param_block){.name = "w", .unit = "V", .rows = 4, .cols = 1, .lo = -1,
                                               .hi = 1, .safe = 0};
    *state = t;
    return 0;
}
static int t_run(void *state, const struct patctl_query *q, float *y)
{
    tdrv *t = state;
    if (t->fail_mod && q->id % (uint64_t)t->fail_mod == 1)
        return PATCTL_ERR_TIMEOUT;
    for (int b = 0; b < q->batch; b++)
        for (int i = 0; i < 4; i++)
            y[b * 4 + i] = q->x[b * 4 + i] + q->theta[i];
    return 0;
}
static int t_safe(void *state) { (void)state; return 0; }
static void t_close(void *state) { free(state); }
static const struct patctl_driver tdriver = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION, .name = "adder", .summary = "test", .open = t_open,
    .run = t_run, .make_safe = t_safe, .close = t_close};

static char dir[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/patctl-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static runstore *new_store(const char *name)
{
    char d[200], err[512];
    snprintf(d, sizeof(d), "%s/%s", dir, name);
    mkdir(d, 0777);
    runstore *rs = NULL;
    if (runstore_create(&rs, d, err, sizeof(err)))
        fail_msg("%s", err);
    run_config c;
    config_quickstart(&c);
    assert_int_equal(runstore_write_run(rs, &c, "[data]\n", "test"), 0);
    assert_int_equal(runstore_session_begin(rs, "train", "test", 0), 0);
    /* a second store in the same place is refused */
    runstore *again = NULL;
    assert_int_equal(runstore_create(&again, d, err, sizeof(err)), PATCTL_ERR_STATE);
    assert_non_null(strstr(err, "--resume"));
    return rs;
}

static long long one(runstore *rs, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    assert_int_equal(sqlite3_prepare_v2(runstore_db(rs), sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static device *open_adder(const char *opts)
{
    struct patctl_option o[1] = {{"fail_mod", opts}};
    device *d = NULL;
    char err[256];
    assert_int_equal(device_open_driver(&d, "add", &tdriver, o, opts ? 1 : 0, 0, err, sizeof(err)), 0);
    return d;
}

static void test_journal_all(void **state)
{
    (void)state;
    runstore *rs = new_store("all");
    device *d = open_adder(NULL);
    assert_int_equal(runstore_attach(rs, d, 0, JOURNAL_ALL, 1), 0);
    float A[4] = {0.1f, 0.2f, 0.3f, 0.4f}, Bt[4] = {-0.5f, 0.5f, 0, 1};
    float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8];
    runstore_set_context(rs, 7, "train");
    assert_int_equal(device_run(d, A, x, 2, y), 0);
    assert_int_equal(device_run(d, A, x, 1, y), 0);
    assert_int_equal(device_run(d, Bt, x, 2, y), 0);
    assert_int_equal(runstore_commit(rs), 0);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query"), 3);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM setting"), 2); /* A once, B once */
    assert_int_equal(one(rs, "SELECT COUNT(DISTINCT setting) FROM query"), 2);
    assert_int_equal(one(rs, "SELECT MIN(step) FROM query"), 7);
    /* the arrays are what was sent and measured, little-endian float32 */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(runstore_db(rs), "SELECT q.x, q.y, s.theta, q.batch, q.t_end >= q.t_start"
                                        " FROM query q JOIN setting s ON s.id = q.setting ORDER BY q.id DESC LIMIT 1",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    float bx[8], by[8], bt[4];
    assert_int_equal(sqlite3_column_bytes(st, 0), 32);
    runstore_f32_from_le(bx, sqlite3_column_blob(st, 0), 8);
    runstore_f32_from_le(by, sqlite3_column_blob(st, 1), 8);
    runstore_f32_from_le(bt, sqlite3_column_blob(st, 2), 4);
    const unsigned char *raw = sqlite3_column_blob(st, 0);
    assert_int_equal(raw[3], 0x3f); /* 1.0f little-endian: 00 00 80 3f */
    assert_int_equal(raw[2], 0x80);
    for (int i = 0; i < 8; i++) {
        assert_true(bx[i] == x[i]);
        assert_true(by[i] == x[i] + Bt[i % 4]);
    }
    for (int i = 0; i < 4; i++)
        assert_true(bt[i] == Bt[i]);
    assert_int_equal(sqlite3_column_int(st, 3), 2);
    assert_int_equal(sqlite3_column_int(st, 4), 1);
    sqlite3_finalize(st);
    device_close(&d);
    runstore_close(&rs);
}

static void test_journal_every_and_off(void **state)
{
    (void)state;
    runstore *rs = new_store("every");
    device *d0 = open_adder(NULL), *d1 = open_adder(NULL);
    assert_int_equal(runstore_attach(rs, d0, 0, JOURNAL_EVERY, 3), 0);
    assert_int_equal(runstore_attach(rs, d1, 1, JOURNAL_OFF, 1), 0);
    float w[4] = {0}, x[4] = {1, 1, 1, 1}, y[4];
    for (int i = 0; i < 10; i++) {
        w[0] = 0.01f * (float)i; /* a new setting each query */
        assert_int_equal(device_run(d0, w, x, 1, y), 0);
        assert_int_equal(device_run(d1, w, x, 1, y), 0);
    }
    runstore_commit(rs);
    /* every 3rd of 10: queries 1, 4, 7, 10 */
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 0"), 4);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM setting WHERE device = 0"), 4);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 1"), 0);
    device_close(&d0);
    device_close(&d1);
    runstore_close(&rs);
}

/* Faults and retries are journaled (even with journal off) and logged. */
static void test_journal_faults(void **state)
{
    (void)state;
    runstore *rs = new_store("faults");
    device *d = open_adder("3"), *e = open_adder("3");
    assert_int_equal(runstore_attach(rs, d, 0, JOURNAL_ALL, 1), 0);
    assert_int_equal(runstore_attach(rs, e, 1, JOURNAL_OFF, 1), 0);
    float w[4] = {0}, x[4] = {1, 2, 3, 4}, y[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(device_run(d, w, x, 1, y), 0);
        assert_int_equal(device_run(e, w, x, 1, y), 0);
    }
    runstore_commit(rs);
    /* ids 0 ok, 1 fail -> 2 ok (retry), 3 ok, 4 fail -> 5 ok: 6 rows, 2 faults */
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 0"), 6);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 0 AND rc != 0"), 2);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 0 AND rc != 0 AND y IS NULL AND attempt = 0"), 2);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 0 AND attempt = 1 AND rc = 0"), 2);
    assert_int_equal(one(rs, "SELECT qid FROM query WHERE device = 0 AND rc != 0 ORDER BY id LIMIT 1"), 1);
    /* journal off: only the faults */
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 1"), 2);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM query WHERE device = 1 AND rc = 0"), 0);
    /* and the device's messages are in the log */
    assert_true(one(rs, "SELECT COUNT(*) FROM log WHERE level = 'fault'") >= 4);
    assert_true(one(rs, "SELECT COUNT(*) FROM log WHERE message LIKE '%retrying%'") >= 4);
    device_close(&d);
    device_close(&e);
    runstore_close(&rs);
}

static void fill_ck(checkpoint *ck, long step, int epoch, long pos, float *p, float *m, float *v, unsigned char *rng,
                    uint32_t *order, float *theta)
{
    memset(ck, 0, sizeof(*ck));
    ck->step = step, ck->epoch = epoch, ck->pos = pos;
    ck->n_params = 5, ck->params = p, ck->opt_m = m, ck->opt_v = v, ck->opt_t = (uint64_t)step;
    ck->rng_len = 7, ck->rng = rng;
    ck->n_order = 3, ck->order = order;
    ck->loss_sum = 1.0 / 3.0, ck->hits = 11, ck->seen = 20, ck->epoch_steps = 2;
    ck->n_devices = 1;
    ck->dev[0] = (ckpt_device){.next_id = 1000 + (uint64_t)step, .has_last = 1, .n_theta = 2, .last_theta = theta};
    ck->dev[0].st.queries = 42;
}

static void test_checkpoints(void **state)
{
    (void)state;
    runstore *rs = new_store("ck");
    float p[5] = {1, 2, 3, 4, 5}, m[5] = {0.5f, 0, 0, 0, -1}, v[5] = {1e-8f, 0, 0, 0, 3}, th[2] = {0.25f, -0.75f};
    unsigned char rng[7] = {1, 2, 3, 4, 5, 6, 7};
    uint32_t order[3] = {2, 0, 1};
    checkpoint ck, back;
    char err[256];
    assert_int_equal(runstore_checkpoint_load(rs, 0, &back, err, sizeof(err)), PATCTL_ERR_NOT_FOUND);
    /* mid-epoch checkpoints at steps 1..5, an epoch end at 6, mid at 7 */
    for (long s = 1; s <= 7; s++) {
        p[0] = (float)s;
        fill_ck(&ck, s, s >= 6 ? 1 : 0, s == 6 ? 0 : s, p, m, v, rng, order, th);
        assert_int_equal(runstore_checkpoint_save(rs, &ck, 2), 0);
        assert_true(ck.id > 0);
    }
    /* kept: the two newest mid-epoch ones (5, 7) and the epoch end (6) */
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM checkpoint"), 3);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM checkpoint WHERE step IN (5, 6, 7)"), 3);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM checkpoint_device"), 3);
    assert_int_equal(runstore_checkpoint_load(rs, 0, &back, err, sizeof(err)), 0);
    assert_int_equal(back.step, 7);
    assert_true(back.params[0] == 7.0f && back.params[4] == 5.0f);
    assert_memory_equal(back.opt_m, m, sizeof(m));
    assert_memory_equal(back.opt_v, v, sizeof(v));
    assert_int_equal(back.opt_t, 7);
    assert_int_equal(back.rng_len, 7);
    assert_memory_equal(back.rng, rng, 7);
    assert_int_equal(back.n_order, 3);
    assert_memory_equal(back.order, order, sizeof(order));
    assert_true(back.loss_sum == 1.0 / 3.0);
    assert_int_equal(back.hits, 11);
    assert_int_equal(back.n_devices, 1);
    assert_int_equal(back.dev[0].next_id, 1007);
    assert_int_equal(back.dev[0].st.queries, 42);
    assert_memory_equal(back.dev[0].last_theta, th, sizeof(th));
    int64_t epoch_end = one(rs, "SELECT id FROM checkpoint WHERE epoch_end = 1");
    checkpoint_free(&back);
    assert_int_equal(runstore_checkpoint_load(rs, epoch_end, &back, err, sizeof(err)), 0);
    assert_int_equal(back.step, 6);
    assert_int_equal(back.pos, 0);
    checkpoint_free(&back);
    assert_int_equal(runstore_checkpoint_load(rs, 99999, &back, err, sizeof(err)), PATCTL_ERR_NOT_FOUND);
    runstore_close(&rs);
}

static void test_stop_and_rewind(void **state)
{
    (void)state;
    runstore *rs = new_store("stop");
    for (long s = 1; s <= 10; s++) {
        step_metrics sm = {.step = s, .epoch = 1 + (s > 5), .batch = 4, .loss = 1.0 / (double)s};
        assert_int_equal(runstore_step(rs, &sm), 0);
    }
    epoch_metrics em = {.epoch = 1, .steps = 5, .loss = 0.5, .test_accuracy = -1};
    assert_int_equal(runstore_epoch(rs, &em), 0);
    em.epoch = 2;
    assert_int_equal(runstore_epoch(rs, &em), 0);
    runstore_commit(rs);
    /* a session that ends without a stop record (killed) */
    runstore_close(&rs);
    char d[200], err[256];
    snprintf(d, sizeof(d), "%s/stop", dir);
    assert_int_equal(runstore_open(&rs, d, 1, err, sizeof(err)), 0);
    assert_false(runstore_finished(rs));
    assert_int_equal(runstore_close_dangling(rs), 1);
    assert_int_equal(one(rs, "SELECT COUNT(*) FROM session WHERE status = 'fail' AND reason LIKE '%killed%'"), 1);
    assert_int_equal(runstore_session_begin(rs, "resume", "test", 1), 0);
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    ck.step = 5, ck.epoch = 1, ck.n_devices = 0;
    assert_int_equal(runstore_rewind(rs, &ck), 0);
    assert_int_equal(one(rs, "SELECT MAX(step) FROM step"), 5);
    assert_int_equal(one(rs, "SELECT MAX(epoch) FROM epoch"), 1);
    epoch_metrics back[2];
    memset(back, 0, sizeof(back));
    assert_int_equal(runstore_epochs(rs, back, 2), 1);
    assert_true(back[0].loss == 0.5 && back[0].test_accuracy < 0);
    runstore_stop stop = {.status = "success", .steps = 10, .epochs_done = 2, .test_accuracy = 0.75,
                          .devices_safe = 1};
    stop.dev.queries = 123;
    assert_int_equal(runstore_session_end(rs, &stop), 0);
    assert_true(runstore_finished(rs));
    assert_int_equal(one(rs, "SELECT device_queries FROM session WHERE kind = 'resume'"), 123);
    runstore_close(&rs);
    /* a read-only open of something that is not a run store is refused */
    snprintf(d, sizeof(d), "%s/not-a-store.sqlite", dir);
    FILE *f = fopen(d, "w");
    fputs("hello", f);
    fclose(f);
    assert_int_not_equal(runstore_open(&rs, d, 0, err, sizeof(err)), 0);
    printf("  %s\n", err);
}

static void test_npy_header(void **state)
{
    (void)state;
    char path[200];
    snprintf(path, sizeof(path), "%s/a.npy", dir);
    float v[6] = {1, 2, 3, 4, 5, 6.5f};
    assert_int_equal(npy_save_f32(path, v, 2, 3), 0);
    FILE *f = fopen(path, "rb");
    unsigned char h[256];
    size_t n = fread(h, 1, sizeof(h), f);
    fclose(f);
    assert_memory_equal(h, "\x93NUMPY\x01\x00", 8);
    int hlen = h[8] | h[9] << 8;
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(n, (size_t)(10 + hlen + 24)); /* then 6 float32 */
    assert_int_equal(h[10 + hlen - 1], '\n');
    char dict[256];
    memcpy(dict, h + 10, (size_t)hlen);
    dict[hlen] = '\0';
    printf("  header: %s", dict);
    assert_non_null(strstr(dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert_true(h[10 + hlen + 20] == 0 && h[10 + hlen + 23] == 0x40); /* 6.5f = 0x40d00000 LE */
    /* a 1-D shape is written "(n,)" */
    snprintf(path, sizeof(path), "%s/b.npy", dir);
    assert_int_equal(npy_save_f32(path, v, 6, 0), 0);
    f = fopen(path, "rb");
    n = fread(h, 1, sizeof(h), f);
    fclose(f);
    h[n < sizeof(h) ? n : sizeof(h) - 1] = 0;
    assert_non_null(strstr((const char *)h + 10, "'shape': (6,), }"));
    if (access("/usr/bin/python3", X_OK) == 0 && system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c \"import numpy as np; a = np.load('%s/a.npy'); b = np.load('%s/b.npy');"
                 " assert a.shape == (2, 3) and a.dtype == np.float32 and a[1, 2] == 6.5, a;"
                 " assert b.shape == (6,) and (b == a.ravel()).all()\"", dir, dir);
        assert_int_equal(system(cmd), 0);
        printf("  numpy reads them\n");
    } else {
        printf("  SKIPPED numpy read-back: /usr/bin/python3 with numpy not installed\n");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_all),
        cmocka_unit_test(test_journal_every_and_off),
        cmocka_unit_test(test_journal_faults),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_stop_and_rewind),
        cmocka_unit_test(test_npy_header),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
