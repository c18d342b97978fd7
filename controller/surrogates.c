#include "controller/surrogates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/fit_store.h"
#include "surrogate/fit_online.h"
#include "devices/circuit/circuit_dev.h"
#include "devices/options.h"
#include "devices/reservoir/reservoir_dev.h"
#include "devices/shg/shg_dev.h"
#include "devices/spiking/spiking_dev.h"

/* The nominal model of a device model: one branch per model.  strsbp: the
 * spiking device's ST-RSBP variant (spec "strsbp"; other models refuse it). */
static int nominal_for_desc(surrogate **out, const char *name, const struct patctl_device_desc *desc,
                            const char *options, int strsbp, char *err, size_t errlen)
{
    *out = NULL;
    struct patctl_option *o = NULL;
    int no = options_parse(options, &o);
    if (no < 0) {
        snprintf(err, errlen, "device %s: bad options '%s'", name, options);
        return no;
    }
    int rc = 0;
    if (strsbp && strcmp(desc->model, "spiking") != 0) {
        snprintf(err, errlen, "device %s: surrogate 'strsbp' (the ST-RSBP spike-train level gradient) "
                 "is for spiking devices, not device model '%s'", name, desc->model);
        rc = PATCTL_ERR_CONFIG;
    } else if (strcmp(desc->model, "oscillators") == 0) {
        long steps;
        double t_end;
        if ((rc = options_int(o, no, "steps", 5, &steps, err, errlen)) ||
            (rc = options_float(o, no, "t_end", 0.5, &t_end, err, errlen)))
            goto out;
        if (steps < 1 || steps > 100000 || !(t_end > 0 && t_end < 1e6)) {
            snprintf(err, errlen, "options steps/t_end: expected steps 1..100000 and t_end > 0, got %ld, %g",
                     steps, t_end);
            rc = PATCTL_ERR_ARG;
            goto out;
        }
        osc_model m = osc_model_nominal(desc->n_in);
        m.steps = (int)steps;
        m.t_end = (float)t_end;
        *out = surrogate_osc_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(desc->model, "shg") == 0) {
        /* nominal SHG physics on the device's geometry (no dispersion, flat
         * response, no noise) */
        shg_model m;
        if ((rc = shg_model_for_desc(desc, o, no, &m, err, errlen)))
            goto out;
        *out = surrogate_shg_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(desc->model, "circuit") == 0) {
        /* nominal (datasheet) component values on the device's time grid */
        circuit_model m;
        if ((rc = circuit_model_for_desc(desc, o, no, &m, err, errlen)))
            goto out;
        *out = surrogate_circuit_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(desc->model, "reservoir") == 0) {
        /* nominal constants at the set operating point, on the device's nodes and window */
        reservoir_model m;
        if ((rc = reservoir_model_for_desc(desc, o, no, &m, err, errlen)))
            goto out;
        *out = surrogate_reservoir_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(desc->model, "spiking") == 0) {
        /* the mismatch-free, noise-free LIF chip on the device's geometry
         * (sizes from the description, e.g. behind a server; time grid and
         * coding from the options): surrogate-gradient BPTT, or ST-RSBP
         * with surrogate = strsbp */
        lif_model m;
        if ((rc = spiking_options_shape(o, no, &m, err, errlen)))
            goto out;
        m.n_in = desc->n_in, m.n_out = desc->n_out;
        *out = surrogate_lif_new(&m, strsbp);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else {
        snprintf(err, errlen, "device %s: no nominal surrogate for device model '%s' (fit one: "
                 "patctl collect, patctl fit, then surrogate = fitted:PATH)", name, desc->model);
        rc = PATCTL_ERR_UNSUPPORTED;
    }
out:
    free(o);
    if (rc && errlen && strncmp(err, "device ", 7) != 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "device %s: %s", name, why);
    }
    return rc;
}

