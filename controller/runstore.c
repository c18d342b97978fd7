/* The run store on SQLite (see runstore.h; schema below and in README.md). */
#include "controller/runstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "controller/model.h"
#include "controller/rng.h"
#include "devices/options.h"
#include "patctl/error.h"
#include "patctl/version.h"
#include "surrogate/blas.h"

/* The step table (schema 2): one row per training step tried, applied
 * (status 'ok') or skipped after a device fault (status 'skipped': loss and
 * accuracy NULL, rc and error the fault).  `step` is the step's number
 * (a skipped step has the number the step it would have been, the same as
 * the applied step after it and as its journal rows); `attempt` numbers the
 * rows in the order they happened (applied + skipped steps of the run so
 * far; in rows written by schema 1, attempt = step).  Schema 1 had `step`
 * as its key and no status, attempt, rc, error (migrate_v2 below). */
#define STEP_COLUMNS                                                                                     \
    "(step INTEGER NOT NULL, session INTEGER, epoch INTEGER, t REAL, batch INTEGER, lr REAL,"           \
    " loss REAL, accuracy REAL, device_seconds REAL, compute_seconds REAL, device_queries INTEGER,"     \
    " status TEXT NOT NULL DEFAULT 'ok', attempt INTEGER PRIMARY KEY, rc INTEGER, error TEXT)"

/* Schema 3: an evaluation of pruned parameters (patctl eval --prune F)
 * says so: the fraction asked, the weights / couplings zeroed and how many
 * could have been. */
#define EVAL_PRUNE_COLUMNS                                                                            \
    ", pruned REAL NOT NULL DEFAULT 0, pruned_entries INTEGER NOT NULL DEFAULT 0,"                   \
    " prunable_entries INTEGER NOT NULL DEFAULT 0, nrmse REAL"

/* The schema.  Times are seconds since the Unix epoch (REAL); arrays are
 * little-endian BLOBs; "device" columns are device.idx. */
static const char *const SCHEMA =
    "CREATE TABLE run("
    " uid TEXT NOT NULL, created TEXT NOT NULL, created_unix REAL NOT NULL, host TEXT,"
    " patctl_version TEXT, schema_version INTEGER, blas TEXT, mode TEXT, seed INTEGER,"
    " config TEXT NOT NULL, config_source TEXT, config_file_text TEXT, argv TEXT);\n"
    "CREATE TABLE device("
    " idx INTEGER PRIMARY KEY, name TEXT, driver TEXT, options TEXT, surrogate TEXT,"
    " limits TEXT, steps TEXT, seed TEXT, model TEXT, about TEXT, n_in INTEGER, n_out INTEGER,"
    " in_unit TEXT, out_unit TEXT, in_lo REAL, in_hi REAL, simulated INTEGER, has_vjp INTEGER,"
    " n_theta INTEGER);\n"
    "CREATE TABLE param_block("
    " device INTEGER, block INTEGER, name TEXT, unit TEXT, about TEXT, rows INTEGER, cols INTEGER,"
    " theta_offset INTEGER, lo REAL, hi REAL, max_step REAL, safe REAL, init_lo REAL, init_hi REAL,"
    " PRIMARY KEY(device, block));\n"
    "CREATE TABLE param_view("
    " name TEXT PRIMARY KEY, layer INTEGER, kind TEXT, device INTEGER, block INTEGER,"
    " offset INTEGER, rows INTEGER, cols INTEGER);\n"
    "CREATE TABLE session("
    " id INTEGER PRIMARY KEY, kind TEXT, pid INTEGER, host TEXT, argv TEXT, started REAL,"
    " resumed_from INTEGER, stopped REAL, status TEXT, reason TEXT, steps INTEGER,"
    " epochs_done INTEGER, device_queries INTEGER, device_samples INTEGER, ramp_steps INTEGER,"
    " clamped INTEGER, rejected INTEGER, faults INTEGER, retries INTEGER, device_seconds REAL,"
    " test_accuracy REAL, devices_safe INTEGER, store_seconds REAL, skipped_steps INTEGER);\n"
    "CREATE TABLE step" STEP_COLUMNS ";\n"
    "CREATE INDEX step_step ON step(step);\n"
    "CREATE TABLE epoch("
    " epoch INTEGER PRIMARY KEY, session INTEGER, t REAL, steps INTEGER, loss REAL,"
    " train_accuracy REAL, seconds REAL, device_seconds REAL, compute_seconds REAL,"
    " device_queries INTEGER, test_accuracy REAL);\n"
    "CREATE TABLE evaluation("
    " id INTEGER PRIMARY KEY, session INTEGER, t REAL, step INTEGER, epoch INTEGER,"
    " checkpoint INTEGER, n INTEGER, accuracy REAL, seconds REAL, device_queries INTEGER,"
    " classes INTEGER, confusion BLOB" EVAL_PRUNE_COLUMNS ");\n"
    "CREATE TABLE setting(id INTEGER PRIMARY KEY, device INTEGER, theta BLOB);\n"
    "CREATE TABLE query("
    " id INTEGER PRIMARY KEY, session INTEGER, device INTEGER, qid INTEGER, step INTEGER,"
    " phase TEXT, batch INTEGER, attempt INTEGER, ramp INTEGER, rc INTEGER, setting INTEGER,"
    " t_start REAL, t_end REAL, x BLOB, y BLOB, superseded INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX query_device ON query(device, qid);\n"
    "CREATE TABLE log(id INTEGER PRIMARY KEY, session INTEGER, t REAL, device TEXT,"
    " level TEXT, message TEXT);\n"
    "CREATE TABLE checkpoint("
    " id INTEGER PRIMARY KEY, session INTEGER, t REAL, step INTEGER, epoch INTEGER, pos INTEGER,"
    " final INTEGER, epoch_end INTEGER, train_seconds REAL, n_params INTEGER, params BLOB,"
    " optimizer TEXT, opt_t INTEGER, opt_m BLOB, opt_v BLOB, rng BLOB, data_order BLOB,"
    " epoch_steps INTEGER, hits INTEGER, seen INTEGER, loss_sum REAL, dev_s REAL, all_s REAL,"
    " eval_queries INTEGER, eval_samples INTEGER, eval_seconds REAL, skipped INTEGER,"
    " failed_in_row INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE checkpoint_device("
    " checkpoint INTEGER, device INTEGER, next_id INTEGER, has_last INTEGER, last_theta BLOB,"
    " queries INTEGER, samples INTEGER, ramp_steps INTEGER, clamped INTEGER, rejected INTEGER,"
    " faults INTEGER, retries INTEGER, seconds REAL, PRIMARY KEY(checkpoint, device));\n";

typedef struct journal_ctx {
    runstore *rs;
    int index;               /* device.idx */
    journal_mode mode;
    long every;
    uint64_t n_ok;           /* successful B > 0 queries seen */
    long n_theta;
    float *last;             /* [n_theta] the setting last stored */
    int64_t last_id;         /* its setting.id, 0 = none */
    int keep_query;          /* JOURNAL_EVERY: whether the query whose first part came
                                last was kept (its further parts follow it) */
} journal_ctx;

