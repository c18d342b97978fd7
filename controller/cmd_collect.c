/* patctl collect: measure a device over random inputs and settings for
 * surrogate fitting; writes a data directory (fit_store.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/cli_args.h"
#include "controller/collect.h"
#include "controller/commands.h"
#include "controller/config.h"
#include "controller/fit_store.h"
#include "controller/rng.h"
#include "controller/summary.h"
#include "devices/options.h"
#include "patctl/version.h"
#include "surrogate/fit_npy.h"

static void collect_usage(FILE *f)
{
    fprintf(f,
        "usage: patctl collect [OPTIONS]\n"
        "\n"
        "Drives one device through random inputs and parameter settings inside its\n"
        "limits (every query through the safety boundary), measures a subset of\n"
        "them repeatedly for the noise floor, and writes the data for `patctl fit`.\n"
        "\n"
        "which device:\n"
        "  --config FILE       experiment file; default: the built-in quickstart\n"
        "  --device NAME       a [device NAME] of the config (default: the first)\n"
        "  --driver D          instead: a driver name or plugin .so path ...\n"
        "  --options K=V,...   ... with these options\n"
        "  --seed N            run seed (default 0); a simulated device gets the seed\n"
        "                      `patctl train --seed N` gives it, so it is the same device\n"
        "design:\n"
        "  --settings K        parameter settings (default 200)\n"
        "  --per-setting B     inputs measured per setting, one query (default 50)\n"
        "  --design D          uniform (default) | lhs (Latin hypercube)\n"
        "  --x-range LO:HI     input range (default: the device's input limits)\n"
        "  --theta-range R     init (default: each block's initialisation range) | limits\n"
        "  --theta-scale S     scale the range about its centre (default 1)\n"
        "  --around FILE.npy   operating point: float32 [n_theta]; settings are drawn\n"
        "  --radius R            around it, +- R x the range half-width (default 0.1)\n"
        "noise floor:\n"
        "  --repeats R         measurements of each repeated input (default 8; 0 = none)\n"
        "  --repeat-settings N settings with repeats (default 10)\n"
        "  --repeat-inputs N   inputs per repeated setting (default 10)\n"
        "output:\n"
        "  --out DIR           data directory (default runs/<time>-collect-<device>)\n"
        "  --quiet             only the result line\n"
        "\n"
        "DIR holds meta.json and .npy arrays (x, y, setting, theta, rep_x, rep_setting,\n"
        "rep_y, noise_std) that numpy.load reads; see README.md, \"Fitting surrogates\".\n");
}



int cmd_collect(int argc, char **argv)
{
    run_config c;
    config_quickstart(&c);
    const char *config = NULL, *dev_name = NULL, *driver = NULL, *dopts = "", *out = NULL;
    const char *around = NULL;
    int quiet = 0;
    uint64_t seed = 0;
    collect_options co;
    collect_default_options(&co);
    for (int i = 1; i < argc; i++) {
        const char *v, *a = argv[i];
        double d;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            collect_usage(stdout);
            return EXIT_OK;
        } else if ((v = cli_opt_value(argc, argv, &i, "--config"))) {
            config = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--device"))) {
            dev_name = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--driver"))) {
            driver = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--options"))) {
            dopts = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (cli_num(v, 0, 2147483647.0, &d)) goto bad;
            seed = (uint64_t)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--settings"))) {
            if (cli_num(v, 1, 1e8, &d)) goto bad;
            co.settings = (long)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--per-setting"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            co.per_setting = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--design"))) {
            if (strcmp(v, "uniform") == 0) co.design = DESIGN_UNIFORM;
            else if (strcmp(v, "lhs") == 0) co.design = DESIGN_LHS;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--x-range"))) {
            char *end;
            co.x_lo = strtod(v, &end);
            if (end == v || *end != ':' || cli_num(end + 1, -1e30, 1e30, &co.x_hi) || !(co.x_lo <= co.x_hi))
                goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--theta-range"))) {
            if (strcmp(v, "init") == 0) co.range = THETA_INIT;
            else if (strcmp(v, "limits") == 0) co.range = THETA_LIMITS;
            else goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--theta-scale"))) {
            if (cli_num(v, 0, 1e6, &co.theta_scale)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--around"))) {
            around = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--radius"))) {
            if (cli_num(v, 0, 1e6, &co.radius)) goto bad;
        } else if ((v = cli_opt_value(argc, argv, &i, "--repeats"))) {
            if (cli_num(v, 0, 10000, &d) || d == 1) goto bad;
            co.repeats = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--repeat-settings"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            co.repeat_settings = (long)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--repeat-inputs"))) {
            if (cli_num(v, 1, 1e6, &d)) goto bad;
            co.repeat_inputs = (int)d;
        } else if ((v = cli_opt_value(argc, argv, &i, "--out"))) {
            out = v;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else {
            fprintf(stderr, "patctl collect: unknown option '%s' (see patctl collect --help)\n", a);
            return EXIT_USAGE;
        }
        continue;
    bad:
        fprintf(stderr, "patctl collect: bad value for %s (see patctl collect --help)\n", a);
        return EXIT_USAGE;
    }

    char err[1024] = "";
    if (config && config_load(&c, config, err, sizeof(err))) {
        fprintf(stderr, "patctl collect: %s\n", err);
        return EXIT_USAGE;
    }
    /* the device: a config instance, or a driver given here */
    device_spec spec;
    int index = 0;
    if (driver) {
        if (dev_name && config) {
            fprintf(stderr, "patctl collect: give either --device (of a config) or --driver, not both\n");
            return EXIT_USAGE;
        }
        memset(&spec, 0, sizeof(spec));
        const char *base = strrchr(driver, '/');
        snprintf(spec.name, sizeof(spec.name), "%s", dev_name ? dev_name : base ? base + 1 : driver);
        snprintf(spec.driver, sizeof(spec.driver), "%s", driver);
        snprintf(spec.options, sizeof(spec.options), "%s", dopts);
        snprintf(spec.limits, sizeof(spec.limits), "clamp");
        snprintf(spec.steps, sizeof(spec.steps), "ramp");
    } else {
        index = -1;
        for (int i = 0; i < c.n_devices && index < 0; i++)
            if (!dev_name || strcmp(c.devices[i].name, dev_name) == 0)
                index = i;
        if (index < 0) {
            fprintf(stderr, "patctl collect: no device '%s' in %s (devices:", dev_name ? dev_name : "",
                    config ? config : "the quickstart");
            for (int i = 0; i < c.n_devices; i++)
                fprintf(stderr, " %s", c.devices[i].name);
            fprintf(stderr, ")\n");
            return EXIT_USAGE;
        }
        spec = c.devices[index];
    }
    struct patctl_option *o = NULL;
    int no = options_parse(spec.options, &o);
    if (no < 0) {
        fprintf(stderr, "patctl collect: device %s: options must be key=value pairs, got '%s'\n", spec.name,
                spec.options);
        return EXIT_USAGE;
    }
    device *dev = NULL;
    uint64_t dseed = rng_device_seed(seed, index);
    int rc = device_open(&dev, spec.name, spec.driver, o, no, dseed, err, sizeof(err));
    free(o);
    if (rc) {
        fprintf(stderr, "patctl collect: device %s: %s\n", spec.name, err);
        return EXIT_FAIL;
    }
    dev->limits = strcmp(spec.limits, "reject") == 0 ? LIMIT_REJECT : LIMIT_CLAMP;
    dev->steps = strcmp(spec.steps, "refuse") == 0 ? STEP_REFUSE : STEP_RAMP;

    float *op = NULL;
    if (around) {
        long shape[FIT_NPY_MAX_DIM], want = dev->n_theta;
        if (fit_npy_read_shape(around, NPY_F32, 1, &want, shape, (void **)&op, err, sizeof(err))) {
            fprintf(stderr, "patctl collect: --around: %s\n", err);
            device_close(&dev);
            return EXIT_USAGE;
        }
        co.around = op;
    }
    char dir[1024];
    if (out) {
        snprintf(dir, sizeof(dir), "%s", out);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
        snprintf(dir, sizeof(dir), "runs/%s-collect-%s", stamp, spec.name);
    }
    co.seed = seed;
    co.stop = &patctl_stop;
    co.verbose = !quiet;
    if (!quiet)
        printf("patctl collect: device %s (%s, %d inputs, %d outputs, %ld parameters): %ld settings x %d "
               "inputs, %s design; noise floor from %d repeats of %d inputs x %ld settings\n",
               spec.name, dev->desc.model, dev->desc.n_in, dev->desc.n_out, dev->n_theta, co.settings,
               co.per_setting, co.design == DESIGN_LHS ? "latin-hypercube" : "uniform", co.repeats,
               co.repeat_inputs, co.repeat_settings);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fit_set set;
    rc = collect_run(dev, &co, &set, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    device_stats st = dev->st;
    struct patctl_device_desc desc = dev->desc;
    device_close(&dev); /* makes it safe */
    free(op);
    if (rc) {
        fprintf(stderr, "patctl collect: %s\n", err);
        return rc == PATCTL_ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_FAIL;
    }

    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "patctl_version", PATCTL_VERSION_STRING);
    cJSON *jd = cJSON_AddObjectToObject(meta, "device");
    cJSON_AddStringToObject(jd, "name", spec.name);
    cJSON_AddStringToObject(jd, "driver", spec.driver);
    cJSON_AddStringToObject(jd, "options", spec.options);
    cJSON_AddStringToObject(jd, "config", config ? config : driver ? "" : "built-in quickstart");
    cJSON_AddNumberToObject(jd, "run_seed", (double)seed);
    cJSON_AddNumberToObject(jd, "index", index);
    cJSON_AddNumberToObject(jd, "default_seed", (double)dseed);
    cJSON_AddItemToObject(jd, "desc", desc_to_json(&desc));
    cJSON *jg = cJSON_AddObjectToObject(meta, "design");
    cJSON_AddStringToObject(jg, "design", co.design == DESIGN_LHS ? "lhs" : "uniform");
    cJSON_AddNumberToObject(jg, "settings", (double)co.settings);
    cJSON_AddNumberToObject(jg, "per_setting", co.per_setting);
    cJSON_AddNumberToObject(jg, "x_lo", isnan(co.x_lo) ? desc.in_lo : fmax(co.x_lo, desc.in_lo));
    cJSON_AddNumberToObject(jg, "x_hi", isnan(co.x_hi) ? desc.in_hi : fmin(co.x_hi, desc.in_hi));
    cJSON_AddStringToObject(jg, "theta_range", co.range == THETA_LIMITS ? "limits" : "init");
    cJSON_AddNumberToObject(jg, "theta_scale", co.theta_scale);
    if (around) {
        cJSON_AddStringToObject(jg, "around", around);
        cJSON_AddNumberToObject(jg, "radius", co.radius);
    }
    cJSON_AddNumberToObject(jg, "repeats", co.repeats);
    cJSON_AddNumberToObject(jg, "repeat_settings", (double)co.repeat_settings);
    cJSON_AddNumberToObject(jg, "repeat_inputs", co.repeat_inputs);
    cJSON_AddNumberToObject(jg, "seed", (double)seed);
    cJSON *js = cJSON_AddObjectToObject(meta, "device_stats");
    cJSON_AddNumberToObject(js, "queries", (double)st.queries);
    cJSON_AddNumberToObject(js, "samples", (double)st.samples);
    cJSON_AddNumberToObject(js, "ramp_steps", (double)st.ramp_steps);
    cJSON_AddNumberToObject(js, "clamped", (double)st.clamped);
    cJSON_AddNumberToObject(js, "rejected", (double)st.rejected);
    cJSON_AddNumberToObject(js, "faults", (double)st.faults);
    cJSON_AddNumberToObject(js, "retries", (double)st.retries);
    cJSON_AddNumberToObject(js, "device_seconds", st.seconds);
    cJSON_AddNumberToObject(meta, "seconds", secs);
    rc = fitdata_write(dir, &set, meta, err, sizeof(err));
    cJSON_Delete(meta);
    double nf = fit_set_noise_rms(&set);
    long S = set.S;
    fit_set_free(&set);
    if (rc) {
        fprintf(stderr, "patctl collect: %s\n", err);
        return EXIT_FAIL;
    }
    printf("result: %ld samples in %ld settings from device %s, %llu queries (%llu values clamped), "
           "noise floor rms %.4g %s, %.1f s; data %s\n", S, co.settings, spec.name,
           (unsigned long long)st.queries, (unsigned long long)st.clamped, nf, desc.out_unit, secs, dir);
    return EXIT_OK;
}
