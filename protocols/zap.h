/* The CURVE client allowlist of a ZeroMQ server and its ZAP handler
 * (zap.c); used by zlink.c.  Internal to protocols/. */
#ifndef PATCTL_PROTOCOLS_ZAP_H
#define PATCTL_PROTOCOLS_ZAP_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/error.h"

/* Read an allowlist: one client public key per line, 40 Z85 characters or
 * "public = KEY" (a keygen .pub file); '#' comment lines and blank lines
 * allowed.  *keys (n x 32 bytes, caller frees) on success; a malformed line
 * is PATCTL_ERR_FORMAT with "allowlist PATH:LINE: ..." in err; a list
 * without keys is PATCTL_ERR_FORMAT too. */
int pt_curve_allow_read(const char *path, uint8_t (**keys)[32], int *n, char *err, size_t errlen);

/* Register the allowlist at path for a server socket of ctx, starting the
 * process's ZAP handler thread if it is not running; domain receives the
 * ZAP domain to set on the socket (ZMQ_ZAP_DOMAIN) before it binds. */
int pt_zap_add(void *ctx, const char *path, char domain[32], char *err, size_t errlen);
/* Unregister; the last one stops and joins the handler thread. */
void pt_zap_remove(const char *domain);

#endif
