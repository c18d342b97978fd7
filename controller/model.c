/* The model graph: shapes, parameters, forward and backward. */
#include "controller/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/overlap.h"
#include "controller/surrogates.h"
#include "surrogate/bigmem.h"
#include "surrogate/fit_online.h"
#include "devices/options.h"
#include "devices/registry.h"
#include "surrogate/layers.h"

static int find_device(const model *m, const char *name)
{
    for (int i = 0; i < m->n_devices; i++)
        if (strcmp(m->devices[i]->name, name) == 0)
            return i;
    return -1;
}

static int open_devices(model *m, const run_config *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n_devices; i++) {
        const device_spec *s = &c->devices[i];
        m->specs[i] = *s;
        struct patctl_option *o = NULL;
        int no = options_parse(s->options, &o);
        if (no < 0) {
            snprintf(err, errlen, "device %s: options must be key=value pairs, got '%s'", s->name, s->options);
            return PATCTL_ERR_CONFIG;
        }
        /* seeded simulators get a seed derived from the run seed unless the
         * options give one */
        char derr[768] = "";
        int rc = device_open(&m->devices[i], s->name, s->driver, o, no,
                             rng_device_seed(c->seed, i), derr, sizeof(derr));
        free(o);
        if (rc) {
            /* name the config file's line of the offending key */
            config_explain_device_error(c, i, derr, err, errlen);
            return rc;
        }
        m->n_devices = i + 1;
        device *d = m->devices[i];
        d->limits = strcmp(s->limits, "reject") == 0 ? LIMIT_REJECT : LIMIT_CLAMP;
        d->steps = strcmp(s->steps, "refuse") == 0 ? STEP_REFUSE : STEP_RAMP;
    }
    return 0;
}

/* A graph error of layer i: prefix the config file's line when known. */
static int layer_error(const run_config *c, int i, char *err, size_t errlen)
{
    if (c->layer_lines[i] > 0 && errlen) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err);
        snprintf(err, errlen, "%s:%d: [model] %s", c->source, c->layer_lines[i], msg);
    }
    return PATCTL_ERR_CONFIG;
}

