/* key=value options for drivers: lookup with defaults and a check that every
 * option given is one the driver knows (unknown options are errors). */
#ifndef PATCTL_OPTIONS_H
#define PATCTL_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/device.h"

/* Parse "k1=v1,k2=v2" (also accepts spaces or ';' as separators) into an
 * option array.  *opts and its strings live in one allocation the caller
 * frees with free(*opts).  Returns the count or a negative error. */
int options_parse(const char *text, struct patctl_option **opts);

/* The value of key, or NULL. The LAST occurrence wins. */
const char *options_get(const struct patctl_option *o, int n, const char *key);

/* Typed lookups; return 0 (value or default in *out) or PATCTL_ERR_ARG with
 * a message "option KEY: expected ..., got '...'" in err. */
int options_float(const struct patctl_option *o, int n, const char *key, double def,
                  double *out, char *err, size_t errlen);
int options_int(const struct patctl_option *o, int n, const char *key, long def,
                long *out, char *err, size_t errlen);
int options_u64(const struct patctl_option *o, int n, const char *key, uint64_t def,
                uint64_t *out, char *err, size_t errlen);

/* Every key in o must be in the NULL-terminated list known. */
int options_check_known(const struct patctl_option *o, int n, const char *const *known,
                        const char *driver, char *err, size_t errlen);
/* The same with two lists (a driver's own keys and, e.g., sim_noise_keys);
 * either list may be NULL. */
int options_check_known2(const struct patctl_option *o, int n, const char *const *known,
                         const char *const *more, const char *driver, char *err,
                         size_t errlen);

#endif