struct runstore {
    sqlite3 *db;
    int in_tx;
    int failed;
    char err[512];
    int64_t session;
    int version;             /* schema version of the store (after migration, if writable) */
    long step;
    char phase[16];
    sqlite3_stmt *ins_query, *ins_setting, *ins_step, *ins_log;
    journal_ctx *jc[CFG_MAX_DEVICES];
    double seconds;          /* wall time spent writing (journal, metrics, commits, checkpoints) */
    /* WAL checkpoints (copying the log into the database file) run on a
     * thread of their own with its own connection, so the training loop
     * only appends to the log */
    char path[1200];
    int ck_running, ck_pending, ck_quit;
    pthread_t ck_thread;
    pthread_mutex_t ck_mu;
    pthread_cond_t ck_cv;
};

#define WAL_CHECKPOINT_PAGES 1024  /* of 64 KiB: start a checkpoint at 64 MiB of log */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double runstore_seconds(const runstore *rs) { return rs->seconds; }

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int set_err(runstore *rs, int rc, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(rs->err, sizeof(rs->err), "%s%s%s", msg, rs->db ? ": " : "", rs->db ? sqlite3_errmsg(rs->db) : "");
    if (!rs->failed)
        rs->failed = rc;
    return rc;
}

int runstore_failed(const runstore *rs) { return rs->failed; }
const char *runstore_error(const runstore *rs) { return rs->err; }
sqlite3 *runstore_db(runstore *rs) { return rs->db; }
int64_t runstore_session(const runstore *rs) { return rs->session; }
int runstore_schema_version(const runstore *rs) { return rs->version; }

static int exec(runstore *rs, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(rs->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(rs->err, sizeof(rs->err), "%.60s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return PATCTL_ERR_IO;
    }
    return 0;
}

static int tx(runstore *rs)
{
    if (rs->in_tx)
        return 0;
    int rc = exec(rs, "BEGIN");
    if (!rc)
        rs->in_tx = 1;
    return rc;
}

int runstore_commit(runstore *rs)
{
    if (!rs || !rs->in_tx)
        return 0;
    rs->in_tx = 0;
    double t0 = mono_now();
    int rc = exec(rs, "COMMIT");
    rs->seconds += mono_now() - t0;
    if (rc) {
        exec(rs, "ROLLBACK");
        if (!rs->failed)
            rs->failed = rc;
    }
    return rc;
}

/* ---- little-endian arrays ---- */

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap4(void *dst, const void *src, size_t n)
{
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++, s += 4, d += 4) {
        uint8_t a = s[0], b = s[1], c = s[2], e = s[3];
        d[0] = e, d[1] = c, d[2] = b, d[3] = a;
    }
}

void runstore_f32_from_le(float *dst, const void *src, long n)
{
    if (host_is_le())
        memcpy(dst, src, sizeof(float) * (size_t)n);
    else
        swap4(dst, src, (size_t)n);
}

/* Bind n 4-byte values as a little-endian BLOB (NULL binds NULL). */
static int bind_le32(runstore *rs, sqlite3_stmt *st, int col, const void *v, long n)
{
    if (!v)
        return sqlite3_bind_null(st, col);
    size_t bytes = 4 * (size_t)n;
    if (host_is_le())
        return sqlite3_bind_blob64(st, col, v, bytes, SQLITE_STATIC);
    /* big-endian: a transient swapped copy */
    float *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return SQLITE_NOMEM;
    swap4(tmp, v, (size_t)n);
    (void)rs;
    return sqlite3_bind_blob64(st, col, tmp, bytes, free);
}

/* ---- open / create ---- */

static void *checkpointer(void *arg)
{
    runstore *rs = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(rs->path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK)
        sqlite3_busy_timeout(db, 1000);
    pthread_mutex_lock(&rs->ck_mu);
    for (;;) {
        while (!rs->ck_pending && !rs->ck_quit)
            pthread_cond_wait(&rs->ck_cv, &rs->ck_mu);
        if (rs->ck_quit)
            break;
        rs->ck_pending = 0;
        pthread_mutex_unlock(&rs->ck_mu);
        /* PASSIVE: never blocks the writer; what it cannot copy now it
         * copies next time */
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&rs->ck_mu);
    }
    pthread_mutex_unlock(&rs->ck_mu);
    sqlite3_close(db);
    return NULL;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db, (void)name;
    runstore *rs = arg;
    if (pages >= WAL_CHECKPOINT_PAGES) {
        pthread_mutex_lock(&rs->ck_mu);
        rs->ck_pending = 1;
        pthread_cond_signal(&rs->ck_cv);
        pthread_mutex_unlock(&rs->ck_mu);
    }
    return SQLITE_OK;
}

/* For a writer: checkpoints on their own thread instead of in commits. */
static int start_checkpointer(runstore *rs)
{
    if (pthread_mutex_init(&rs->ck_mu, NULL))
        return PATCTL_ERR_NOMEM;
    if (pthread_cond_init(&rs->ck_cv, NULL)) {
        pthread_mutex_destroy(&rs->ck_mu);
        return PATCTL_ERR_NOMEM;
    }
    if (pthread_create(&rs->ck_thread, NULL, checkpointer, rs)) {
        pthread_cond_destroy(&rs->ck_cv);
        pthread_mutex_destroy(&rs->ck_mu);
        return 0; /* no thread: SQLite checkpoints in commits as usual */
    }
    rs->ck_running = 1;
    sqlite3_wal_autocheckpoint(rs->db, 0);
    sqlite3_wal_hook(rs->db, wal_hook, rs);
    return 0;
}

static void stop_checkpointer(runstore *rs)
{
    if (!rs->ck_running)
        return;
    pthread_mutex_lock(&rs->ck_mu);
    rs->ck_quit = 1;
    pthread_cond_signal(&rs->ck_cv);
    pthread_mutex_unlock(&rs->ck_mu);
    pthread_join(rs->ck_thread, NULL);
    pthread_cond_destroy(&rs->ck_cv);
    pthread_mutex_destroy(&rs->ck_mu);
    rs->ck_running = 0;
}

static int prepare(runstore *rs, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v2(rs->db, sql, -1, st, NULL) != SQLITE_OK)
        return set_err(rs, PATCTL_ERR_IO, "prepare %.40s", sql);
    return 0;
}

static int open_db(runstore **out, const char *path, int flags, char *err, size_t errlen)
{
    *out = NULL;
    runstore *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return PATCTL_ERR_NOMEM;
    if (sqlite3_open_v2(path, &rs->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, rs->db ? sqlite3_errmsg(rs->db) : "cannot open");
        sqlite3_close(rs->db);
        free(rs);
        return PATCTL_ERR_IO;
    }
    sqlite3_busy_timeout(rs->db, 10000);
    snprintf(rs->path, sizeof(rs->path), "%s", path);
    *out = rs;
    return 0;
}

static int prepare_all(runstore *rs)
{
    int rc;
    if ((rc = prepare(rs, &rs->ins_query,
                      "INSERT INTO query(session, device, qid, step, phase, batch, attempt, ramp, rc,"
                      " setting, t_start, t_end, x, y) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)")) ||
        (rc = prepare(rs, &rs->ins_setting, "INSERT INTO setting(device, theta) VALUES(?,?)")) ||
        (rc = prepare(rs, &rs->ins_step,
                      "INSERT OR REPLACE INTO step(step, session, epoch, t, batch, lr, loss, accuracy,"
                      " device_seconds, compute_seconds, device_queries, status, attempt, rc, error)"
                      " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")) ||
        (rc = prepare(rs, &rs->ins_log, "INSERT INTO log(session, t, device, level, message) VALUES(?,?,?,?,?)")))
        return rc;
    return 0;
}

