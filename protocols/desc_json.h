/* The device description (struct patctl_device_desc) as JSON, the payload
 * of a DESCRIPTION message (PROTOCOL.md gives an example).  Host side, cJSON. */
#ifndef PATCTL_PROTOCOLS_DESC_JSON_H
#define PATCTL_PROTOCOLS_DESC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/device.h"

/* Extras a server adds next to the description. */
typedef struct pt_desc_extra {
    char driver[64];        /* the driver behind the server, "" if unknown */
    uint32_t mtu;           /* serial: largest frame payload it takes, 0 = none */
    uint32_t max_message;   /* largest message payload it takes, 0 = unknown */
    uint32_t protocol;      /* parsed: the protocol version the server speaks
                               (1 if absent); written: always PT_VERSION */
} pt_desc_extra;

/* JSON text of d (and extra, may be NULL); caller frees with free().  NULL
 * on allocation failure. */
char *pt_desc_to_json(const struct patctl_device_desc *d, const pt_desc_extra *extra);

/* Parse n bytes of JSON (not necessarily NUL-terminated) into *d (and
 * *extra, may be NULL).  Checks types, ranges, string lengths and that
 * every number is finite; unknown keys are ignored.  On error a message
 * naming the key in err and PATCTL_ERR_FORMAT. */
int pt_desc_from_json(const char *json, size_t n, struct patctl_device_desc *d, pt_desc_extra *extra,
                      char *err, size_t errlen);

#endif
