/* Files of surrogate fitting (documented in README.md, "Fitting surrogates"):
 *
 * A collected data directory (patctl collect):
 *   meta.json         format "patctl-collect" v1: device (name, driver,
 *                     options, seed, description), design, counts, noise
 *                     floor, device counters
 *   x.npy             float32 [S, n_in]    inputs as sent
 *   y.npy             float32 [S, n_out]   measured outputs
 *   setting.npy       int32   [S]          row of theta.npy of each sample
 *   theta.npy         float32 [K, n_theta] parameter settings as sent
 *   rep_x.npy         float32 [G, n_in]    repeated inputs
 *   rep_setting.npy   int32   [G]
 *   rep_y.npy         float32 [R, G, n_out] the R measurements of each
 *   noise_std.npy     float32 [n_out]      per-output noise std
 *
 * A fitted surrogate (patctl fit): NAME.json, format "patctl-surrogate" v1,
 * with "kind" "oscillators-greybox" (constants +- SE, and NAME_D.npy float32
 * [N, N], the coupling correction, if fitted), "physics-consts" (the model
 * name and its constants +- SE: SHG, circuit) or "mlp" (shape, and
 * NAME_params.npy / NAME_norm.npy float32 vectors in mlp.h's layout).
 * Array file names in the JSON are relative to the JSON's directory. */
#ifndef PATCTL_FIT_STORE_H
#define PATCTL_FIT_STORE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "patctl/device.h"
#include "surrogate/fit_consts.h"
#include "surrogate/fit_osc.h"
#include "surrogate/fit_set.h"
#include "surrogate/mlp.h"

/* Write d's arrays and meta (borrowed; counts are added to it) into dir
 * (created).  0 or PATCTL_ERR_IO with a message naming the file. */
int fitdata_write(const char *dir, const fit_set *d, cJSON *meta, char *err, size_t errlen);

/* Read a collected data directory.  *meta (optional): the parsed meta.json
 * (caller frees with cJSON_Delete).  Shapes are checked against each other
 * and against meta.json. */
int fitdata_read(const char *dir, fit_set *d, cJSON **meta, char *err, size_t errlen);

/* The device description as JSON and back (model, about, dims, limits,
 * blocks).  desc_from_json: 0 or PATCTL_ERR_FORMAT. */
cJSON *desc_to_json(const struct patctl_device_desc *desc);
int desc_from_json(const cJSON *j, struct patctl_device_desc *desc, char *err, size_t errlen);

/* Write a JSON object to path atomically (pretty-printed). */
int json_write_file(const char *path, const cJSON *o, char *err, size_t errlen);
/* Read and parse a JSON file (caller frees). */
cJSON *json_read_file(const char *path, char *err, size_t errlen);

/* Save a grey-box oscillator fit: path = NAME.json; D may be NULL.  extra
 * (borrowed, may be NULL) is merged into the JSON (validation, device). */
int fitted_osc_save(const char *path, const osc_model *m, const float *D, const fit_osc_result *r,
                    const cJSON *extra, char *err, size_t errlen);
/* Save an MLP: path = NAME.json. */
int fitted_mlp_save(const char *path, const mlp *m, const mlp_train_result *r, const cJSON *extra,
                    char *err, size_t errlen);

/* Save a constants fit of a physics model (kind "physics-consts": SHG,
 * circuit): the model name and the constants +- SE. */
int fitted_consts_save(const char *path, const char *model, const fit_consts_view *v,
                       const fit_consts_result *r, const cJSON *extra, char *err, size_t errlen);

/* Load a fitted surrogate file for device `name` with description desc
 * (dimensions and model must match) and driver options `options` (the
 * geometry of a physics-consts model comes from them).  *out: caller owns. */
int fitted_load(const char *path, const char *name, const struct patctl_device_desc *desc,
                const char *options, surrogate **out, char *err, size_t errlen);

#endif
