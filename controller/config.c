/* Built-in defaults, names of enumerations, comparisons of configs. */
#include "controller/config.h"

#include <stdio.h>
#include <string.h>

#include "patctl/error.h"

/* Everything but data, devices and the graph: what a config file does not
 * have to say. */
void config_defaults(run_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->source, sizeof(c->source), "built-in");
    snprintf(c->data_set, sizeof(c->data_set), "fashion-mnist");
    snprintf(c->data_path, sizeof(c->data_path), "/usr/share/datasets/fashion-mnist");
    c->pool = 1;
    c->window = 20;
    c->horizon = 1;
    c->mode = MODE_PAT;
    c->optimizer = OPT_ADAM;
    c->lr = 1e-3;
    c->momentum = 0.0;
    c->schedule = SCHED_CONSTANT;
    c->lr_gamma = 0.1;
    c->lr_step = 1;
    c->warmup = 0;
    c->epochs = 1;
    c->batch = 32;
    c->eval_batch = 250;
    c->eval_inflight = 2;
    c->microbatches = 1;
    c->eval_every = 0;
    c->seed = 0;
    c->spsa_c = 0.1;
    c->spsa_samples = 1;
    c->pc_variant = PC_FIXEDPRED;
    c->pc_eta = 0.1;
    c->pc_iters = 20;
    c->dfa_g = DFA_G_COS;
    c->bean = 0.0;
    c->bean_physical = 1;
    c->prune = 0.0;
    c->prune_after = 1;
    c->prune_ramp = 0;
    c->prune_physical = 1;
    c->max_failed_steps = 5;
    c->journal = JOURNAL_ALL;
    c->journal_every = 1;
    c->checkpoint_every = 100;
    c->keep_checkpoints = 2;
    c->progress = PROGRESS_AUTO;
}

void config_quickstart(run_config *c)
{
    config_defaults(c);
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
    c->epochs = 2;
}

const char *mode_name(train_mode m)
{
    switch (m) {
    case MODE_PAT: return "pat";
    case MODE_INSILICO: return "insilico";
    case MODE_IDEAL: return "ideal";
    case MODE_SPSA: return "spsa";
    case MODE_PC: return "pc";
    case MODE_DFA: return "dfa";
    case MODE_ADFA: return "adfa";
    case MODE_BPSTDP: return "bpstdp";
    }
    return "?";
}

int mode_parse(const char *s, train_mode *m)
{
    for (int i = 0; i < N_MODES; i++)
        if (strcmp(s, mode_name((train_mode)i)) == 0) {
            *m = (train_mode)i;
            return 0;
        }
    return PATCTL_ERR_ARG;
}

const char *pc_variant_name(pc_variant_kind v)
{
    return v == PC_STRICT ? "strict" : v == PC_EXACT ? "exact" : "fixedpred";
}

int pc_variant_parse(const char *s, pc_variant_kind *v)
{
    for (int i = PC_STRICT; i <= PC_EXACT; i++)
        if (strcmp(s, pc_variant_name((pc_variant_kind)i)) == 0) {
            *v = (pc_variant_kind)i;
            return 0;
        }
    return PATCTL_ERR_ARG;
}

const char *dfa_g_name(dfa_g_kind g)
{
    switch (g) {
    case DFA_G_ONE: return "one";
    case DFA_G_COS: return "cos";
    case DFA_G_SIN: return "sin";
    case DFA_G_TANH: return "tanh";
    case DFA_G_SECH2: return "sech2";
    }
    return "?";
}

