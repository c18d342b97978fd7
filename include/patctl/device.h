/* The patctl device driver ABI, version 1.
 *
 * A driver is one table of function pointers (struct patctl_driver).  Built-in
 * drivers are compiled in; a plugin is a shared object that exports
 *
 *     const struct patctl_driver *patctl_driver_entry(void);
 *
 * whose table's abi_version must equal PATCTL_DEVICE_ABI_VERSION.
 *
 * Model of a device: it takes a batch of B input vectors x [B, n_in] (float32,
 * row-major, batch first) under ONE parameter setting theta [n_theta] and
 * returns B measured output vectors y [B, n_out].  theta is the concatenation
 * of the parameter blocks in the order the description lists them, each block
 * row-major [rows, cols].
 *
 * Safety: patctl checks every value against the limits in the description
 * before calling run(); a driver never sees NaN/Inf or an out-of-limit value,
 * and never sees a parameter change larger than a block's max_step.
 *
 * Ownership: the driver owns *state from open() until close().  All arrays
 * passed in are owned by the caller and valid only during the call.
 * Return values: 0 on success, a negative PATCTL_ERR_* code on failure; on
 * failure the driver may write a message into its state for describe_error().
 */
#ifndef PATCTL_DEVICE_H
#define PATCTL_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include "patctl/error.h"

#define PATCTL_DEVICE_ABI_VERSION 1u
#define PATCTL_MAX_BLOCKS 8
#define PATCTL_PLUGIN_ENTRY "patctl_driver_entry"

/* Driver flags. */
#define PATCTL_DRV_SEEDED 0x1u     /* accepts option seed=<u64>; patctl passes
                                      one derived from the run seed unless the
                                      user gives one */

/* Description flags. */
#define PATCTL_DEV_SIMULATED 0x1u  /* a simulation, not hardware */
#define PATCTL_DEV_HAS_VJP   0x2u  /* vjp() gives the exact derivative */

/* One block of trainable parameters, e.g. a coupling matrix. */
struct patctl_param_block {
    char name[32];         /* "C", "bias", ... */
    char unit[24];         /* physical unit of every entry, "V", "rad" */
    char about[96];        /* one-line meaning */
    int32_t rows, cols;    /* shape; the block holds rows*cols floats */
    float lo, hi;          /* hard limits, inclusive */
    float max_step;        /* largest change per update, 0 = unlimited */
    float safe;            /* value every entry takes in the safe setting */
    float init_lo, init_hi;/* suggested uniform initialisation range for
                              training (init_lo == init_hi: constant) */
};

/* What a device is: dimensions, inputs, parameters and their limits. */
struct patctl_device_desc {
    char model[48];        /* short model name, "oscillators" */
    char about[160];       /* one-line description */
    int32_t n_in, n_out;   /* vector sizes per sample */
    char in_unit[24], out_unit[24];
    float in_lo, in_hi;    /* hard limits of every input value */
    int32_t n_blocks;
    struct patctl_param_block blocks[PATCTL_MAX_BLOCKS];
    uint32_t flags;        /* PATCTL_DEV_* */
};

/* A key=value option given to open(), e.g. {"eta", "0.1"}. */
struct patctl_option {
    const char *key;
    const char *value;
};

/* One request to the device. */
struct patctl_query {
    uint64_t id;           /* sequence number, increasing from 0 per device;
                              seeded simulators derive their noise from it */
    int32_t batch;         /* B >= 0; B == 0 only applies theta */
    const float *theta;    /* [n_theta] */
    const float *x;        /* [B, n_in], NULL when B == 0 */
};

struct patctl_driver {
    uint32_t abi_version;  /* PATCTL_DEVICE_ABI_VERSION */
    const char *name;      /* registry name, "oscillators" */
    const char *summary;   /* one line for `patctl devices` */
    const char *options_help; /* "key=default  meaning" lines, may be NULL */
    uint32_t flags;        /* PATCTL_DRV_* */

    /* Open with options; fill *desc.  Unknown options are an error
     * (PATCTL_ERR_ARG) with a message in err[errlen]. */
    int (*open)(void **state, const struct patctl_option *opts, int n_opts,
                struct patctl_device_desc *desc, char *err, size_t errlen);
    /* Measure: y [B, n_out] for q->x [B, n_in] under q->theta. */
    int (*run)(void *state, const struct patctl_query *q, float *y);
    /* Optional (NULL if absent): exact vector-Jacobian product of the
     * simulation at the same query (same id => same noise realisation).
     * Writes (overwrites) gx [B, n_in] and gtheta [n_theta]; either may be NULL. */
    int (*vjp)(void *state, const struct patctl_query *q, const float *gy,
               float *gx, float *gtheta);
    /* Put the device into its known safe setting (blocks at their .safe). */
    int (*make_safe)(void *state);
    /* Release everything; accepts NULL. */
    void (*close)(void *state);
    /* Optional: the last error message of this state, or NULL. */
    const char *(*last_error)(void *state);
};

typedef const struct patctl_driver *(*patctl_driver_entry_fn)(void);

#endif
