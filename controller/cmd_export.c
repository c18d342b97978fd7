/* patctl export RUN --npy DIR | --csv DIR: the run store as files NumPy
 * (numpy.load, no patctl needed) or any CSV reader takes.
 *
 * Tables (one file each; .npy as structured arrays, TEXT as bytes, NULL as
 * NaN / -1 / b''): run, device, param_block, param_view, session, step
 * (skipped steps too: status b'skipped', loss NaN), epoch, evaluation, query (without its arrays), log, checkpoint (without
 * its arrays).  Arrays: params (the chosen checkpoint's flat vector) and
 * param_<name> per parameter block [rows, cols]; confusion (the last
 * evaluation); per device the journal: journal_<dev>_x [rows, n_in],
 * journal_<dev>_y [rows, n_out] (NaN where a query failed),
 * journal_<dev>_query [rows] (query.id of each row), journal_<dev>_settings
 * [n, n_theta] and journal_<dev>_setting [n] (setting.id of each). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/commands.h"
#include "controller/npy.h"
#include "controller/runstore.h"
#include "controller/summary.h"

typedef struct exporter {
    sqlite3 *db;
    const char *dir;
    int csv;
    int files;
    double bytes;
    char err[512];
} exporter;

static int host_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void put_le(uint8_t *dst, const void *src, int size)
{
    const uint8_t *s = src;
    for (int i = 0; i < size; i++)
        dst[i] = host_le() ? s[i] : s[size - 1 - i];
}

static FILE *open_out(exporter *x, const char *name, const char *ext, char *path, size_t n)
{
    snprintf(path, n, "%s/%s.%s", x->dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f)
        snprintf(x->err, sizeof(x->err), "%s: %s", path, strerror(errno));
    return f;
}

static int close_out(exporter *x, FILE *f, const char *path)
{
    long size = ftell(f);
    if (ferror(f) | fclose(f)) {
        snprintf(x->err, sizeof(x->err), "%s: write error", path);
        return PATCTL_ERR_IO;
    }
    x->files++;
    x->bytes += (double)size;
    return 0;
}

/* ---- tables ---- */

enum { T_INT, T_REAL, T_TEXT };

static int col_type(sqlite3_stmt *st, int i)
{
    const char *d = sqlite3_column_decltype(st, i);
    if (d && strstr(d, "INT"))
        return T_INT;
    if (d && strstr(d, "REAL"))
        return T_REAL;
    if (d && strstr(d, "TEXT"))
        return T_TEXT;
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return T_INT;
    case SQLITE_FLOAT: return T_REAL;
    default: return T_TEXT;
    }
}

