/* The model graph: an ordered list of digital and physical layers over one
 * flat parameter block.  Activations are [rows, cols] with rows = B * r,
 * where r (rows per sample) changes at patches/concat layers. */
#ifndef PATCTL_MODEL_H
#define PATCTL_MODEL_H

#include <stddef.h>

#include "controller/config.h"
#include "controller/rng.h"
#include "devices/device.h"
#include "surrogate/surrogate.h"

typedef enum {
    PASS_DEVICE,     /* physical layers run on the device (evaluation, ideal) */
    PASS_PAT,        /* device forward + surrogate forward at what was sent */
    PASS_SURROGATE,  /* surrogate only (in-silico training) */
} pass_kind;

typedef struct layer {
    layer_spec spec;
    int r_in, c_in, r_out, c_out;  /* rows per sample, columns */
    long p_off, p_len;             /* parameter view in model.params */
    int img_h, img_w;              /* patches: image size */
    device *dev;                   /* physical: not owned (model.devices) */
    surrogate *sur;                /* physical: owned */
    float *ysur;                   /* physical: [cap*r, c_out] surrogate output scratch */
    pass_kind last_pass;
} layer;

typedef struct model {
    int n_layers;
    layer L[CFG_MAX_LAYERS];
    int h, w;                      /* input image */
    int classes;                   /* output width */
    int cap;                       /* batch capacity */
    long n_params;
    float *params, *grads;         /* [n_params] each, one allocation */
    float *act[CFG_MAX_LAYERS + 1];  /* act[0] = input [cap, h*w], act[i+1] = out of layer i */
    float *dact[CFG_MAX_LAYERS + 1];
    int n_devices;
    device *devices[CFG_MAX_DEVICES];  /* owned, config order */
    device_spec specs[CFG_MAX_DEVICES];
} model;

/* Open the devices, build the layers, allocate for batches up to cap and
 * initialise parameters from the INIT stream.  On error, a message. */
int model_build(model *m, const run_config *c, int h, int w, int cap, rng_streams *rng,
                char *err, size_t errlen);
/* Make every device safe, close them, free everything.  Accepts a zeroed model. */
void model_free(model *m);

/* Forward x [B, h*w] through the graph; logits in model_logits(). */
int model_forward(model *m, const float *x, int B, pass_kind pass, char *err, size_t errlen);
/* Backward from dlogits [B, classes]; accumulates into m->grads.  Physical
 * layers use the surrogate's VJP (PAT / in-silico) or the device's exact VJP
 * (ideal). */
int model_backward(model *m, const float *dlogits, int B, train_mode mode, char *err, size_t errlen);
float *model_logits(model *m);

/* One layer i of the graph on its own (the learning rules of controller/pc.c
 * and dfa.c walk the graph layer by layer).  Forward: out [B*r_out, c_out]
 * = f_i(in [B*r_in, c_in]); a physical layer queries its device per pass
 * (and records last_pass).  Backward (VJP at the layer's last forward: in,
 * out as given, a physical layer's surrogate tape, or its device's exact
 * VJP when mode == MODE_IDEAL): ACCUMULATES din += J^T dout and G += the
 * parameter gradient (G = m->grads + p_off, or another [p_len] buffer);
 * din or G NULL skips that part. */
int model_layer_forward(model *m, int i, const float *in, float *out, int B, pass_kind pass, char *err,
                        size_t errlen);
int model_layer_backward(model *m, int i, int B, const float *in, const float *out, const float *dout,
                         float *din, float *G, train_mode mode, char *err, size_t errlen);
void model_zero_grad(model *m);
/* PAT, after model_backward: show every online surrogate what its device
 * measured for the batch just sent (surrogate_online_observe).  B = batch. */
int model_observe(model *m, int B, char *err, size_t errlen);
/* Clamp every physical layer's parameters into its device's limits. */
void model_project(model *m);
/* Make every device safe (on abort/shutdown). Returns the first error. */
int model_make_safe(model *m);

/* A lane (pipelined evaluation, controller/eval_pipe.c): a light view of
 * the model with activations of its own; it shares the model's parameters,
 * layers and devices.  act[0] = input [cap, h*w], act[i+1] = output of
 * layer i [cap*r_out, c_out]; one allocation, owned. */
typedef struct model_lane {
    float *act[CFG_MAX_LAYERS + 1];
} model_lane;

/* Brackets every device call of model_forward_lane: enter(user, d) before
 * (nonzero: the pass stops with that code, nothing sent), leave(user, d, rc)
 * right after (err already holds the call's message when rc != 0). */
typedef struct device_gate {
    int (*enter)(void *user, device *d);
    void (*leave)(void *user, device *d, int rc);
    void *user;
} device_gate;

int model_lane_init(const model *m, model_lane *ln);
void model_lane_free(model_lane *ln);
/* model_forward(PASS_DEVICE) into the lane's activations.  Touches no
 * model state but the devices (through g); layers' last_pass is left as is. */
int model_forward_lane(model *m, model_lane *ln, const float *x, int B, const device_gate *g, char *err,
                       size_t errlen);
float *model_lane_logits(const model *m, model_lane *ln);

/* Training micro-batches (controller/microbatch.c): the forward pass (pass
 * PASS_DEVICE or PASS_PAT) of samples [s0, s0+b) of the batch x [B, h*w]
 * into the model's own activations (rows of the slice only; slices write
 * disjoint rows).  Every physical layer's query for the batch is sent in
 * parts (device_query_begin/part/end: one query id, row0 = the slice's
 * first row), so slices must reach each device in order s0 = 0, ... (the
 * lanes' turn); in PAT the slice that completes a layer's query runs the
 * layer's surrogate forward on the whole batch at what was sent.  Every
 * device call goes through g.  Layers' last_pass is left as is. */
int model_forward_slice(model *m, const float *x, int s0, int b, int B, pass_kind pass, const device_gate *g,
                        char *err, size_t errlen);

/* Device counters summed over devices. */
device_stats model_device_stats(const model *m);

#endif
