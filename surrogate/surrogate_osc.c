/* The oscillator surrogate: osc_forward/osc_backward with theta = [C, e]. */
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "surrogate/surrogate.h"

typedef struct {
    osc_model m;
    osc_tape *tape;       /* grown to the largest batch seen */
} osc_impl;

static int osc_s_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    osc_impl *o = s->impl;
    int n = o->m.n;
    if (B > osc_tape_capacity(o->tape)) {
        osc_tape *t = osc_tape_alloc(n, B, o->m.steps);
        if (!t)
            return PATCTL_ERR_NOMEM;
        osc_tape_free(o->tape);
        o->tape = t;
    }
    return osc_forward(&o->m, theta, theta + (long)n * n, x, NULL, B, y, o->tape);
}

static int osc_s_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    osc_impl *o = s->impl;
    long nn = (long)o->m.n * o->m.n;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return osc_backward(&o->m, o->tape, gy, gx, gtheta, gtheta ? gtheta + nn : NULL, NULL);
}

static void osc_s_destroy(surrogate *s)
{
    osc_impl *o = s->impl;
    if (o)
        osc_tape_free(o->tape);
    free(o);
    free(s);
}

static const surrogate_ops osc_ops = {
    .kind = "oscillators",
    .forward = osc_s_forward,
    .backward = osc_s_backward,
    .destroy = osc_s_destroy,
};

surrogate *surrogate_osc_new(const osc_model *m)
{
    surrogate *s = calloc(1, sizeof(*s));
    osc_impl *o = calloc(1, sizeof(*o));
    if (!s || !o) {
        free(s);
        free(o);
        return NULL;
    }
    o->m = *m;
    s->ops = &osc_ops;
    s->impl = o;
    s->n_in = s->n_out = m->n;
    s->n_theta = (long)m->n * m->n + m->n;
    return s;
}

osc_model *surrogate_osc_model(surrogate *s)
{
    if (!s || s->ops != &osc_ops)
        return NULL;
    return &((osc_impl *)s->impl)->m;
}
