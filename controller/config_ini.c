/* INI experiment configs, parsed with libinih.
 *
 * inih calls a handler per `key = value`; it does not say on which line.  We
 * feed it through our own line reader (ini_parse_stream), which counts lines,
 * records [section] headers (so empty or repeated sections are seen too),
 * drops comment lines and inline comments, strips leading blanks (so no line
 * is ever taken as a continuation) and refuses lines too long for inih's
 * buffer instead of letting them split.  Every error therefore names
 * FILE:LINE, the section and the key, and says what was expected.  The first
 * error stops the parse. */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"
#include "patctl/error.h"

enum { SEC_NONE, SEC_DATA, SEC_DEVICE, SEC_MODEL, SEC_TRAIN, SEC_LOGGING };

#define MAX_SECTIONS 64
#define MAX_SEEN 64

typedef struct parser {
    run_config *c;
    const char *name;          /* file name for messages */
    const char *text;          /* the whole file */
    size_t pos, len;
    int line;                  /* line number of the line last handed to inih */
    int sec;                   /* SEC_* of the current section */
    char sec_text[80];         /* "[device osc64]" for messages */
    int dev;                   /* current device index (SEC_DEVICE) */
    struct { char name[80]; int line; } sections[MAX_SECTIONS];
    int n_sections;
    struct { char key[32]; int line; } seen[MAX_SEEN];  /* keys of the current section */
    int n_seen;
    int failed;
    char *err;
    size_t errlen;
} parser;

