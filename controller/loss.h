/* Losses: softmax cross-entropy over logits [B, K]; mean squared error. */
#ifndef PATCTL_LOSS_H
#define PATCTL_LOSS_H

#include <stdint.h>

/* Mean loss over the batch; writes dlogits [B,K] = (softmax - onehot)/B when
 * dlogits != NULL; *correct (optional) counts argmax hits. */
double softmax_xent(const float *logits, const uint8_t *labels, int B, int K,
                    float *dlogits, int *correct);

/* Mean squared error over pred [B, K] against targets [B, K]:
 * mean((p - t)^2); dpred = 2 (p - t) / (B K) when dpred != NULL. */
double mse_loss(const float *pred, const float *targets, int B, int K, float *dpred);

/* The task's loss: softmax cross-entropy on labels (targets == NULL,
 * *correct = argmax hits) or, for a regression task, mse_loss on targets
 * (*correct = 0). */
double task_loss(const float *out, const uint8_t *labels, const float *targets, int B, int K, float *dout,
                 int *correct);

/* Evaluation scores: score_batch adds a batch of outputs z [B, K] to the
 * running sums — argmax hits and conf[true][predicted] (classes < 10) for
 * classification (t == NULL), the squared error against targets t [B, K]
 * for regression; score_final turns them into the accuracy (hits / n) or
 * the NRMSE sqrt(sse / (n K) / var(targets)). */
void score_batch(const float *z, const uint8_t *y, const float *t, int B, int K, long *hits, double *sse,
                 int conf[10][10]);
double score_final(long n, int K, long hits, double sse, double t_var, int regression);

/* Index of the largest of v[K]. */
int argmax(const float *v, int K);

#endif
