#include "devices/registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "devices/drivers.h"

static const struct patctl_driver *const builtin[] = {
    &patctl_driver_oscillators,
    &patctl_driver_shg,
    &patctl_driver_circuit,
    &patctl_driver_reservoir,
    &patctl_driver_spiking,
    &patctl_driver_remote,
    NULL,
};

const struct patctl_driver *const *registry_builtin(void) { return builtin; }

const struct patctl_driver *registry_find(const char *name)
{
    for (int i = 0; builtin[i]; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    return NULL;
}

int registry_load_plugin(const char *path, const struct patctl_driver **drv,
                         void **handle, char *err, size_t errlen)
{
    *drv = NULL;
    *handle = NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", path, dlerror());
        return PATCTL_ERR_NOT_FOUND;
    }
    void *sym = dlsym(h, PATCTL_PLUGIN_ENTRY);
    if (!sym) {
        snprintf(err, errlen, "plugin %s: missing symbol %s (not a patctl driver?)", path,
                 PATCTL_PLUGIN_ENTRY);
        dlclose(h);
        return PATCTL_ERR_ABI;
    }
    patctl_driver_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry));
    const struct patctl_driver *d = entry();
    if (!d) {
        snprintf(err, errlen, "plugin %s: %s() returned NULL", path, PATCTL_PLUGIN_ENTRY);
        dlclose(h);
        return PATCTL_ERR_ABI;
    }
    if (d->abi_version < PATCTL_DEVICE_ABI_MIN || d->abi_version > PATCTL_DEVICE_ABI_VERSION) {
        snprintf(err, errlen, "plugin %s: device ABI version %u, this patctl loads versions %u to %u",
                 path, d->abi_version, PATCTL_DEVICE_ABI_MIN, PATCTL_DEVICE_ABI_VERSION);
        dlclose(h);
        return PATCTL_ERR_ABI;
    }
    const char *missing = !d->name ? "name" : !d->open ? "open" : !d->run ? "run"
                        : !d->make_safe ? "make_safe" : !d->close ? "close" : NULL;
    if (missing) {
        snprintf(err, errlen, "plugin %s: driver table lacks required member '%s'", path, missing);
        dlclose(h);
        return PATCTL_ERR_ABI;
    }
    *drv = d;
    *handle = h;
    return 0;
}

int registry_resolve(const char *name_or_path, const struct patctl_driver **drv,
                     void **handle, char *err, size_t errlen)
{
    size_t len = strlen(name_or_path);
    if (strchr(name_or_path, '/') || (len > 3 && strcmp(name_or_path + len - 3, ".so") == 0))
        return registry_load_plugin(name_or_path, drv, handle, err, errlen);
    *handle = NULL;
    *drv = registry_find(name_or_path);
    if (!*drv) {
        size_t used = (size_t)snprintf(err, errlen, "no device driver '%s' (built-in:", name_or_path);
        for (int i = 0; builtin[i] && used < errlen; i++)
            used += (size_t)snprintf(err + used, errlen - used, " %s", builtin[i]->name);
        if (used < errlen)
            snprintf(err + used, errlen - used, "; or give a plugin .so path)");
        return PATCTL_ERR_NOT_FOUND;
    }
    return 0;
}
