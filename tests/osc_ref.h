/* Reference oscillator forward/VJP (tests only); see osc_ref.c.  Same
 * contract as osc_forward/osc_backward in surrogate/oscillator.h. */
#ifndef PATCTL_TEST_OSC_REF_H
#define PATCTL_TEST_OSC_REF_H

#include "surrogate/oscillator.h"

typedef struct osc_ref_tape osc_ref_tape;
osc_ref_tape *osc_ref_tape_alloc(int n, int cap, int steps);
void osc_ref_tape_free(osc_ref_tape *t);
int osc_ref_tape_capacity(const osc_ref_tape *t);
void osc_ref_laplacian_sym(float *out, const float *A, int n);
void osc_ref_coupling(float *M, const osc_model *m, const float *C);
int osc_ref_forward(const osc_model *m, const float *C, const float *e,
                    const float *x, const float *noise, int B, float *y,
                    osc_ref_tape *tape);
int osc_ref_backward(const osc_model *m, osc_ref_tape *tape, const float *gy,
                     float *gx, float *gC, float *ge, osc_consts_grad *gk);

#endif