int model_build(model *m, const run_config *c, int h, int w, int cap, rng_streams *rng,
                char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->h = h, m->w = w, m->cap = cap;
    int rc = open_devices(m, c, err, errlen);
    if (rc)
        return rc;

    /* shapes and parameter counts */
    int r = 1, cols = h * w, used[CFG_MAX_DEVICES] = {0};
    long np = 0;
    long acts = (long)cap * cols;
    m->n_layers = c->n_layers;
    for (int i = 0; i < c->n_layers; i++) {
        layer *L = &m->L[i];
        L->spec = c->layers[i];
        L->r_in = r, L->c_in = cols;
        L->p_off = np;
        int a = L->spec.arg;
        switch (L->spec.kind) {
        case LAYER_PATCHES: {
            int side = (int)lround(sqrt((double)cols));
            if (r != 1 || side * side != cols || a <= 0 || side % a) {
                snprintf(err, errlen, "layer %d (patches %d): needs a square image whose side is a "
                         "multiple of %d, got %d values per row", i + 1, a, a, cols);
                return layer_error(c, i, err, errlen);
            }
            L->img_h = L->img_w = side;
            r = (side / a) * (side / a);
            cols = a * a;
            break;
        }
        case LAYER_PAD:
            if (a < cols) {
                snprintf(err, errlen, "layer %d (pad %d): input is already %d wide", i + 1, a, cols);
                return layer_error(c, i, err, errlen);
            }
            cols = a;
            break;
        case LAYER_CONCAT:
            if (a <= 0 || r % a) {
                snprintf(err, errlen, "layer %d (concat %d): %d rows per sample do not split into "
                         "groups of %d", i + 1, a, r, a);
                return layer_error(c, i, err, errlen);
            }
            r /= a;
            cols *= a;
            break;
        case LAYER_PHYSICAL: {
            int di = find_device(m, L->spec.device);
            if (di < 0) {
                snprintf(err, errlen, "layer %d (physical %s): no such device", i + 1, L->spec.device);
                return layer_error(c, i, err, errlen);
            }
            if (used[di]++) {
                snprintf(err, errlen, "layer %d (physical %s): device already used by another layer "
                         "(share weights by running all rows through one layer)", i + 1, L->spec.device);
                return layer_error(c, i, err, errlen);
            }
            L->dev = m->devices[di];
            if (L->dev->desc.n_in != cols) {
                snprintf(err, errlen, "layer %d (physical %s): device takes %d inputs, layer gets %d",
                         i + 1, L->spec.device, L->dev->desc.n_in, cols);
                return layer_error(c, i, err, errlen);
            }
            /* DFA and aDFA never use a surrogate: none is made */
            if (!MODE_IS_LOCAL(c->mode))
                rc = surrogate_make(&L->sur, L->dev->name, &L->dev->desc, m->specs[di].options,
                                    m->specs[di].surrogate, err, errlen);
            if (rc && c->mode != MODE_IDEAL && c->mode != MODE_SPSA) {
                if (c->mode == MODE_PC && errlen) {
                    char why[512];
                    snprintf(why, sizeof(why), "%s", err);
                    snprintf(err, errlen, "%s (mode pc needs each physical layer's surrogate for its local "
                             "Jacobian; dfa, adfa and spsa need none)", why);
                }
                return rc;
            }
            rc = 0;
            cols = L->dev->desc.n_out;
            L->p_len = L->dev->n_theta;
            if (L->sur) {
                L->ysur = malloc(sizeof(float) * (size_t)cap * (size_t)r * (size_t)cols);
                if (!L->ysur)
                    return PATCTL_ERR_NOMEM;
            }
            break;
        }
        case LAYER_READOUT:
            if (a <= 0 || a > cols || r != 1) {
                snprintf(err, errlen, "layer %d (readout %d): needs one row of at least %d values per "
                         "sample, got %d x %d", i + 1, a, a, r, cols);
                return layer_error(c, i, err, errlen);
            }
            cols = a;
            L->p_len = 1;
            break;
        case LAYER_LINEAR:
            if (a <= 0) {
                snprintf(err, errlen, "layer %d (linear %d): width must be positive", i + 1, a);
                return layer_error(c, i, err, errlen);
            }
            L->p_len = (long)a * cols + a;
            cols = a;
            break;
        case LAYER_TANH:
            break;
        }
        L->r_out = r, L->c_out = cols;
        np += L->p_len;
        acts += (long)cap * r * cols;
    }
    if (r != 1) {
        snprintf(err, errlen, "the model ends with %d rows per sample; concatenate them (concat %d)", r, r);
        return PATCTL_ERR_CONFIG;
    }
    m->classes = cols;
    m->n_params = np;

    /* one block for params+grads, one for activations+their gradients */
    m->params = big_calloc((size_t)(2 * np + 2), sizeof(float));
    float *ab = malloc(sizeof(float) * (size_t)(2 * acts));
    if (!m->params || !ab) {
        free(ab);
        return PATCTL_ERR_NOMEM;
    }
    m->grads = m->params + np + 1;
    float *p = ab;
    long sz0 = (long)cap * h * w;
    m->act[0] = p, p += sz0;
    m->dact[0] = p, p += sz0;
    for (int i = 0; i < m->n_layers; i++) {
        long sz = (long)cap * m->L[i].r_out * m->L[i].c_out;
        m->act[i + 1] = p, p += sz;
        m->dact[i + 1] = p, p += sz;
    }

    /* initialisation, layer by layer, from the INIT stream */
    gsl_rng *g = rng->r[STREAM_INIT];
    for (int i = 0; i < m->n_layers; i++) {
        layer *L = &m->L[i];
        float *P = m->params + L->p_off;
        if (L->spec.kind == LAYER_PHYSICAL) {
            const struct patctl_device_desc *d = &L->dev->desc;
            long off = 0;
            for (int b = 0; b < d->n_blocks; b++) {
                long len = (long)d->blocks[b].rows * d->blocks[b].cols;
                float lo = d->blocks[b].init_lo, hi = d->blocks[b].init_hi;
                for (long k = 0; k < len; k++)
                    P[off + k] = lo + (hi - lo) * (float)gsl_rng_uniform(g);
                off += len;
            }
        } else if (L->spec.kind == LAYER_READOUT) {
            P[0] = 1.0f;
        } else if (L->spec.kind == LAYER_LINEAR) {
            float bound = 1.0f / sqrtf((float)L->c_in);
            for (long k = 0; k < L->p_len; k++)
                P[k] = bound * (2.0f * (float)gsl_rng_uniform(g) - 1.0f);
        }
    }
    model_project(m);
    return 0;
}

