/* The patctl device driver ABI, version 2 — what a driver author reads.
 *
 * WHAT A DRIVER IS
 * A driver is one table of function pointers, struct patctl_driver, filled
 * with designated initialisers.  Built-in drivers are compiled into patctl
 * (devices/<name>/api.c); a plugin is a shared object, built against nothing
 * but this directory (include/patctl/), that exports
 *
 *     const struct patctl_driver *patctl_driver_entry(void);
 *
 * patctl dlopen()s the file (a path containing '/' or ending in ".so", given
 * as the driver of a device on the command line or in a config), calls the
 * entry, and refuses the plugin with PATCTL_ERR_ABI and a message naming the
 * file when the symbol is missing, the table's abi_version is not between
 * PATCTL_DEVICE_ABI_MIN and PATCTL_DEVICE_ABI_VERSION, or a required member
 * is NULL.  The table and
 * the strings it points to must stay valid until the plugin is unloaded
 * (a static const table is the norm).  See examples/plugin/ for a complete,
 * out-of-tree plugin.
 *
 * THE MODEL OF A DEVICE
 * A device takes a batch of B input vectors x [B, n_in] (float32, row-major,
 * batch first) under ONE parameter setting theta [n_theta] and returns B
 * measured output vectors y [B, n_out].  theta is the concatenation of the
 * parameter blocks in the order the description lists them, each block
 * row-major [rows, cols]; n_theta = sum of rows*cols.  Units are the
 * driver's (in_unit, out_unit, each block's unit).
 *
 * LIFE CYCLE (all calls from one thread, never concurrently on one state)
 *   open(state, options, desc)   parse options, allocate, describe
 *   make_safe(state)             patctl calls it right after open
 *   run(state, query, y) ...     measurements; a query with batch 0 only
 *                                applies theta (used for ramps)
 *   vjp(state, query, gy, ...)   optional, simulated drivers: exact derivative
 *   make_safe(state)             on abort (error, Ctrl-C) and before close
 *   close(state)
 *
 * SAFETY: WHAT PATCTL GUARANTEES TO A DRIVER
 * patctl checks every value at one boundary in front of every driver
 * (devices/device.c) before run() is called:
 *   - no NaN or Inf ever reaches a driver (in theta or x);
 *   - every theta entry lies in its block's [lo, hi] and every input in
 *     [in_lo, in_hi]: out-of-limit values are clamped (and counted, logged)
 *     or the batch is refused, by the device's policy;
 *   - two consecutive settings a driver receives differ by at most the
 *     block's max_step in every entry (when max_step > 0): a larger change is
 *     split into a ramp of batch-0 queries or refused, by policy.  "Receives"
 *     counts failed calls too, and make_safe resets the reference to the
 *     blocks' safe values.
 * The driver in turn must describe limits it can really take, and make_safe
 * must bring the hardware to the safe setting (blocks at .safe) by itself,
 * in as many physical steps as the hardware needs.
 *
 * RESULTS: WHAT PATCTL DOES NOT TRUST
 * A NaN/Inf in y, or a negative return code, is a fault: the boundary logs
 * it and repeats the query (a new query id) a few times before giving up.
 * Return PATCTL_ERR_TIMEOUT / PATCTL_ERR_DEVICE for transient faults;
 * PATCTL_ERR_ARG, _NOMEM and _UNSUPPORTED are never retried.
 *
 * OWNERSHIP AND ERRORS
 * The driver owns *state from open() until close().  Every array passed in is
 * owned by the caller and valid only during the call; y is caller-owned with
 * room for [batch, n_out] floats.  Every function returns 0 on success or a
 * negative PATCTL_ERR_* code (patctl/error.h); a driver may keep a message
 * for last_error().  open() writes its message into err[errlen] instead.
 *
 * RANDOMNESS
 * Simulated drivers should derive the noise of a query from (seed, query id)
 * only, so that runs are reproducible and vjp() can recompute the noise
 * realisation of the forward pass it differentiates (same id => same noise).
 * Noise that differs per sample should come from a stream of (seed, id,
 * absolute row q->row0 + b) for row b: a remote pool splits one batch into
 * parts (same id, row0 = where the part starts) and the parts then draw what
 * the whole batch would have drawn on one device.
 *
 * VERSIONING
 * PATCTL_DEVICE_ABI_VERSION changes whenever a struct layout below or the
 * meaning of a member changes; a plugin built for a version outside
 * [PATCTL_DEVICE_ABI_MIN, PATCTL_DEVICE_ABI_VERSION] is refused.  New flags
 * and new PATCTL_ERR_* codes do not change the version.
 *   1  the first ABI.
 *   2  struct patctl_query gained row0 (appended: the members of version 1
 *      keep their offsets, so version-1 plugins still load; they just do not
 *      see row0).  A version-2 plugin is refused by a version-1 patctl. */
