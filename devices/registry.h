/* The driver registry: built-in drivers by name, plugins by path (dlopen). */
#ifndef PATCTL_REGISTRY_H
#define PATCTL_REGISTRY_H

#include <stddef.h>

#include "patctl/device.h"

/* Built-in drivers, NULL-terminated. */
const struct patctl_driver *const *registry_builtin(void);

/* A built-in driver by name, or NULL. */
const struct patctl_driver *registry_find(const char *name);

/* Load a plugin .so: dlopen(path), look up PATCTL_PLUGIN_ENTRY, check the
 * ABI version and the required functions.  On success *handle is the dlopen
 * handle (caller dlcloses after closing every device of it).  On failure a
 * message naming the file is written into err. */
int registry_load_plugin(const char *path, const struct patctl_driver **drv,
                         void **handle, char *err, size_t errlen);

/* Resolve "name" (built-in) or a path containing '/' or ending in ".so"
 * (plugin).  *handle is NULL for built-ins. */
int registry_resolve(const char *name_or_path, const struct patctl_driver **drv,
                     void **handle, char *err, size_t errlen);

#endif