void model_free(model *m)
{
    for (int i = 0; i < m->n_layers; i++) {
        surrogate_destroy(&m->L[i].sur);
        free(m->L[i].ysur);
        m->L[i].ysur = NULL;
    }
    for (int i = 0; i < m->n_devices; i++)
        device_close(&m->devices[i]);
    free(m->params);
    free(m->act[0]);
    memset(m, 0, sizeof(*m));
}

float *model_logits(model *m) { return m->act[m->n_layers]; }

void model_zero_grad(model *m) { memset(m->grads, 0, sizeof(float) * (size_t)m->n_params); }

void model_project(model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->L[i].spec.kind == LAYER_PHYSICAL)
            device_project(m->L[i].dev, m->params + m->L[i].p_off);
}

int model_make_safe(model *m)
{
    int first = 0;
    for (int i = 0; i < m->n_devices; i++) {
        int rc = device_make_safe(m->devices[i]);
        if (rc && !first)
            first = rc;
    }
    return first;
}

device_stats model_device_stats(const model *m)
{
    device_stats s = {0};
    for (int i = 0; i < m->n_devices; i++) {
        const device_stats *d = &m->devices[i]->st;
        s.queries += d->queries, s.samples += d->samples, s.ramp_steps += d->ramp_steps;
        s.clamped += d->clamped, s.rejected += d->rejected, s.faults += d->faults;
        s.retries += d->retries, s.seconds += d->seconds;
    }
    return s;
}

static int physical_forward(layer *L, const float *P, const float *x, int R, float *y,
                            pass_kind pass, char *err, size_t errlen)
{
    int rc = 0;
    if (pass == PASS_SURROGATE) {
        if (!L->sur) {
            snprintf(err, errlen, "device %s has no surrogate", L->dev->name);
            return PATCTL_ERR_UNSUPPORTED;
        }
        rc = surrogate_forward(L->sur, P, x, R, y);
    } else {
        /* PAT: the surrogate at exactly what was sent, for the backward pass,
         * computed while the device works (controller/overlap.c) */
        int sur_failed = 0;
        rc = pass == PASS_PAT ? pat_forward(L->dev, L->sur, P, x, R, y, L->ysur, &sur_failed)
                              : device_run(L->dev, P, x, R, y);
        if (rc && !sur_failed) {
            snprintf(err, errlen, "device %s: %s", L->dev->name,
                     L->dev->err[0] ? L->dev->err : patctl_strerror(rc));
            return rc;
        }
        /* an online surrogate with denoise=K moves its tape to the trajectory
         * the measurement implies (fit_online.h); off: no change */
        if (!rc && pass == PASS_PAT && surrogate_is_online(L->sur))
            rc = surrogate_online_condition(L->sur, L->dev->sent_theta, L->dev->sent_x, y, R, L->ysur);
    }
    if (rc)
        snprintf(err, errlen, "surrogate of %s: %s", L->dev->name, patctl_strerror(rc));
    return rc;
}

/* One part of a physical layer's query sent in parts: rows [r0, r0+R) of
 * the Rtot rows of the whole batch (the first part opens the query, the
 * last closes it), inside the gate g. */
static int physical_part(layer *L, const float *P, const float *x, int r0, int R, int Rtot, float *y,
                         const device_gate *g, char *err, size_t errlen)
{
    device *d = L->dev;
    int rc = g->enter(g->user, d);
    if (rc)
        return rc;
    if (r0 == 0)
        rc = device_query_begin(d, P, Rtot);
    if (!rc)
        rc = device_query_part(d, x, r0, R, y);
    if (!rc && r0 + R == Rtot)
        rc = device_query_end(d);
    if (rc)
        snprintf(err, errlen, "device %s: %s", d->name, d->err[0] ? d->err : patctl_strerror(rc));
    g->leave(g->user, d, rc);
    return rc;
}

/* A slice of a batch: samples [s0, s0+b) of B (NULL: the whole batch). */
typedef struct slice {
    int s0, b, B;
} slice;

