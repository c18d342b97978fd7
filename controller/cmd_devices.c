/* patctl devices: every driver with its description, and the serial ports. */
#include <dlfcn.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/commands.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/registry.h"

static void print_desc(const struct patctl_device_desc *d)
{
    printf("    model %s: %s\n", d->model, d->about);
    printf("    inputs  %d (%s), limits [%g, %g]\n", d->n_in, d->in_unit, d->in_lo, d->in_hi);
    printf("    outputs %d (%s)\n", d->n_out, d->out_unit);
    for (int b = 0; b < d->n_blocks; b++) {
        const struct patctl_param_block *k = &d->blocks[b];
        printf("    param %-8s [%d x %d] %-8s limits [%g, %g]", k->name, k->rows, k->cols, k->unit,
               k->lo, k->hi);
        if (k->max_step > 0)
            printf(", max step %g", k->max_step);
        printf(", safe %g  -- %s\n", k->safe, k->about);
    }
    printf("    exact VJP: %s\n", (d->flags & PATCTL_DEV_HAS_VJP) ? "yes (usable for --mode ideal)" : "no");
}

static void describe_driver(const char *driver, const char *options)
{
    struct patctl_option *o = NULL;
    int no = options_parse(options, &o);
    char err[512] = "";
    device *d = NULL;
    if (no >= 0 && device_open(&d, driver, driver, o, no, 1, err, sizeof(err)) == 0) {
        print_desc(&d->desc);
        device_close(&d);
    } else {
        printf("    (cannot open with default options: %s)\n", err[0] ? err : "bad options");
    }
    free(o);
}

static void print_options(const struct patctl_driver *drv)
{
    if (!drv->options_help)
        return;
    printf("    options:\n");
    const char *s = drv->options_help;
    while (*s) {
        const char *e = strchr(s, '\n');
        int len = e ? (int)(e - s) : (int)strlen(s);
        printf("      %.*s\n", len, s);
        s += len + (e ? 1 : 0);
    }
}

int cmd_devices(int argc, char **argv)
{
    const char *plugin = NULL, *options = "";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: patctl devices [--plugin PATH.so] [--options k=v,...]\n"
                   "Lists the built-in device drivers (and a plugin) with their inputs,\n"
                   "outputs, parameter blocks, units and limits, then the serial ports\n"
                   "libserialport finds.\n");
            return EXIT_OK;
        } else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) {
            plugin = argv[++i];
        } else if (strcmp(argv[i], "--options") == 0 && i + 1 < argc) {
            options = argv[++i];
        } else {
            fprintf(stderr, "patctl devices: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    printf("device drivers:\n");
    for (const struct patctl_driver *const *p = registry_builtin(); *p; p++) {
        printf("  %s — %s\n", (*p)->name, (*p)->summary);
        describe_driver((*p)->name, options);
        print_options(*p);
    }
    if (plugin) {
        const struct patctl_driver *drv;
        void *h;
        char err[512];
        if (registry_load_plugin(plugin, &drv, &h, err, sizeof(err))) {
            fprintf(stderr, "patctl devices: %s\n", err);
            return EXIT_FAIL;
        }
        printf("  %s (plugin %s) — %s\n", drv->name, plugin, drv->summary ? drv->summary : "");
        describe_driver(plugin, options);
        print_options(drv);
        dlclose(h);
    }

    printf("serial ports:\n");
    struct sp_port **ports = NULL;
    if (sp_list_ports(&ports) == SP_OK) {
        int n = 0;
        for (int i = 0; ports[i]; i++, n++) {
            const char *desc = sp_get_port_description(ports[i]);
            printf("  %s%s%s\n", sp_get_port_name(ports[i]), desc ? "  " : "", desc ? desc : "");
        }
        if (!n)
            printf("  (none found)\n");
        sp_free_port_list(ports);
    } else {
        printf("  (libserialport could not list ports)\n");
    }
    return EXIT_OK;
}
