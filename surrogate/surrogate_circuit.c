/* The circuit surrogate: circuit_forward/circuit_backward with
 * theta = [gain (n_in), bias (n_in)]. */
#include <stdlib.h>

#include "patctl/error.h"
#include "surrogate/surrogate.h"

typedef struct {
    circuit_model m;
    circuit_tape *tape;   /* grown to the largest batch seen */
} circuit_impl;

static int circ_s_forward(surrogate *s, const float *theta, const float *x, int B, float *y)
{
    circuit_impl *o = s->impl;
    if (B > circuit_tape_capacity(o->tape)) {
        circuit_tape *t = circuit_tape_alloc(&o->m, B);
        if (!t)
            return PATCTL_ERR_NOMEM;
        circuit_tape_free(o->tape);
        o->tape = t;
    }
    return circuit_forward(&o->m, x, theta, B, y, o->tape);
}

static int circ_s_backward(surrogate *s, const float *gy, float *gx, float *gtheta)
{
    circuit_impl *o = s->impl;
    if (!o->tape)
        return PATCTL_ERR_STATE;
    return circuit_backward(&o->m, o->tape, gy, gx, gtheta, NULL);
}

static void circ_s_destroy(surrogate *s)
{
    circuit_impl *o = s->impl;
    if (o)
        circuit_tape_free(o->tape);
    free(o);
    free(s);
}

static const surrogate_ops circuit_ops = {
    .kind = "circuit",
    .forward = circ_s_forward,
    .backward = circ_s_backward,
    .destroy = circ_s_destroy,
};

surrogate *surrogate_circuit_new(const circuit_model *m)
{
    char err[160];
    if (circuit_check(m, err, sizeof(err)))
        return NULL;
    surrogate *s = calloc(1, sizeof(*s));
    circuit_impl *o = calloc(1, sizeof(*o));
    if (!s || !o) {
        free(s);
        free(o);
        return NULL;
    }
    o->m = *m;
    s->ops = &circuit_ops;
    s->impl = o;
    s->n_in = m->n_in;
    s->n_out = circuit_n_out(m);
    s->n_theta = 2L * m->n_in;
    return s;
}

circuit_model *surrogate_circuit_model(surrogate *s)
{
    if (!s || s->ops != &circuit_ops)
        return NULL;
    return &((circuit_impl *)s->impl)->m;
}
