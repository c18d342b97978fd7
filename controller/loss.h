/* Softmax cross-entropy over logits [B, K]. */
#ifndef PATCTL_LOSS_H
#define PATCTL_LOSS_H

#include <stdint.h>

/* Mean loss over the batch; writes dlogits [B,K] = (softmax - onehot)/B when
 * dlogits != NULL; *correct (optional) counts argmax hits. */
double softmax_xent(const float *logits, const uint8_t *labels, int B, int K,
                    float *dlogits, int *correct);

/* Index of the largest of v[K]. */
int argmax(const float *v, int K);

#endif