int model_layer_forward(model *m, int i, const float *in, float *out, int B, pass_kind pass, char *err,
                        size_t errlen)
{
    layer *L = &m->L[i];
    float *P = m->params + L->p_off;
    int Rin = B * L->r_in;
    switch (L->spec.kind) {
    case LAYER_PATCHES: patches_forward(out, in, B, L->img_h, L->img_w, L->spec.arg); return 0;
    case LAYER_PAD: pad_forward(out, in, Rin, L->c_in, L->c_out); return 0;
    case LAYER_CONCAT: concat_forward(out, in, Rin, L->c_in, L->spec.arg); return 0;
    case LAYER_READOUT: readout_forward(out, in, P[0], Rin, L->c_in, L->c_out); return 0;
    case LAYER_LINEAR:
        linear_forward(out, in, P, P + (long)L->c_out * L->c_in, Rin, L->c_in, L->c_out);
        return 0;
    case LAYER_TANH: tanh_forward(out, in, (long)Rin * L->c_in); return 0;
    case LAYER_PHYSICAL: {
        int rc = physical_forward(L, P, in, Rin, out, pass, err, errlen);
        L->last_pass = pass;
        return rc;
    }
    }
    return PATCTL_ERR_ARG;
}

/* The forward pass over activations act[] (the model's own or a lane's);
 * g (or NULL) brackets every device call.  With sl, only the slice's rows
 * (act[] then point at the slice's first row) and every physical layer's
 * query is sent in parts (physical_part); in PAT, the part that completes
 * a layer's query runs its surrogate forward on the whole batch at what
 * was sent. */
