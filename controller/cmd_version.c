/* patctl version: software version and the BLAS bound at run time. */
#include <stdio.h>

#include "controller/commands.h"
#include "patctl/device.h"
#include "patctl/version.h"
#include "surrogate/blas.h"

int cmd_version(int argc, char **argv)
{
    (void)argc, (void)argv;
    const char *cfg = blas_config();
    printf("patctl %s (device ABI %u)\n", PATCTL_VERSION_STRING, PATCTL_DEVICE_ABI_VERSION);
    printf("BLAS: %s\n", blas_library());
    if (cfg)
        printf("BLAS config: %s, %d threads\n", cfg, blas_threads());
    return EXIT_OK;
}
