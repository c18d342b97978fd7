#include "controller/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "surrogate/bigmem.h"
#include "surrogate/simd.h"

int optimizer_init(optimizer *o, optimizer_kind kind, long n, double lr, double momentum)
{
    memset(o, 0, sizeof(*o));
    o->kind = kind, o->n = n, o->lr = lr, o->momentum = momentum;
    o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8;
    o->m = big_calloc((size_t)(2 * n + 1), sizeof(float));
    if (!o->m)
        return PATCTL_ERR_NOMEM;
    o->v = o->m + n;
    return 0;
}

void optimizer_free(optimizer *o)
{
    free(o->m);
    o->m = o->v = NULL;
}

PATCTL_HOT void optimizer_step(optimizer *o, float *p, const float *g)
{
    o->t++;
    if (o->kind == OPT_ADAM) {
        /* PyTorch's Adam: bias-corrected moments, eps added to sqrt(v_hat) */
        float b1 = (float)o->beta1, b2 = (float)o->beta2;
        double bc1 = 1.0 - pow(o->beta1, (double)o->t);
        double bc2 = 1.0 - pow(o->beta2, (double)o->t);
        float step = (float)(o->lr / bc1);
        float sbc2 = (float)sqrt(bc2), eps = (float)o->eps;
        for (long i = 0; i < o->n; i++) {
            o->m[i] = b1 * o->m[i] + (1.0f - b1) * g[i];
            o->v[i] = b2 * o->v[i] + (1.0f - b2) * g[i] * g[i];
            p[i] -= step * o->m[i] / (sqrtf(o->v[i]) / sbc2 + eps);
        }
    } else {
        float lr = (float)o->lr, mu = (float)o->momentum;
        for (long i = 0; i < o->n; i++) {
            float d = g[i];
            if (mu != 0.0f) {
                o->m[i] = mu * o->m[i] + d;
                d = o->m[i];
            }
            p[i] -= lr * d;
        }
    }
}