int dfa_g_parse(const char *s, dfa_g_kind *g)
{
    for (int i = DFA_G_ONE; i <= DFA_G_SECH2; i++)
        if (strcmp(s, dfa_g_name((dfa_g_kind)i)) == 0) {
            *g = (dfa_g_kind)i;
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

int layer_kind_parse(const char *s, layer_kind *k)
{
    for (int i = LAYER_PATCHES; i <= LAYER_TANH; i++)
        if (strcmp(s, layer_kind_name((layer_kind)i)) == 0) {
            *k = (layer_kind)i;
            return 0;
        }
    return PATCTL_ERR_ARG;
}

const char *optimizer_name(optimizer_kind k) { return k == OPT_SGD ? "sgd" : "adam"; }

const char *schedule_name(lr_schedule s)
{
    return s == SCHED_STEP ? "step" : s == SCHED_COSINE ? "cosine" : "constant";
}

const char *progress_name(progress_mode p)
{
    switch (p) {
    case PROGRESS_AUTO: return "auto";
    case PROGRESS_BAR: return "bar";
    case PROGRESS_LINES: return "lines";
    case PROGRESS_OFF: return "off";
    }
    return "?";
}

int config_check_rules(const run_config *c, char *err, size_t errlen)
{
    if (c->pc_line && c->mode != MODE_PC) {
        snprintf(err, errlen, "%s:%d: [train] pc_variant/pc_eta/pc_iters: only used with mode = pc (mode is %s)",
                 c->source, c->pc_line, mode_name(c->mode));
        return PATCTL_ERR_CONFIG;
    }
    if (c->dfa_line && c->mode != MODE_ADFA) {
        snprintf(err, errlen, "%s:%d: [train] dfa_g: only used with mode = adfa (mode is %s%s)", c->source,
                 c->dfa_line, mode_name(c->mode), c->mode == MODE_DFA ? "; dfa uses g = 1" : "");
        return PATCTL_ERR_CONFIG;
    }
    for (int i = 0; i < c->n_devices; i++)
        if (c->devices[i].dfa_roles[0] && !MODE_IS_LOCAL(c->mode))
            for (int k = 0; k < c->devices[i].n_keys; k++)
                if (strcmp(c->devices[i].keys[k].key, "dfa_roles") == 0) {
                    snprintf(err, errlen, "%s:%d: [device %s] dfa_roles: only used with mode = dfa, adfa or bpstdp "
                             "(mode is %s)", c->source, c->devices[i].keys[k].line, c->devices[i].name,
                             mode_name(c->mode));
                    return PATCTL_ERR_CONFIG;
                }
    return 0;
}

void config_normalize(run_config *c)
{
    run_config d;
    config_defaults(&d);
    if (c->mode != MODE_PC) {
        c->pc_variant = d.pc_variant, c->pc_eta = d.pc_eta, c->pc_iters = d.pc_iters;
        c->pc_line = 0;
    }
    if (c->mode != MODE_ADFA) {
        c->dfa_g = d.dfa_g;
        c->dfa_line = 0;
    }
    if (!MODE_IS_LOCAL(c->mode))
        for (int i = 0; i < c->n_devices; i++)
            c->devices[i].dfa_roles[0] = '\0';
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
        if (n < 0 || (size_t)n >= sizeof(d->options) - used) {
            d->options[used] = '\0';
            return PATCTL_ERR_ARG;
        }
    }
    return 0;
}

#define DIFF(cond, ...)                                 \
    do {                                                \
        if (cond) {                                     \
            if (diff)                                   \
                snprintf(diff, difflen, __VA_ARGS__);   \
            return 0;                                   \
        }                                               \
    } while (0)

int config_equal(const run_config *a, const run_config *b, char *diff, size_t difflen)
{
    DIFF(strcmp(a->data_set, b->data_set), "[data] set: '%s' vs '%s'", a->data_set, b->data_set);
    DIFF(strcmp(a->data_path, b->data_path), "[data] path: '%s' vs '%s'", a->data_path, b->data_path);
    DIFF(a->pool != b->pool, "[data] pool: %d vs %d", a->pool, b->pool);
    DIFF(a->window != b->window, "[data] window: %d vs %d", a->window, b->window);
    DIFF(a->horizon != b->horizon, "[data] horizon: %d vs %d", a->horizon, b->horizon);
    DIFF(a->train_limit != b->train_limit, "[data] train_limit: %ld vs %ld", a->train_limit, b->train_limit);
    DIFF(a->test_limit != b->test_limit, "[data] test_limit: %ld vs %ld", a->test_limit, b->test_limit);
    DIFF(a->n_devices != b->n_devices, "number of devices: %d vs %d", a->n_devices, b->n_devices);
    for (int i = 0; i < a->n_devices; i++) {
        const device_spec *x = &a->devices[i], *y = &b->devices[i];
        DIFF(strcmp(x->name, y->name), "device %d: name '%s' vs '%s'", i + 1, x->name, y->name);
        DIFF(strcmp(x->driver, y->driver), "[device %s] driver: '%s' vs '%s'", x->name, x->driver, y->driver);
        DIFF(strcmp(x->options, y->options), "[device %s] options: '%s' vs '%s'", x->name, x->options, y->options);
        DIFF(strcmp(x->limits, y->limits), "[device %s] limits: '%s' vs '%s'", x->name, x->limits, y->limits);
        DIFF(strcmp(x->steps, y->steps), "[device %s] steps: '%s' vs '%s'", x->name, x->steps, y->steps);
        DIFF(strcmp(x->surrogate, y->surrogate), "[device %s] surrogate: '%s' vs '%s'", x->name,
             x->surrogate, y->surrogate);
        DIFF(strcmp(x->dfa_roles, y->dfa_roles), "[device %s] dfa_roles: '%s' vs '%s'", x->name,
             x->dfa_roles, y->dfa_roles);
    }
    DIFF(a->n_layers != b->n_layers, "number of layers: %d vs %d", a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const layer_spec *x = &a->layers[i], *y = &b->layers[i];
        DIFF(x->kind != y->kind || x->arg != y->arg || strcmp(x->device, y->device),
             "layer %d: '%s %d %s' vs '%s %d %s'", i + 1, layer_kind_name(x->kind), x->arg, x->device,
             layer_kind_name(y->kind), y->arg, y->device);
    }
    DIFF(a->mode != b->mode, "[train] mode: %s vs %s", mode_name(a->mode), mode_name(b->mode));
    DIFF(a->optimizer != b->optimizer, "[train] optimizer differs");
    DIFF(a->lr != b->lr, "[train] lr: %g vs %g", a->lr, b->lr);
    DIFF(a->momentum != b->momentum, "[train] momentum: %g vs %g", a->momentum, b->momentum);
    DIFF(a->schedule != b->schedule, "[train] schedule: %s vs %s", schedule_name(a->schedule),
         schedule_name(b->schedule));
    DIFF(a->lr_gamma != b->lr_gamma, "[train] lr_gamma: %g vs %g", a->lr_gamma, b->lr_gamma);
    DIFF(a->lr_step != b->lr_step, "[train] lr_step: %d vs %d", a->lr_step, b->lr_step);
    DIFF(a->warmup != b->warmup, "[train] warmup: %ld vs %ld", a->warmup, b->warmup);
    DIFF(a->epochs != b->epochs, "[train] epochs: %d vs %d", a->epochs, b->epochs);
    DIFF(a->batch != b->batch, "[train] batch: %d vs %d", a->batch, b->batch);
    DIFF(a->eval_batch != b->eval_batch, "[train] eval_batch: %d vs %d", a->eval_batch, b->eval_batch);
    DIFF(a->eval_every != b->eval_every, "[train] eval_every: %d vs %d", a->eval_every, b->eval_every);
    DIFF(a->seed != b->seed, "[train] seed: %llu vs %llu", (unsigned long long)a->seed,
         (unsigned long long)b->seed);
    DIFF(a->spsa_c != b->spsa_c, "[train] spsa_c: %g vs %g", a->spsa_c, b->spsa_c);
    DIFF(a->spsa_samples != b->spsa_samples, "[train] spsa_samples: %d vs %d", a->spsa_samples,
         b->spsa_samples);
    DIFF(a->pc_variant != b->pc_variant, "[train] pc_variant: %s vs %s", pc_variant_name(a->pc_variant),
         pc_variant_name(b->pc_variant));
    DIFF(a->pc_eta != b->pc_eta, "[train] pc_eta: %g vs %g", a->pc_eta, b->pc_eta);
    DIFF(a->pc_iters != b->pc_iters, "[train] pc_iters: %d vs %d", a->pc_iters, b->pc_iters);
    DIFF(a->dfa_g != b->dfa_g, "[train] dfa_g: %s vs %s", dfa_g_name(a->dfa_g), dfa_g_name(b->dfa_g));
    DIFF(a->bean != b->bean, "[train] bean: %g vs %g", a->bean, b->bean);
    DIFF(a->bean_physical != b->bean_physical, "[train] bean_physical: %d vs %d", a->bean_physical,
         b->bean_physical);
    DIFF(a->prune != b->prune, "[train] prune: %g vs %g", a->prune, b->prune);
    DIFF(a->prune_after != b->prune_after, "[train] prune_after: %d vs %d", a->prune_after, b->prune_after);
    DIFF(a->prune_ramp != b->prune_ramp, "[train] prune_ramp: %d vs %d", a->prune_ramp, b->prune_ramp);
    DIFF(a->prune_physical != b->prune_physical, "[train] prune_physical: %d vs %d", a->prune_physical,
         b->prune_physical);
    DIFF(a->microbatches != b->microbatches, "[train] microbatches: %d vs %d", a->microbatches, b->microbatches);
    DIFF(a->max_failed_steps != b->max_failed_steps, "[train] max_failed_steps: %d vs %d",
         a->max_failed_steps, b->max_failed_steps);
    DIFF(a->journal != b->journal || (a->journal == JOURNAL_EVERY && a->journal_every != b->journal_every),
         "[logging] journal differs");
    DIFF(a->checkpoint_every != b->checkpoint_every, "[logging] checkpoint_every: %ld vs %ld",
         a->checkpoint_every, b->checkpoint_every);
    DIFF(a->keep_checkpoints != b->keep_checkpoints, "[logging] keep_checkpoints: %d vs %d",
         a->keep_checkpoints, b->keep_checkpoints);
    DIFF(a->progress != b->progress, "[logging] progress: %s vs %s", progress_name(a->progress),
         progress_name(b->progress));
    if (diff && difflen)
        diff[0] = '\0';
    return 1;
}

/* Does msg mention option `key` as a whole word ('key', "option key:")? */
static int mentions_key(const char *msg, const char *key)
{
    size_t n = strlen(key);
    if (!n)
        return 0;
    for (const char *p = strstr(msg, key); p; p = strstr(p + 1, key)) {
        char before = p == msg ? ' ' : p[-1], after = p[n];
        int wb = !(before == '_' || (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                   (before >= '0' && before <= '9'));
        int wa = !(after == '_' || (after >= 'a' && after <= 'z') || (after >= 'A' && after <= 'Z') ||
                   (after >= '0' && after <= '9'));
        if (wb && wa && (before == '\'' || (p - msg >= 7 && strncmp(p - 7, "option ", 7) == 0)))
            return 1;
    }
    return 0;
}

void config_explain_device_error(const run_config *c, int i, const char *msg, char *out, size_t outlen)
{
    const device_spec *d = &c->devices[i];
    /* the driver itself could not be found or loaded */
    int about_driver = strncmp(msg, "plugin ", 7) == 0 || strncmp(msg, "no device driver", 16) == 0;
    for (int k = 0; k < d->n_keys; k++)
        if (d->keys[k].line > 0 && (about_driver ? strcmp(d->keys[k].key, "driver") == 0
                                                 : mentions_key(msg, d->keys[k].key))) {
            snprintf(out, outlen, "%s:%d: [device %s] %s: %s", c->source, d->keys[k].line, d->name,
                     d->keys[k].key, msg);
            return;
        }
    if (d->line > 0)
        snprintf(out, outlen, "%s:%d: [device %s]: %s", c->source, d->line, d->name, msg);
    else
        snprintf(out, outlen, "%s", msg);
}
