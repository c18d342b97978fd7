/* Direct feedback alignment (DFA, aDFA) on the model graph (see dfa.h). */
#include "controller/dfa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "devices/sim_rng.h"
#include "surrogate/blas.h"

#define DFA_PURPOSE 0xDFAu  /* sim_rng purpose of the feedback matrices */

static const char *const role_names[] = {"fixed", "weight", "bias_out", "gain_diag", "bias_diag", NULL};

const char *dfa_role_name(dfa_role r)
{
    return r >= ROLE_FIXED && r <= ROLE_BIAS_DIAG ? role_names[r] : "?";
}

dfa_role dfa_default_role(const char *model, const char *block)
{
    if (strcmp(model, "oscillators") == 0)
        return strcmp(block, "C") == 0 ? ROLE_WEIGHT : strcmp(block, "e") == 0 ? ROLE_BIAS_OUT : ROLE_FIXED;
    if (strcmp(model, "circuit") == 0)
        return strcmp(block, "gain") == 0 ? ROLE_GAIN_DIAG : strcmp(block, "bias") == 0 ? ROLE_BIAS_DIAG
                                                                                       : ROLE_FIXED;
    if (strcmp(model, "spiking") == 0)
        return strcmp(block, "W") == 0 ? ROLE_WEIGHT : ROLE_FIXED;
    if (strcmp(model, "reservoir") == 0) /* the input mask acts on every step alike */
        return strcmp(block, "mask") == 0 ? ROLE_WEIGHT : strcmp(block, "bias") == 0 ? ROLE_BIAS_OUT : ROLE_FIXED;
    return ROLE_FIXED;
}

/* "FILE:LINE: [device NAME] dfa_roles: " when the key came from a file */
static void where(const run_config *c, int di, char *out, size_t n)
{
    const device_spec *d = &c->devices[di];
    for (int k = 0; k < d->n_keys; k++)
        if (strcmp(d->keys[k].key, "dfa_roles") == 0 && d->keys[k].line > 0) {
            snprintf(out, n, "%s:%d: [device %s] dfa_roles: ", c->source, d->keys[k].line, d->name);
            return;
        }
    snprintf(out, n, "device %s: dfa_roles: ", d->name);
}

/* Steps K a weight block [rows, cols] is shared over: n_out = K rows and
 * n_in = K cols (K = 1: an ordinary weight), else 0. */
static int weight_steps(const struct patctl_param_block *b, const struct patctl_device_desc *d)
{
    if (b->rows <= 0 || b->cols <= 0 || d->n_out % b->rows || d->n_in % b->cols)
        return 0;
    int k = d->n_out / b->rows;
    return k == d->n_in / b->cols ? k : 0;
}

/* Does role r fit block b of desc?  Else a reason. */
static const char *role_misfit(dfa_role r, const struct patctl_param_block *b, const struct patctl_device_desc *d)
{
    long len = (long)b->rows * b->cols;
    switch (r) {
    case ROLE_FIXED: return NULL;
    case ROLE_WEIGHT:
        return weight_steps(b, d) ? NULL : "weight needs a [n_out, n_in] block (or [n_out/K, n_in/K] shared over K steps)";
    case ROLE_BIAS_OUT: return len > 0 && d->n_out % len == 0 ? NULL : "bias_out needs n_out entries (or n_out/K)";
    case ROLE_GAIN_DIAG:
    case ROLE_BIAS_DIAG:
        return len == d->n_in && d->n_out % d->n_in == 0 ? NULL
                                                         : "gain_diag/bias_diag need n_in entries and n_out a "
                                                           "multiple of n_in";
    }
    return "unknown role";
}

