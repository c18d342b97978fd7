/* IDX files (yann.lecun.com/exdb/mnist format) through zlib. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "controller/data.h"
#include "patctl/error.h"

int idx_read(const char *path, int expect_ndim, uint8_t **data, long dims[3],
             char *err, size_t errlen)
{
    *data = NULL;
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        snprintf(err, errlen, "%s: cannot open (is the dataset installed? "
                 "apt-get install dataset-fashion-mnist)", path);
        return PATCTL_ERR_NOT_FOUND;
    }
    fclose(probe);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return PATCTL_ERR_IO;
    }
    unsigned char hdr[4];
    int rc = PATCTL_ERR_FORMAT;
    if (gzread(f, hdr, 4) != 4) {
        snprintf(err, errlen, "%s: truncated header", path);
        goto out;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != expect_ndim) {
        snprintf(err, errlen, "%s: not an IDX file of unsigned bytes with %d dimensions "
                 "(magic %02x %02x %02x %02x)", path, expect_ndim, hdr[0], hdr[1], hdr[2], hdr[3]);
        goto out;
    }
    long total = 1;
    for (int i = 0; i < 3; i++)
        dims[i] = 1;
    for (int i = 0; i < expect_ndim; i++) {
        unsigned char b[4];
        if (gzread(f, b, 4) != 4) {
            snprintf(err, errlen, "%s: truncated header", path);
            goto out;
        }
        dims[i] = ((long)b[0] << 24) | ((long)b[1] << 16) | ((long)b[2] << 8) | (long)b[3];
        if (dims[i] <= 0 || dims[i] > 100000000L || total > 2000000000L / dims[i]) {
            snprintf(err, errlen, "%s: implausible dimension %ld", path, dims[i]);
            goto out;
        }
        total *= dims[i];
    }
    *data = malloc((size_t)total);
    if (!*data) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    long got = 0;
    while (got < total) {
        int chunk = (int)((total - got) > (1 << 30) ? (1 << 30) : (total - got));
        int r = gzread(f, *data + got, (unsigned)chunk);
        if (r <= 0)
            break;
        got += r;
    }
    if (got != total) {
        int zerr;
        const char *zmsg = gzerror(f, &zerr);
        snprintf(err, errlen, "%s: truncated: %ld of %ld data bytes%s%s", path, got, total,
                 zerr ? ": " : "", zerr ? zmsg : "");
        free(*data);
        *data = NULL;
        goto out;
    }
    rc = 0;
out:
    gzclose(f);
    return rc;
}

int dataset_load_idx(dataset *out, const char *dir, const char *prefix, int pool,
                     long limit, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (pool < 1) {
        snprintf(err, errlen, "pooling must be >= 1, got %d", pool);
        return PATCTL_ERR_ARG;
    }
    char ipath[1024], lpath[1024];
    snprintf(ipath, sizeof(ipath), "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lpath, sizeof(lpath), "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    uint8_t *img = NULL, *lab = NULL;
    long di[3], dl[3];
    int rc = idx_read(ipath, 3, &img, di, err, errlen);
    if (rc)
        return rc;
    if ((rc = idx_read(lpath, 1, &lab, dl, err, errlen))) {
        free(img);
        return rc;
    }
    if (di[0] != dl[0]) {
        snprintf(err, errlen, "%s has %ld images but %s has %ld labels", ipath, di[0], lpath, dl[0]);
        rc = PATCTL_ERR_FORMAT;
        goto fail;
    }
    if (di[1] % pool || di[2] % pool) {
        snprintf(err, errlen, "%s: %ldx%ld images cannot be pooled by %d", ipath, di[1], di[2], pool);
        rc = PATCTL_ERR_ARG;
        goto fail;
    }
    long n = (limit > 0 && limit < di[0]) ? limit : di[0];
    int H = (int)di[1], W = (int)di[2], h = H / pool, w = W / pool;
    out->x = malloc(sizeof(float) * (size_t)n * (size_t)h * (size_t)w);
    out->y = malloc((size_t)n);
    if (!out->x || !out->y) {
        rc = PATCTL_ERR_NOMEM;
        goto fail;
    }
    float scale = 1.0f / (255.0f * (float)(pool * pool));
    for (long s = 0; s < n; s++) {
        const uint8_t *src = img + s * H * W;
        float *dst = out->x + s * h * w;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int acc = 0;
                for (int a = 0; a < pool; a++)
                    for (int b = 0; b < pool; b++)
                        acc += src[(i * pool + a) * W + j * pool + b];
                dst[i * w + j] = (float)acc * scale;
            }
        if (lab[s] > 9) {
            snprintf(err, errlen, "%s: label %d of sample %ld is not a class 0..9", lpath, lab[s], s);
            rc = PATCTL_ERR_FORMAT;
            goto fail;
        }
        out->y[s] = lab[s];
    }
    out->n = n, out->h = h, out->w = w, out->classes = 10;
    free(img);
    free(lab);
    return 0;
fail:
    free(img);
    free(lab);
    dataset_free(out);
    return rc;
}

void dataset_free(dataset *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    free(d->t);
    memset(d, 0, sizeof(*d));
}
