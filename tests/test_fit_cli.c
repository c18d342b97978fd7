/* The fitting commands end to end through the patctl binary: collect a small
 * oscillator device, fit every surrogate kind, read the files back (numpy
 * layout, report), train with the fitted surrogate named in a config and on
 * the command line, and the errors of bad inputs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "controller/fit_store.h"
#include "devices/device.h"
#include "devices/options.h"
#include "controller/surrogates.h"
#include "surrogate/fit_npy.h"

#ifndef PATCTL_BIN
#error "PATCTL_BIN must name the patctl binary"
#endif

static int run(const char *cmd, char *out, size_t n)
{
    char full[4096];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char dir[] = "/tmp/patctl-fitcli-XXXXXX";

/* a 12-oscillator device behind a linear layer, classes from the last 10 */
static const char *config_text =
    "[data]\nset = synthetic\ntrain_limit = 200\ntest_limit = 100\n"
    "[device osc12]\ndriver = oscillators\nn = 12\neta = 0.1\nj_noise = 0.2\nsigma = 0.01\n"
    "surrogate = %s\n"
    "[model]\nlayer = linear 12\nlayer = physical osc12\nlayer = readout 10\n"
    "[train]\nmode = pat\nepochs = 1\nbatch = 20\nseed = 3\n"
    "[logging]\nprogress = off\n";

static void write_config(const char *path, const char *surrogate)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, config_text, surrogate);
    fclose(f);
}

static void test_collect_fit_train(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    char cmd[2048], out[1 << 16], cfg[600], path[700];
    snprintf(cfg, sizeof(cfg), "%s/exp.ini", dir);
    write_config(cfg, "nominal");

    /* collect the config's device (the device PAT will train: same seed) */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " collect --config %s --device osc12 --seed 3 --settings 60 "
             "--per-setting 20 --x-range -1:1 --design lhs --repeats 5 --out %s/data", cfg, dir);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "result: 1200 samples in 60 settings"));
    fit_set d;
    cJSON *meta = NULL;
    char err[512] = "";
    snprintf(path, sizeof(path), "%s/data", dir);
    assert_int_equal(fitdata_read(path, &d, &meta, err, sizeof(err)), 0);
    assert_int_equal(d.S, 1200);
    assert_int_equal(d.n_theta, 12 * 12 + 12);
    assert_int_equal(d.R, 5);
    assert_non_null(d.noise_std);
    cJSON *dev = cJSON_GetObjectItem(meta, "device");
    assert_string_equal(cJSON_GetObjectItem(dev, "name")->valuestring, "osc12");
    cJSON_Delete(meta);
    fit_set_free(&d);

    /* fit everything; the grey-box fit explains the device, the nominal not */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " fit %s/data --mlp-width 32 --mlp-epochs 20 --gn-iter 6 --cg-iter 15", dir);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    snprintf(path, sizeof(path), "%s/data/fit/report.json", dir);
    cJSON *rep = json_read_file(path, err, sizeof(err));
    assert_non_null(rep);
    cJSON *e, *arr = cJSON_GetObjectItem(rep, "surrogates");
    assert_int_equal(cJSON_GetArraySize(arr), 4);
    double ratio_nominal = -1, ratio_greybox = -1;
    cJSON_ArrayForEach(e, arr) {
        const char *nm = cJSON_GetObjectItem(e, "name")->valuestring;
        double r = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "test"), "nrmse_over_noise")->valuedouble;
        if (strcmp(nm, "nominal") == 0)
            ratio_nominal = r;
        if (strcmp(nm, "greybox") == 0)
            ratio_greybox = r;
        /* parity data: [P, 2] float32 */
        char pp[800];
        long shape[FIT_NPY_MAX_DIM];
        void *data;
        int nd;
        snprintf(pp, sizeof(pp), "%s/data/fit/%s", dir, cJSON_GetObjectItem(e, "parity")->valuestring);
        assert_int_equal(fit_npy_read(pp, NPY_F32, &nd, shape, &data, err, sizeof(err)), 0);
        assert_int_equal(nd, 2);
        assert_int_equal(shape[1], 2);
        free(data);
    }
    printf("  held-out NRMSE / noise floor: nominal %.2f, greybox %.2f\n", ratio_nominal, ratio_greybox);
    assert_true(ratio_greybox < 1.3);
    assert_true(ratio_nominal > 2 * ratio_greybox);
    cJSON_Delete(rep);

    /* the fitted files load as surrogates of the device */
    struct patctl_device_desc desc;
    snprintf(path, sizeof(path), "%s/data", dir);
    assert_int_equal(fitdata_read(path, &d, &meta, err, sizeof(err)), 0);
    assert_int_equal(desc_from_json(cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "device"), "desc"), &desc,
                                    err, sizeof(err)), 0);
    const char *kinds[] = {"consts", "greybox", "mlp"};
    for (int k = 0; k < 3; k++) {
        char spec[800];
        surrogate *s = NULL;
        snprintf(spec, sizeof(spec), "fitted:%s/data/fit/%s.json", dir, kinds[k]);
        assert_int_equal(surrogate_make(&s, "osc12", &desc, "", spec, err, sizeof(err)), 0);
        fit_metrics m;
        assert_int_equal(fit_evaluate(s, &d, NULL, -1, &m, NULL, NULL), 0);
        assert_true(isfinite(m.nrmse));
        surrogate_destroy(&s);
    }
    cJSON_Delete(meta);
    fit_set_free(&d);

    /* PAT with the fitted surrogate: from the config key and from the option */
    snprintf(path, sizeof(path), "fitted:%s/data/fit/greybox.json", dir);
    write_config(cfg, path);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --out %s/run1", cfg, dir);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    write_config(cfg, "nominal");
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --surrogate osc12=%s/data/fit/mlp.json "
             "--out %s/run2", cfg, dir, dir);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    /* PAT with online refit (constants every 3 steps, coupling every step) */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --surrogate "
             "osc12=online,every=3,window=4:fitted:%s/data/fit/greybox.json --out %s/run2b", cfg, dir, dir);
    st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
}