static void fail(parser *p, int line, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- the line reader ---- */

static void rstrip(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

static void open_section(parser *p, const char *hdr);

/* fgets-like: one line of the text into str[num], cleaned; NULL at the end
 * or after an error. */
static char *reader(char *str, int num, void *stream)
{
    parser *p = stream;
    if (p->failed || p->pos >= p->len || num < 4)
        return NULL;
    const char *s = p->text + p->pos;
    const char *nl = memchr(s, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - s) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->line++;
    /* skip leading blanks (no continuation lines), whole-line comments */
    while (n && (*s == ' ' || *s == '\t' || *s == '\r')) s++, n--;
    if (n == 0 || *s == '#' || *s == ';') {
        str[0] = '\n', str[1] = '\0';
        return str;
    }
    /* inline comments: ';' or '#' after a blank */
    for (size_t i = 1; i < n; i++)
        if ((s[i] == ';' || s[i] == '#') && (s[i - 1] == ' ' || s[i - 1] == '\t')) {
            n = i;
            break;
        }
    if (n + 3 > (size_t)num) {
        fail(p, p->line, "line too long (%zu characters; at most %d without comments)", n, num - 3);
        return NULL;
    }
    memcpy(str, s, n);
    str[n] = '\0';
    rstrip(str);
    if (str[0] == '[')
        open_section(p, str);
    size_t m = strlen(str);
    str[m] = '\n', str[m + 1] = '\0';
    return str;
}

/* ---- sections ---- */

static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

static void open_section(parser *p, const char *hdr)
{
    const char *close = strchr(hdr, ']');
    if (!close || close[1] != '\0') {
        fail(p, p->line, "section header: expected '[name]' alone on the line, got '%s'", hdr);
        return;
    }
    char name[80];
    size_t n = (size_t)(close - hdr - 1);
    if (n >= sizeof(name)) {
        fail(p, p->line, "section name too long");
        return;
    }
    memcpy(name, hdr + 1, n);
    name[n] = '\0';
    /* split into words; normalise blanks: "device   osc64" == "device osc64" */
    char word[3][80] = {"", "", ""};
    int words = 0;
    char *save = NULL;
    for (char *t = strtok_r(name, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (words < 3)
            memcpy(word[words], t, strlen(t) + 1); /* t is shorter than name[80] */
        words++;
    }
    char norm[80];
    if (words >= 2 && strlen(word[0]) + strlen(word[1]) + 2 <= sizeof(norm))
        snprintf(norm, sizeof(norm), "%.40s %.38s", word[0], word[1]);
    else
        snprintf(norm, sizeof(norm), "%.79s", words ? word[0] : "");
    snprintf(p->sec_text, sizeof(p->sec_text), "[%.77s]", norm);
    for (int i = 0; i < p->n_sections; i++)
        if (strcmp(p->sections[i].name, norm) == 0) {
            fail(p, p->line, "section [%s] appears twice (first on line %d)", norm, p->sections[i].line);
            return;
        }
    if (p->n_sections == MAX_SECTIONS) {
        fail(p, p->line, "too many sections (at most %d)", MAX_SECTIONS);
        return;
    }
    snprintf(p->sections[p->n_sections].name, sizeof(p->sections[0].name), "%s", norm);
    p->sections[p->n_sections++].line = p->line;
    p->n_seen = 0;
    run_config *c = p->c;
    if (words == 1 && strcmp(word[0], "data") == 0) {
        p->sec = SEC_DATA;
    } else if (words == 1 && strcmp(word[0], "model") == 0) {
        p->sec = SEC_MODEL;
    } else if (words == 1 && strcmp(word[0], "train") == 0) {
        p->sec = SEC_TRAIN;
    } else if (words == 1 && strcmp(word[0], "logging") == 0) {
        p->sec = SEC_LOGGING;
    } else if (strcmp(word[0], "device") == 0) {
        if (words != 2 || !valid_name(word[1], sizeof(c->devices[0].name))) {
            fail(p, p->line, "section %s: expected [device NAME] with NAME of letters, digits, "
                 "'_', '-' or '.' (at most %zu characters)", hdr, sizeof(c->devices[0].name) - 1);
            return;
        }
        if (c->n_devices == CFG_MAX_DEVICES) {
            fail(p, p->line, "[%s]: too many devices (at most %d)", norm, CFG_MAX_DEVICES);
            return;
        }
        p->sec = SEC_DEVICE;
        p->dev = c->n_devices++;
        device_spec *d = &c->devices[p->dev];
        memset(d, 0, sizeof(*d));
        memcpy(d->name, word[1], strlen(word[1]) + 1); /* valid_name checked the length */
        snprintf(d->limits, sizeof(d->limits), "clamp");
        snprintf(d->steps, sizeof(d->steps), "ramp");
        d->line = p->line;
    } else {
        fail(p, p->line, "unknown section %s (expected [data], [device NAME], [model], [train] "
             "or [logging])", hdr);
    }
}

/* ---- typed values ---- */

static int get_long(parser *p, const char *key, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fail(p, p->line, "%s %s: expected an integer in %ld..%ld, got '%s'", p->sec_text, key, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_int(parser *p, const char *key, const char *v, long lo, long hi, int *out)
{
    long x;
    if (get_long(p, key, v, lo, hi, &x))
        return -1;
    *out = (int)x;
    return 0;
}

/* A finite number with lo < x (lo_open) or lo <= x, and x <= hi (hi_open: x < hi);
 * `what` says so in words for the message. */
static int get_double(parser *p, const char *key, const char *v, double lo, int lo_open, double hi,
                      int hi_open, const char *what, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x) || (lo_open ? !(x > lo) : !(x >= lo)) ||
        (hi_open ? !(x < hi) : !(x <= hi))) {
        fail(p, p->line, "%s %s: expected %s, got '%s'", p->sec_text, key, what, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_choice(parser *p, const char *key, const char *v, const char *const *names, int *out)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char list[200] = "";
    size_t used = 0;
    for (int i = 0; names[i] && used < sizeof(list); i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? (names[i + 1] ? ", " : " or ") : "",
                                 names[i]);
    fail(p, p->line, "%s %s: expected %s, got '%s'", p->sec_text, key, list, v);
    return -1;
}

static int get_string(parser *p, const char *key, const char *v, char *out, size_t cap)
{
    if (!v[0] || strlen(v) >= cap) {
        fail(p, p->line, "%s %s: expected a non-empty value of at most %zu characters", p->sec_text, key,
             cap - 1);
        return -1;
    }
    snprintf(out, cap, "%s", v);
    return 0;
}

/* A key may be given once per section (except `layer`). */
static int once(parser *p, const char *key)
{
    for (int i = 0; i < p->n_seen; i++)
        if (strcmp(p->seen[i].key, key) == 0) {
            fail(p, p->line, "%s %s: given twice (first on line %d)", p->sec_text, key, p->seen[i].line);
            return -1;
        }
    if (p->n_seen < MAX_SEEN) {
        snprintf(p->seen[p->n_seen].key, sizeof(p->seen[0].key), "%s", key);
        p->seen[p->n_seen++].line = p->line;
    }
    return 0;
}

static void unknown_key(parser *p, const char *key, const char *known)
{
    fail(p, p->line, "%s: unknown key '%s' (known: %s)", p->sec_text, key, known);
}

/* ---- sections' keys ---- */

static void data_key(parser *p, const char *k, const char *v)
{
    run_config *c = p->c;
    static const char *const sets[] = {"fashion-mnist", "synthetic", "narma10", "mackey-glass", NULL};
    int i;
    if (strcmp(k, "set") == 0) {
        if (!get_choice(p, k, v, sets, &i))
            snprintf(c->data_set, sizeof(c->data_set), "%s", sets[i]);
    } else if (strcmp(k, "path") == 0) {
        get_string(p, k, v, c->data_path, sizeof(c->data_path));
    } else if (strcmp(k, "pool") == 0) {
        get_int(p, k, v, 1, 14, &c->pool);
    } else if (strcmp(k, "train_limit") == 0) {
        get_long(p, k, v, 0, 100000000, &c->train_limit);
    } else if (strcmp(k, "test_limit") == 0) {
        get_long(p, k, v, 0, 100000000, &c->test_limit);
    } else if (strcmp(k, "window") == 0) {
        get_int(p, k, v, 1, 100000, &c->window);
    } else if (strcmp(k, "horizon") == 0) {
        get_int(p, k, v, 0, 10000, &c->horizon);
    } else {
        unknown_key(p, k, "set, path, pool, train_limit, test_limit, window, horizon");
    }
}

static void device_key(parser *p, const char *k, const char *v)
{
    device_spec *d = &p->c->devices[p->dev];
    static const char *const limits[] = {"clamp", "reject", NULL};
    static const char *const steps[] = {"ramp", "refuse", NULL};
    int i;
    if (d->n_keys < CFG_MAX_KEYS) {
        snprintf(d->keys[d->n_keys].key, sizeof(d->keys[0].key), "%s", k);
        d->keys[d->n_keys++].line = p->line;
    }
    if (strcmp(k, "driver") == 0) {
        get_string(p, k, v, d->driver, sizeof(d->driver));
    } else if (strcmp(k, "limits") == 0) {
        if (!get_choice(p, k, v, limits, &i))
            snprintf(d->limits, sizeof(d->limits), "%s", limits[i]);
    } else if (strcmp(k, "steps") == 0) {
        if (!get_choice(p, k, v, steps, &i))
            snprintf(d->steps, sizeof(d->steps), "%s", steps[i]);
    } else if (strcmp(k, "surrogate") == 0) {
        get_string(p, k, v, d->surrogate, sizeof(d->surrogate));
    } else if (strcmp(k, "dfa_roles") == 0) {
        get_string(p, k, v, d->dfa_roles, sizeof(d->dfa_roles));
    } else {
        /* a driver option: the driver checks the key and value when the
         * device is opened; here only what the key=value list can carry */
        if (!valid_name(k, sizeof(d->keys[0].key))) {
            fail(p, p->line, "%s: '%s' is not a valid option name (letters, digits, '_', '-', '.')",
                 p->sec_text, k);
            return;
        }
        if (!v[0] || strpbrk(v, ",; \t")) {
            fail(p, p->line, "%s %s: expected a value without blanks, ',' or ';', got '%s'", p->sec_text, k, v);
            return;
        }
        size_t used = strlen(d->options);
        int n = snprintf(d->options + used, sizeof(d->options) - used, "%s%s=%s", used ? "," : "", k, v);
        if (n < 0 || (size_t)n >= sizeof(d->options) - used) {
            d->options[used] = '\0';
            fail(p, p->line, "%s %s: the device's options exceed %zu characters", p->sec_text, k,
                 sizeof(d->options) - 1);
        }
    }
}

static void model_key(parser *p, const char *k, const char *v)
{
    run_config *c = p->c;
    if (strcmp(k, "layer") != 0) {
        unknown_key(p, k, "layer");
        return;
    }
    if (c->n_layers == CFG_MAX_LAYERS) {
        fail(p, p->line, "[model] layer: too many layers (at most %d)", CFG_MAX_LAYERS);
        return;
    }
    char kind[32], arg[64], extra[8];
    int n = sscanf(v, "%31s %63s %7s", kind, arg, extra);
    layer_spec *L = &c->layers[c->n_layers];
    memset(L, 0, sizeof(*L));
    c->layer_lines[c->n_layers] = p->line;
    if (n < 1 || layer_kind_parse(kind, &L->kind)) {
        fail(p, p->line, "[model] layer: expected KIND [ARG] with KIND one of patches, pad, concat, "
             "physical, readout, linear, tanh; got '%s'", v);
        return;
    }
    switch (L->kind) {
    case LAYER_TANH:
        if (n != 1) {
            fail(p, p->line, "[model] layer: 'tanh' takes no argument, got '%s'", v);
            return;
        }
        break;
    case LAYER_PHYSICAL:
        if (n != 2 || !valid_name(arg, sizeof(L->device))) {
            fail(p, p->line, "[model] layer: expected 'physical DEVICE' (a [device DEVICE] name), got '%s'", v);
            return;
        }
        memcpy(L->device, arg, strlen(arg) + 1); /* fits: valid_name checked the length */
        break;
    default: {
        char *end;
        errno = 0;
        long a = n == 2 ? strtol(arg, &end, 10) : 0;
        if (n != 2 || *end || errno || a < 1 || a > 1000000) {
            fail(p, p->line, "[model] layer: expected '%s N' with a positive integer N, got '%s'",
                 layer_kind_name(L->kind), v);
            return;
        }
        L->arg = (int)a;
    }
    }
    c->n_layers++;
}

static void train_key(parser *p, const char *k, const char *v)
{
    run_config *c = p->c;
    static const char *const modes[] = {"pat", "insilico", "ideal", "spsa", "pc", "dfa", "adfa", "bpstdp", NULL};
    static const char *const variants[] = {"strict", "fixedpred", "exact", NULL};
    static const char *const gs[] = {"one", "cos", "sin", "tanh", "sech2", NULL};
    static const char *const opts[] = {"adam", "sgd", NULL};
    static const char *const scheds[] = {"constant", "step", "cosine", NULL};
    int i;
    long l;
    if (strcmp(k, "mode") == 0) {
        if (!get_choice(p, k, v, modes, &i))
            mode_parse(modes[i], &c->mode);
    } else if (strcmp(k, "optimizer") == 0) {
        if (!get_choice(p, k, v, opts, &i))
            c->optimizer = i == 1 ? OPT_SGD : OPT_ADAM;
    } else if (strcmp(k, "lr") == 0) {
        get_double(p, k, v, 0, 1, 1e6, 0, "a number > 0", &c->lr);
    } else if (strcmp(k, "momentum") == 0) {
        get_double(p, k, v, 0, 0, 1, 1, "a number in [0, 1)", &c->momentum);
    } else if (strcmp(k, "schedule") == 0) {
        if (!get_choice(p, k, v, scheds, &i))
            c->schedule = i == 1 ? SCHED_STEP : i == 2 ? SCHED_COSINE : SCHED_CONSTANT;
    } else if (strcmp(k, "lr_gamma") == 0) {
        get_double(p, k, v, 0, 1, 1, 0, "a number in (0, 1]", &c->lr_gamma);
    } else if (strcmp(k, "lr_step") == 0) {
        get_int(p, k, v, 1, 1000, &c->lr_step);
    } else if (strcmp(k, "warmup") == 0) {
        get_long(p, k, v, 0, 100000000, &c->warmup);
    } else if (strcmp(k, "epochs") == 0) {
        get_int(p, k, v, 0, 1000, &c->epochs);
    } else if (strcmp(k, "batch") == 0) {
        get_int(p, k, v, 1, 65536, &c->batch);
    } else if (strcmp(k, "eval_batch") == 0) {
        get_int(p, k, v, 1, 65536, &c->eval_batch);
    } else if (strcmp(k, "eval_inflight") == 0) {
        get_int(p, k, v, 1, 8, &c->eval_inflight);
    } else if (strcmp(k, "microbatches") == 0) {
        get_int(p, k, v, 1, 64, &c->microbatches);
    } else if (strcmp(k, "eval_every") == 0) {
        get_int(p, k, v, 0, 1000, &c->eval_every);
    } else if (strcmp(k, "seed") == 0) {
        if (!get_long(p, k, v, 0, 0x7fffffffL, &l))
            c->seed = (uint64_t)l;
    } else if (strcmp(k, "spsa_c") == 0) {
        get_double(p, k, v, 0, 1, 1e3, 0, "a number > 0", &c->spsa_c);
    } else if (strcmp(k, "spsa_samples") == 0) {
        get_int(p, k, v, 1, 1000, &c->spsa_samples);
    } else if (strcmp(k, "max_failed_steps") == 0) {
        get_int(p, k, v, 0, 1000000, &c->max_failed_steps);
    } else if (strcmp(k, "pc_variant") == 0) {
        if (!get_choice(p, k, v, variants, &i))
            pc_variant_parse(variants[i], &c->pc_variant);
        if (!c->pc_line)
            c->pc_line = p->line;
    } else if (strcmp(k, "pc_eta") == 0) {
        get_double(p, k, v, 0, 1, 2, 1, "a number in (0, 2)", &c->pc_eta);
        if (!c->pc_line)
            c->pc_line = p->line;
    } else if (strcmp(k, "pc_iters") == 0) {
        get_int(p, k, v, 1, 100000, &c->pc_iters);
        if (!c->pc_line)
            c->pc_line = p->line;
    } else if (strcmp(k, "dfa_g") == 0) {
        if (!get_choice(p, k, v, gs, &i))
            dfa_g_parse(gs[i], &c->dfa_g);
        c->dfa_line = p->line;
    } else if (strcmp(k, "bean") == 0) {
        get_double(p, k, v, 0, 0, 1e6, 0, "a number >= 0", &c->bean);
    } else if (strcmp(k, "bean_physical") == 0) {
        get_int(p, k, v, 0, 1, &c->bean_physical);
    } else if (strcmp(k, "prune") == 0) {
        get_double(p, k, v, 0, 0, 1, 1, "a fraction in [0, 1)", &c->prune);
    } else if (strcmp(k, "prune_after") == 0) {
        get_int(p, k, v, 0, 1000, &c->prune_after);
    } else if (strcmp(k, "prune_ramp") == 0) {
        get_int(p, k, v, 0, 1000, &c->prune_ramp);
    } else if (strcmp(k, "prune_physical") == 0) {
        get_int(p, k, v, 0, 1, &c->prune_physical);
    } else {
        unknown_key(p, k, "mode, optimizer, lr, momentum, schedule, lr_gamma, lr_step, warmup, epochs, "
                    "batch, eval_batch, eval_inflight, microbatches, eval_every, seed, spsa_c, spsa_samples, "
                    "max_failed_steps, pc_variant, pc_eta, pc_iters, dfa_g, bean, bean_physical, prune, "
                    "prune_after, prune_ramp, prune_physical");
    }
}

static void logging_key(parser *p, const char *k, const char *v)
{
    run_config *c = p->c;
    static const char *const progress[] = {"auto", "bar", "lines", "off", NULL};
    int i;
    if (strcmp(k, "journal") == 0) {
        long n;
        char word[16], num[32], extra[8];
        int w = sscanf(v, "%15s %31s %7s", word, num, extra);
        if (w == 1 && strcmp(word, "all") == 0) {
            c->journal = JOURNAL_ALL, c->journal_every = 1;
        } else if (w == 1 && strcmp(word, "off") == 0) {
            c->journal = JOURNAL_OFF, c->journal_every = 1;
        } else if (w == 2 && strcmp(word, "every") == 0) {
            char *end;
            errno = 0;
            n = strtol(num, &end, 10);
            if (*end || errno || n < 1 || n > 1000000000L) {
                fail(p, p->line, "[logging] journal: expected 'every N' with N >= 1, got '%s'", v);
                return;
            }
            c->journal = n == 1 ? JOURNAL_ALL : JOURNAL_EVERY, c->journal_every = n;
        } else {
            fail(p, p->line, "[logging] journal: expected all, off or every N, got '%s'", v);
        }
    } else if (strcmp(k, "checkpoint_every") == 0) {
        get_long(p, k, v, 0, 100000000, &c->checkpoint_every);
    } else if (strcmp(k, "keep_checkpoints") == 0) {
        get_int(p, k, v, 0, 1000000, &c->keep_checkpoints);
    } else if (strcmp(k, "progress") == 0) {
        if (!get_choice(p, k, v, progress, &i))
            c->progress = (progress_mode)i;
    } else {
        unknown_key(p, k, "journal, checkpoint_every, keep_checkpoints, progress");
    }
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    (void)section; /* we track sections ourselves (with their lines) */
    parser *p = user;
    if (p->failed)
        return 1;
    if (!value || !name[0]) {
        fail(p, p->line, "expected 'key = value'");
        return 1;
    }
    if (p->sec == SEC_NONE) {
        fail(p, p->line, "'%s' before any section (start with [data], [device NAME], [model], ...)", name);
        return 1;
    }
    if (!(p->sec == SEC_MODEL && strcmp(name, "layer") == 0) && once(p, name))
        return 1;
    if (!value[0] && p->sec != SEC_DEVICE) {
        fail(p, p->line, "%s %s: no value", p->sec_text, name);
        return 1;
    }
    switch (p->sec) {
    case SEC_DATA: data_key(p, name, value); break;
    case SEC_DEVICE: device_key(p, name, value); break;
    case SEC_MODEL: model_key(p, name, value); break;
    case SEC_TRAIN: train_key(p, name, value); break;
    case SEC_LOGGING: logging_key(p, name, value); break;
    }
    return 1;
}

/* Checks that need the whole file. */
static void check_whole(parser *p)
{
    run_config *c = p->c;
    for (int i = 0; i < c->n_devices && !p->failed; i++) {
        if (!c->devices[i].driver[0])
            fail(p, c->devices[i].line, "[device %s]: no driver (add 'driver = NAME' or a plugin path)",
                 c->devices[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(c->devices[i].name, c->devices[j].name) == 0)
                fail(p, c->devices[i].line, "[device %s]: device defined twice", c->devices[i].name);
    }
    for (int i = 0; i < c->n_layers && !p->failed; i++) {
        layer_spec *L = &c->layers[i];
        if (L->kind != LAYER_PHYSICAL)
            continue;
        int found = 0;
        for (int j = 0; j < c->n_devices; j++)
            found |= strcmp(c->devices[j].name, L->device) == 0;
        if (!found)
            fail(p, c->layer_lines[i], "[model] layer: no [device %s] section in this file", L->device);
        for (int j = 0; j < i && !p->failed; j++)
            if (c->layers[j].kind == LAYER_PHYSICAL && strcmp(c->layers[j].device, L->device) == 0)
                fail(p, c->layer_lines[i], "[model] layer: device %s is already used on line %d (to share "
                     "weights, run all rows through one layer)", L->device, c->layer_lines[j]);
    }
    /* a learning rule's keys given with another mode: config_check_rules,
     * once the command line had its say (--mode may change the mode) */
    int has_model = 0;
    for (int i = 0; i < p->n_sections; i++)
        has_model |= strcmp(p->sections[i].name, "model") == 0;
    if (!p->failed && has_model && c->n_layers == 0)
        fail(p, p->line, "[model]: no layers (add 'layer = KIND ARG' lines)");
}

int config_parse_text(run_config *c, const char *text, const char *name, char *err, size_t errlen)
{
    config_defaults(c);
    snprintf(c->source, sizeof(c->source), "%s", name);
    parser p;
    memset(&p, 0, sizeof(p));
    p.c = c;
    p.name = name;
    p.text = text;
    p.len = strlen(text);
    p.err = err;
    p.errlen = errlen;
    if (errlen)
        err[0] = '\0';
    int rc = ini_parse_stream(reader, &p, handler, &p);
    if (rc > 0 && !p.failed)
        fail(&p, rc, "expected 'key = value', a [section] header or a comment");
    else if (rc < 0 && !p.failed)
        fail(&p, p.line, "out of memory");
    if (!p.failed)
        check_whole(&p);
    return p.failed ? PATCTL_ERR_CONFIG : 0;
}

char *config_read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > (1u << 24) ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                snprintf(err, errlen, "%s: too large for a config", path);
                break;
            }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s: read error", path);
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (strlen(buf) != n) {
            snprintf(err, errlen, "%s: contains NUL bytes (not a text file)", path);
            free(buf);
            return NULL;
        }
    }
    return buf;
}

int config_load(run_config *c, const char *path, char *err, size_t errlen)
{
    char *text = config_read_file(path, err, errlen);
    if (!text)
        return PATCTL_ERR_IO;
    int rc = config_parse_text(c, text, path, err, errlen);
    free(text);
    return rc;
}
