/* Optimisers over one flat parameter block (llm.c style): Adam and SGD with
 * optional momentum.  State (m, v) lives in one allocation. */
#ifndef PATCTL_OPTIM_H
#define PATCTL_OPTIM_H

#include <stdint.h>

#include "controller/config.h"

typedef struct optimizer {
    optimizer_kind kind;
    long n;
    double lr, beta1, beta2, eps, momentum;
    uint64_t t;          /* steps taken */
    float *m;            /* [n] first moment / momentum, owned */
    float *v;            /* [n] second moment (Adam), owned */
} optimizer;

int optimizer_init(optimizer *o, optimizer_kind kind, long n, double lr, double momentum);
void optimizer_free(optimizer *o);
/* params[n] -= update(grads[n]) */
void optimizer_step(optimizer *o, float *params, const float *grads);

#endif