/* a physics model other than the oscillators: SHG constants by LM, stored
 * as physics-consts, loaded back through the surrogate factory */
static void test_shg_consts(void **state)
{
    (void)state;
    char cmd[2048], out[1 << 16], path[700], err[512] = "";
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " collect --driver shg --options n_in=8,n_par=8,bins=4,n_out=8 "
             "--settings 40 --per-setting 15 --quiet --out %s/shg", dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 0);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " fit %s/shg --models nominal,consts", dir);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "disp2"));
    fit_set d;
    cJSON *meta = NULL;
    snprintf(path, sizeof(path), "%s/shg", dir);
    assert_int_equal(fitdata_read(path, &d, &meta, err, sizeof(err)), 0);
    struct patctl_device_desc desc;
    cJSON *dev = cJSON_GetObjectItem(meta, "device");
    assert_int_equal(desc_from_json(cJSON_GetObjectItem(dev, "desc"), &desc, err, sizeof(err)), 0);
    const char *opts = cJSON_GetObjectItem(dev, "options")->valuestring;
    surrogate *sn = NULL, *sf = NULL;
    char spec[800];
    snprintf(spec, sizeof(spec), "fitted:%s/shg/fit/consts.json", dir);
    assert_int_equal(surrogate_make(&sn, "shg", &desc, opts, "nominal", err, sizeof(err)), 0);
    int rc = surrogate_make(&sf, "shg", &desc, opts, spec, err, sizeof(err));
    if (rc)
        printf("%s\n", err);
    assert_int_equal(rc, 0);
    fit_metrics mn, mf;
    assert_int_equal(fit_evaluate(sn, &d, NULL, -1, &mn, NULL, NULL), 0);
    assert_int_equal(fit_evaluate(sf, &d, NULL, -1, &mf, NULL, NULL), 0);
    printf("  shg: nominal NRMSE %.4f, fitted constants %.4f\n", mn.nrmse, mf.nrmse);
    assert_true(mf.nrmse < 0.7 * mn.nrmse);
    /* a constants file of another model is refused */
    surrogate *bad = NULL;
    struct patctl_device_desc other = desc;
    snprintf(other.model, sizeof(other.model), "circuit");
    assert_int_equal(surrogate_make(&bad, "x", &other, "", spec, err, sizeof(err)), PATCTL_ERR_CONFIG);
    assert_non_null(strstr(err, "consts.json"));
    surrogate_destroy(&sn);
    surrogate_destroy(&sf);
    cJSON_Delete(meta);
    fit_set_free(&d);
}

/* The description of a locally opened device, and its options. */
static struct patctl_device_desc describe(const char *driver, const char *opts)
{
    struct patctl_option *o = NULL;
    int n = options_parse(opts, &o);
    assert_true(n >= 0);
    device *d = NULL;
    char err[512] = "";
    int rc = device_open(&d, "dev", driver, o, n, 1, err, sizeof(err));
    if (rc)
        printf("  %s\n", err);
    assert_int_equal(rc, 0);
    free(o);
    struct patctl_device_desc desc = d->desc;
    device_close(&d);
    return desc;
}

/* y of a surrogate at fixed x and theta */
static void forward_of(surrogate *s, int B, float *y)
{
    float *x = malloc(sizeof(float) * (size_t)B * (size_t)s->n_in);
    float *th = malloc(sizeof(float) * (size_t)(s->n_theta + 1));
    assert_non_null(x);
    assert_non_null(th);
    for (long i = 0; i < (long)B * s->n_in; i++)
        x[i] = (float)(0.7 * sin(0.37 * (double)i));
    for (long i = 0; i < s->n_theta; i++)
        th[i] = (float)(0.4 * cos(0.91 * (double)i));
    assert_int_equal(surrogate_forward(s, th, x, B, y), 0);
    free(x);
    free(th);
}

/* A device behind a server (remote) sends its description; its driver
 * options stay on the server.  The nominal surrogate takes its sizes from
 * the description, model options not in it from surrogate =
 * nominal:K=V,...; a surrogate of another shape is refused. */