static int parse_roles(dfa_state *s, int k, const model *m, const run_config *c, int di, char *err, size_t errlen)
{
    const device *dev = m->L[k].dev;
    const struct patctl_device_desc *d = &dev->desc;
    for (int b = 0; b < d->n_blocks; b++)
        s->role[k][b] = dfa_default_role(d->model, d->blocks[b].name);
    int given[PATCTL_MAX_BLOCKS] = {0};
    char pre[400];
    where(c, di, pre, sizeof(pre));
    const char *spec = c->devices[di].dfa_roles;
    char buf[sizeof(c->devices[0].dfa_roles)];
    snprintf(buf, sizeof(buf), "%s", spec);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        int b = -1, r = -1;
        if (colon) {
            *colon = '\0';
            for (int j = 0; j < d->n_blocks; j++)
                if (strcmp(d->blocks[j].name, t) == 0)
                    b = j;
            for (int j = 0; role_names[j]; j++)
                if (strcmp(role_names[j], colon + 1) == 0)
                    r = j;
        }
        if (!colon || b < 0 || r < 0) {
            char blocks[200] = "";
            size_t used = 0;
            for (int j = 0; j < d->n_blocks && used < sizeof(blocks); j++)
                used += (size_t)snprintf(blocks + used, sizeof(blocks) - used, "%s%s", j ? ", " : "",
                                         d->blocks[j].name);
            snprintf(err, errlen, "%sexpected BLOCK:ROLE,... with BLOCK one of %s and ROLE one of fixed, weight, "
                     "bias_out, gain_diag, bias_diag; got '%s%s%s'", pre, blocks[0] ? blocks : "(none)", t,
                     colon ? ":" : "", colon ? colon + 1 : "");
            return PATCTL_ERR_CONFIG;
        }
        s->role[k][b] = (dfa_role)r;
        given[b] = 1;
    }
    /* a default that does not fit this geometry (e.g. a reservoir read out at
     * fewer steps than it takes) is fixed; a role asked for must fit */
    for (int b = 0; b < d->n_blocks; b++)
        if (!given[b] && role_misfit(s->role[k][b], &d->blocks[b], d))
            s->role[k][b] = ROLE_FIXED;
    for (int b = 0; b < d->n_blocks; b++) {
        const char *why = role_misfit(s->role[k][b], &d->blocks[b], d);
        if (why) {
            snprintf(err, errlen, "%sblock %s [%d x %d] of device %s (n_in %d, n_out %d): %s", pre,
                     d->blocks[b].name, d->blocks[b].rows, d->blocks[b].cols, dev->name, d->n_in, d->n_out, why);
            return PATCTL_ERR_CONFIG;
        }
    }
    return 0;
}

static int device_index(const run_config *c, const char *name)
{
    for (int i = 0; i < c->n_devices; i++)
        if (strcmp(c->devices[i].name, name) == 0)
            return i;
    return -1;
}

int dfa_init(dfa_state *s, const model *m, const run_config *c, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->n_layers = m->n_layers;
    s->classes = m->classes;
    s->g = c->mode == MODE_ADFA ? c->dfa_g : DFA_G_ONE;
    s->stdp = c->mode == MODE_BPSTDP;
    int any = 0;
    size_t fb_total = 0, biggest = (size_t)m->cap * (size_t)(m->h * m->w);
    for (int k = 0; k < m->n_layers; k++) {
        const layer *L = &m->L[k];
        s->trainable_below[k] = any;
        size_t n = (size_t)m->cap * (size_t)L->r_out * (size_t)L->c_out;
        if (n > biggest)
            biggest = n;
        if (L->spec.kind == LAYER_PHYSICAL) {
            int di = device_index(c, L->spec.device);
            int rc = di < 0 ? PATCTL_ERR_CONFIG : parse_roles(s, k, m, c, di, err, errlen);
            if (rc)
                return rc;
            s->wblock[k] = -1;
            for (int b = 0; b < L->dev->desc.n_blocks; b++)
                if (s->role[k][b] == ROLE_WEIGHT && L->dev->desc.blocks[b].rows == L->dev->desc.n_out &&
                    L->dev->desc.blocks[b].cols == L->dev->desc.n_in)
                    s->wblock[k] = b;
            if (s->stdp && any && s->wblock[k] < 0) {
                snprintf(err, errlen, "mode bpstdp carries the error below a physical layer through its weight "
                         "block [n_out, n_in] (role weight); device %s (%s) has none, and layers below it learn "
                         "(use dfa there, or dfa_roles)", L->dev->name, L->dev->desc.model);
                return PATCTL_ERR_CONFIG;
            }
            if (any && !s->stdp)
                fb_total += (size_t)m->classes * (size_t)L->r_in * (size_t)L->c_in;
            for (int b = 0; b < L->dev->desc.n_blocks; b++)
                any |= s->role[k][b] != ROLE_FIXED;
        } else {
            any |= L->p_len > 0;
        }
    }
    s->block = malloc(sizeof(float) * (fb_total + 2 * biggest + 1));
    if (!s->block)
        return PATCTL_ERR_NOMEM;
    float *q = s->block;
    s->buf[0] = q, q += biggest;
    s->buf[1] = q, q += biggest;
    float sd = 1.0f / sqrtf((float)m->classes);
    for (int k = 0; k < m->n_layers; k++) {
        const layer *L = &m->L[k];
        if (L->spec.kind != LAYER_PHYSICAL || !s->trainable_below[k] || s->stdp)
            continue;
        long n = (long)m->classes * L->r_in * L->c_in;
        gsl_rng *r = sim_rng(c->seed, (uint64_t)k, DFA_PURPOSE);
        if (!r)
            return PATCTL_ERR_NOMEM;
        s->fb[k] = q, q += n;
        for (long j = 0; j < n; j++)
            s->fb[k][j] = sd * (float)gsl_ran_gaussian_ziggurat(r, 1.0);
        gsl_rng_free(r);
    }
    return 0;
}

void dfa_free(dfa_state *s)
{
    free(s->block);
    memset(s, 0, sizeof(*s));
}

