/* The spiking driver's model-shape options, shared with the surrogate
 * factory (controller/surrogates.c) so that the nominal model has exactly
 * the device's geometry, coding, time grid and nominal neuron constants. */
#ifndef PATCTL_SPIKING_DEV_H
#define PATCTL_SPIKING_DEV_H

#include <stddef.h>

#include "patctl/device.h"
#include "surrogate/lif.h"

/* Keys of the shape options, NULL-terminated. */
extern const char *const spiking_shape_keys[];

/* The nominal (mismatch-free, hard-spike) model with the shape given by the
 * options (n_in, n_out, timesteps, coding, p_max, lat_cutoff, leak,
 * syn_gain, beta, sg; defaults as in the driver).  Returns 0 or
 * PATCTL_ERR_ARG with a message naming the option. */
int spiking_options_shape(const struct patctl_option *o, int n, lif_model *m, char *err,
                          size_t errlen);

#endif