/* "online[,k=v...]:BASE": BASE as an online surrogate (oscillators only) */
static int make_online(surrogate **out, const char *name, const struct patctl_device_desc *desc,
                       const char *options, const char *spec, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    fit_online_options oo;
    fit_online_default_options(&oo);
    char kv[256] = "", oerr[256] = "";
    if (!colon) {
        snprintf(err, errlen, "device %s: surrogate '%s': expected online[,key=value...]:SPEC", name, spec);
        return PATCTL_ERR_CONFIG;
    }
    size_t klen = (size_t)(colon - spec);
    if (klen > 6 && spec[6] == ',')
        snprintf(kv, sizeof(kv), "%.*s", (int)(klen - 7), spec + 7);
    else if (klen != 6) {
        snprintf(err, errlen, "device %s: surrogate '%s': expected online[,key=value...]:SPEC", name, spec);
        return PATCTL_ERR_CONFIG;
    }
    if (kv[0] && fit_online_parse(kv, &oo, oerr, sizeof(oerr))) {
        snprintf(err, errlen, "device %s: surrogate '%s': %s", name, spec, oerr);
        return PATCTL_ERR_CONFIG;
    }
    surrogate *base = NULL;
    int rc = surrogate_make(&base, name, desc, options, colon + 1, err, errlen);
    if (rc)
        return rc;
    osc_model m;
    const float *D = NULL;
    if (surrogate_osc_parts(base, &m, &D)) {
        snprintf(err, errlen, "device %s: surrogate '%s': online refit needs an oscillator grey-box model, "
                 "not '%s'", name, spec, base->ops->kind);
        surrogate_destroy(&base);
        return PATCTL_ERR_CONFIG;
    }
    *out = surrogate_osc_online_new(&m, D, &oo);
    surrogate_destroy(&base);
    return *out ? 0 : PATCTL_ERR_NOMEM;
}

static int make_spec(surrogate **out, const char *name, const struct patctl_device_desc *desc,
                     const char *options, const char *spec, char *err, size_t errlen)
{
    if (spec && strncmp(spec, "online", 6) == 0 && (spec[6] == ':' || spec[6] == ','))
        return make_online(out, name, desc, options, spec, err, errlen);
    if (!spec || !spec[0] || strcmp(spec, "nominal") == 0 || strcmp(spec, "strsbp") == 0)
        return nominal_for_desc(out, name, desc, options, spec && strcmp(spec, "strsbp") == 0, err,
                                errlen);
    if (strncmp(spec, "nominal:", 8) == 0) {
        /* the spec's model options after the device's: the last one wins */
        char merged[1024];
        int n = snprintf(merged, sizeof(merged), "%s%s%s", options ? options : "",
                         options && options[0] ? "," : "", spec + 8);
        if (n < 0 || (size_t)n >= sizeof(merged)) {
            snprintf(err, errlen, "device %s: surrogate '%s': options too long", name, spec);
            return PATCTL_ERR_CONFIG;
        }
        return nominal_for_desc(out, name, desc, merged, 0, err, errlen);
    }
    const char *path = NULL;
    size_t len = strlen(spec);
    if (strncmp(spec, "fitted:", 7) == 0)
        path = spec + 7;
    else if (len > 5 && strcmp(spec + len - 5, ".json") == 0)
        path = spec;
    if (!path || !path[0]) {
        snprintf(err, errlen, "device %s: surrogate '%s': expected nominal[:K=V,...] or fitted:PATH (a .json "
                 "file written by patctl fit), optionally behind online[,every=N,window=W,lr=X,ls=1]:, "
                 "or strsbp (spiking devices)",
                 name, spec);
        return PATCTL_ERR_CONFIG;
    }
    char ferr[768] = "";
    int rc = fitted_load(path, name, desc, options, out, ferr, sizeof(ferr));
    if (rc)
        snprintf(err, errlen, "device %s: surrogate: %s", name, ferr);
    return rc;
}

int surrogate_make(surrogate **out, const char *name, const struct patctl_device_desc *desc,
                   const char *options, const char *spec, char *err, size_t errlen)
{
    *out = NULL;
    int rc = make_spec(out, name, desc, options, spec, err, errlen);
    if (rc || !*out)
        return rc;
    long n_theta = 0;
    for (int b = 0; b < desc->n_blocks; b++)
        n_theta += (long)desc->blocks[b].rows * desc->blocks[b].cols;
    surrogate *s = *out;
    if (s->n_in != desc->n_in || s->n_out != desc->n_out || s->n_theta != n_theta) {
        snprintf(err, errlen, "device %s: surrogate %s (%s) takes %d inputs, gives %d outputs and has %ld "
                 "parameters, but the device (model %s) takes %d, gives %d and has %ld: give the device's "
                 "geometry (surrogate = nominal:KEY=VALUE,...) or fit one (patctl fit)", name,
                 spec && spec[0] ? spec : "nominal", s->ops->kind, s->n_in, s->n_out, s->n_theta, desc->model,
                 desc->n_in, desc->n_out, n_theta);
        surrogate_destroy(out);
        return PATCTL_ERR_CONFIG;
    }
    return 0;
}

int surrogate_for_device(surrogate **out, const device *d, const char *options,
                         char *err, size_t errlen)
{
    return surrogate_make(out, d->name, &d->desc, options, NULL, err, errlen);
}
