/* Collecting device data for surrogate fitting: random inputs and parameter
 * settings inside the device's limits, every query through the safety
 * boundary (device_run), and repeated measurements for the noise floor.
 *
 * For each of K settings theta_k (uniform or Latin hypercube over a range of
 * every parameter, optionally around an operating point), B inputs x (uniform
 * or Latin hypercube over [x_lo, x_hi] intersected with the input limits)
 * are measured in one query.  Then `repeat_settings` of the settings
 * (evenly spaced) have their first `repeat_inputs` inputs measured again
 * `repeats` times each.  What is stored is what was sent (after the
 * boundary's clamping), with what was measured. */
#ifndef PATCTL_COLLECT_H
#define PATCTL_COLLECT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "surrogate/fit_set.h"

typedef enum { DESIGN_UNIFORM = 0, DESIGN_LHS = 1 } collect_design;
typedef enum { THETA_INIT = 0, THETA_LIMITS = 1 } theta_range;

typedef struct collect_options {
    long settings;          /* K (default 200) */
    int per_setting;        /* B inputs per setting (default 50) */
    collect_design design;
    double x_lo, x_hi;      /* input range; NAN = the device's input limits */
    theta_range range;      /* per block: init_lo..init_hi or lo..hi */
    double theta_scale;     /* scales the range about its centre (default 1) */
    const float *around;    /* [n_theta] operating point or NULL */
    double radius;          /* with around: theta = around + U(-radius, radius) * half-width of range */
    long repeat_settings;   /* settings with repeats (default 10) */
    int repeat_inputs;      /* inputs per repeated setting (default 10) */
    int repeats;            /* R >= 2 measurements of each (default 8); 0 = no noise floor */
    uint64_t seed;
    volatile sig_atomic_t *stop;
    int verbose;
} collect_options;

void collect_default_options(collect_options *o);

/* Collect into *out (allocated here; free with fit_set_free).  Returns 0,
 * PATCTL_ERR_INTERRUPTED (out holds nothing), or the device's error with a
 * message naming the device. */
int collect_run(device *d, const collect_options *o, fit_set *out, char *err, size_t errlen);

#endif