#ifndef PATCTL_DEVICE_H
#define PATCTL_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include "patctl/error.h"

#define PATCTL_DEVICE_ABI_VERSION 2u
#define PATCTL_DEVICE_ABI_MIN 1u    /* oldest plugin ABI still loaded */
#define PATCTL_MAX_BLOCKS 8
#define PATCTL_PLUGIN_ENTRY "patctl_driver_entry"

/* Driver flags (struct patctl_driver.flags). */
#define PATCTL_DRV_SEEDED 0x1u     /* accepts option seed=<u64>; patctl passes
                                      one derived from the run seed (and the
                                      device's position) unless the user gives
                                      one */

/* Description flags (struct patctl_device_desc.flags). */
#define PATCTL_DEV_SIMULATED 0x1u  /* a simulation, not hardware */
#define PATCTL_DEV_HAS_VJP   0x2u  /* vjp() gives the exact derivative of the
                                      simulation (usable for --mode ideal) */

/* One block of trainable parameters, e.g. a coupling matrix.  All strings
 * are NUL-terminated within their arrays.  Limits must be finite, lo <= safe
 * <= hi; max_step is 0 or at least 1e-6 of the range (patctl refuses a
 * description that breaks these rules with PATCTL_ERR_FORMAT). */
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

/* What a device is: dimensions, inputs, parameters and their limits.
 * Filled by open() (patctl zeroes it first); constant until close().  The
 * same limits apply to every input value. */
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

/* A key=value option given to open(), e.g. {"eta", "0.1"}.  Strings are
 * valid only during open().  When a key repeats, the last one wins.  A driver
 * must refuse keys it does not know (PATCTL_ERR_ARG naming the key). */
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
    /* ABI 2: absolute index of x's row 0 in the whole query.  0 unless the
     * query is a part of a larger batch (a remote pool splits a batch into
     * parts that share the id); seeded simulators draw the noise of row b
     * from (seed, id, row0 + b) so the split does not change it. */
    int64_t row0;
};

struct patctl_driver {
    uint32_t abi_version;  /* PATCTL_DEVICE_ABI_VERSION */
    const char *name;      /* registry name, "oscillators" */
    const char *summary;   /* one line for `patctl devices` */
    const char *options_help; /* "key=default  meaning" lines, one per
                                  option, '\n'-terminated; may be NULL */
    uint32_t flags;        /* PATCTL_DRV_* */

    /* Required.  Open with options; set *state and fill *desc.  Unknown or
     * malformed options are an error (PATCTL_ERR_ARG) with a message naming
     * the option in err[errlen].  On failure *state is ignored (the driver
     * frees what it allocated). */
    int (*open)(void **state, const struct patctl_option *opts, int n_opts,
                struct patctl_device_desc *desc, char *err, size_t errlen);
    /* Required.  Apply q->theta, then measure y [B, n_out] for q->x [B, n_in]
     * (B = q->batch; B == 0: only apply theta, x and y are NULL). */
    int (*run)(void *state, const struct patctl_query *q, float *y);
    /* Optional (NULL if absent; set PATCTL_DEV_HAS_VJP when present): exact
     * vector-Jacobian product of the simulation at a query run() has just
     * answered (same id => same noise realisation): for gy [B, n_out],
     * gx = (dy/dx)^T gy and gtheta = (dy/dtheta)^T gy.  OVERWRITES gx
     * [B, n_in] and gtheta [n_theta]; either may be NULL (not wanted). */
    int (*vjp)(void *state, const struct patctl_query *q, const float *gy,
               float *gx, float *gtheta);
    /* Required.  Put the device into its known safe setting (every block at
     * its .safe), however many physical steps that takes. */
    int (*make_safe)(void *state);
    /* Required.  Release everything; accepts NULL.  patctl calls make_safe
     * first. */
    void (*close)(void *state);
    /* Optional: the message of the last failure of this state, or NULL. */
    const char *(*last_error)(void *state);
};

/* The type of the plugin entry point PATCTL_PLUGIN_ENTRY. */
typedef const struct patctl_driver *(*patctl_driver_entry_fn)(void);

#endif