static void csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int export_table(exporter *x, const char *name, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(x->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(x->err, sizeof(x->err), "%s: %s", name, sqlite3_errmsg(x->db));
        return PATCTL_ERR_IO;
    }
    int nc = sqlite3_column_count(st);
    int type[64], width[64];
    if (nc > 64) {
        sqlite3_finalize(st);
        return PATCTL_ERR_ARG;
    }
    for (int i = 0; i < nc; i++)
        type[i] = col_type(st, i), width[i] = 1;
    long rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        rows++;
        for (int i = 0; i < nc; i++)
            if (type[i] == T_TEXT && sqlite3_column_bytes(st, i) > width[i])
                width[i] = sqlite3_column_bytes(st, i);
    }
    sqlite3_reset(st);
    char path[1200];
    FILE *f = open_out(x, name, x->csv ? "csv" : "npy", path, sizeof(path));
    if (!f) {
        sqlite3_finalize(st);
        return PATCTL_ERR_IO;
    }
    int rc = 0;
    size_t recsize = 0;
    if (x->csv) {
        for (int i = 0; i < nc; i++)
            fprintf(f, "%s%s", i ? "," : "", sqlite3_column_name(st, i));
        fputc('\n', f);
    } else {
        size_t cap = 64;
        for (int i = 0; i < nc; i++)
            cap += strlen(sqlite3_column_name(st, i)) + 24;
        char *descr = malloc(cap);
        if (!descr) {
            fclose(f);
            sqlite3_finalize(st);
            return PATCTL_ERR_NOMEM;
        }
        size_t used = (size_t)sprintf(descr, "[");
        for (int i = 0; i < nc; i++) {
            if (type[i] == T_TEXT)
                used += (size_t)sprintf(descr + used, "('%s', '|S%d')", sqlite3_column_name(st, i), width[i]);
            else
                used += (size_t)sprintf(descr + used, "('%s', '%s')", sqlite3_column_name(st, i),
                                        type[i] == T_INT ? "<i8" : "<f8");
            used += (size_t)sprintf(descr + used, "%s", i + 1 < nc ? ", " : "]");
            recsize += type[i] == T_TEXT ? (size_t)width[i] : 8;
        }
        rc = npy_write_header(f, descr, 1, &rows);
        free(descr);
    }
    uint8_t *rec = malloc(recsize + 1);
    long done = 0;
    while (!rc && rec && done < rows && sqlite3_step(st) == SQLITE_ROW) {
        size_t off = 0;
        done++;
        for (int i = 0; i < nc; i++) {
            int null = sqlite3_column_type(st, i) == SQLITE_NULL;
            if (x->csv) {
                if (i)
                    fputc(',', f);
                if (null)
                    continue;
                if (type[i] == T_INT)
                    fprintf(f, "%lld", (long long)sqlite3_column_int64(st, i));
                else if (type[i] == T_REAL)
                    fprintf(f, "%.17g", sqlite3_column_double(st, i));
                else if (sqlite3_column_type(st, i) == SQLITE_BLOB)
                    fprintf(f, "<%d bytes>", sqlite3_column_bytes(st, i));
                else
                    csv_text(f, (const char *)sqlite3_column_text(st, i));
                continue;
            }
            if (type[i] == T_INT) {
                int64_t v = null ? -1 : (int64_t)sqlite3_column_int64(st, i);
                put_le(rec + off, &v, 8);
                off += 8;
            } else if (type[i] == T_REAL) {
                double v = null ? NAN : sqlite3_column_double(st, i);
                put_le(rec + off, &v, 8);
                off += 8;
            } else {
                memset(rec + off, 0, (size_t)width[i]);
                const void *b = null ? NULL : sqlite3_column_blob(st, i);
                int nb = sqlite3_column_bytes(st, i);
                if (b && nb > 0)
                    memcpy(rec + off, b, (size_t)(nb < width[i] ? nb : width[i]));
                off += (size_t)width[i];
            }
        }
        if (x->csv)
            fputc('\n', f);
        else if (fwrite(rec, 1, recsize, f) != recsize)
            rc = PATCTL_ERR_IO;
    }
    if (!rec)
        rc = PATCTL_ERR_NOMEM;
    free(rec);
    sqlite3_finalize(st);
    int crc = close_out(x, f, path);
    return rc ? rc : crc;
}

/* ---- arrays ---- */

/* A float32 matrix [rows, cols] (cols == 0: a vector [rows]) from
 * little-endian data. */
static int write_matrix(exporter *x, const char *name, const void *le, long rows, long cols)
{
    int vec = cols == 0;
    if (vec)
        cols = 1;
    char path[1200];
    FILE *f = open_out(x, name, x->csv ? "csv" : "npy", path, sizeof(path));
    if (!f)
        return PATCTL_ERR_IO;
    int rc = 0;
    if (x->csv) {
        float *v = malloc(sizeof(float) * (size_t)(cols > 0 ? cols : 1));
        for (long r = 0; r < rows && v; r++) {
            runstore_f32_from_le(v, (const uint8_t *)le + 4 * r * cols, cols);
            for (long c = 0; c < cols; c++)
                fprintf(f, "%s%.9g", c ? "," : "", v[c]);
            fputc('\n', f);
        }
        if (!v)
            rc = PATCTL_ERR_NOMEM;
        free(v);
    } else {
        long shape[2] = {rows, cols};
        rc = npy_write_header(f, "'<f4'", vec ? 1 : 2, shape);
        if (!rc && fwrite(le, 4, (size_t)(rows * cols), f) != (size_t)(rows * cols))
            rc = PATCTL_ERR_IO;
    }
    int crc = close_out(x, f, path);
    return rc ? rc : crc;
}

