/* The SHG surrogate: shg_forward/shg_backward with theta = phi [n_par]. */
#include <stdlib.h>

#include "patctl/error.h"
#include "surrogate/surrogate.h"

typedef struct {
    shg_model m;
    shg_tape *tape;       /* grown to the largest batch seen */
} shg_impl;

static int shg_s_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    shg_impl *o = s->impl;
    if (B > shg_tape_capacity(o->tape)) {
        shg_tape *t = shg_tape_alloc(&o->m, B);
        if (!t)
            return PATCTL_ERR_NOMEM;
        shg_tape_free(o->tape);
        o->tape = t;
    }
    return shg_forward(&o->m, x, theta, B, y, o->tape);
}

static int shg_s_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    shg_impl *o = s->impl;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return shg_backward(&o->m, o->tape, gy, gx, gtheta, NULL);
}

static void shg_s_destroy(surrogate *s)
{
    shg_impl *o = s->impl;
    if (o)
        shg_tape_free(o->tape);
    free(o);
    free(s);
}

static const surrogate_ops shg_ops = {
    .kind = "shg",
    .forward = shg_s_forward,
    .backward = shg_s_backward,
    .destroy = shg_s_destroy,
};

surrogate *surrogate_shg_new(const shg_model *m)
{
    char err[160];
    if (shg_check(m, err, sizeof(err)))
        return NULL;
    surrogate *s = calloc(1, sizeof(*s));
    shg_impl *o = calloc(1, sizeof(*o));
    if (!s || !o) {
        free(s);
        free(o);
        return NULL;
    }
    o->m = *m;
    s->ops = &shg_ops;
    s->impl = o;
    s->n_in = m->n_in;
    s->n_out = m->n_out;
    s->n_theta = m->n_par;
    return s;
}

shg_model *surrogate_shg_model(surrogate *s)
{
    if (!s || s->ops != &shg_ops)
        return NULL;
    return &((shg_impl *)s->impl)->m;
}
