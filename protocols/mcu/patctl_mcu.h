/* patctl device-side library: a microcontroller answers a patctl controller
 * over a UART (protocols/PROTOCOL.md, serial transport).
 *
 * Portable C99; no malloc, no printf, no floating-point library beyond
 * isfinite(); every buffer is the caller's.  The UART hides behind two
 * callbacks.  Needs from the rest of protocols/: frame.c, cobs.c, slink.c,
 * and mcu/crc32.c (a table-less CRC-32).
 *
 * Use:
 *   static uint32_t rx[...], tx[...];         (4-byte aligned buffers)
 *   pmcu_config cfg = { .description_json = DESC, .n_in = 4, .n_out = 3,
 *                       .n_theta = 15, .run = my_run, .make_safe = my_safe,
 *                       .uart_read = my_getc, .uart_write = my_write };
 *   pmcu dev;
 *   pmcu_init(&dev, &cfg, &bufs);
 *   for (;;) pmcu_poll(&dev);                 (in the main loop)
 *
 * The description is the JSON of PROTOCOL.md ("DESCRIPTION"); the library
 * adds the link's "mtu".  The controller enforces the limits it lists before
 * sending anything; run() still never sees NaN/Inf (checked here). */
#ifndef PATCTL_MCU_H
#define PATCTL_MCU_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/slink.h"

typedef struct pmcu_config {
    const char *description_json;   /* a JSON object, NUL-terminated */
    uint32_t n_in, n_out, n_theta;  /* must match the description */
    /* Measure y [batch, n_out] for x [batch, n_in] under theta [n_theta]
     * (batch 0: only apply theta).  Returns 0 or a negative PATCTL_ERR_*. */
    int (*run)(void *user, uint64_t query_id, uint32_t batch, const float *theta, const float *x,
               float *y);
    /* Put the hardware into its safe setting.  0 or a negative PATCTL_ERR_*. */
    int (*make_safe)(void *user);
    /* The UART: the next received byte (0..255) or -1 if none is waiting;
     * and write n bytes (blocking), 0 or negative on failure. */
    int (*uart_read)(void *user);
    int (*uart_write)(void *user, const uint8_t *p, size_t n);
    void *user;
} pmcu_config;

/* The caller's buffers.  rx and tx must be 4-byte aligned (declare them as
 * uint32_t arrays).  Sizes:
 *   frame_in, frame_out  mtu + PT_OVERHEAD (28) bytes each
 *   rx    largest request payload: 24 + 4 * (n_theta + max_batch * n_in)
 *   tx    largest reply payload: 16 + 4 * max_batch * n_out, and at least
 *         the description's length + 16
 *   have  ceil(largest request payload / mtu / 8) bytes (fragment bitmap) */
typedef struct pmcu_buffers {
    uint8_t *frame_in, *frame_out, *rx, *tx, *have;
    uint32_t mtu, rx_cap, tx_cap, have_cap;
} pmcu_buffers;

typedef struct pmcu {
    pmcu_config cfg;
    pmcu_buffers buf;
    pt_slink link;
    uint32_t requests, errors;
} pmcu;

/* 0, or PATCTL_ERR_ARG if a buffer is missing, misaligned or too small for
 * the description. */
int pmcu_init(pmcu *m, const pmcu_config *cfg, const pmcu_buffers *buf);

/* Read what the UART has (at most max_bytes, 0 = until it has nothing) and
 * answer a request that completed.  Returns 1 if a request was answered,
 * 0 if not, negative on a UART write error. */
int pmcu_poll(pmcu *m, uint32_t max_bytes);

#endif
