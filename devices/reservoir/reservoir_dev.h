/* The reservoir driver's model-shape options, shared with the surrogate
 * factory (controller/surrogates.c) so that the nominal model has exactly
 * the device's virtual nodes, window, read-out and set operating point. */
#ifndef PATCTL_RESERVOIR_DEV_H
#define PATCTL_RESERVOIR_DEV_H

#include <stddef.h>

#include "patctl/device.h"
#include "surrogate/reservoir.h"

/* Keys of the shape options, NULL-terminated. */
extern const char *const reservoir_shape_keys[];

/* The nominal model with the shape and set point given by the options
 * (nodes, window, channels, out_steps, out_stride, nonlin, eta, p, phi,
 * theta; defaults as in the driver).  Returns 0 or PATCTL_ERR_ARG with a
 * message. */
int reservoir_options_shape(const struct patctl_option *o, int n, reservoir_model *m, char *err,
                            size_t errlen);

/* The nominal model of a reservoir device with description desc: the
 * options' set point and shape, where the description (authoritative: it
 * may come from a remote server whose options the controller does not see)
 * gives the virtual nodes and channels (the mask block), the window
 * (n_in / channels) and the steps read (n_out / nodes).  When the options'
 * shape differs from the description's, out_stride becomes 1 if it no
 * longer fits.  Returns 0 or PATCTL_ERR_ARG with a message. */
int reservoir_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o,
                             int n, reservoir_model *m, char *err, size_t errlen);

#endif
