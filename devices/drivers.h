/* The built-in driver tables (each defined in its own folder's api.c). */
#ifndef PATCTL_DRIVERS_H
#define PATCTL_DRIVERS_H

#include "patctl/device.h"

extern const struct patctl_driver patctl_driver_oscillators;
extern const struct patctl_driver patctl_driver_shg;
extern const struct patctl_driver patctl_driver_circuit;
extern const struct patctl_driver patctl_driver_reservoir;
extern const struct patctl_driver patctl_driver_spiking;
extern const struct patctl_driver patctl_driver_remote;   /* devices/remote/api.c */

#endif