static int64_t scalar(sqlite3 *db, const char *sql, int64_t arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, arg);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int export_params(exporter *x, int64_t ck)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(x->db, "SELECT params, n_params FROM checkpoint WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return PATCTL_ERR_IO;
    sqlite3_bind_int64(st, 1, ck);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        snprintf(x->err, sizeof(x->err), "no checkpoint %lld", (long long)ck);
        return PATCTL_ERR_NOT_FOUND;
    }
    long n = (long)sqlite3_column_int64(st, 1);
    const uint8_t *p = sqlite3_column_blob(st, 0);
    if (!p || sqlite3_column_bytes(st, 0) != 4 * n) {
        sqlite3_finalize(st);
        snprintf(x->err, sizeof(x->err), "checkpoint %lld: damaged parameters", (long long)ck);
        return PATCTL_ERR_FORMAT;
    }
    uint8_t *params = malloc((size_t)(4 * n + 4));
    if (!params) {
        sqlite3_finalize(st);
        return PATCTL_ERR_NOMEM;
    }
    memcpy(params, p, (size_t)(4 * n));
    sqlite3_finalize(st);
    rc = write_matrix(x, "params", params, n, 0);
    if (!rc && sqlite3_prepare_v2(x->db, "SELECT name, offset, rows, cols FROM param_view", -1, &st, NULL) == SQLITE_OK) {
        while (!rc && sqlite3_step(st) == SQLITE_ROW) {
            long off = (long)sqlite3_column_int64(st, 1), r = (long)sqlite3_column_int64(st, 2),
                 c = (long)sqlite3_column_int64(st, 3);
            char name[200];
            snprintf(name, sizeof(name), "param_%s", (const char *)sqlite3_column_text(st, 0));
            if (off < 0 || r < 0 || c < 0 || off + r * c > n) {
                snprintf(x->err, sizeof(x->err), "param_view %s lies outside the parameters", name);
                rc = PATCTL_ERR_FORMAT;
            } else {
                rc = write_matrix(x, name, params + 4 * off, r, c);
            }
        }
        sqlite3_finalize(st);
    }
    free(params);
    return rc;
}

static int export_confusion(exporter *x)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(x->db, "SELECT confusion, classes FROM evaluation ORDER BY id DESC LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return PATCTL_ERR_IO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int k = sqlite3_column_int(st, 1);
        const uint8_t *b = sqlite3_column_blob(st, 0);
        if (b && k > 0 && sqlite3_column_bytes(st, 0) == 4 * k * k) {
            int *conf = malloc(sizeof(int) * (size_t)(k * k));
            if (conf) {
                runstore_f32_from_le((float *)conf, b, (long)k * k); /* 4-byte swap only */
                char path[1200];
                if (x->csv) {
                    FILE *f = open_out(x, "confusion", "csv", path, sizeof(path));
                    if (f) {
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++)
                                fprintf(f, "%d%c", conf[i * k + j], j + 1 < k ? ',' : '\n');
                        rc = close_out(x, f, path);
                    } else {
                        rc = PATCTL_ERR_IO;
                    }
                } else {
                    snprintf(path, sizeof(path), "%s/confusion.npy", x->dir);
                    rc = npy_save_i32(path, conf, k, k);
                    if (!rc)
                        x->files++;
                }
                free(conf);
            }
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Stream the BLOB rows of one device's query/setting table into a matrix
 * file [rows, width] (and the ids of each row into a second file). */
static int export_blobs(exporter *x, const char *base, const char *ids_name, const char *sql, int dev, long rows,
                        long width, int per_row_batch)
{
    char path[1200], ipath[1200];
    FILE *f = open_out(x, base, x->csv ? "csv" : "npy", path, sizeof(path));
    if (!f)
        return PATCTL_ERR_IO;
    FILE *fi = x->csv || !ids_name ? NULL : open_out(x, ids_name, "npy", ipath, sizeof(ipath));
    if (!x->csv && ids_name && !fi) {
        fclose(f);
        return PATCTL_ERR_IO;
    }
    int rc = 0;
    long shape[2] = {rows, width};
    if (x->csv) {
        fprintf(f, "%s", per_row_batch ? "query" : "setting");
        for (long c = 0; c < width; c++)
            fprintf(f, ",%ld", c);
        fputc('\n', f);
    } else {
        rc = npy_write_header(f, "'<f4'", 2, shape);
        if (!rc && fi)
            rc = npy_write_header(fi, "'<i8'", 1, shape);
    }
    sqlite3_stmt *st = NULL;
    if (!rc && sqlite3_prepare_v2(x->db, sql, -1, &st, NULL) != SQLITE_OK)
        rc = PATCTL_ERR_IO;
    if (!rc)
        sqlite3_bind_int(st, 1, dev);
    float *nanrow = malloc(sizeof(float) * (size_t)(width + 1));
    float *v = malloc(sizeof(float) * (size_t)(width + 1));
    if (!nanrow || !v)
        rc = PATCTL_ERR_NOMEM;
    for (long c = 0; !rc && c < width; c++)
        nanrow[c] = NAN;
    long written = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        long B = per_row_batch ? (long)sqlite3_column_int64(st, 2) : 1;
        const uint8_t *b = sqlite3_column_blob(st, 1);
        int ok = b && sqlite3_column_bytes(st, 1) == 4 * B * width;
        for (long r = 0; r < B && !rc && written < rows; r++, written++) {
            const void *src = ok ? (const void *)(b + 4 * r * width) : NULL;
            if (x->csv) {
                if (src)
                    runstore_f32_from_le(v, src, width);
                fprintf(f, "%lld", (long long)id);
                for (long c = 0; c < width; c++)
                    fprintf(f, ",%.9g", src ? v[c] : NAN);
                fputc('\n', f);
            } else {
                uint8_t le[8];
                put_le(le, &id, 8);
                if (fi && fwrite(le, 1, 8, fi) != 8)
                    rc = PATCTL_ERR_IO;
                if (src) {
                    if (fwrite(src, 4, (size_t)width, f) != (size_t)width)
                        rc = PATCTL_ERR_IO;
                } else {
                    /* NaN rows are written in little-endian too */
                    for (long c = 0; c < width && !rc; c++) {
                        uint8_t q[4];
                        put_le(q, &nanrow[c], 4);
                        if (fwrite(q, 1, 4, f) != 4)
                            rc = PATCTL_ERR_IO;
                    }
                }
            }
        }
    }
    if (!rc && written != rows) {
        snprintf(x->err, sizeof(x->err), "%s: expected %ld rows, found %ld", base, rows, written);
        rc = PATCTL_ERR_FORMAT;
    }
    free(nanrow);
    free(v);
    sqlite3_finalize(st);
    int c1 = close_out(x, f, path), c2 = fi ? close_out(x, fi, ipath) : 0;
    return rc ? rc : c1 ? c1 : c2;
}

