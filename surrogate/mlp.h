/* Black-box surrogate: a multilayer perceptron (x, theta) -> y for any
 * device, including plugins that bring no model.  float32 on CBLAS.
 *
 *   xn = (x - mx) / sx            [B, n_x]        input normalisation
 *   tn = (theta - mt) / st        [G, n_theta]    one row per setting
 *   h0 = tanh(xn W0x^T + tn[grp] W0t^T + b0)       [B, width]
 *   hl = tanh(h(l-1) Wl^T + bl),  l = 1..depth-1   [B, width]
 *   z  = h(depth-1) Wo^T + bo  (+ xn Ws^T with the linear skip)   [B, n_out]
 *   y  = my + sy * z                               output de-normalisation
 *
 * Rows b of a batch use setting grp[b] (grp == NULL: all use row 0), so the
 * theta part of the first layer costs one GEMM per setting, not per row.
 * Trained on collected data (fit_set) by Adam (AdamW decay) on the mean
 * squared error in normalised units, starting from the least-squares linear
 * shortcut (ridge regression of y on x), with early stopping on the FIT_VAL
 * settings (the best parameters are kept).  mlp_backward is the exact VJP. */
#ifndef PATCTL_MLP_H
#define PATCTL_MLP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "surrogate/fit_set.h"
#include "surrogate/surrogate.h"

#define MLP_MAX_DEPTH 8

typedef struct mlp_shape {
    int n_x;                /* inputs */
    long n_theta;           /* device parameters */
    int n_out;              /* outputs */
    int depth;              /* hidden layers, 1..MLP_MAX_DEPTH */
    int width;              /* units per hidden layer */
    int skip;               /* 1: linear shortcut xn -> z */
} mlp_shape;

typedef struct mlp {
    mlp_shape sh;
    long n_params;
    float *params;          /* [n_params], owned: W0x, W0t, b0, (Wl, bl)..., Wo, bo, Ws */
    float *W0x, *W0t, *b0;  /* views: [width,n_x], [width,n_theta], [width] */
    float *W[MLP_MAX_DEPTH], *b[MLP_MAX_DEPTH];  /* l >= 1: [width,width], [width] */
    float *Wo, *bo, *Ws;    /* [n_out,width], [n_out], [n_out,n_x] or NULL */
    long n_norm;
    float *norm;            /* [n_norm], owned: mx, sx, mt, st, my, sy */
    float *mx, *sx, *mt, *st, *my, *sy;
    /* tape of the last forward (grown on demand) */
    int cap, capG, B, G;
    float *tape;
    float *xn, *tn, *h[MLP_MAX_DEPTH], *t0;  /* [cap,n_x] [capG,n_theta] [cap,width] [capG,width] */
    float *gz, *gh, *gt0, *gxn, *gtn, *gzo;  /* backward work; gzo [cap,n_out] */
    int32_t *grp;           /* [cap] copy of the group map (NULL map -> zeros) */
} mlp;

/* A new MLP with zero parameters and identity normalisation.  Caller owns;
 * mlp_free accepts NULL. */
mlp *mlp_new(const mlp_shape *sh);
void mlp_free(mlp *m);

/* Glorot-uniform weights, zero biases, zero skip, from seed. */
void mlp_init(mlp *m, uint64_t seed);

/* y [B,n_out] for x [B,n_x], theta [G,n_theta], grp [B] (NULL: all 0).
 * Records the tape for mlp_backward.  0 or PATCTL_ERR_NOMEM/ARG. */
int mlp_forward(mlp *m, const float *theta, int G, const int32_t *grp, const float *x, int B,
                float *y);

/* VJP of the last forward.  ACCUMULATES: gx [B,n_x] += , gtheta [G,n_theta]
 * += , gparams [n_params] += ; any may be NULL. */
int mlp_backward(mlp *m, const float *gy, float *gx, float *gtheta, float *gparams);

typedef struct mlp_train_options {
    int depth, width, skip;
    int batch_settings;     /* settings per Adam step (default 8) */
    int max_epochs;         /* default 300 */
    int patience;           /* epochs without validation improvement (default 30) */
    double lr;              /* Adam lr (default 1e-3), cosine-decayed to lr/20 */
    double weight_decay;    /* AdamW decoupled decay per step * lr (default 1e-4) */
    uint64_t seed;
    int verbose;
    volatile sig_atomic_t *stop;
} mlp_train_options;

void mlp_default_train_options(mlp_train_options *o);

typedef struct mlp_train_result {
    int epochs, best_epoch;
    double train_rmse, val_rmse;   /* output units, at the best epoch */
    double seconds;
} mlp_train_result;

/* Train a new MLP on the FIT_TRAIN settings of d with early stopping on the
 * FIT_VAL settings (if none: the last epoch is kept).  Normalisation from
 * the training rows.  *out: caller owns. */
int mlp_train(mlp **out, const fit_set *d, const uint8_t *role, const mlp_train_options *o,
              mlp_train_result *r, char *err, size_t errlen);

/* A surrogate over m (takes ownership of m).  theta = the device's theta. */
surrogate *surrogate_mlp_new(mlp *m);
/* The MLP of a surrogate made by surrogate_mlp_new, or NULL. */
mlp *surrogate_mlp(surrogate *s);

#endif
