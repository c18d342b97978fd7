/* Collected device data in memory, its train/validation/test split, and the
 * validation metrics every surrogate is judged by.
 *
 * Samples are grouped by parameter setting: sample s was measured with
 * inputs x[s] under setting theta[setting[s]], and the samples of one setting
 * are contiguous (setting[] is non-decreasing), so one setting = one device
 * query batch.  Values are what passed the safety boundary (sent), not what
 * was asked for.
 *
 * Noise floor: G (input, setting) pairs were each measured R times; the
 * per-output noise std is sqrt(mean over pairs of the unbiased variance over
 * the R repeats).
 *
 * Metrics (pooled over outputs; y_hat a surrogate's prediction):
 *   rmse        = sqrt(mean_{s,i} (y_hat - y)^2)
 *   std_y       = sqrt(mean_i var_s(y_i))          spread of the data
 *   nrmse       = rmse / std_y
 *   noise_rms   = sqrt(mean_i noise_std_i^2)
 *   noise_nrmse = noise_rms / std_y                the noise floor
 *   ratio       = nrmse / noise_nrmse = rmse / noise_rms
 * A perfect model of a noisy device has ratio 1 (the held-out measurements
 * carry the noise); ratio 1.5 means a model error of sqrt(1.5^2-1) = 1.1
 * noise std. */
#ifndef PATCTL_FIT_SET_H
#define PATCTL_FIT_SET_H

#include <stddef.h>
#include <stdint.h>

#include "surrogate/surrogate.h"

typedef struct fit_set {
    int n_in, n_out;
    long n_theta;
    long S;                 /* samples */
    float *x;               /* [S, n_in] */
    float *y;               /* [S, n_out] */
    int32_t *setting;       /* [S] index into theta, non-decreasing */
    long K;                 /* settings */
    float *theta;           /* [K, n_theta] */
    long G;                 /* repeated pairs (0 = no noise floor) */
    int R;                  /* repeats per pair */
    float *rep_x;           /* [G, n_in] */
    int32_t *rep_setting;   /* [G] */
    float *rep_y;           /* [R, G, n_out] */
    float *noise_std;       /* [n_out], computed by fit_set_noise; NULL if G == 0 */
} fit_set;

/* Roles of settings in a split. */
enum { FIT_TRAIN = 0, FIT_VAL = 1, FIT_TEST = 2 };

/* Allocate every array for the given sizes (zeroed).  0 or PATCTL_ERR_*. */
int fit_set_alloc(fit_set *d, int n_in, int n_out, long n_theta, long S, long K, long G, int R);
/* Free every array; accepts a zeroed set. */
void fit_set_free(fit_set *d);

/* Structural checks: setting[] in range and non-decreasing, every value
 * finite.  Message in err on failure (PATCTL_ERR_FORMAT). */
int fit_set_check(const fit_set *d, char *err, size_t errlen);

/* noise_std[n_out] from the repeats (allocated here).  Needs G >= 1, R >= 2. */
int fit_set_noise(fit_set *d);
/* sqrt(mean_i noise_std_i^2), or -1 without repeats. */
double fit_set_noise_rms(const fit_set *d);

/* role[K]: settings shuffled with `seed`, the first frac_test of them
 * FIT_TEST, the next frac_val FIT_VAL, the rest FIT_TRAIN (at least one
 * train setting).  Caller frees. */
uint8_t *fit_split(const fit_set *d, double frac_val, double frac_test, uint64_t seed);

/* Samples in settings of role `which` (any role if which < 0). */
long fit_count(const fit_set *d, const uint8_t *role, int which);

typedef struct fit_metrics {
    long n;                 /* samples evaluated */
    double rmse, std_y, nrmse;
    double noise_rms, noise_nrmse, ratio;  /* -1 without a noise floor */
} fit_metrics;

/* Run surrogate s over every setting of role `which` (< 0: all) and compare
 * with the measurements.  pred [S, n_out] (optional, may be NULL) receives
 * the predictions of the evaluated rows.  resid_rms [n_out] (optional)
 * receives the per-output RMSE.  0 or PATCTL_ERR_*. */
int fit_evaluate(surrogate *s, const fit_set *d, const uint8_t *role, int which,
                 fit_metrics *m, float *pred, double *resid_rms);

/* The metrics of given predictions (same rows as fit_evaluate). */
void fit_metrics_of(const fit_set *d, const uint8_t *role, int which, const float *pred,
                    fit_metrics *m, double *resid_rms);

/* Iterate over settings: the sample range [*s0, *s1) of the setting at or
 * after sample s; returns the setting index or -1 at the end. */
long fit_next_group(const fit_set *d, long s, long *s0, long *s1);

#endif
