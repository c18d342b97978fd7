/* The reservoir surrogate: reservoir_forward/reservoir_backward of the
 * nominal model (no loop noise) with theta = [mask (N*C), bias (N),
 * gain (1)]. */
#include <stdlib.h>

#include "patctl/error.h"
#include "surrogate/surrogate.h"

typedef struct {
    reservoir_model m;
    reservoir_tape *tape;   /* grown to the largest batch seen */
} reservoir_impl;

static int res_s_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    reservoir_impl *o = s->impl;
    if (B > reservoir_tape_capacity(o->tape)) {
        reservoir_tape *t = reservoir_tape_alloc(&o->m, B);
        if (!t)
            return PATCTL_ERR_NOMEM;
        reservoir_tape_free(o->tape);
        o->tape = t;
    }
    return reservoir_forward(&o->m, x, theta, B, y, o->tape, NULL, NULL);
}

static int res_s_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    reservoir_impl *o = s->impl;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return reservoir_backward(&o->m, o->tape, gy, gx, gtheta, NULL);
}

static void res_s_destroy(surrogate *s)
{
    reservoir_impl *o = s->impl;
    if (o)
        reservoir_tape_free(o->tape);
    free(o);
    free(s);
}

static const surrogate_ops reservoir_ops = {
    .kind = "reservoir",
    .forward = res_s_forward,
    .backward = res_s_backward,
    .destroy = res_s_destroy,
};

surrogate *surrogate_reservoir_new(const reservoir_model *m)
{
    char err[160];
    if (reservoir_check(m, err, sizeof(err)))
        return NULL;
    surrogate *s = calloc(1, sizeof(*s));
    reservoir_impl *o = calloc(1, sizeof(*o));
    if (!s || !o) {
        free(s);
        free(o);
        return NULL;
    }
    o->m = *m;
    s->ops = &reservoir_ops;
    s->impl = o;
    s->n_in = reservoir_n_in(m);
    s->n_out = reservoir_n_out(m);
    s->n_theta = reservoir_n_theta(m);
    return s;
}

reservoir_model *surrogate_reservoir_model(surrogate *s)
{
    if (!s || s->ops != &reservoir_ops)
        return NULL;
    return &((reservoir_impl *)s->impl)->m;
}