static int forward_graph(model *m, float *const *act, const float *x, int B, pass_kind pass,
                         const device_gate *g, const slice *sl, char *err, size_t errlen)
{
    if (B > m->cap || B <= 0)
        return PATCTL_ERR_ARG;
    memcpy(act[0], x, sizeof(float) * (size_t)B * (size_t)(m->h * m->w));
    for (int i = 0; i < m->n_layers; i++) {
        layer *L = &m->L[i];
        const float *in = act[i];
        float *out = act[i + 1];
        int Rin = B * L->r_in;
        int rc = 0;
        if (L->spec.kind != LAYER_PHYSICAL || (!sl && !g)) {
            rc = model_layer_forward(m, i, in, out, B, pass, err, errlen);
        } else if (sl) {
            int r0 = sl->s0 * L->r_in, Rtot = sl->B * L->r_in;
            rc = physical_part(L, m->params + L->p_off, in, r0, Rin, Rtot, out, g, err, errlen);
            if (!rc && pass == PASS_PAT && r0 + Rin == Rtot) {
                device *d = L->dev;
                if ((rc = surrogate_forward(L->sur, d->sent_theta, d->sent_x, Rtot, L->ysur)))
                    snprintf(err, errlen, "surrogate of %s: %s", d->name, patctl_strerror(rc));
            }
        } else if (!(rc = g->enter(g->user, L->dev))) {
            rc = physical_forward(L, m->params + L->p_off, in, Rin, out, pass, err, errlen);
            g->leave(g->user, L->dev, rc);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int model_forward_slice(model *m, const float *x, int s0, int b, int B, pass_kind pass, const device_gate *g,
                        char *err, size_t errlen)
{
    if (s0 < 0 || b <= 0 || s0 + b > B || B > m->cap || !g || pass == PASS_SURROGATE)
        return PATCTL_ERR_ARG;
    float *act[CFG_MAX_LAYERS + 1];
    act[0] = m->act[0] + (size_t)s0 * (size_t)(m->h * m->w);
    for (int i = 0; i < m->n_layers; i++)
        act[i + 1] = m->act[i + 1] + (size_t)s0 * (size_t)m->L[i].r_out * (size_t)m->L[i].c_out;
    slice sl = {s0, b, B};
    return forward_graph(m, act, x + (size_t)s0 * (size_t)(m->h * m->w), b, pass, g, &sl, err, errlen);
}

int model_forward(model *m, const float *x, int B, pass_kind pass, char *err, size_t errlen)
{
    return forward_graph(m, m->act, x, B, pass, NULL, NULL, err, errlen);
}

int model_lane_init(const model *m, model_lane *ln)
{
    memset(ln, 0, sizeof(*ln));
    long sz = (long)m->cap * m->h * m->w;
    for (int i = 0; i < m->n_layers; i++)
        sz += (long)m->cap * m->L[i].r_out * m->L[i].c_out;
    float *p = malloc(sizeof(float) * (size_t)sz);
    if (!p)
        return PATCTL_ERR_NOMEM;
    ln->act[0] = p, p += (long)m->cap * m->h * m->w;
    for (int i = 0; i < m->n_layers; i++) {
        ln->act[i + 1] = p;
        p += (long)m->cap * m->L[i].r_out * m->L[i].c_out;
    }
    return 0;
}

void model_lane_free(model_lane *ln)
{
    free(ln->act[0]);
    memset(ln, 0, sizeof(*ln));
}

int model_forward_lane(model *m, model_lane *ln, const float *x, int B, const device_gate *g, char *err,
                       size_t errlen)
{
    return forward_graph(m, ln->act, x, B, PASS_DEVICE, g, NULL, err, errlen);
}

float *model_lane_logits(const model *m, model_lane *ln) { return ln->act[m->n_layers]; }

int model_layer_backward(model *m, int i, int B, const float *in, const float *out, const float *dout,
                         float *din, float *G, train_mode mode, char *err, size_t errlen)
{
    layer *L = &m->L[i];
    const float *P = m->params + L->p_off;
    int Rin = B * L->r_in;
    int rc = 0;
    switch (L->spec.kind) {
    case LAYER_PATCHES:
        if (din)
            patches_backward(din, dout, B, L->img_h, L->img_w, L->spec.arg);
        break;
    case LAYER_PAD:
        if (din)
            pad_backward(din, dout, Rin, L->c_in, L->c_out);
        break;
    case LAYER_CONCAT:
        if (din)
            concat_backward(din, dout, Rin, L->c_in, L->spec.arg);
        break;
    case LAYER_READOUT: readout_backward(din, G, dout, in, P[0], Rin, L->c_in, L->c_out); break;
    case LAYER_LINEAR:
        linear_backward(din, G, G ? G + (long)L->c_out * L->c_in : NULL, dout, in, P, Rin, L->c_in, L->c_out);
        break;
    case LAYER_TANH:
        if (din)
            tanh_backward(din, dout, out, (long)Rin * L->c_in);
        break;
    case LAYER_PHYSICAL:
        if (mode == MODE_IDEAL) {
            rc = device_vjp(L->dev, dout, din, G);
            if (rc)
                snprintf(err, errlen, "device %s: exact VJP: %s", L->dev->name, patctl_strerror(rc));
        } else if (!L->sur) {
            snprintf(err, errlen, "device %s has no surrogate", L->dev->name);
            rc = PATCTL_ERR_UNSUPPORTED;
        } else {
            rc = surrogate_backward(L->sur, dout, din, G);
            if (rc)
                snprintf(err, errlen, "surrogate of %s: VJP: %s", L->dev->name, patctl_strerror(rc));
        }
        break;
    }
    return rc;
}

int model_backward(model *m, const float *dlogits, int B, train_mode mode, char *err, size_t errlen)
{
    int n = m->n_layers;
    memcpy(m->dact[n], dlogits, sizeof(float) * (size_t)B * (size_t)m->classes);
    for (int i = n - 1; i >= 0; i--) {
        layer *L = &m->L[i];
        float *din = m->dact[i];
        memset(din, 0, sizeof(float) * (size_t)B * (size_t)L->r_in * (size_t)L->c_in);
        int rc = model_layer_backward(m, i, B, m->act[i], m->act[i + 1], m->dact[i + 1], din,
                                      m->grads + L->p_off, mode, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

int model_observe(model *m, int B, char *err, size_t errlen)
{
    for (int i = 0; i < m->n_layers; i++) {
        layer *L = &m->L[i];
        if (L->spec.kind != LAYER_PHYSICAL || L->last_pass != PASS_PAT || !surrogate_is_online(L->sur))
            continue;
        char oerr[256] = "";
        int rc = surrogate_online_observe(L->sur, L->dev->sent_theta, L->dev->sent_x, m->act[i + 1],
                                          B * L->r_in, oerr, sizeof(oerr));
        if (rc) {
            snprintf(err, errlen, "surrogate of %s: online refit: %s", L->dev->name,
                     oerr[0] ? oerr : patctl_strerror(rc));
            return rc;
        }
    }
    return 0;
}