static void db_path(char *out, size_t n, const char *dir)
{
    size_t len = strlen(dir);
    const char *suffix = ".sqlite";
    if (len >= strlen(suffix) && strcmp(dir + len - strlen(suffix), suffix) == 0)
        snprintf(out, n, "%s", dir);
    else
        snprintf(out, n, "%s/%s", dir, RUNSTORE_FILE);
}

int runstore_create(runstore **out, const char *dir, char *err, size_t errlen)
{
    char path[1200];
    db_path(path, sizeof(path), dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        snprintf(err, errlen, "%s already exists (resume it with --resume %s, or choose another --out)",
                 path, dir);
        return PATCTL_ERR_STATE;
    }
    int rc = open_db(out, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (rc)
        return rc;
    runstore *rs = *out;
    /* big pages suit big BLOBs; WAL: readers never block the writer, a crash
     * loses at most the open transaction */
    if ((rc = exec(rs, "PRAGMA page_size = 65536")) || (rc = exec(rs, "PRAGMA journal_mode = WAL")) ||
        (rc = exec(rs, "PRAGMA synchronous = NORMAL")) || (rc = exec(rs, "BEGIN")) ||
        (rc = exec(rs, SCHEMA)) || (rc = exec(rs, "COMMIT")) || (rc = prepare_all(rs)) ||
        (rc = start_checkpointer(rs))) {
        snprintf(err, errlen, "%s: %s", path, rs->err);
        runstore_close(out);
        return rc;
    }
    rs->version = RUNSTORE_SCHEMA_VERSION;
    return 0;
}

/* Columns added to schema 1 after stores were written with it (skipped
 * steps): an older store gets them (NULL = 0) when opened for writing. */
static int add_missing_columns(runstore *rs)
{
    static const char *const add[][3] = {{"session", "skipped_steps", "INTEGER"},
                                         {"checkpoint", "skipped", "INTEGER"}};
    for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++) {
        char sql[200];
        snprintf(sql, sizeof(sql), "SELECT %s FROM %s LIMIT 0", add[i][1], add[i][0]);
        sqlite3_stmt *st = NULL;
        int have = sqlite3_prepare_v2(rs->db, sql, -1, &st, NULL) == SQLITE_OK;
        sqlite3_finalize(st);
        if (have)
            continue;
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", add[i][0], add[i][1], add[i][2]);
        int rc = exec(rs, sql);
        if (rc)
            return rc;
    }
    return 0;
}

static int has_column(runstore *rs, const char *table, const char *column)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s LIMIT 0", column, table);
    sqlite3_stmt *st = NULL;
    int have = sqlite3_prepare_v2(rs->db, sql, -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return have;
}

/* The end of a migration's transaction: on success (rc 0) the store says
 * schema `version` and commits; else it rolls back, keeping the error. */
static int migrate_end(runstore *rs, int rc, int version)
{
    if (!rc) {
        char sql[64];
        snprintf(sql, sizeof(sql), "UPDATE run SET schema_version = %d", version);
        rc = exec(rs, sql);
    }
    if (rc) {
        char keep[sizeof(rs->err)];
        memcpy(keep, rs->err, sizeof(keep));
        exec(rs, "ROLLBACK");
        memcpy(rs->err, keep, sizeof(keep));
        return rc;
    }
    rs->version = version;
    return exec(rs, "COMMIT");
}

/* Schema 1 -> 2, in place and in one transaction (a store opened for
 * writing): checkpoint gets failed_in_row (0 in older checkpoints: their
 * run's count of failed steps in a row is not known), step is rebuilt with
 * `attempt` as its key (schema 1's key `step` cannot hold a skipped step
 * beside the applied one of the same number) plus status, rc, error; its
 * rows keep their values, with status 'ok' and attempt = step. */
static int migrate_v2(runstore *rs)
{
    int rc = exec(rs, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    if (!(rc = add_missing_columns(rs)) && !has_column(rs, "checkpoint", "failed_in_row"))
        rc = exec(rs, "ALTER TABLE checkpoint ADD COLUMN failed_in_row INTEGER NOT NULL DEFAULT 0");
    if (!rc && !has_column(rs, "step", "attempt"))
        rc = exec(rs, "CREATE TABLE step_v2" STEP_COLUMNS ";"
                      "INSERT INTO step_v2(step, session, epoch, t, batch, lr, loss, accuracy, device_seconds,"
                      " compute_seconds, device_queries, status, attempt)"
                      " SELECT step, session, epoch, t, batch, lr, loss, accuracy, device_seconds,"
                      " compute_seconds, device_queries, 'ok', step FROM step;"
                      "DROP TABLE step;"
                      "ALTER TABLE step_v2 RENAME TO step;"
                      "CREATE INDEX step_step ON step(step);");
    return migrate_end(rs, rc, 2);
}

/* Schema 2 -> 3, in place (a store opened for writing): evaluation gets
 * pruned, pruned_entries, prunable_entries (0: no pruning, as before) and
 * nrmse (NULL: a classification run). */
static int migrate_v3(runstore *rs)
{
    int rc = exec(rs, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    if (!has_column(rs, "evaluation", "pruned"))
        rc = exec(rs, "ALTER TABLE evaluation ADD COLUMN pruned REAL NOT NULL DEFAULT 0;"
                      "ALTER TABLE evaluation ADD COLUMN pruned_entries INTEGER NOT NULL DEFAULT 0;"
                      "ALTER TABLE evaluation ADD COLUMN prunable_entries INTEGER NOT NULL DEFAULT 0;"
                      "ALTER TABLE evaluation ADD COLUMN nrmse REAL;");
    return migrate_end(rs, rc, 3);
}

int runstore_open(runstore **out, const char *dir, int writable, char *err, size_t errlen)
{
    char path[1200];
    db_path(path, sizeof(path), dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "%s: no run store here (%s)", path, strerror(errno));
        return PATCTL_ERR_NOT_FOUND;
    }
    int rc = open_db(out, path, writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, err, errlen);
    if (rc)
        return rc;
    runstore *rs = *out;
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(rs->db, "SELECT schema_version FROM run", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    /* schema 1 (before skipped steps had step rows) is read as it is and
     * migrated when opened for writing; newer schemas are refused */
    if (version < 1 || version > RUNSTORE_SCHEMA_VERSION) {
        if (version > RUNSTORE_SCHEMA_VERSION)
            snprintf(err, errlen, "%s: run store of schema %d, written by a newer patctl (this one reads "
                     "schemas 1 to %d)", path, version, RUNSTORE_SCHEMA_VERSION);
        else
            snprintf(err, errlen, "%s: not a patctl run store (no schema version)", path);
        runstore_close(out);
        return PATCTL_ERR_FORMAT;
    }
    rs->version = version;
    if (writable && ((rc = exec(rs, "PRAGMA synchronous = NORMAL")) ||
                     (version < 2 && (rc = migrate_v2(rs))) ||
                     (version < 3 && (rc = migrate_v3(rs))) ||
                     (rc = prepare_all(rs)) ||
                     (rc = start_checkpointer(rs)))) {
        snprintf(err, errlen, "%s: %s", path, rs->err);
        runstore_close(out);
        return rc;
    }
    return 0;
}

void runstore_close(runstore **rsp)
{
    if (!rsp || !*rsp)
        return;
    runstore *rs = *rsp;
    if (rs->db)
        runstore_commit(rs);
    stop_checkpointer(rs); /* then closing the last connection checkpoints the rest */
    sqlite3_finalize(rs->ins_query);
    sqlite3_finalize(rs->ins_setting);
    sqlite3_finalize(rs->ins_step);
    sqlite3_finalize(rs->ins_log);
    for (int i = 0; i < CFG_MAX_DEVICES; i++)
        if (rs->jc[i]) {
            free(rs->jc[i]->last);
            free(rs->jc[i]);
        }
    sqlite3_close(rs->db);
    free(rs);
    *rsp = NULL;
}

/* ---- start record ---- */

static void make_uid(char *out, size_t n)
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t t = (uint64_t)(wall_now() * 1e9) ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 16; i++)
            b[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
    }
    size_t used = 0;
    for (int i = 0; i < 16 && used + 3 <= n; i++)
        used += (size_t)snprintf(out + used, n - used, "%02x", b[i]);
}