static int export_journal(exporter *x)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(x->db, "SELECT idx, name, n_in, n_out, n_theta FROM device ORDER BY idx", -1, &st, NULL) !=
        SQLITE_OK)
        return PATCTL_ERR_IO;
    int rc = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        int dev = sqlite3_column_int(st, 0);
        char name[64], base[200], ids[200];
        snprintf(name, sizeof(name), "%s", (const char *)sqlite3_column_text(st, 1));
        long n_in = (long)sqlite3_column_int64(st, 2), n_out = (long)sqlite3_column_int64(st, 3),
             n_theta = (long)sqlite3_column_int64(st, 4);
        long rows = (long)scalar(x->db, "SELECT COALESCE(SUM(batch), 0) FROM query WHERE device = ? AND batch > 0"
                                        " AND x IS NOT NULL", dev);
        snprintf(base, sizeof(base), "journal_%s_x", name);
        snprintf(ids, sizeof(ids), "journal_%s_query", name);
        rc = export_blobs(x, base, ids, "SELECT id, x, batch FROM query WHERE device = ? AND batch > 0 AND x IS NOT NULL"
                          " ORDER BY id", dev, rows, n_in, 1);
        snprintf(base, sizeof(base), "journal_%s_y", name);
        if (!rc) /* the same rows as x (their ids are in journal_<dev>_query) */
            rc = export_blobs(x, base, NULL, "SELECT id, y, batch FROM query WHERE device = ? AND batch > 0 AND x IS NOT"
                              " NULL ORDER BY id", dev, rows, n_out, 1);
        long ns = (long)scalar(x->db, "SELECT COUNT(*) FROM setting WHERE device = ?", dev);
        snprintf(base, sizeof(base), "journal_%s_settings", name);
        snprintf(ids, sizeof(ids), "journal_%s_setting", name);
        if (!rc)
            rc = export_blobs(x, base, ids, "SELECT id, theta FROM setting WHERE device = ? ORDER BY id", dev, ns,
                              n_theta, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: patctl export RUN (--npy DIR | --csv DIR) [--checkpoint ID] [--no-journal]\n"
            "\n"
            "Writes the run store RUN/run.sqlite as files: every table (run, device,\n"
            "param_block, param_view, session, step, epoch, evaluation, query, log,\n"
            "checkpoint; .npy as structured arrays), the parameters of a checkpoint\n"
            "(params, param_<device>.<block> [rows, cols]; default: the last one), the\n"
            "last confusion matrix, and per device the journal (journal_<dev>_x / _y\n"
            "[rows, n], journal_<dev>_query [rows], journal_<dev>_settings [n, n_theta],\n"
            "journal_<dev>_setting [n]).  numpy.load reads the .npy files; TEXT columns\n"
            "are bytes (.astype(str)); NULLs are NaN (REAL) or -1 (INTEGER).\n");
}

