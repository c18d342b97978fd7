/* Datasets: images with class labels (Fashion-MNIST from IDX files, gzip
 * through zlib; a small built-in synthetic set for tests) and regression
 * tasks on generated time series (NARMA-10, Mackey-Glass: windows of the
 * series as samples, real-valued targets). */
#ifndef PATCTL_DATA_H
#define PATCTL_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset {
    long n;            /* samples */
    int h, w;          /* image size after pooling */
    int classes;
    float *x;          /* [n, h*w] pixel values in [0, 1], owned */
    uint8_t *y;        /* [n] labels 0..classes-1, owned (regression: all 0) */
    int n_targets;     /* regression: targets per sample (classification: 0) */
    float *t;          /* regression: [n, n_targets] targets, owned; NULL otherwise */
    double t_var;      /* regression: population variance of the targets (NRMSE's scale) */
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

/* The regression tasks (kind "narma10" or "mackey-glass"): n samples, each
 * a window x [window] of the input series mapped to [-1, 1] (NARMA-10:
 * 4 u - 1 of u ~ U(0, 0.5); Mackey-Glass tau 17: (x - 0.85) / 0.5) and its
 * target t [1]: NARMA-10's y at the window's last step (it depends on the
 * inputs up to that step), Mackey-Glass's value `horizon` samples after the
 * window.  part 0 = training, 1 = test: NARMA-10 draws another input
 * sequence; Mackey-Glass takes a later stretch of the same trajectory.  h =
 * 1, w = window, classes 0.  Errors name the task. */
int dataset_series(dataset *out, const char *kind, long n, int window, int horizon, uint64_t seed, int part,
                   char *err, size_t errlen);

/* 1 for the regression task names dataset_series takes. */
int dataset_is_series(const char *kind);

void dataset_free(dataset *d);

#endif