int runstore_write_run(runstore *rs, const run_config *c, const char *file_text, const char *argv)
{
    char *cfg = config_format(c);
    if (!cfg)
        return PATCTL_ERR_NOMEM;
    char uid[40], when[40], host[256] = "";
    make_uid(uid, sizeof(uid));
    double now = wall_now();
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    gethostname(host, sizeof(host) - 1);
    sqlite3_stmt *st = NULL;
    int rc = tx(rs);
    if (!rc)
        rc = prepare(rs, &st, "INSERT INTO run(uid, created, created_unix, host, patctl_version, schema_version,"
                              " blas, mode, seed, config, config_source, config_file_text, argv)"
                              " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!rc) {
        sqlite3_bind_text(st, 1, uid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, when, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 3, now);
        sqlite3_bind_text(st, 4, host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, PATCTL_VERSION_STRING, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, RUNSTORE_SCHEMA_VERSION);
        sqlite3_bind_text(st, 7, blas_library(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 8, mode_name(c->mode), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)c->seed);
        sqlite3_bind_text(st, 10, cfg, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 11, c->source, -1, SQLITE_TRANSIENT);
        if (file_text)
            sqlite3_bind_text(st, 12, file_text, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 13, argv ? argv : "", -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "writing the run record");
    }
    sqlite3_finalize(st);
    free(cfg);
    return rc ? rc : runstore_commit(rs);
}

char *runstore_config_text(runstore *rs)
{
    sqlite3_stmt *st = NULL;
    char *text = NULL;
    if (sqlite3_prepare_v2(rs->db, "SELECT config FROM run", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t)
            text = strdup((const char *)t);
    }
    sqlite3_finalize(st);
    return text;
}

static int write_view(runstore *rs, sqlite3_stmt *st, const char *name, int layer, const char *kind,
                      int device, int block, long offset, long rows, long cols)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, layer);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    if (device >= 0) {
        sqlite3_bind_int(st, 4, device);
        sqlite3_bind_int(st, 5, block);
    } else {
        sqlite3_bind_null(st, 4);
        sqlite3_bind_null(st, 5);
    }
    sqlite3_bind_int64(st, 6, offset);
    sqlite3_bind_int64(st, 7, rows);
    sqlite3_bind_int64(st, 8, cols);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : set_err(rs, PATCTL_ERR_IO, "writing param_view");
}

