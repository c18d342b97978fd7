/* Weight-matrix regularisation and pruning over a model: BEAN
 * (surrogate/bean.h) on every digital linear weight matrix and, when asked,
 * every physical coupling matrix (a parameter block with rows > 1 and
 * cols > 1, e.g. the oscillators' C), and magnitude pruning of the same
 * matrices for `patctl eval --prune`. */
#ifndef PATCTL_REGULARIZE_H
#define PATCTL_REGULARIZE_H

#include "controller/model.h"

/* One matrix of the model: [rows, cols] at params + offset. */
typedef struct model_matrix {
    long offset;
    int rows, cols;
    int layer;           /* graph layer */
    int physical;        /* a device's parameter block */
    int symmetric_pairs; /* the device uses (C + C^T)/2 off the diagonal (oscillators):
                            a coupling is the pair (i, j), (j, i); the diagonal is unused */
    char name[80];       /* "osc266.C", "layer3.linear.W" */
} model_matrix;

/* The matrices (at most max) of m: digital linear weights, and physical
 * coupling blocks when physical != 0.  Returns how many. */
int model_matrices(const model *m, int physical, model_matrix *out, int max);

/* BEAN over those matrices: returns R (sum over matrices) and, when grads
 * is not NULL, grads [n_params] += dR/dparams.  PATCTL_ERR_NOMEM as -1.0
 * is impossible to tell from R, so *rc gets 0 or the error. */
double model_bean(const model *m, double alpha, int physical, float *grads, int *rc);

/* Zero the fraction `fraction` (0..1) of smallest-magnitude entries of
 * each matrix in params [n_params] (couplings of symmetric_pairs matrices:
 * the pairs with the smallest |C_ij + C_ji|, both entries; their diagonal
 * is left alone).  *pruned / *total: couplings (entries) zeroed / prunable.
 * mask [n_params] (or NULL) gets 1 at every zeroed entry, 0 elsewhere. */
int model_prune(const model *m, float *params, double fraction, int physical, long *pruned, long *total,
                unsigned char *mask);

#endif
