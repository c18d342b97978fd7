/* Deliberately broken plugins for tests/test_plugin.c, one per compile
 * definition: BAD_ABI (a table of another ABI version), NO_ENTRY (the entry
 * symbol is missing), NO_RUN (the table lacks run). */
#include <stddef.h>

#include "patctl/device.h"

static int b_open(void **s, const struct patctl_option *o, int n, struct patctl_device_desc *d,
                  char *e, size_t el)
{
    (void)s, (void)o, (void)n, (void)d, (void)e, (void)el;
    return PATCTL_ERR_DEVICE;
}
#ifndef NO_RUN
static int b_run(void *s, const struct patctl_query *q, float *y)
{
    (void)s, (void)q, (void)y;
    return 0;
}
#endif
static int b_safe(void *s)
{
    (void)s;
    return 0;
}
static void b_close(void *s) { (void)s; }

static const struct patctl_driver table = {
#ifdef BAD_ABI
    .abi_version = 999u, /* no patctl speaks it */
#else
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
#endif
    .name = "broken",
    .open = b_open,
#ifndef NO_RUN
    .run = b_run,
#endif
    .make_safe = b_safe,
    .close = b_close,
};

#ifdef NO_ENTRY
const struct patctl_driver *not_the_entry(void) { return &table; }
#else
const struct patctl_driver *patctl_driver_entry(void) { return &table; }
#endif