int runstore_write_model(runstore *rs, const run_config *c, const model *m)
{
    sqlite3_stmt *sd = NULL, *sb = NULL, *sv = NULL;
    int rc = tx(rs);
    if (rc || (rc = prepare(rs, &sd, "INSERT INTO device VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")) ||
        (rc = prepare(rs, &sb, "INSERT INTO param_block VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)")) ||
        (rc = prepare(rs, &sv, "INSERT INTO param_view VALUES(?,?,?,?,?,?,?,?)")))
        goto out;
    for (int i = 0; i < m->n_devices && !rc; i++) {
        const device *d = m->devices[i];
        const device_spec *s = &c->devices[i];
        const struct patctl_device_desc *k = &d->desc;
        struct patctl_option *o = NULL;
        int no = options_parse(s->options, &o);
        const char *seed = no > 0 ? options_get(o, no, "seed") : NULL;
        char seedtxt[32];
        if (!seed && (d->drv->flags & PATCTL_DRV_SEEDED)) {
            snprintf(seedtxt, sizeof(seedtxt), "%llu", (unsigned long long)rng_device_seed(c->seed, i));
            seed = seedtxt;
        }
        sqlite3_reset(sd);
        sqlite3_bind_int(sd, 1, i);
        sqlite3_bind_text(sd, 2, d->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 3, s->driver, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 4, s->options, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 5, s->surrogate, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 6, s->limits, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 7, s->steps, -1, SQLITE_TRANSIENT);
        if (seed)
            sqlite3_bind_text(sd, 8, seed, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(sd, 8);
        free(o);
        sqlite3_bind_text(sd, 9, k->model, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 10, k->about, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(sd, 11, k->n_in);
        sqlite3_bind_int(sd, 12, k->n_out);
        sqlite3_bind_text(sd, 13, k->in_unit, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(sd, 14, k->out_unit, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(sd, 15, k->in_lo);
        sqlite3_bind_double(sd, 16, k->in_hi);
        sqlite3_bind_int(sd, 17, (k->flags & PATCTL_DEV_SIMULATED) != 0);
        sqlite3_bind_int(sd, 18, (k->flags & PATCTL_DEV_HAS_VJP) != 0);
        sqlite3_bind_int64(sd, 19, d->n_theta);
        if (sqlite3_step(sd) != SQLITE_DONE) {
            rc = set_err(rs, PATCTL_ERR_IO, "writing device %s", d->name);
            break;
        }
        for (int b = 0; b < k->n_blocks; b++) {
            const struct patctl_param_block *p = &k->blocks[b];
            sqlite3_reset(sb);
            sqlite3_bind_int(sb, 1, i);
            sqlite3_bind_int(sb, 2, b);
            sqlite3_bind_text(sb, 3, p->name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(sb, 4, p->unit, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(sb, 5, p->about, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(sb, 6, p->rows);
            sqlite3_bind_int(sb, 7, p->cols);
            sqlite3_bind_int64(sb, 8, device_block_offset(k, b));
            sqlite3_bind_double(sb, 9, p->lo);
            sqlite3_bind_double(sb, 10, p->hi);
            sqlite3_bind_double(sb, 11, p->max_step);
            sqlite3_bind_double(sb, 12, p->safe);
            sqlite3_bind_double(sb, 13, p->init_lo);
            sqlite3_bind_double(sb, 14, p->init_hi);
            if (sqlite3_step(sb) != SQLITE_DONE) {
                rc = set_err(rs, PATCTL_ERR_IO, "writing parameter blocks of %s", d->name);
                break;
            }
        }
    }
    /* the layout of the flat parameter vector */
    for (int i = 0; i < m->n_layers && !rc; i++) {
        const layer *L = &m->L[i];
        char name[96];
        if (L->spec.kind == LAYER_PHYSICAL) {
            int di = -1;
            for (int j = 0; j < m->n_devices; j++)
                if (m->devices[j] == L->dev)
                    di = j;
            const struct patctl_device_desc *k = &L->dev->desc;
            for (int b = 0; b < k->n_blocks && !rc; b++) {
                snprintf(name, sizeof(name), "%s.%s", L->dev->name, k->blocks[b].name);
                rc = write_view(rs, sv, name, i + 1, "physical", di, b, L->p_off + device_block_offset(k, b),
                                k->blocks[b].rows, k->blocks[b].cols);
            }
        } else if (L->spec.kind == LAYER_READOUT) {
            snprintf(name, sizeof(name), "layer%d.readout.scale", i + 1);
            rc = write_view(rs, sv, name, i + 1, "readout", -1, 0, L->p_off, 1, 1);
        } else if (L->spec.kind == LAYER_LINEAR) {
            snprintf(name, sizeof(name), "layer%d.linear.W", i + 1);
            rc = write_view(rs, sv, name, i + 1, "linear", -1, 0, L->p_off, L->c_out, L->c_in);
            snprintf(name, sizeof(name), "layer%d.linear.b", i + 1);
            if (!rc)
                rc = write_view(rs, sv, name, i + 1, "linear", -1, 0, L->p_off + (long)L->c_out * L->c_in,
                                L->c_out, 1);
        }
    }
out:
    sqlite3_finalize(sd);
    sqlite3_finalize(sb);
    sqlite3_finalize(sv);
    return rc ? rc : runstore_commit(rs);
}

/* ---- sessions ---- */

int runstore_session_begin(runstore *rs, const char *kind, const char *argv, int64_t resumed_from)
{
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    sqlite3_stmt *st = NULL;
    int rc = tx(rs);
    if (!rc)
        rc = prepare(rs, &st, "INSERT INTO session(kind, pid, host, argv, started, resumed_from) VALUES(?,?,?,?,?,?)");
    if (!rc) {
        sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)getpid());
        sqlite3_bind_text(st, 3, host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, argv ? argv : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 5, wall_now());
        if (resumed_from > 0)
            sqlite3_bind_int64(st, 6, resumed_from);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "writing the session record");
        else
            rs->session = sqlite3_last_insert_rowid(rs->db);
    }
    sqlite3_finalize(st);
    return rc ? rc : runstore_commit(rs);
}

int runstore_session_end(runstore *rs, const runstore_stop *s)
{
    /* whatever is pending belongs to the run: commit it first, then the stop
     * record on its own */
    runstore_commit(rs);
    sqlite3_stmt *st = NULL;
    int rc = tx(rs);
    if (!rc)
        rc = prepare(rs, &st, "UPDATE session SET stopped=?, status=?, reason=?, steps=?, epochs_done=?,"
                              " device_queries=?, device_samples=?, ramp_steps=?, clamped=?, rejected=?,"
                              " faults=?, retries=?, device_seconds=?, test_accuracy=?, devices_safe=?,"
                              " store_seconds=?, skipped_steps=? WHERE id=?");
    if (!rc) {
        sqlite3_bind_double(st, 1, wall_now());
        sqlite3_bind_text(st, 2, s->status, -1, SQLITE_TRANSIENT);
        if (s->reason)
            sqlite3_bind_text(st, 3, s->reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, s->steps);
        sqlite3_bind_int(st, 5, s->epochs_done);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)s->dev.queries);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)s->dev.samples);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)s->dev.ramp_steps);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)s->dev.clamped);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)s->dev.rejected);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)s->dev.faults);
        sqlite3_bind_int64(st, 12, (sqlite3_int64)s->dev.retries);
        sqlite3_bind_double(st, 13, s->dev.seconds);
        if (s->test_accuracy >= 0)
            sqlite3_bind_double(st, 14, s->test_accuracy);
        sqlite3_bind_int(st, 15, s->devices_safe);
        sqlite3_bind_double(st, 16, rs->seconds);
        sqlite3_bind_int64(st, 17, s->skipped_steps);
        sqlite3_bind_int64(st, 18, rs->session);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "writing the stop record");
    }
    sqlite3_finalize(st);
    return rc ? rc : runstore_commit(rs);
}

int runstore_close_dangling(runstore *rs)
{
    runstore_commit(rs);
    int rc = exec(rs, "UPDATE session SET status='fail', reason='ended without a stop record (killed?)'"
                      " WHERE status IS NULL");
    return rc ? rc : sqlite3_changes(rs->db);
}

int runstore_finished(runstore *rs)
{
    sqlite3_stmt *st = NULL;
    int done = 0;
    if (sqlite3_prepare_v2(rs->db, "SELECT status FROM session WHERE kind IN ('train','resume')"
                                   " ORDER BY id DESC LIMIT 1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        done = t && strcmp((const char *)t, "success") == 0;
    }
    sqlite3_finalize(st);
    return done;
}

/* ---- journal ---- */

void runstore_set_context(runstore *rs, long step, const char *phase)
{
    rs->step = step;
    snprintf(rs->phase, sizeof(rs->phase), "%s", phase);
}

/* The setting.id of theta for this device, inserting it when it differs
 * from the last one stored. */
static int64_t setting_id(journal_ctx *j, const float *theta)
{
    runstore *rs = j->rs;
    if (j->last_id && memcmp(j->last, theta, sizeof(float) * (size_t)j->n_theta) == 0)
        return j->last_id;
    sqlite3_stmt *st = rs->ins_setting;
    sqlite3_reset(st);
    sqlite3_bind_int(st, 1, j->index);
    bind_le32(rs, st, 2, theta, j->n_theta);
    if (sqlite3_step(st) != SQLITE_DONE) {
        set_err(rs, PATCTL_ERR_IO, "journal: storing a parameter setting");
        return 0;
    }
    sqlite3_clear_bindings(st);
    memcpy(j->last, theta, sizeof(float) * (size_t)j->n_theta);
    j->last_id = sqlite3_last_insert_rowid(rs->db);
    return j->last_id;
}

static void journal_cb(void *user, const device *d, const device_journal_entry *e)
{
    journal_ctx *j = user;
    runstore *rs = j->rs;
    if (rs->failed)
        return;
    int ok = e->rc == 0 && e->batch > 0;
    /* a query sent in parts (training micro-batches) is one row per part,
     * in row order; its further parts go wherever its first part went */
    int later_part = ok && e->part_row > 0;
    if (ok && !later_part)
        j->n_ok++;
    int keep;
    switch (j->mode) {
    case JOURNAL_ALL: keep = 1; break;
    case JOURNAL_EVERY:
        keep = e->rc != 0 || (later_part ? j->keep_query : ok && (j->n_ok - 1) % (uint64_t)j->every == 0);
        break;
    default: keep = e->rc != 0; break; /* off: faults only */
    }
    if (ok && !later_part)
        j->keep_query = keep;
    if (!keep)
        return;
    double t0 = mono_now();
    if (tx(rs))
        return;
    int64_t sid = setting_id(j, e->theta);
    if (!sid)
        return;
    sqlite3_stmt *st = rs->ins_query;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, rs->session);
    sqlite3_bind_int(st, 2, j->index);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->id);
    sqlite3_bind_int64(st, 4, rs->step);
    sqlite3_bind_text(st, 5, rs->phase, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, e->batch);
    sqlite3_bind_int(st, 7, e->attempt);
    sqlite3_bind_int(st, 8, e->ramp);
    sqlite3_bind_int(st, 9, e->rc);
    sqlite3_bind_int64(st, 10, sid);
    sqlite3_bind_double(st, 11, e->t_start);
    sqlite3_bind_double(st, 12, e->t_end);
    bind_le32(rs, st, 13, e->x, (long)e->batch * d->desc.n_in);
    bind_le32(rs, st, 14, e->y, (long)e->batch * d->desc.n_out);
    if (sqlite3_step(st) != SQLITE_DONE)
        set_err(rs, PATCTL_ERR_IO, "journal: storing query %llu of %s", (unsigned long long)e->id, d->name);
    sqlite3_clear_bindings(st);
    rs->seconds += mono_now() - t0;
}

