/* Which surrogate models a device: the nominal physics for the simulated
 * drivers' models.  Caller owns the result. */
#ifndef PATCTL_SURROGATES_H
#define PATCTL_SURROGATES_H

#include <stddef.h>

#include "devices/device.h"
#include "surrogate/surrogate.h"

int surrogate_for_device(surrogate **out, const device *d, const char *options,
                         char *err, size_t errlen);

#endif
