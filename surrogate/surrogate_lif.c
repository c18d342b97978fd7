/* The spiking (LIF chip) surrogates: lif_forward with one of two backwards,
 * the surrogate-gradient BPTT (kind "lif") or ST-RSBP (kind "lif-strsbp").
 * theta = [W (n_out*n_in), b (n_out)], the device's block layout. */
#include <stdlib.h>

#include "patctl/error.h"
#include "surrogate/surrogate.h"

typedef struct {
    lif_model m;
    lif_tape *tape;   /* grown to the largest batch seen */
} lif_impl;

static int lif_s_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    lif_impl *o = s->impl;
    if (B > lif_tape_capacity(o->tape)) {
        lif_tape *t = lif_tape_alloc(&o->m, B);
        if (!t)
            return PATCTL_ERR_NOMEM;
        lif_tape_free(o->tape);
        o->tape = t;
    }
    if (!o->tape) { /* B == 0 before any batch */
        if (!(o->tape = lif_tape_alloc(&o->m, 1)))
            return PATCTL_ERR_NOMEM;
    }
    return lif_forward(&o->m, x, theta, B, y, o->tape, NULL);
}

static int lif_s_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    lif_impl *o = s->impl;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return lif_backward(&o->m, o->tape, gy, gx, gtheta);
}

static int lif_s_backward_strsbp(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    lif_impl *o = s->impl;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return lif_backward_strsbp(&o->m, o->tape, gy, gx, gtheta);
}

static void lif_s_destroy(surrogate *s)
{
    lif_impl *o = s->impl;
    if (o)
        lif_tape_free(o->tape);
    free(o);
    free(s);
}

static const surrogate_ops lif_ops = {
    .kind = "lif",
    .forward = lif_s_forward,
    .backward = lif_s_backward,
    .destroy = lif_s_destroy,
};

static const surrogate_ops lif_strsbp_ops = {
    .kind = "lif-strsbp",
    .forward = lif_s_forward,
    .backward = lif_s_backward_strsbp,
    .destroy = lif_s_destroy,
};

surrogate *surrogate_lif_new(const lif_model *m, int strsbp)
{
    char err[160];
    if (lif_check(m, err, sizeof(err)) || (strsbp && m->spike != LIF_HARD))
        return NULL;
    surrogate *s = calloc(1, sizeof(*s));
    lif_impl *o = calloc(1, sizeof(*o));
    if (!s || !o) {
        free(s);
        free(o);
        return NULL;
    }
    o->m = *m;
    /* the surrogate is the nominal chip: no per-neuron values kept */
    o->m.theta_i = o->m.leak_i = o->m.gain_i = NULL;
    s->ops = strsbp ? &lif_strsbp_ops : &lif_ops;
    s->impl = o;
    s->n_in = m->n_in;
    s->n_out = m->n_out;
    s->n_theta = lif_n_theta(m);
    return s;
}

lif_model *surrogate_lif_model(surrogate *s)
{
    if (!s || (s->ops != &lif_ops && s->ops != &lif_strsbp_ops))
        return NULL;
    return &((lif_impl *)s->impl)->m;
}