static void log_cb(void *user, const char *dev, int level, const char *msg)
{
    static const char *tag[] = {"info", "warning", "fault"};
    fprintf(stderr, "patctl: device %s: %s: %s\n", dev, tag[level < 0 || level > 2 ? 0 : level], msg);
    runstore_log(user, dev, level, msg);
}

void runstore_log(runstore *rs, const char *source, int level, const char *msg)
{
    static const char *tag[] = {"info", "warning", "fault"};
    if (rs->failed || tx(rs))
        return;
    sqlite3_stmt *st = rs->ins_log;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, rs->session);
    sqlite3_bind_double(st, 2, wall_now());
    sqlite3_bind_text(st, 3, source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, tag[level < 0 || level > 2 ? 0 : level], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, msg, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        set_err(rs, PATCTL_ERR_IO, "storing a log message");
}

int runstore_attach(runstore *rs, device *d, int index, journal_mode mode, long every)
{
    if (index < 0 || index >= CFG_MAX_DEVICES)
        return PATCTL_ERR_ARG;
    journal_ctx *j = rs->jc[index];
    if (!j) {
        j = calloc(1, sizeof(*j));
        if (!j)
            return PATCTL_ERR_NOMEM;
        rs->jc[index] = j;
    }
    free(j->last);
    memset(j, 0, sizeof(*j));
    j->rs = rs, j->index = index, j->mode = mode, j->every = every > 0 ? every : 1;
    j->n_theta = d->n_theta;
    j->last = malloc(sizeof(float) * (size_t)(d->n_theta + 1));
    if (!j->last)
        return PATCTL_ERR_NOMEM;
    device_set_journal(d, journal_cb, j);
    device_set_logger(d, log_cb, rs);
    return 0;
}

/* ---- metrics ---- */

int runstore_step(runstore *rs, const step_metrics *m)
{
    double t0 = mono_now();
    int rc = tx(rs);
    if (rc)
        return rc;
    sqlite3_stmt *st = rs->ins_step;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, m->step);
    sqlite3_bind_int64(st, 2, rs->session);
    sqlite3_bind_int(st, 3, m->epoch);
    sqlite3_bind_double(st, 4, wall_now());
    sqlite3_bind_int(st, 5, m->batch);
    sqlite3_bind_double(st, 6, m->lr);
    if (m->skipped) {
        sqlite3_bind_null(st, 7);
        sqlite3_bind_null(st, 8);
    } else {
        sqlite3_bind_double(st, 7, m->loss);
        sqlite3_bind_double(st, 8, m->accuracy);
    }
    sqlite3_bind_double(st, 9, m->device_seconds);
    sqlite3_bind_double(st, 10, m->compute_seconds);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)m->device_queries);
    sqlite3_bind_text(st, 12, m->skipped ? "skipped" : "ok", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, m->attempt > 0 ? m->attempt : m->step);
    if (m->skipped) {
        sqlite3_bind_int(st, 14, m->rc);
        sqlite3_bind_text(st, 15, m->error ? m->error : patctl_strerror(m->rc), -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_null(st, 14);
        sqlite3_bind_null(st, 15);
    }
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : set_err(rs, PATCTL_ERR_IO, "storing step %ld", m->step);
    rs->seconds += mono_now() - t0;
    return rc;
}

int runstore_epoch(runstore *rs, const epoch_metrics *m)
{
    sqlite3_stmt *st = NULL;
    int rc = tx(rs);
    if (!rc)
        rc = prepare(rs, &st, "INSERT OR REPLACE INTO epoch VALUES(?,?,?,?,?,?,?,?,?,?,?)");
    if (!rc) {
        sqlite3_bind_int(st, 1, m->epoch);
        sqlite3_bind_int64(st, 2, rs->session);
        sqlite3_bind_double(st, 3, wall_now());
        sqlite3_bind_int64(st, 4, m->steps);
        sqlite3_bind_double(st, 5, m->loss);
        sqlite3_bind_double(st, 6, m->train_accuracy);
        sqlite3_bind_double(st, 7, m->seconds);
        sqlite3_bind_double(st, 8, m->device_seconds);
        sqlite3_bind_double(st, 9, m->compute_seconds);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)m->device_queries);
        if (m->test_accuracy >= 0)
            sqlite3_bind_double(st, 11, m->test_accuracy);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "storing epoch %d", m->epoch);
    }
    sqlite3_finalize(st);
    return rc;
}

int runstore_epochs(runstore *rs, epoch_metrics *out, int n)
{
    sqlite3_stmt *st = NULL;
    if (prepare(rs, &st, "SELECT epoch, steps, loss, train_accuracy, seconds, device_seconds, compute_seconds,"
                         " device_queries, test_accuracy FROM epoch WHERE epoch <= ? ORDER BY epoch"))
        return PATCTL_ERR_IO;
    sqlite3_bind_int(st, 1, n);
    int k = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int e = sqlite3_column_int(st, 0);
        if (e < 1 || e > n)
            continue;
        epoch_metrics *m = &out[e - 1];
        m->epoch = e;
        m->steps = (long)sqlite3_column_int64(st, 1);
        m->loss = sqlite3_column_double(st, 2);
        m->train_accuracy = sqlite3_column_double(st, 3);
        m->seconds = sqlite3_column_double(st, 4);
        m->device_seconds = sqlite3_column_double(st, 5);
        m->compute_seconds = sqlite3_column_double(st, 6);
        m->device_queries = (uint64_t)sqlite3_column_int64(st, 7);
        m->test_accuracy = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1.0 : sqlite3_column_double(st, 8);
        k++;
    }
    sqlite3_finalize(st);
    return k;
}

int runstore_evaluation(runstore *rs, const eval_record *e)
{
    sqlite3_stmt *st = NULL;
    int rc = tx(rs);
    if (!rc)
        rc = prepare(rs, &st, "INSERT INTO evaluation(session, t, step, epoch, checkpoint, n, accuracy, seconds,"
                              " device_queries, classes, confusion, pruned, pruned_entries, prunable_entries, nrmse)"
                              " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!rc) {
        sqlite3_bind_int64(st, 1, rs->session);
        sqlite3_bind_double(st, 2, wall_now());
        sqlite3_bind_int64(st, 3, e->step);
        sqlite3_bind_int(st, 4, e->epoch);
        if (e->checkpoint > 0)
            sqlite3_bind_int64(st, 5, e->checkpoint);
        sqlite3_bind_int64(st, 6, e->n);
        if (isfinite(e->accuracy))
            sqlite3_bind_double(st, 7, e->accuracy);
        sqlite3_bind_double(st, 8, e->seconds);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)e->device_queries);
        sqlite3_bind_int(st, 10, e->classes);
        bind_le32(rs, st, 11, e->confusion, (long)e->classes * e->classes);
        sqlite3_bind_double(st, 12, e->pruned);
        sqlite3_bind_int64(st, 13, e->pruned_entries);
        sqlite3_bind_int64(st, 14, e->prunable_entries);
        if (isfinite(e->nrmse))
            sqlite3_bind_double(st, 15, e->nrmse);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "storing an evaluation");
    }
    sqlite3_finalize(st);
    return rc ? rc : runstore_commit(rs);
}

