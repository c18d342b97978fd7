#include "controller/npy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

int npy_write_header(FILE *f, const char *descr, int ndim, const long *shape)
{
    if (ndim < 0 || ndim > 8)
        return PATCTL_ERR_ARG;
    size_t dlen = strlen(descr);
    char *h = malloc(dlen + 256);
    if (!h)
        return PATCTL_ERR_NOMEM;
    int n = sprintf(h, "{'descr': %s, 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) /* a Python tuple: "(6,)", "(2, 3)" */
        n += sprintf(h + n, "%s%ld%s", i ? ", " : "", shape[i], ndim == 1 ? "," : "");
    n += sprintf(h + n, "), }");
    /* magic(6) + version(2) + length(2 or 4) + header + '\n', padded to 64 */
    int v2 = n + 1 + 10 > 65535;
    size_t pre = v2 ? 12 : 10;
    size_t total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    uint8_t head[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', v2 ? 2 : 1, 0};
    if (v2) {
        for (int i = 0; i < 4; i++)
            head[8 + i] = (uint8_t)(hlen >> (8 * i));
    } else {
        head[8] = (uint8_t)(hlen & 0xff), head[9] = (uint8_t)(hlen >> 8);
    }
    int rc = 0;
    if (fwrite(head, 1, pre, f) != pre || fwrite(h, 1, (size_t)n, f) != (size_t)n)
        rc = PATCTL_ERR_IO;
    for (size_t i = (size_t)n; !rc && i + 1 < hlen; i++)
        if (fputc(' ', f) == EOF)
            rc = PATCTL_ERR_IO;
    if (!rc && fputc('\n', f) == EOF)
        rc = PATCTL_ERR_IO;
    free(h);
    return rc;
}

static int host_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* 4-byte items, written little-endian. */
static int save4(const char *path, const char *descr, const void *v, long rows, long cols)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return PATCTL_ERR_IO;
    long shape[2] = {rows, cols};
    int rc = npy_write_header(f, descr, cols ? 2 : 1, shape);
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (!rc && host_le()) {
        if (fwrite(v, 4, n, f) != n)
            rc = PATCTL_ERR_IO;
    } else if (!rc) {
        const uint8_t *b = v;
        for (size_t i = 0; i < n && !rc; i++, b += 4) {
            uint8_t s[4] = {b[3], b[2], b[1], b[0]};
            if (fwrite(s, 1, 4, f) != 4)
                rc = PATCTL_ERR_IO;
        }
    }
    if (fclose(f))
        rc = PATCTL_ERR_IO;
    return rc;
}

int npy_save_f32(const char *path, const float *v, long rows, long cols)
{
    return save4(path, "'<f4'", v, rows, cols);
}

int npy_save_i32(const char *path, const int *v, long rows, long cols)
{
    return save4(path, "'<i4'", v, rows, cols);
}
