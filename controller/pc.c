/* Predictive coding on the model graph (see pc.h for the equations). */
#include "controller/pc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/loss.h"
#include "devices/device.h"
#include "surrogate/surrogate.h"

/* Floats of activation k (k = 0: the input) for B samples. */
static size_t act_len(const model *m, int k, int B)
{
    if (k == 0)
        return (size_t)B * (size_t)(m->h * m->w);
    const layer *L = &m->L[k - 1];
    return (size_t)B * (size_t)L->r_out * (size_t)L->c_out;
}

int pc_init(pc_state *s, const model *m)
{
    memset(s, 0, sizeof(*s));
    s->n_layers = m->n_layers;
    size_t total = 0, biggest = 0;
    for (int k = 1; k <= m->n_layers; k++) {
        size_t n = act_len(m, k, m->cap);
        total += 3 * n;
        if (n > biggest)
            biggest = n;
    }
    if (act_len(m, 0, m->cap) > biggest)
        biggest = act_len(m, 0, m->cap);
    for (int k = 0; k < m->n_layers; k++)
        if (m->L[k].spec.kind == LAYER_PHYSICAL)
            total += (size_t)m->cap * (size_t)m->L[k].r_in * (size_t)m->L[k].c_in + (size_t)m->L[k].dev->n_theta;
    s->block = calloc(total + biggest + 1, sizeof(float));
    if (!s->block)
        return PATCTL_ERR_NOMEM;
    float *q = s->block;
    for (int k = 1; k <= m->n_layers; k++) {
        size_t n = act_len(m, k, m->cap);
        s->eps[k] = q, q += n;
        s->v[k] = q, q += n;
        s->p[k] = q, q += n;
    }
    for (int k = 0; k < m->n_layers; k++)
        if (m->L[k].spec.kind == LAYER_PHYSICAL) {
            s->sent_x[k] = q, q += (size_t)m->cap * (size_t)m->L[k].r_in * (size_t)m->L[k].c_in;
            s->sent_theta[k] = q, q += (size_t)m->L[k].dev->n_theta;
        }
    s->g = q;
    return 0;
}

void pc_free(pc_state *s)
{
    free(s->block);
    memset(s, 0, sizeof(*s));
}

/* g = J_k^T e (the VJP of layer k at its last forward, in -> out), input
 * part only. */
static int vjp_input(model *m, int k, int B, const float *in, const float *out, const float *e, float *g,
                     char *err, size_t errlen)
{
    memset(g, 0, sizeof(float) * act_len(m, k, B));
    return model_layer_backward(m, k, B, in, out, e, g, NULL, MODE_PC, err, errlen);
}

/* Parameter gradients: G_k += J_theta,k^T eps_k+1 at each layer's last
 * forward (in[k] -> out[k]). */
