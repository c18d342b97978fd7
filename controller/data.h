/* Datasets of images with class labels: Fashion-MNIST from IDX files (gzip
 * through zlib) and a small built-in synthetic set for tests. */
#ifndef PATCTL_DATA_H
#define PATCTL_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset {
    long n;            /* samples */
    int h, w;          /* image size after pooling */
    int classes;
    float *x;          /* [n, h*w] pixel values in [0, 1], owned */
    uint8_t *y;        /* [n] labels 0..classes-1, owned */
} dataset;

/* Read <dir>/<prefix>-images-idx3-ubyte.gz and -labels-idx1-ubyte.gz
 * (prefix "train" or "t10k"), keep the first `limit` samples (0 = all),
 * pool by `pool` x `pool` averaging (1 = none).  Errors name the file. */
int dataset_load_idx(dataset *out, const char *dir, const char *prefix, int pool,
                     long limit, char *err, size_t errlen);

/* Read one IDX file (gzip or plain) into a byte array; dims out. */
int idx_read(const char *path, int expect_ndim, uint8_t **data, long dims[3],
             char *err, size_t errlen);

/* n samples of a learnable 10-class synthetic image set of side x side
 * pixels (class prototypes of bright blobs plus noise), seeded. */
int dataset_synthetic(dataset *out, long n, int side, uint64_t seed);

void dataset_free(dataset *d);

#endif
