/* patctl report: from small runs recorded here with the patctl binary, every
 * figure is produced (a PNG signature and a non-trivial size), comparisons
 * work, missing data gives a clear message instead of an empty plot, and
 * without gnuplot the HTML (with tables and how to install gnuplot) is still
 * written.  Figure checks are skipped with a message when gnuplot (with
 * pngcairo) is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "controller/report_int.h"
#include "patctl/error.h"
#include "surrogate/fit_npy.h"

#ifndef PATCTL_BIN
#error "PATCTL_BIN must name the patctl binary"
#endif

static char tmp[64];          /* the test's directory */
static int have_gnuplot;

/* Run a shell command, capture stdout+stderr, return the exit status. */
static int run(const char *cmd, char *out, size_t n)
{
    char full[4096];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    while (fgetc(p) != EOF) /* drain */
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static int count(const char *hay, const char *needle)
{
    int k = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        k++;
    return k;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void train(const char *args, const char *dir)
{
    char cmd[2048], out[16384];
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train %s --out %s/%s --quiet", args, tmp, dir);
    int st = run(cmd, out, sizeof(out));
    if (st != 0)
        printf("%s\n", out);
    assert_int_equal(st, 0);
}

/* A run that was killed before its first checkpoint: the steps, epochs,
 * evaluations and checkpoints of a copy of `from` removed, its session left
 * without a stop record, no summary.json.  (The journal rows stay: they are
 * written as the device is queried.) */
static void make_killed(const char *from, const char *to)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof(cmd), "cp -r %s/%s %s/%s && rm -f %s/%s/summary.json %s/%s/run.sqlite-wal %s/%s/run.sqlite-shm",
             tmp, from, tmp, to, tmp, to, tmp, to, tmp, to);
    assert_int_equal(run(cmd, out, sizeof(out)), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/run.sqlite", tmp, to);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DELETE FROM step; DELETE FROM epoch; DELETE FROM evaluation;"
                                  " DELETE FROM checkpoint; DELETE FROM checkpoint_device;"
                                  " DELETE FROM query WHERE phase = 'eval';"
                                  " UPDATE session SET stopped = NULL, status = NULL, reason = NULL",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/patctl-report-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    gnuplot g;
    gp_init(&g, NULL);
    have_gnuplot = g.ok;
    if (!have_gnuplot)
        printf("# gnuplot with pngcairo not available (%s): figure checks are skipped\n", g.why);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_png(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.png", dir, name);
    if (!png_file_ok(path, 4000))
        fail_msg("%s: not a PNG of at least 4000 bytes", path);
    snprintf(path, sizeof(path), "%s/%s.gp", dir, name);
    assert_true(exists(path));
}

/* ---- helpers ---- */

static void test_helpers(void **state)
{
    (void)state;
    char b[128];
    assert_string_equal(gp_str(b, sizeof(b), "a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    assert_string_equal(gp_str(b, sizeof(b), "C [1/s^2]"), "\"C [1/s\u00b2]\"");
    const char *u;
    assert_true(gp_time_unit(30, &u) == 1 && strcmp(u, "s") == 0);
    assert_true(gp_time_unit(3000, &u) == 60 && strcmp(u, "min") == 0);
    assert_true(gp_time_unit(1e5, &u) == 3600 && strcmp(u, "h") == 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/notpng", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fputc('x', f);
    fclose(f);
    assert_false(png_file_ok(path, 100));
    assert_false(png_file_ok("/nonexistent.png", 1));
    /* HTML escaping */
    char *buf = NULL;
    size_t len = 0;
    f = open_memstream(&buf, &len);
    html_text(f, "<a href=\"x\">&</a>");
    fclose(f);
    assert_string_equal(buf, "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    free(buf);
}

/* ---- one run: every figure ---- */

static void test_single_run(void **state)
{
    (void)state;
    char cfg[256], path[700], cmd[1024], out[32768];
    /* a device with dropout (faults, retries) and a learning rate that drives
     * the coupling to its limits */
    snprintf(cfg, sizeof(cfg), "%s/events.ini", tmp);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "[data]\nset = synthetic\ntrain_limit = 320\ntest_limit = 200\n\n"
               "[device a]\ndriver = oscillators\nn = 52\ndropout = 0.2\n\n"
               "[device b]\ndriver = oscillators\nn = 218\n\n"
               "[model]\nlayer = patches 7\nlayer = pad 52\nlayer = physical a\nlayer = concat 4\n"
               "layer = pad 218\nlayer = physical b\nlayer = readout 10\n\n"
               "[train]\nepochs = 1\nbatch = 32\neval_batch = 100\nlr = 0.5\nseed = 3\n\n"
               "[logging]\njournal = all\ncheckpoint_every = 4\nprogress = off\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), "--config %s", cfg);
    train(cmd, "events");
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/events", tmp);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/events/report", tmp);
    snprintf(path, sizeof(path), "%s/report.html", dir);
    char *html = slurp(path);
    assert_non_null(html);
    /* the start record, the stop record, tables */
    assert_non_null(strstr(html, "Start record"));
    assert_non_null(strstr(html, "Stop records"));
    assert_non_null(strstr(html, "dropout=0.2"));
    assert_non_null(strstr(html, "1/s^2"));        /* units of the parameter blocks */
    assert_non_null(strstr(html, "[-4, 4]"));      /* their limits */
    assert_non_null(strstr(html, ">success<"));
    assert_non_null(strstr(html, "Evaluations on the device"));
    if (!have_gnuplot) {
        free(html);
        skip();
    }
    static const char *const figs[] = {"training", "confusion", "surrogate", "device_a", "device_b",
                                       "coupling_a", "coupling_b"};
    for (size_t i = 0; i < sizeof(figs) / sizeof(figs[0]); i++) {
        check_png(dir, figs[i]);
        char line[128];
        snprintf(line, sizeof(line), "%s.png", figs[i]);
        assert_non_null(strstr(out, line));
    }
    assert_int_equal(count(html, "data:image/png;base64,"), 7);
    assert_null(strstr(html, "the data is missing"));   /* nothing missing in a complete run */
    free(html);
    /* the faults and retries of device a are on its time axis */
    snprintf(path, sizeof(path), "%s/device_a.gp", dir);
    char *gp = slurp(path);
    assert_non_null(gp);
    assert_null(strstr(gp, "'faults (0)'"));
    assert_null(strstr(gp, "'retries (0)'"));
    assert_non_null(strstr(gp, "hard limits"));  /* the limits are reached: drawn */
    free(gp);
    /* and a script redraws its figure on its own */
    snprintf(path, sizeof(path), "%s/training.png", dir);
    unlink(path);
    snprintf(cmd, sizeof(cmd), "cd %s && gnuplot training.gp", dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 0);
    check_png(dir, "training");
}

/* ---- comparison ---- */

static void test_compare(void **state)
{
    (void)state;
    train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode pat", "pat");
    train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode insilico", "insilico");
    train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode spsa", "spsa");
    char cmd[1024], out[16384], dir[256], path[512];
    snprintf(dir, sizeof(dir), "%s/cmp", tmp);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/pat %s/insilico %s/spsa --out %s", tmp, tmp, tmp, dir);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    snprintf(path, sizeof(path), "%s/report.html", dir);
    char *html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "3 runs compared"));
    assert_non_null(strstr(html, "pat s0"));
    assert_non_null(strstr(html, "insilico s0"));
    assert_non_null(strstr(html, "spsa s0"));
    free(html);
    if (!have_gnuplot)
        skip();
    check_png(dir, "training");
    check_png(dir, "confusion");
    /* one line per run in the shared figure; insilico made no training queries */
    snprintf(path, sizeof(path), "%s/training.gp", dir);
    char *gp = slurp(path);
    assert_non_null(gp);
    assert_non_null(strstr(gp, "$S0 <<"));
    assert_non_null(strstr(gp, "$S1 <<"));
    assert_non_null(strstr(gp, "$S2 <<"));
    assert_non_null(strstr(gp, "insilico s0 (insilico): no training queries"));
    free(gp);
    /* per-run figures are not part of a comparison */
    snprintf(path, sizeof(path), "%s/device_osc64.png", dir);
    assert_false(exists(path));
}

/* ---- pruning ---- */

/* pruning.png: patctl eval --prune's sweep is a line, a run pruned during
 * training (train --prune) and fine-tuned a star at its fraction, and that
 * run's own evaluations stay in its training record (not in the sweep). */
static void test_pruning(void **state)
{
    (void)state;
    train("--synthetic --epochs 1 --train-limit 320 --test-limit 200", "unpruned");
    train("--synthetic --epochs 2 --train-limit 320 --test-limit 200 --prune 0.5 --prune-after 1", "pruned");
    char cmd[1024], out[16384], dir[256], path[512];
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " eval %s/unpruned --prune 0,0.5,0.9 --quiet", tmp);
    int st = run(cmd, out, sizeof(out));
    if (st)
        printf("%s", out);
    assert_int_equal(st, 0);
    /* one run alone: no sweep, but the star */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/pruned", tmp);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    snprintf(path, sizeof(path), "%s/pruned/report/report.html", tmp);
    char *html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "Evaluations on the device"));
    /* its evaluations after epoch 1 say what was held at zero */
    assert_non_null(strstr(html, "<th>weights / couplings held at zero</th>"));
    assert_non_null(strstr(html, "<td>0.0 %</td>"));   /* epoch 1, before pruning */
    assert_true(strstr(html, "<td>50.0 %</td>") || strstr(html, "<td>49.9 %</td>") ||
                strstr(html, "<td>50.1 %</td>"));
    free(html);
    snprintf(dir, sizeof(dir), "%s/prune-cmp", tmp);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/unpruned %s/pruned --out %s", tmp, tmp, dir);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    if (!have_gnuplot)
        skip();
    check_png(dir, "pruning");
    snprintf(path, sizeof(path), "%s/pruning.gp", dir);
    char *gp = slurp(path);
    assert_non_null(gp);
    assert_non_null(strstr(gp, "$P0 <<"));     /* the sweep of the unpruned run */
    assert_null(strstr(gp, "$P1 <<"));         /* the pruned run has no sweep ... */
    assert_non_null(strstr(gp, "$F1 <<"));     /* ... but its star, */
    assert_null(strstr(gp, "$F0 <<"));
    assert_non_null(strstr(gp, ": pruned in training, fine-tuned"));
    /* at the fraction it held: 0.5 of every matrix, within rounding */
    char *s = strstr(gp, "$F1 <<");
    double frac = 0, acc = 0;
    assert_int_equal(sscanf(strchr(s, '\n') + 1, "%lf %lf", &frac, &acc), 2);
    assert_true(frac > 0.49 && frac < 0.51);
    assert_true(acc >= 0 && acc <= 100);
    free(gp);
    snprintf(path, sizeof(path), "%s/pruned/report", tmp);
    check_png(path, "pruning");
}