static int param_grads(pc_state *s, model *m, int B, const float *const *in, const float *const *out, char *err,
                       size_t errlen)
{
    for (int k = 0; k < m->n_layers; k++) {
        if (m->L[k].p_len == 0)
            continue;
        int rc = model_layer_backward(m, k, B, in[k], out[k], s->eps[k + 1], NULL, m->grads + m->L[k].p_off,
                                      MODE_PC, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

static int pc_exact(pc_state *s, model *m, int B, char *err, size_t errlen)
{
    int L = m->n_layers;
    for (int k = L - 1; k >= 1; k--) {
        int rc = vjp_input(m, k, B, m->act[k], m->act[k + 1], s->eps[k + 1], s->eps[k], err, errlen);
        if (rc)
            return rc;
    }
    return param_grads(s, m, B, (const float *const *)m->act, (const float *const *)m->act + 1, err, errlen);
}

static int pc_fixedpred(pc_state *s, model *m, int B, double eta, int iters, char *err, size_t errlen)
{
    int L = m->n_layers;
    float e = (float)eta;
    for (int k = 1; k < L; k++)
        memset(s->v[k], 0, sizeof(float) * act_len(m, k, B)); /* beliefs start at vhat */
    for (int it = 0; it < iters; it++) {
        for (int k = L - 1; k >= 1; k--) {
            size_t n = act_len(m, k, B);
            float *d = s->v[k], *eps = s->eps[k];
            for (size_t j = 0; j < n; j++)
                eps[j] = -d[j];                       /* vhat - v */
            int rc = vjp_input(m, k, B, m->act[k], m->act[k + 1], s->eps[k + 1], s->g, err, errlen);
            if (rc)
                return rc;
            for (size_t j = 0; j < n; j++)
                d[j] += e * (eps[j] - s->g[j]);
        }
    }
    return param_grads(s, m, B, (const float *const *)m->act, (const float *const *)m->act + 1, err, errlen);
}

/* Put every physical layer's surrogate tape back at the feedforward pass
 * (what was sent then, kept in s->sent_x / sent_theta). */
static int retape_feedforward(pc_state *s, model *m, int B, char *err, size_t errlen)
{
    for (int k = 0; k < m->n_layers; k++) {
        layer *Ly = &m->L[k];
        if (Ly->spec.kind != LAYER_PHYSICAL || !s->sent_x[k])
            continue;
        int rc = surrogate_forward(Ly->sur, s->sent_theta[k], s->sent_x[k], B * Ly->r_in, Ly->ysur);
        if (rc) {
            snprintf(err, errlen, "surrogate of %s: %s", Ly->dev->name, patctl_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static int pc_strict(pc_state *s, model *m, const uint8_t *labels, const float *targets, int B, double eta, int iters, char *err,
                     size_t errlen)
{
    int L = m->n_layers;
    float e = (float)eta;
    /* what the feedforward sent, for the parameter gradients at the end */
    for (int k = 0; k < L && iters > 1; k++) {
        layer *Ly = &m->L[k];
        if (Ly->spec.kind != LAYER_PHYSICAL)
            continue;
        memcpy(s->sent_x[k], Ly->dev->sent_x, sizeof(float) * (size_t)B * Ly->r_in * Ly->c_in);
        memcpy(s->sent_theta[k], Ly->dev->sent_theta, sizeof(float) * (size_t)Ly->dev->n_theta);
    }
    /* in[k] / out[k]: layer k's last forward; the first sweep is the feedforward */
    const float *in[CFG_MAX_LAYERS], *out[CFG_MAX_LAYERS];
    for (int k = 1; k < L; k++)
        memcpy(s->v[k], m->act[k], sizeof(float) * act_len(m, k, B));
    for (int k = 0; k < L; k++)
        in[k] = m->act[k], out[k] = m->act[k + 1];
    for (int it = 0; it < iters; it++) {
        if (it > 0) {
            /* predictions at the beliefs (physical layers: measured) */
            for (int k = 0; k < L; k++) {
                const float *x = k == 0 ? m->act[0] : s->v[k];
                uint64_t q0 = m->L[k].spec.kind == LAYER_PHYSICAL ? m->L[k].dev->st.queries : 0;
                int rc = model_layer_forward(m, k, x, s->p[k + 1], B, PASS_PAT, err, errlen);
                if (m->L[k].spec.kind == LAYER_PHYSICAL)
                    s->extra_queries += (long)(m->L[k].dev->st.queries - q0);
                if (rc)
                    return rc;
                in[k] = x, out[k] = s->p[k + 1];
            }
        }
        /* eps_L = dL/dp_L at the last layer's prediction */
        task_loss(out[L - 1], labels, targets, B, m->classes, s->eps[L], NULL);
        int last = it == iters - 1;
        for (int k = L - 1; k >= 1; k--) {
            size_t n = act_len(m, k, B);
            const float *pk = out[k - 1];
            float *v = s->v[k], *eps = s->eps[k];
            for (size_t j = 0; j < n; j++)
                eps[j] = v[j] - pk[j];
            if (last)
                continue;
            int rc = vjp_input(m, k, B, in[k], out[k], s->eps[k + 1], s->g, err, errlen);
            if (rc)
                return rc;
            for (size_t j = 0; j < n; j++)
                v[j] += e * (-eps[j] + s->g[j]);
        }
    }
    /* parameter gradients at the feedforward (as Torch2PC): at the beliefs,
     * a layer's gradient would pick up eps x eps terms of fixed sign (the
     * readout scale's, e.g., sum eps_L (vhat + eps) flips sign) */
    (void)in, (void)out;
    int rc = iters > 1 ? retape_feedforward(s, m, B, err, errlen) : 0;
    if (rc)
        return rc;
    return param_grads(s, m, B, (const float *const *)m->act, (const float *const *)m->act + 1, err, errlen);
}

int pc_gradient(pc_state *s, model *m, const float *dlogits, const uint8_t *labels, const float *targets, int B,
                pc_variant_kind variant, double eta, int iters, char *err, size_t errlen)
{
    if (B <= 0 || B > m->cap || m->n_layers != s->n_layers || iters < 1 || !(eta > 0 && eta < 2))
        return PATCTL_ERR_ARG;
    int L = m->n_layers;
    memcpy(s->eps[L], dlogits, sizeof(float) * act_len(m, L, B));
    switch (variant) {
    case PC_EXACT: return pc_exact(s, m, B, err, errlen);
    case PC_FIXEDPRED: return pc_fixedpred(s, m, B, eta, iters, err, errlen);
    case PC_STRICT: return pc_strict(s, m, labels, targets, B, eta, iters, err, errlen);
    }
    return PATCTL_ERR_ARG;
}
