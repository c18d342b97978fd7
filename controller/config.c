#include "controller/config.h"

#include <stdio.h>
#include <string.h>

#include "patctl/error.h"

void config_quickstart(run_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_set, sizeof(c->data_set), "fashion-mnist");
    snprintf(c->data_path, sizeof(c->data_path), "/usr/share/datasets/fashion-mnist");
    c->pool = 2;
    c->train_limit = 10000;
    c->test_limit = 10000;

    c->n_devices = 2;
    c->devices[0] = (device_spec){.name = "osc64", .driver = "oscillators",
                                  .options = "n=64,eta=0.1,j_noise=0.2,sigma=0.02",
                                  .limits = "clamp", .steps = "ramp"};
    c->devices[1] = (device_spec){.name = "osc266", .driver = "oscillators",
                                  .options = "n=266,eta=0.1,j_noise=0.2,sigma=0.02",
                                  .limits = "clamp", .steps = "ramp"};

    layer_spec L[] = {
        {LAYER_PATCHES, 7, ""},         /* [B,196] -> [4B,49] */
        {LAYER_PAD, 64, ""},            /* -> [4B,64] */
        {LAYER_PHYSICAL, 0, "osc64"},   /* shared 64-oscillator layer */
        {LAYER_CONCAT, 4, ""},          /* -> [B,256] */
        {LAYER_PAD, 266, ""},           /* + 10 class oscillators at 0 */
        {LAYER_PHYSICAL, 0, "osc266"},
        {LAYER_READOUT, 10, ""},        /* logits = scale * q of the last 10 */
    };
    c->n_layers = (int)(sizeof(L) / sizeof(L[0]));
    memcpy(c->layers, L, sizeof(L));

    c->mode = MODE_PAT;
    c->optimizer = OPT_ADAM;
    c->lr = 1e-3;
    c->momentum = 0.0;
    c->epochs = 2;
    c->batch = 32;
    c->eval_batch = 250;
    c->seed = 0;
}

const char *mode_name(train_mode m)
{
    switch (m) {
    case MODE_PAT: return "pat";
    case MODE_INSILICO: return "insilico";
    case MODE_IDEAL: return "ideal";
    case MODE_SPSA: return "spsa";
    }
    return "?";
}

int mode_parse(const char *s, train_mode *m)
{
    static const train_mode all[] = {MODE_PAT, MODE_INSILICO, MODE_IDEAL, MODE_SPSA};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, mode_name(all[i])) == 0) {
            *m = all[i];
            return 0;
        }
    return PATCTL_ERR_ARG;
}

const char *layer_kind_name(layer_kind k)
{
    switch (k) {
    case LAYER_PATCHES: return "patches";
    case LAYER_PAD: return "pad";
    case LAYER_CONCAT: return "concat";
    case LAYER_PHYSICAL: return "physical";
    case LAYER_READOUT: return "readout";
    case LAYER_LINEAR: return "linear";
    case LAYER_TANH: return "tanh";
    }
    return "?";
}

int config_device_option(run_config *c, const char *driver, const char *key, const char *value)
{
    for (int i = 0; i < c->n_devices; i++) {
        device_spec *d = &c->devices[i];
        if (driver && strcmp(d->driver, driver) != 0)
            continue;
        size_t used = strlen(d->options);
        int n = snprintf(d->options + used, sizeof(d->options) - used, "%s%s=%s",
                         used ? "," : "", key, value);
        if (n < 0 || (size_t)n >= sizeof(d->options) - used)
            return PATCTL_ERR_ARG;
    }
    return 0;
}