/* ---- missing data ---- */

static void test_missing_data(void **state)
{
    (void)state;
    char cmd[1024], out[32768], path[512];
    /* journal = off: no measurements, so no surrogate quality */
    train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --journal off", "off");
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/off", tmp);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "surrogate              missing: journal = off"));
    snprintf(path, sizeof(path), "%s/off/report/report.html", tmp);
    char *html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "Not drawn: the data is missing.</b> journal = off"));
    free(html);
    if (have_gnuplot) {
        snprintf(path, sizeof(path), "%s/off/report/surrogate.png", tmp);
        assert_false(exists(path));
        snprintf(path, sizeof(path), "%s/off/report", tmp);
        check_png(path, "training");
        check_png(path, "device_osc64");   /* parameters from the checkpoints, drift panel says why not */
        snprintf(path, sizeof(path), "%s/off/report/device_osc64.gp", tmp);
        char *gp = slurp(path);
        assert_non_null(gp);
        assert_non_null(strstr(gp, "from 1 checkpoints (no journal settings: journal = off)"));
        assert_non_null(strstr(gp, "journal = off: the run stored no device measurements"));
        free(gp);
    }

    /* killed before its first checkpoint (and before any step was recorded) */
    if (!exists((snprintf(path, sizeof(path), "%s/pat", tmp), path)))
        train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode pat", "pat");
    make_killed("pat", "killed");
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/killed", tmp);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "training               missing:"));
    assert_non_null(strstr(out, "no training step recorded yet"));
    assert_non_null(strstr(out, "confusion              missing:"));
    assert_non_null(strstr(out, "no evaluation yet"));
    snprintf(path, sizeof(path), "%s/killed/report/report.html", tmp);
    html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "no stop record"));
    free(html);
    if (have_gnuplot) {
        /* the coupling comes from the journal's last setting when there is no checkpoint */
        snprintf(path, sizeof(path), "%s/killed/report", tmp);
        check_png(path, "coupling_osc64");
        snprintf(path, sizeof(path), "%s/killed/report/training.png", tmp);
        assert_false(exists(path));
    }

    /* not a run at all */
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/empty && " PATCTL_BIN " report %s/empty", tmp, tmp);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "not a patctl run directory"));
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/nonexistent", tmp);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "nonexistent"));
    assert_int_equal(run(PATCTL_BIN " report", out, sizeof(out)), 2);
    assert_int_equal(run(PATCTL_BIN " report --frobnicate x", out, sizeof(out)), 2);
}

