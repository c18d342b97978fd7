/* BEAN regularisation (Biologically Enhanced Artificial Neuronal assembly;
 * Gao, Ascoli & Zhao, Frontiers in Neurorobotics 15, 567482, 2021) of one
 * weight matrix W [O, I] whose column i holds the outgoing weights w_i of
 * input neuron i (a linear layer's W, a coupling matrix: from j to i).
 *
 *   W~ = tanh(|W|)                        connection strengths in [0, 1)
 *   A  = W~^T W~                          A_ij = sum_o W~_oi W~_oj: neurons i, j
 *                                         joined by strong second-order paths
 *                                         i -> o <- j (an "assembly")
 *   R  = alpha  sum_ij A_ij |w_i - w_j|^2
 *
 * R pulls neurons of one assembly to similar outgoing weights and, through
 * A, weakens the connections of neurons whose weights differ, which is what
 * makes BEAN-trained layers sparse and prunable.  Expanded with
 * G = W^T W, n_i = G_ii, d_i = sum_j A_ij, D_ij = n_i + n_j - 2 G_ij:
 *   sum_ij A_ij D_ij = 2 sum_i n_i d_i - 2 <A, G>
 *   dR/dW = alpha [ 4 (W diag(d) - W A) + 2 (W~ D) (.) sign(W) (.) (1 - W~^2) ]
 * Four GEMMs of O I^2 flops each, in float32 on CBLAS. */
#ifndef PATCTL_BEAN_H
#define PATCTL_BEAN_H

#include <stddef.h>

/* Floats of scratch bean_forward/bean_backward need for W [O, I]. */
size_t bean_scratch_floats(int O, int I);

/* R(W); scratch [bean_scratch_floats(O, I)]. */
double bean_forward(const float *W, int O, int I, double alpha, float *scratch);

/* G [O, I] += dR/dW; scratch as above. */
void bean_backward(const float *W, int O, int I, double alpha, float *G, float *scratch);

#endif
