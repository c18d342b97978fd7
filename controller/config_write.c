/* A config as INI text (every setting spelled out), the inverse of
 * config_parse_text().  Numbers are written with 17 significant digits so
 * that they read back bit for bit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

char *config_format(const run_config *c)
{
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.s)
        return NULL;
    b.s[0] = '\0';
    put(&b, "# patctl experiment (every setting spelled out; from %s)\n\n", c->source);
    put(&b, "[data]\nset = %s\npath = %s\npool = %d\ntrain_limit = %ld\ntest_limit = %ld\nwindow = %d\nhorizon = %d\n",
        c->data_set, c->data_path, c->pool, c->train_limit, c->test_limit, c->window, c->horizon);
    for (int i = 0; i < c->n_devices; i++) {
        const device_spec *d = &c->devices[i];
        put(&b, "\n[device %s]\ndriver = %s\nlimits = %s\nsteps = %s\n", d->name, d->driver, d->limits, d->steps);
        if (d->surrogate[0])
            put(&b, "surrogate = %s\n", d->surrogate);
        if (d->dfa_roles[0])
            put(&b, "dfa_roles = %s\n", d->dfa_roles);
        /* options "k=v,k=v" (or blank/';' separated) -> one line each */
        char opts[sizeof(d->options)];
        snprintf(opts, sizeof(opts), "%s", d->options);
        char *save = NULL;
        for (char *t = strtok_r(opts, ",; \t", &save); t; t = strtok_r(NULL, ",; \t", &save)) {
            char *eq = strchr(t, '=');
            if (eq) {
                *eq = '\0';
                put(&b, "%s = %s\n", t, eq + 1);
            }
        }
    }
    put(&b, "\n[model]\n");
    for (int i = 0; i < c->n_layers; i++) {
        const layer_spec *L = &c->layers[i];
        if (L->kind == LAYER_PHYSICAL)
            put(&b, "layer = physical %s\n", L->device);
        else if (L->kind == LAYER_TANH)
            put(&b, "layer = tanh\n");
        else
            put(&b, "layer = %s %d\n", layer_kind_name(L->kind), L->arg);
    }
    put(&b, "\n[train]\nmode = %s\noptimizer = %s\nlr = %.17g\nmomentum = %.17g\nschedule = %s\n"
        "lr_gamma = %.17g\nlr_step = %d\nwarmup = %ld\nepochs = %d\nbatch = %d\neval_batch = %d\n"
        "eval_inflight = %d\nmicrobatches = %d\neval_every = %d\nseed = %llu\nspsa_c = %.17g\nspsa_samples = %d\nmax_failed_steps = %d\n",
        mode_name(c->mode), optimizer_name(c->optimizer), c->lr, c->momentum, schedule_name(c->schedule),
        c->lr_gamma, c->lr_step, c->warmup, c->epochs, c->batch, c->eval_batch, c->eval_inflight, c->microbatches, c->eval_every,
        (unsigned long long)c->seed, c->spsa_c, c->spsa_samples, c->max_failed_steps);
    /* a rule's own keys only with that rule (the parser refuses them otherwise) */
    if (c->mode == MODE_PC)
        put(&b, "pc_variant = %s\npc_eta = %.17g\npc_iters = %d\n", pc_variant_name(c->pc_variant), c->pc_eta,
            c->pc_iters);
    if (c->mode == MODE_ADFA)
        put(&b, "dfa_g = %s\n", dfa_g_name(c->dfa_g));
    put(&b, "bean = %.17g\nbean_physical = %d\n", c->bean, c->bean_physical);
    put(&b, "prune = %.17g\nprune_after = %d\nprune_ramp = %d\nprune_physical = %d\n", c->prune, c->prune_after,
        c->prune_ramp, c->prune_physical);
    put(&b, "\n[logging]\n");
    if (c->journal == JOURNAL_ALL)
        put(&b, "journal = all\n");
    else if (c->journal == JOURNAL_OFF)
        put(&b, "journal = off\n");
    else
        put(&b, "journal = every %ld\n", c->journal_every);
    put(&b, "checkpoint_every = %ld\nkeep_checkpoints = %d\nprogress = %s\n", c->checkpoint_every,
        c->keep_checkpoints, progress_name(c->progress));
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
