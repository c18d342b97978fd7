/* libFuzzer target: the device description parser (JSON via cJSON) on
 * arbitrary text; what it accepts must survive a round trip unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/desc_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct patctl_device_desc d, d2;
    pt_desc_extra ex, ex2;
    char err[256];
    if (pt_desc_from_json((const char *)data, size, &d, &ex, err, sizeof(err)) != 0)
        return 0;
    char *j = pt_desc_to_json(&d, &ex);
    if (!j)
        return 0;
    if (pt_desc_from_json(j, strlen(j), &d2, &ex2, err, sizeof(err)) != 0 || memcmp(&d, &d2, sizeof(d)) != 0)
        abort();
    free(j);
    return 0;
}