/* ---- without gnuplot ---- */

static void test_no_gnuplot(void **state)
{
    (void)state;
    char cmd[1024], out[16384], path[512];
    if (!exists((snprintf(path, sizeof(path), "%s/pat", tmp), path)))
        train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode pat", "pat");
    snprintf(cmd, sizeof(cmd), "PATCTL_GNUPLOT=/nonexistent/gnuplot " PATCTL_BIN " report %s/pat --out %s/nogp", tmp,
             tmp);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "apt-get install gnuplot-nox"));
    assert_non_null(strstr(out, "training               not drawn (no gnuplot)"));
    snprintf(path, sizeof(path), "%s/nogp/report.html", tmp);
    char *html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "apt-get install gnuplot-nox"));
    assert_non_null(strstr(html, "<table"));
    assert_non_null(strstr(html, "Epochs"));
    assert_int_equal(count(html, "data:image/png"), 0);
    free(html);
    snprintf(path, sizeof(path), "%s/nogp/training.png", tmp);
    assert_false(exists(path));
    snprintf(path, sizeof(path), "%s/nogp/training.gp", tmp);
    assert_true(exists(path));
    /* --gnuplot "" disables it too */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/pat --out %s/nogp2 --gnuplot ''", tmp, tmp);
    assert_int_equal(run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "gnuplot disabled"));
}

