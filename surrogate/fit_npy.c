/* .npy reader/writer (see fit_npy.h). */
#include "surrogate/fit_npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

static const char *descr_of(npy_dtype t)
{
    switch (t) {
    case NPY_F32: return "<f4";
    case NPY_F64: return "<f8";
    case NPY_I32: return "<i4";
    }
    return "?";
}

size_t fit_npy_elsize(npy_dtype t) { return t == NPY_F64 ? 8 : 4; }

static int host_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int fit_npy_write(const char *path, npy_dtype t, int ndim, const long *shape,
                  const void *data, char *err, size_t errlen)
{
    if (ndim < 1 || ndim > FIT_NPY_MAX_DIM || !host_little_endian()) {
        snprintf(err, errlen, "%s: cannot write a %d-dimensional array", path, ndim);
        return PATCTL_ERR_ARG;
    }
    char dims[160] = "";
    size_t used = 0;
    long count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            snprintf(err, errlen, "%s: negative dimension", path);
            return PATCTL_ERR_ARG;
        }
        count *= shape[i];
        used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%ld,%s", shape[i],
                                 ndim > 1 && i + 1 < ndim ? " " : "");
    }
    if (ndim > 1) /* "(3, 4)" not "(3, 4,)" */
        dims[used - 1] = '\0';
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                      descr_of(t), dims);
    /* pad so that 10 + header length is a multiple of 64, ending in '\n' */
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    if (hl + pad + 1 >= (int)sizeof(hdr)) {
        snprintf(err, errlen, "%s: header too long", path);
        return PATCTL_ERR_ARG;
    }
    memset(hdr + hl, ' ', (size_t)pad);
    hdr[hl + pad] = '\n';
    uint16_t len = (uint16_t)(hl + pad + 1);

    char tmp[1100];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return PATCTL_ERR_ARG;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        return PATCTL_ERR_IO;
    }
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    unsigned char lb[2] = {(unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    size_t el = fit_npy_elsize(t);
    int ok = fwrite(magic, 1, 8, f) == 8 && fwrite(lb, 1, 2, f) == 2 &&
             fwrite(hdr, 1, len, f) == len &&
             (count == 0 || fwrite(data, el, (size_t)count, f) == (size_t)count);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
        return PATCTL_ERR_IO;
    }
    return 0;
}

/* The value text after 'key': in a header dict, or NULL. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

int fit_npy_read(const char *path, npy_dtype want, int *ndim, long shape[FIT_NPY_MAX_DIM],
                 void **data, char *err, size_t errlen)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return PATCTL_ERR_IO;
    }
    unsigned char pre[10];
    int rc = PATCTL_ERR_FORMAT;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        snprintf(err, errlen, "%s: not a version-1 .npy file", path);
        goto out;
    }
    size_t hl = (size_t)pre[8] | ((size_t)pre[9] << 8);
    hdr = malloc(hl + 1);
    if (!hdr) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    if (fread(hdr, 1, hl, f) != hl) {
        snprintf(err, errlen, "%s: truncated header", path);
        goto out;
    }
    hdr[hl] = '\0';
    const char *d = dict_value(hdr, "descr"), *fo = dict_value(hdr, "fortran_order"),
               *sh = dict_value(hdr, "shape");
    char expect[8];
    snprintf(expect, sizeof(expect), "'%s'", descr_of(want));
    if (!d || !fo || !sh || strncmp(fo, "False", 5) != 0) {
        snprintf(err, errlen, "%s: header lacks descr/shape or is Fortran-ordered", path);
        goto out;
    }
    if (strncmp(d, expect, strlen(expect)) != 0) {
        snprintf(err, errlen, "%s: dtype %.6s, expected %s", path, d, expect);
        goto out;
    }
    if (*sh != '(') {
        snprintf(err, errlen, "%s: bad shape", path);
        goto out;
    }
    sh++;
    int nd = 0;
    long count = 1;
    while (*sh && *sh != ')') {
        while (*sh == ' ' || *sh == ',')
            sh++;
        if (*sh == ')')
            break;
        char *end;
        errno = 0;
        long v = strtol(sh, &end, 10);
        if (end == sh || errno || v < 0 || nd >= FIT_NPY_MAX_DIM) {
            snprintf(err, errlen, "%s: bad shape (more than %d dims or not a number)", path,
                     FIT_NPY_MAX_DIM);
            goto out;
        }
        shape[nd++] = v;
        if (v && count > (long)(((size_t)1 << 40) / (size_t)v)) {
            snprintf(err, errlen, "%s: array too large", path);
            goto out;
        }
        count *= v;
        sh = end;
    }
    if (*sh != ')') {
        snprintf(err, errlen, "%s: bad shape", path);
        goto out;
    }
    if (nd == 0) { /* a scalar: shape () */
        shape[0] = 1;
        nd = 1;
    }
    size_t el = fit_npy_elsize(want);
    *data = malloc(count ? (size_t)count * el : 1);
    if (!*data) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    if (count && fread(*data, el, (size_t)count, f) != (size_t)count) {
        snprintf(err, errlen, "%s: truncated data (expected %ld values)", path, count);
        free(*data);
        *data = NULL;
        goto out;
    }
    *ndim = nd;
    rc = 0;
out:
    free(hdr);
    fclose(f);
    return rc;
}

int fit_npy_read_shape(const char *path, npy_dtype want, int ndim, const long *expect,
                       long shape[FIT_NPY_MAX_DIM], void **data, char *err, size_t errlen)
{
    int nd;
    int rc = fit_npy_read(path, want, &nd, shape, data, err, errlen);
    if (rc)
        return rc;
    int ok = nd == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (expect && expect[i] >= 0 && shape[i] != expect[i])
            ok = 0;
    if (!ok) {
        char want_s[96] = "", got_s[96] = "";
        size_t a = 0, b = 0;
        for (int i = 0; i < ndim; i++)
            a += (size_t)snprintf(want_s + a, sizeof(want_s) - a, "%s%ld", i ? "," : "",
                                  expect ? expect[i] : -1L);
        for (int i = 0; i < nd; i++)
            b += (size_t)snprintf(got_s + b, sizeof(got_s) - b, "%s%ld", i ? "," : "", shape[i]);
        snprintf(err, errlen, "%s: shape (%s), expected (%s) (-1 = any)", path, got_s, want_s);
        free(*data);
        *data = NULL;
        return PATCTL_ERR_FORMAT;
    }
    return 0;
}
