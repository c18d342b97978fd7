/* The SHG driver's geometry options, shared with the surrogate factory
 * (controller/surrogates.c) so that the nominal model has exactly the
 * device's pixels and bins. */
#ifndef PATCTL_SHG_DEV_H
#define PATCTL_SHG_DEV_H

#include <stddef.h>

#include "patctl/device.h"
#include "surrogate/shg.h"

/* Keys of the geometry options, NULL-terminated. */
extern const char *const shg_geometry_keys[];

/* The nominal model with the geometry given by the options (n_in, n_par,
 * bins, n_out, bandwidth, span; defaults as in the driver).  Returns 0 or
 * PATCTL_ERR_ARG with a message. */
int shg_options_geometry(const struct patctl_option *o, int n, shg_model *m, char *err,
                         size_t errlen);

/* The nominal model of a described SHG device: bins, bandwidth, span and
 * phase_scale from the options (defaults otherwise), the pixel counts from
 * the description (n_in, n_out, n_par = its parameters), which a device
 * behind a server (remote) sends while its options stay on the server. */
int shg_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o, int n,
                       shg_model *m, char *err, size_t errlen);

#endif
