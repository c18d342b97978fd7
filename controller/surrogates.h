/* Which surrogate models a device.  A device's `surrogate` spec (config key
 * `surrogate = ...` of [device NAME], or `patctl train --surrogate
 * NAME=SPEC`) is one of
 *   "" or "nominal"      the nominal physics of the simulated drivers' models
 *                        (oscillators, shg, circuit, reservoir, spiking);
 *   "nominal:K=V,..."    the nominal model with these model options over the
 *                        device's (e.g. bins=8 for an SHG device behind a
 *                        server, whose driver options stay on the server;
 *                        its sizes always come from the description);
 *   "strsbp"             spiking devices: the nominal chip with the ST-RSBP
 *                        spike-train level gradient instead of the
 *                        surrogate-gradient BPTT (surrogate/lif.h);
 *   "fitted:PATH" or PATH ending in ".json"
 *                        a surrogate fitted by `patctl fit` (grey-box
 *                        oscillators or MLP; any device for the MLP);
 *   "online[,every=N,window=W,lr=X,coupling=0|1]:SPEC"
 *                        an oscillator SPEC that keeps learning during PAT
 *                        (surrogate/fit_online.h; model_observe()).
 * To add a device model: one branch in nominal_for_desc() (surrogates.c);
 * fitted kinds are loaded by fitted_load() (fit_store.c).  Whatever the
 * spec, a surrogate whose sizes (n_in, n_out, parameters) differ from the
 * description is refused with both shapes named.  Caller owns the result. */
#ifndef PATCTL_SURROGATES_H
#define PATCTL_SURROGATES_H

#include <stddef.h>

#include "devices/device.h"
#include "surrogate/surrogate.h"

/* The surrogate `spec` names for device `name` described by desc and opened
 * with driver options `options`.  Errors name the device (and the file). */
int surrogate_make(surrogate **out, const char *name, const struct patctl_device_desc *desc,
                   const char *options, const char *spec, char *err, size_t errlen);

/* The nominal surrogate of an open device (= surrogate_make(.., "nominal")). */
int surrogate_for_device(surrogate **out, const device *d, const char *options,
                         char *err, size_t errlen);

#endif