/* ---- checkpoints ---- */

int runstore_checkpoint_save(runstore *rs, checkpoint *ck, int keep_mid)
{
    double t0 = mono_now();
    sqlite3_stmt *st = NULL, *sd = NULL;
    int rc = tx(rs);
    int epoch_end = ck->pos == 0;
    if (!rc)
        rc = prepare(rs, &st, "INSERT INTO checkpoint(session, t, step, epoch, pos, final, epoch_end, train_seconds,"
                              " n_params, params, optimizer, opt_t, opt_m, opt_v, rng, data_order, epoch_steps,"
                              " hits, seen, loss_sum, dev_s, all_s, eval_queries, eval_samples, eval_seconds,"
                              " skipped, failed_in_row)"
                              " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!rc)
        rc = prepare(rs, &sd, "INSERT INTO checkpoint_device VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!rc) {
        sqlite3_bind_int64(st, 1, rs->session);
        sqlite3_bind_double(st, 2, wall_now());
        sqlite3_bind_int64(st, 3, ck->step);
        sqlite3_bind_int(st, 4, ck->epoch);
        sqlite3_bind_int64(st, 5, ck->pos);
        sqlite3_bind_int(st, 6, ck->final);
        sqlite3_bind_int(st, 7, epoch_end);
        sqlite3_bind_double(st, 8, ck->train_seconds);
        sqlite3_bind_int64(st, 9, ck->n_params);
        bind_le32(rs, st, 10, ck->params, ck->n_params);
        sqlite3_bind_text(st, 11, optimizer_name((optimizer_kind)ck->opt_kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 12, (sqlite3_int64)ck->opt_t);
        bind_le32(rs, st, 13, ck->opt_m, ck->n_params);
        bind_le32(rs, st, 14, ck->opt_v, ck->n_params);
        sqlite3_bind_blob64(st, 15, ck->rng, ck->rng_len, SQLITE_STATIC);
        bind_le32(rs, st, 16, ck->order, ck->n_order);
        sqlite3_bind_int64(st, 17, ck->epoch_steps);
        sqlite3_bind_int64(st, 18, ck->hits);
        sqlite3_bind_int64(st, 19, ck->seen);
        sqlite3_bind_double(st, 20, ck->loss_sum);
        sqlite3_bind_double(st, 21, ck->dev_s);
        sqlite3_bind_double(st, 22, ck->all_s);
        sqlite3_bind_int64(st, 23, (sqlite3_int64)ck->eval_dev.queries);
        sqlite3_bind_int64(st, 24, (sqlite3_int64)ck->eval_dev.samples);
        sqlite3_bind_double(st, 25, ck->eval_dev.seconds);
        sqlite3_bind_int64(st, 26, ck->skipped);
        sqlite3_bind_int(st, 27, ck->failed_in_row);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "writing a checkpoint");
        else
            ck->id = sqlite3_last_insert_rowid(rs->db);
    }
    for (int i = 0; i < ck->n_devices && !rc; i++) {
        const ckpt_device *d = &ck->dev[i];
        sqlite3_reset(sd);
        sqlite3_bind_int64(sd, 1, ck->id);
        sqlite3_bind_int(sd, 2, i);
        sqlite3_bind_int64(sd, 3, (sqlite3_int64)d->next_id);
        sqlite3_bind_int(sd, 4, d->has_last);
        bind_le32(rs, sd, 5, d->last_theta, d->n_theta);
        sqlite3_bind_int64(sd, 6, (sqlite3_int64)d->st.queries);
        sqlite3_bind_int64(sd, 7, (sqlite3_int64)d->st.samples);
        sqlite3_bind_int64(sd, 8, (sqlite3_int64)d->st.ramp_steps);
        sqlite3_bind_int64(sd, 9, (sqlite3_int64)d->st.clamped);
        sqlite3_bind_int64(sd, 10, (sqlite3_int64)d->st.rejected);
        sqlite3_bind_int64(sd, 11, (sqlite3_int64)d->st.faults);
        sqlite3_bind_int64(sd, 12, (sqlite3_int64)d->st.retries);
        sqlite3_bind_double(sd, 13, d->st.seconds);
        if (sqlite3_step(sd) != SQLITE_DONE)
            rc = set_err(rs, PATCTL_ERR_IO, "writing a checkpoint's device %d", i);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(sd);
    if (!rc && !epoch_end && !ck->final) {
        /* older mid-epoch checkpoints beyond keep_mid go, in the same transaction */
        char sql[400];
        snprintf(sql, sizeof(sql),
                 "DELETE FROM checkpoint_device WHERE checkpoint IN (SELECT id FROM checkpoint WHERE"
                 " epoch_end=0 AND final=0 ORDER BY id DESC LIMIT -1 OFFSET %d);"
                 "DELETE FROM checkpoint WHERE id IN (SELECT id FROM checkpoint WHERE epoch_end=0 AND"
                 " final=0 ORDER BY id DESC LIMIT -1 OFFSET %d);",
                 keep_mid < 1 ? 1 : keep_mid, keep_mid < 1 ? 1 : keep_mid);
        rc = exec(rs, sql);
    }
    if (rc) {
        if (rs->in_tx) {
            exec(rs, "ROLLBACK");
            rs->in_tx = 0;
        }
        return rc;
    }
    rc = runstore_commit(rs);
    rs->seconds += mono_now() - t0;
    return rc;
}

void checkpoint_free(checkpoint *ck)
{
    if (!ck || !ck->owned)
        return;
    free(ck->params);
    free(ck->opt_m);
    free(ck->opt_v);
    free(ck->rng);
    free(ck->order);
    for (int i = 0; i < ck->n_devices; i++)
        free(ck->dev[i].last_theta);
    memset(ck, 0, sizeof(*ck));
}

/* A copy of a BLOB column of 4-byte little-endian values: n values expected
 * (n < 0: any); NULL column -> NULL with *got = 0. */
static void *blob_le32(sqlite3_stmt *st, int col, long n, long *got, int *bad)
{
    const void *b = sqlite3_column_blob(st, col);
    long bytes = sqlite3_column_bytes(st, col);
    if (got)
        *got = bytes / 4;
    if (!b)
        return NULL;
    if (bytes % 4 || (n >= 0 && bytes != 4 * n)) {
        *bad = 1;
        return NULL;
    }
    float *out = malloc((size_t)bytes + 4);
    if (!out) {
        *bad = 1;
        return NULL;
    }
    runstore_f32_from_le(out, b, bytes / 4);
    return out;
}

int runstore_checkpoint_load(runstore *rs, int64_t id, checkpoint *ck, char *err, size_t errlen)
{
    memset(ck, 0, sizeof(*ck));
    ck->owned = 1;
    sqlite3_stmt *st = NULL;
    const char *sql = id > 0 ? "SELECT id, step, epoch, pos, final, train_seconds, n_params, params, optimizer, opt_t,"
                               " opt_m, opt_v, rng, data_order, epoch_steps, hits, seen, loss_sum, dev_s, all_s,"
                               " eval_queries, eval_samples, eval_seconds FROM checkpoint WHERE id = ?"
                             : "SELECT id, step, epoch, pos, final, train_seconds, n_params, params, optimizer, opt_t,"
                               " opt_m, opt_v, rng, data_order, epoch_steps, hits, seen, loss_sum, dev_s, all_s,"
                               " eval_queries, eval_samples, eval_seconds FROM checkpoint ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(rs->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "reading checkpoints: %s", sqlite3_errmsg(rs->db));
        return PATCTL_ERR_IO;
    }
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (id > 0)
            snprintf(err, errlen, "no checkpoint %lld in this run", (long long)id);
        else
            snprintf(err, errlen, "the run has no checkpoint yet");
        return PATCTL_ERR_NOT_FOUND;
    }
    int bad = 0;
    ck->id = sqlite3_column_int64(st, 0);
    ck->step = (long)sqlite3_column_int64(st, 1);
    ck->epoch = sqlite3_column_int(st, 2);
    ck->pos = (long)sqlite3_column_int64(st, 3);
    ck->final = sqlite3_column_int(st, 4);
    ck->train_seconds = sqlite3_column_double(st, 5);
    ck->n_params = (long)sqlite3_column_int64(st, 6);
    ck->params = blob_le32(st, 7, ck->n_params, NULL, &bad);
    const unsigned char *on = sqlite3_column_text(st, 8);
    ck->opt_kind = on && strcmp((const char *)on, "sgd") == 0 ? OPT_SGD : OPT_ADAM;
    ck->opt_t = (uint64_t)sqlite3_column_int64(st, 9);
    ck->opt_m = blob_le32(st, 10, ck->n_params, NULL, &bad);
    ck->opt_v = blob_le32(st, 11, ck->n_params, NULL, &bad);
    ck->rng_len = (size_t)sqlite3_column_bytes(st, 12);
    ck->rng = malloc(ck->rng_len + 1);
    if (ck->rng && ck->rng_len)
        memcpy(ck->rng, sqlite3_column_blob(st, 12), ck->rng_len);
    ck->order = blob_le32(st, 13, -1, &ck->n_order, &bad);
    ck->epoch_steps = (long)sqlite3_column_int64(st, 14);
    ck->hits = (long)sqlite3_column_int64(st, 15);
    ck->seen = (long)sqlite3_column_int64(st, 16);
    ck->loss_sum = sqlite3_column_double(st, 17);
    ck->dev_s = sqlite3_column_double(st, 18);
    ck->all_s = sqlite3_column_double(st, 19);
    ck->eval_dev.queries = (uint64_t)sqlite3_column_int64(st, 20);
    ck->eval_dev.samples = (uint64_t)sqlite3_column_int64(st, 21);
    ck->eval_dev.seconds = sqlite3_column_double(st, 22);
    sqlite3_finalize(st);
    /* a column younger than schema 1 (NULL or missing in older stores: 0) */
    if (sqlite3_prepare_v2(rs->db, "SELECT skipped FROM checkpoint WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, ck->id);
        if (sqlite3_step(st) == SQLITE_ROW)
            ck->skipped = (long)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    st = NULL;
    /* schema 2 (a schema-1 store opened read-only has no such column: 0) */
    if (sqlite3_prepare_v2(rs->db, "SELECT failed_in_row FROM checkpoint WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, ck->id);
        if (sqlite3_step(st) == SQLITE_ROW)
            ck->failed_in_row = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    if (bad || !ck->params || !ck->opt_m || !ck->opt_v || !ck->rng) {
        snprintf(err, errlen, "checkpoint %lld is damaged or incomplete", (long long)ck->id);
        checkpoint_free(ck);
        return PATCTL_ERR_FORMAT;
    }
    if (sqlite3_prepare_v2(rs->db, "SELECT device, next_id, has_last, last_theta, queries, samples, ramp_steps,"
                                   " clamped, rejected, faults, retries, seconds FROM checkpoint_device"
                                   " WHERE checkpoint = ? ORDER BY device", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "reading checkpoint devices: %s", sqlite3_errmsg(rs->db));
        checkpoint_free(ck);
        return PATCTL_ERR_IO;
    }
    sqlite3_bind_int64(st, 1, ck->id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int i = sqlite3_column_int(st, 0);
        if (i != ck->n_devices || i >= CFG_MAX_DEVICES) {
            bad = 1;
            break;
        }
        ckpt_device *d = &ck->dev[i];
        ck->n_devices++;
        d->next_id = (uint64_t)sqlite3_column_int64(st, 1);
        d->has_last = sqlite3_column_int(st, 2);
        d->last_theta = blob_le32(st, 3, -1, &d->n_theta, &bad);
        d->st.queries = (uint64_t)sqlite3_column_int64(st, 4);
        d->st.samples = (uint64_t)sqlite3_column_int64(st, 5);
        d->st.ramp_steps = (uint64_t)sqlite3_column_int64(st, 6);
        d->st.clamped = (uint64_t)sqlite3_column_int64(st, 7);
        d->st.rejected = (uint64_t)sqlite3_column_int64(st, 8);
        d->st.faults = (uint64_t)sqlite3_column_int64(st, 9);
        d->st.retries = (uint64_t)sqlite3_column_int64(st, 10);
        d->st.seconds = sqlite3_column_double(st, 11);
    }
    sqlite3_finalize(st);
    if (bad) {
        snprintf(err, errlen, "checkpoint %lld: damaged device records", (long long)ck->id);
        checkpoint_free(ck);
        return PATCTL_ERR_FORMAT;
    }
    return 0;
}

int runstore_rewind(runstore *rs, const checkpoint *ck)
{
    char sql[600];
    int rc = tx(rs);
    if (!rc) {
        /* evaluations of training sessions after the checkpoint are redone;
         * those of `patctl eval` sessions stay.  Step rows past it: applied
         * steps numbered beyond it, and skipped ones beyond its count of
         * tries (applied + skipped; those before it, numbered step + 1,
         * stay) */
        snprintf(sql, sizeof(sql),
                 "DELETE FROM step WHERE (status = 'ok' AND step > %ld) OR attempt > %ld;"
                 "DELETE FROM epoch WHERE epoch > %d;"
                 "DELETE FROM evaluation WHERE session IN (SELECT id FROM session WHERE kind IN ('train','resume'))"
                 " AND (step > %ld OR (step = %ld AND t > (SELECT t FROM checkpoint WHERE id = %lld)));",
                 ck->step, ck->step + ck->skipped, ck->epoch, ck->step, ck->step, (long long)ck->id);
        rc = exec(rs, sql);
    }
    for (int i = 0; i < ck->n_devices && !rc; i++) {
        snprintf(sql, sizeof(sql),
                 "UPDATE query SET superseded = 1 WHERE device = %d AND qid >= %llu AND session < %lld",
                 i, (unsigned long long)ck->dev[i].next_id, (long long)rs->session);
        rc = exec(rs, sql);
    }
    if (rc) {
        if (!rs->failed)
            rs->failed = rc;
        return rc;
    }
    return runstore_commit(rs);
}