int cmd_export(int argc, char **argv)
{
    const char *run = NULL, *out = NULL;
    int csv = -1, journal = 1;
    long long ck = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            export_usage(stdout);
            return EXIT_OK;
        } else if ((strcmp(argv[i], "--npy") == 0 || strcmp(argv[i], "--csv") == 0) && i + 1 < argc) {
            csv = strcmp(argv[i], "--csv") == 0;
            out = argv[++i];
        } else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc) {
            char *end;
            ck = strtoll(argv[++i], &end, 10);
            if (*end || ck <= 0) {
                fprintf(stderr, "patctl export: --checkpoint: expected a checkpoint id\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--no-journal") == 0) {
            journal = 0;
        } else if (argv[i][0] != '-' && !run) {
            run = argv[i];
        } else {
            fprintf(stderr, "patctl export: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!run || csv < 0) {
        export_usage(stderr);
        return EXIT_USAGE;
    }
    char err[1024];
    runstore *rs = NULL;
    if (runstore_open(&rs, run, 0, err, sizeof(err))) {
        fprintf(stderr, "patctl export: %s\n", err);
        return EXIT_FAIL;
    }
    if (make_dirs(out)) {
        fprintf(stderr, "patctl export: cannot create %s: %s\n", out, strerror(errno));
        runstore_close(&rs);
        return EXIT_FAIL;
    }
    exporter x = {.db = runstore_db(rs), .dir = out, .csv = csv};
    const struct {
        const char *name, *sql;
    } tables[] = {
        {"run", "SELECT * FROM run"},
        {"device", "SELECT * FROM device ORDER BY idx"},
        {"param_block", "SELECT * FROM param_block ORDER BY device, block"},
        {"param_view", "SELECT * FROM param_view ORDER BY offset"},
        {"session", "SELECT * FROM session ORDER BY id"},
        /* schema 2: skipped steps have rows too (status 'skipped'), in the
         * order they happened; schema 1 (read as it is): applied ones only */
        {"step", runstore_schema_version(rs) >= 2 ? "SELECT * FROM step ORDER BY attempt"
                                                   : "SELECT * FROM step ORDER BY step"},
        {"epoch", "SELECT * FROM epoch ORDER BY epoch"},
        {"evaluation", runstore_schema_version(rs) >= 3
                           ? "SELECT id, session, t, step, epoch, checkpoint, n, accuracy, seconds, device_queries,"
                             " classes, pruned, pruned_entries, prunable_entries, nrmse FROM evaluation ORDER BY id"
                           : "SELECT id, session, t, step, epoch, checkpoint, n, accuracy, seconds, device_queries,"
                             " classes FROM evaluation ORDER BY id"},
        {"query", "SELECT id, session, device, qid, step, phase, batch, attempt, ramp, rc, setting, t_start, t_end,"
                  " superseded FROM query ORDER BY id"},
        {"log", "SELECT * FROM log ORDER BY id"},
        {"checkpoint", "SELECT id, session, t, step, epoch, pos, final, epoch_end, train_seconds, n_params, optimizer,"
                       " opt_t FROM checkpoint ORDER BY id"},
    };
    /* one read transaction: a consistent snapshot even while a run writes */
    int rc = sqlite3_exec(x.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : PATCTL_ERR_IO;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]) && !rc; i++)
        rc = export_table(&x, tables[i].name, tables[i].sql);
    if (!rc) {
        int64_t id = ck > 0 ? ck : scalar(x.db, "SELECT MAX(id) + 0 * ? FROM checkpoint", 0);
        if (id > 0)
            rc = export_params(&x, id);
        else
            fprintf(stderr, "patctl export: the run has no checkpoint: no parameters exported\n");
    }
    if (!rc)
        rc = export_confusion(&x);
    if (!rc && journal)
        rc = export_journal(&x);
    sqlite3_exec(x.db, "COMMIT", NULL, NULL, NULL);
    runstore_close(&rs);
    if (rc) {
        fprintf(stderr, "patctl export: %s\n", x.err[0] ? x.err : patctl_strerror(rc));
        return EXIT_FAIL;
    }
    printf("patctl export: %d files (%.1f MB) in %s\n", x.files, x.bytes / 1e6, out);
    return EXIT_OK;
}
