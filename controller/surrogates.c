#include "controller/surrogates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/circuit/circuit_dev.h"
#include "devices/options.h"
#include "devices/shg/shg_dev.h"

int surrogate_for_device(surrogate **out, const device *d, const char *options,
                         char *err, size_t errlen)
{
    *out = NULL;
    struct patctl_option *o = NULL;
    int no = options_parse(options, &o);
    if (no < 0) {
        snprintf(err, errlen, "device %s: bad options '%s'", d->name, options);
        return no;
    }
    int rc = 0;
    if (strcmp(d->desc.model, "oscillators") == 0) {
        long steps;
        double t_end;
        if ((rc = options_int(o, no, "steps", 5, &steps, err, errlen)) ||
            (rc = options_float(o, no, "t_end", 0.5, &t_end, err, errlen)))
            goto out;
        osc_model m = osc_model_nominal(d->desc.n_in);
        m.steps = (int)steps;
        m.t_end = (float)t_end;
        *out = surrogate_osc_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(d->desc.model, "shg") == 0) {
        /* nominal SHG physics on the device's geometry (no dispersion, flat
         * response, no noise) */
        shg_model m;
        if ((rc = shg_options_geometry(o, no, &m, err, errlen)))
            goto out;
        *out = surrogate_shg_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else if (strcmp(d->desc.model, "circuit") == 0) {
        /* nominal (datasheet) component values on the device's time grid */
        circuit_model m;
        if ((rc = circuit_options_shape(o, no, &m, err, errlen)))
            goto out;
        *out = surrogate_circuit_new(&m);
        if (!*out)
            rc = PATCTL_ERR_NOMEM;
    } else {
        snprintf(err, errlen, "device %s: no surrogate model for device model '%s'", d->name,
                 d->desc.model);
        rc = PATCTL_ERR_UNSUPPORTED;
    }
out:
    free(o);
    return rc;
}
