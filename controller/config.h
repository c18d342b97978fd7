/* An experiment: data, devices, the model graph and training settings.
 * config_quickstart() is the built-in default (examples/quickstart.ini). */
#ifndef PATCTL_CONFIG_H
#define PATCTL_CONFIG_H

#include <stdint.h>

#define CFG_MAX_DEVICES 16
#define CFG_MAX_LAYERS 32

typedef struct device_spec {
    char name[32];          /* instance name referenced by physical layers */
    char driver[256];       /* built-in name or plugin .so path */
    char options[1024];     /* "key=value,key=value" */
    char limits[8];         /* "clamp" | "reject" */
    char steps[8];          /* "ramp" | "refuse" */
} device_spec;

typedef enum {
    LAYER_PATCHES,          /* arg = k: image -> k x k patches */
    LAYER_PAD,              /* arg = width after zero padding */
    LAYER_CONCAT,           /* arg = rows to concatenate */
    LAYER_PHYSICAL,         /* device = instance name */
    LAYER_READOUT,          /* arg = m last outputs times a trainable scale */
    LAYER_LINEAR,           /* arg = output width (affine) */
    LAYER_TANH,
} layer_kind;

typedef struct layer_spec {
    layer_kind kind;
    int arg;
    char device[32];
} layer_spec;

typedef enum { MODE_PAT, MODE_INSILICO, MODE_IDEAL, MODE_SPSA } train_mode;
typedef enum { OPT_ADAM, OPT_SGD } optimizer_kind;

typedef struct run_config {
    /* [data] */
    char data_set[32];      /* "fashion-mnist" | "synthetic" */
    char data_path[512];
    int pool;               /* 1 = none, 2 = 2x2 average pooling */
    long train_limit;       /* first N training images, 0 = all */
    long test_limit;        /* first N test images, 0 = all */
    /* [device.NAME] */
    int n_devices;
    device_spec devices[CFG_MAX_DEVICES];
    /* [model] */
    int n_layers;
    layer_spec layers[CFG_MAX_LAYERS];
    /* [train] */
    train_mode mode;
    optimizer_kind optimizer;
    double lr;
    double momentum;        /* SGD */
    int epochs;
    int batch;
    int eval_batch;
    uint64_t seed;
} run_config;

void config_quickstart(run_config *c);

const char *mode_name(train_mode m);
int mode_parse(const char *s, train_mode *m);
const char *layer_kind_name(layer_kind k);

/* Append "key=value" to every device whose driver is `driver` (NULL = all). */
int config_device_option(run_config *c, const char *driver, const char *key, const char *value);

#endif
