/* Digital layers.  Each is a _forward and a _backward (vector-Jacobian
 * product).  Tensors are float32, row-major, batch first.  Backward
 * ACCUMULATES (+=) into the input and parameter gradients; zeroing them is the
 * caller's job (llm.c convention).  R is the number of rows (batch times
 * rows-per-sample). */
#ifndef PATCTL_LAYERS_H
#define PATCTL_LAYERS_H

/* Affine: out[R,O] = in[R,I] W[O,I]^T + b[O]   (b may be NULL) */
void linear_forward(float *out, const float *in, const float *W, const float *b,
                    int R, int I, int O);
/* din[R,I] += dout W;  dW[O,I] += dout^T in;  db[O] += sum_r dout  (NULLs skip) */
void linear_backward(float *din, float *dW, float *db, const float *dout,
                     const float *in, const float *W, int R, int I, int O);

/* Image to non-overlapping k x k patches:
 * in[B, H*W] -> out[B*P, k*k], P = (H/k)*(W/k), patches of one image in
 * row-major order of their position, pixels of a patch row-major.
 * Requires H % k == 0 and W % k == 0. */
void patches_forward(float *out, const float *in, int B, int H, int W, int k);
/* din[B, H*W] += scatter of dout[B*P, k*k] */
void patches_backward(float *din, const float *dout, int B, int H, int W, int k);

/* Zero padding: out[R, to] = [in[R, c], 0 ... 0], c <= to */
void pad_forward(float *out, const float *in, int R, int c, int to);
/* din[R, c] += dout[R, :c] */
void pad_backward(float *din, const float *dout, int R, int c, int to);

/* Concatenation of g consecutive rows: in[R, c] -> out[R/g, g*c].  In
 * row-major memory this is the identity; it exists to keep shapes explicit. */
void concat_forward(float *out, const float *in, int R, int c, int g);
void concat_backward(float *din, const float *dout, int R, int c, int g);

/* Readout: out[R, m] = s * in[R, c-m : c]  (the last m values times a
 * trainable scalar s) */
void readout_forward(float *out, const float *in, float s, int R, int c, int m);
/* din[R, c-m:] += s dout;  *ds += sum dout * in[R, c-m:] */
void readout_backward(float *din, float *ds, const float *dout, const float *in,
                      float s, int R, int c, int m);

/* Elementwise tanh: out[n] = tanh(in[n]);  din += dout * (1 - out^2) */
void tanh_forward(float *out, const float *in, long n);
void tanh_backward(float *din, const float *dout, const float *out, long n);

#endif
