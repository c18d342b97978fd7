/* Training micro-batches ([train] microbatches = K, --microbatches K):
 * keep the devices busy during a training step.  The forward pass of a
 * batch of B samples runs as K row slices (micro-batches of B/K samples,
 * the first B%K one larger) on the lanes of lanes.h: while slice k is on
 * device d, slice k+1 computes its digital layers and uses the other
 * devices.  The backward pass then runs over the whole batch as with K = 1.
 *
 * Bit-identical to K = 1 on devices whose rows depend only on (seed, query
 * id, absolute row): each physical layer's batch is ONE logical device
 * query sent in parts (device_query_begin/part/end): one boundary check
 * and ramp of theta, one query id, row0 = the slice's first row; slices
 * reach every device in order (the lanes' turn).  The journal gets one row
 * per part, in row order, all with the query's id.  In PAT, the slice that
 * completes a layer's query runs the layer's surrogate forward on the whole
 * batch at exactly what was sent (while later slices are on the devices).
 * The simulated oscillator is row-exact with row_exact=1 (its batched GEMMs
 * otherwise round differently for other batch shapes); digital layers are
 * computed per slice (a linear layer's GEMM may round differently for a
 * slice on some BLAS builds; patches/pad/concat/readout/tanh are exact).
 *
 * Lanes: min(K, LANES_MAX) threads when every physical device is `remote`
 * (eval_pipe_usable: the waits are on other machines); otherwise the slices
 * run one after the other on the calling thread (same queries, same
 * results, no gain: an in-process simulator computes on the controller's
 * own cores).  A stop request lets the step in flight finish (as K = 1: the
 * training loop stops between steps).  A failing part fails the step:
 * later slices give up, the first failure (in slice order) is returned and
 * no result of the step is used (train.c skips the step). */
#ifndef PATCTL_MICROBATCH_H
#define PATCTL_MICROBATCH_H

#include <stddef.h>

#include "controller/model.h"

/* Lanes a forward in K micro-batches uses on m (1 = on the calling thread). */
int microbatch_lanes(const model *m, int K);

/* model_forward(m, x, B, pass) in K micro-batches (K clamped to B).  K <= 1
 * or pass == PASS_SURROGATE: model_forward itself. */
int model_forward_micro(model *m, const float *x, int B, pass_kind pass, int K, char *err, size_t errlen);

#endif