static float g_of(dfa_g_kind g, float a)
{
    switch (g) {
    case DFA_G_ONE: return 1.0f;
    case DFA_G_COS: return cosf(a);
    case DFA_G_SIN: return sinf(a);
    case DFA_G_TANH: return tanhf(a);
    case DFA_G_SECH2: {
        float t = tanhf(a);
        return 1.0f - t * t;
    }
    }
    return 1.0f;
}

/* The local rules of physical layer k: G += role(delta [R, n_out], x [R, n_in]). */
static void local_rules(const dfa_state *s, model *m, int k, int R, const float *delta, const float *x)
{
    const layer *L = &m->L[k];
    const struct patctl_device_desc *d = &L->dev->desc;
    float *G = m->grads + L->p_off;
    int no = d->n_out, ni = d->n_in;
    for (int b = 0; b < d->n_blocks; b++) {
        float *Gb = G + device_block_offset(d, b);
        switch (s->role[k][b]) {
        case ROLE_FIXED: break;
        case ROLE_WEIGHT: {
            /* [rows, cols] shared over K steps: the rows as [R*K, rows] and [R*K, cols] */
            const struct patctl_param_block *pb = &d->blocks[b];
            int K = no / pb->rows;
            blas_sgemm(1, 0, pb->rows, pb->cols, R * K, 1.0f, delta, x, 1.0f, Gb);
            break;
        }
        case ROLE_BIAS_OUT: {
            long len = (long)d->blocks[b].rows * d->blocks[b].cols;
            for (long r = 0; r < (long)R * (no / len); r++)
                for (long o = 0; o < len; o++)
                    Gb[o] += delta[r * len + o];
            break;
        }
        case ROLE_GAIN_DIAG:
        case ROLE_BIAS_DIAG: {
            int kk = no / ni, gain = s->role[k][b] == ROLE_GAIN_DIAG;
            for (int r = 0; r < R; r++)
                for (int j = 0; j < ni; j++) {
                    double acc = 0;
                    for (int q = 0; q < kk; q++)
                        acc += delta[(long)r * no + (long)j * kk + q];
                    Gb[j] += (float)(gain ? acc * x[(long)r * ni + j] : acc);
                }
            break;
        }
        }
    }
}

int dfa_gradient(dfa_state *s, model *m, const float *dlogits, int B, char *err, size_t errlen)
{
    if (B <= 0 || B > m->cap || m->n_layers != s->n_layers)
        return PATCTL_ERR_ARG;
    int L = m->n_layers, cur = 0;
    float *dout = s->buf[0];
    memcpy(dout, dlogits, sizeof(float) * (size_t)B * (size_t)m->classes);
    for (int k = L - 1; k >= 0; k--) {
        layer *Ly = &m->L[k];
        float *din = s->buf[1 - cur];
        long nin = (long)B * Ly->r_in * Ly->c_in;
        if (Ly->spec.kind == LAYER_PHYSICAL) {
            device *d = Ly->dev;
            int R = B * Ly->r_in;
            if (d->sent_B != R) {
                snprintf(err, errlen, "device %s: no forward pass of this batch to train from", d->name);
                return PATCTL_ERR_STATE;
            }
            if (s->stdp) {
                /* xi = delta (.) [the neuron fired]: gate dout in place (it is ours) */
                const float *y = m->act[k + 1];
                for (long j = 0; j < (long)R * d->desc.n_out; j++)
                    dout[j] = y[j] > 0 ? dout[j] : 0.0f;
            }
            local_rules(s, m, k, R, dout, d->sent_x);
            if (!s->trainable_below[k])
                break;
            if (s->stdp) {
                /* delta_in = xi W through the layer's own weights */
                const float *W = m->params + Ly->p_off + device_block_offset(&d->desc, s->wblock[k]);
                blas_sgemm(0, 0, R, d->desc.n_in, d->desc.n_out, 1.0f, dout, W, 0.0f, din);
                dout = din;
                cur = 1 - cur;
                continue;
            }
            /* delta_in = (e B_k) (.) g(x_k): [B, r_in*c_in] = [B*r_in, c_in] */
            blas_sgemm(0, 0, B, Ly->r_in * Ly->c_in, m->classes, 1.0f, dlogits, s->fb[k], 0.0f, din);
            if (s->g != DFA_G_ONE) {
                const float *x = m->act[k];
                for (long j = 0; j < nin; j++)
                    din[j] *= g_of(s->g, x[j]);
            }
        } else {
            if (!s->trainable_below[k] && Ly->p_len == 0)
                break;
            memset(din, 0, sizeof(float) * (size_t)nin);
            int rc = model_layer_backward(m, k, B, m->act[k], m->act[k + 1], dout, s->trainable_below[k] ? din : NULL,
                                          Ly->p_len ? m->grads + Ly->p_off : NULL, MODE_DFA, err, errlen);
            if (rc)
                return rc;
            if (!s->trainable_below[k])
                break;
        }
        dout = din;
        cur = 1 - cur;
    }
    return 0;
}
