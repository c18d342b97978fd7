/* The example device of the device-side library: an "analog layer"
 * y = tanh(W x + b), n_in 4, n_out 3, theta = W [3 x 4] then b [3] (volts),
 * batches up to 16, with its buffers and description.  Shared by the host
 * example program and the tests. */
#ifndef PATCTL_MCU_EXAMPLE_DEVICE_H
#define PATCTL_MCU_EXAMPLE_DEVICE_H

#include "protocols/mcu/patctl_mcu.h"

#define EXAMPLE_N_IN 4
#define EXAMPLE_N_OUT 3
#define EXAMPLE_N_THETA 15
#define EXAMPLE_MAX_BATCH 16
#define EXAMPLE_MTU 128

extern const char example_description[];

/* Set up dev with static buffers and the given UART callbacks. */
int example_device_init(pmcu *dev, int (*uart_read)(void *), int (*uart_write)(void *, const uint8_t *, size_t),
                        void *user);
/* Make-safe calls so far (the hardware state "W = 0, b = 0"). */
extern unsigned example_safe_calls;

#endif