static void test_surrogate_from_description(void **state)
{
    (void)state;
    char err[768] = "";
    const char *remote_opts = "endpoint=tcp://127.0.0.1:1,timeout_ms=100";
    /* SHG with a non-default geometry: 16 input + 8 parameter pixels x 2 bins, 12 out */
    const char *shg_opts = "n_in=16,n_par=8,bins=2,n_out=12";
    struct patctl_device_desc desc = describe("shg", shg_opts);
    surrogate *local = NULL, *remote = NULL, *guess = NULL;
    assert_int_equal(surrogate_make(&local, "shg", &desc, shg_opts, "nominal", err, sizeof(err)), 0);
    assert_int_equal(surrogate_make(&remote, "shg", &desc, remote_opts, "nominal:bins=2", err, sizeof(err)), 0);
    /* without bins: the sizes still fit (bins defaults to 4), the physics differs */
    assert_int_equal(surrogate_make(&guess, "shg", &desc, remote_opts, "nominal", err, sizeof(err)), 0);
    assert_int_equal(remote->n_in, 16);
    assert_int_equal(remote->n_out, 12);
    assert_int_equal(remote->n_theta, 8);
    float y1[3 * 12], y2[3 * 12], y3[3 * 12];
    forward_of(local, 3, y1);
    forward_of(remote, 3, y2);
    forward_of(guess, 3, y3);
    assert_memory_equal(y1, y2, sizeof(y1));
    assert_memory_not_equal(y1, y3, sizeof(y1));
    surrogate_destroy(&local);
    surrogate_destroy(&remote);
    surrogate_destroy(&guess);
    /* circuit: 12 slots, 2 samples per slot; everything from the description */
    const char *circ_opts = "n_in=12,sps=2";
    desc = describe("circuit", circ_opts);
    assert_int_equal(surrogate_make(&local, "circ", &desc, circ_opts, "nominal", err, sizeof(err)), 0);
    assert_int_equal(surrogate_make(&remote, "circ", &desc, remote_opts, "nominal", err, sizeof(err)), 0);
    assert_int_equal(remote->n_out, 24);
    float c1[2 * 24], c2[2 * 24];
    forward_of(local, 2, c1);
    forward_of(remote, 2, c2);
    assert_memory_equal(c1, c2, sizeof(c1));
    surrogate_destroy(&local);
    surrogate_destroy(&remote);
    /* a description the circuit cannot have */
    desc.n_out = 25;
    assert_int_equal(surrogate_make(&remote, "circ", &desc, remote_opts, "nominal", err, sizeof(err)),
                     PATCTL_ERR_ARG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "n_out = sps x n_in"));
    assert_null(remote);
    /* oscillators described with one output too many: refused, both shapes named */
    desc = describe("oscillators", "n=10");
    desc.n_out = 11;
    assert_int_equal(surrogate_make(&remote, "osc10", &desc, "", "nominal", err, sizeof(err)), PATCTL_ERR_CONFIG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "takes 10 inputs, gives 10 outputs"));
    assert_non_null(strstr(err, "takes 10, gives 11"));
    assert_null(remote);
    /* a bad model option in the spec: named, not "out of memory" */
    desc.n_out = 10;
    assert_int_equal(surrogate_make(&remote, "osc10", &desc, "", "nominal:steps=0", err, sizeof(err)),
                     PATCTL_ERR_ARG);
    printf("  %s\n", err);
    assert_non_null(strstr(err, "device osc10: options steps/t_end"));
    assert_null(remote);
}

static void test_errors(void **state)
{
    (void)state;
    char cmd[2048], out[1 << 14], cfg[600];
    snprintf(cfg, sizeof(cfg), "%s/exp.ini", dir);
    /* a surrogate fitted for another device: the error names the file */
    write_config(cfg, "nominal");
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --quiet --surrogate osc64=%s/data/fit/greybox.json --out %s/run3",
             dir, dir);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "greybox.json"));
    assert_non_null(strstr(out, "osc64"));
    /* unknown device, bad spec, missing file */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --surrogate nosuch=x.json", cfg);
    assert_int_equal(run(cmd, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "nosuch"));
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --surrogate osc12=fancy --out %s/run4", cfg,
             dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "expected nominal[:K=V,...] or fitted:PATH"));
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --surrogate osc12=fitted:/nonexistent.json "
             "--out %s/run5", cfg, dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "/nonexistent.json"));
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --config %s --quiet --surrogate osc12=online,bogus=1:nominal "
             "--out %s/run6", cfg, dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "bogus"));
    /* fit on a directory that is not collected data */
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " fit %s", dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "meta.json"));
    /* a corrupt array: the message names it */
    char path[700];
    snprintf(path, sizeof(path), "%s/data/y.npy", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 300), 0);
    fclose(f);
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " fit %s/data", dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "y.npy"));
    /* collect: bad options */
    assert_int_equal(run(PATCTL_BIN " collect --x-range 3", out, sizeof(out)), 2);
    assert_int_equal(run(PATCTL_BIN " collect --device nosuch", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "osc64"));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collect_fit_train),
        cmocka_unit_test(test_shg_consts),
        cmocka_unit_test(test_surrogate_from_description),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
