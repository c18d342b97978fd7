/* The circuit driver's model-shape options, shared with the surrogate
 * factory (controller/surrogates.c) so that the nominal model has exactly
 * the device's slots, samples and integration grid. */
#ifndef PATCTL_CIRCUIT_DEV_H
#define PATCTL_CIRCUIT_DEV_H

#include <stddef.h>

#include "patctl/device.h"
#include "surrogate/circuit.h"

/* Keys of the shape options, NULL-terminated. */
extern const char *const circuit_shape_keys[];

/* The nominal model with the shape given by the options (n_in, sps,
 * substeps, t_slot_us, nvt; defaults as in the driver).  Returns 0 or
 * PATCTL_ERR_ARG with a message. */
int circuit_options_shape(const struct patctl_option *o, int n, circuit_model *m, char *err,
                          size_t errlen);

/* The nominal model of a described circuit: substeps, t_slot_us and nvt
 * from the options (defaults otherwise), n_in and sps = n_out / n_in from
 * the description (what a device behind a server sends). */
int circuit_model_for_desc(const struct patctl_device_desc *desc, const struct patctl_option *o, int n,
                           circuit_model *m, char *err, size_t errlen);

#endif