/* ---- patctl fit outputs: the fit figure and the noise floor ---- */

static void test_fit_outputs(void **state)
{
    (void)state;
    char cmd[1024], out[16384], path[512], err[256], fit[256], data[256];
    if (!exists((snprintf(path, sizeof(path), "%s/pat", tmp), path)))
        train("--synthetic --epochs 1 --train-limit 320 --test-limit 200 --mode pat", "pat");
    /* a fit output directory as patctl fit documents it (numbers made up
     * here; the report only draws them) */
    snprintf(fit, sizeof(fit), "%s/fitout", tmp);
    snprintf(data, sizeof(data), "%s/collected", tmp);
    assert_int_equal(mkdir(fit, 0777), 0);
    assert_int_equal(mkdir(data, 0777), 0);
    enum { P = 500, N = 64 };
    static float par[P * 2], res[N], noise[N];
    for (int i = 0; i < P; i++) {
        par[2 * i] = (float)i / P - 0.5f;
        par[2 * i + 1] = par[2 * i] + 0.02f * (float)((i * 7919) % 13 - 6) / 6;
    }
    for (int i = 0; i < N; i++)
        res[i] = 0.021f + 0.001f * (float)(i % 5), noise[i] = 0.02f;
    long sp[2] = {P, 2}, sr[1] = {N};
    snprintf(path, sizeof(path), "%s/parity_mlp.npy", fit);
    assert_int_equal(fit_npy_write(path, NPY_F32, 2, sp, par, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/residual_mlp.npy", fit);
    assert_int_equal(fit_npy_write(path, NPY_F32, 1, sr, res, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/noise_std.npy", data);
    assert_int_equal(fit_npy_write(path, NPY_F32, 1, sr, noise, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/report.json", fit);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"data\": \"%s\", \"device\": {\"name\": \"osc64\", \"desc\": {\"out_unit\": \"rad\"}},"
               " \"noise_rms\": 0.02, \"surrogates\": [{\"name\": \"mlp\", \"kind\": \"mlp\","
               " \"test\": {\"nrmse\": 0.05, \"noise_nrmse\": 0.045, \"nrmse_over_noise\": 1.11},"
               " \"fit_seconds\": 3.5, \"parity\": \"parity_mlp.npy\", \"residual\": \"residual_mlp.npy\"}]}\n",
            data);
    fclose(f);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/pat --fit %s --out %s/withfit", tmp, fit, tmp);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    snprintf(path, sizeof(path), "%s/withfit/report.html", tmp);
    char *html = slurp(path);
    assert_non_null(html);
    assert_non_null(strstr(html, "1.1100"));   /* NRMSE / noise of the fitted surrogate */
    assert_non_null(strstr(html, "0.02 (patctl fit"));  /* osc64's noise floor in the gap table */
    free(html);
    if (have_gnuplot) {
        snprintf(path, sizeof(path), "%s/withfit", tmp);
        check_png(path, "fit");
        check_png(path, "surrogate");
        snprintf(path, sizeof(path), "%s/withfit/surrogate.gp", tmp);
        char *gp = slurp(path);
        assert_non_null(gp);
        assert_non_null(strstr(gp, "noise floor (Gaussian)"));
        free(gp);
    }
    /* a broken --fit is an error naming it */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " report %s/pat --fit %s/nofit --out %s/x", tmp, tmp, tmp);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "nofit/report.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_single_run),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_pruning),
        cmocka_unit_test(test_missing_data),
        cmocka_unit_test(test_no_gnuplot),
        cmocka_unit_test(test_fit_outputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
