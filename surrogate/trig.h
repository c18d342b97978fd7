/* Vectorised single-precision sine and cosine of scaled arguments, for the
 * oscillator stages (millions of evaluations per training step).
 *
 * Method (Cephes sinf/cosf, eight lanes at a time with GCC vector
 * extensions): j = nearest integer to x * 2/pi; r = x - j pi/2 with a
 * three-part Cody-Waite pi/2; minimax polynomials for sin r and cos r on
 * [-pi/4, pi/4]; the quadrant j mod 4 picks and signs them.  Arguments with
 * |x| > TRIG_MAX_ARG go to libm's sinf/cosf.  Error against a double
 * reference (tests/test_osc_ref.c): below 1e-7 absolute at every argument
 * (libm's sinf: 3.3e-8; one float ulp of 1: 1.2e-7).  NaN and +-Inf give
 * NaN, like libm.  Four lanes (SSE2) or eight (AVX2, chosen at run time);
 * both widths give the same bits. */
#ifndef PATCTL_TRIG_H
#define PATCTL_TRIG_H

#define TRIG_MAX_ARG 8192.0f

/* out[i] = sin(w * x[i]),  i < n  (the product w * x[i] rounded to float
 * first, as sinf(w * x[i]) would); out and x must not overlap. */
void trig_sin_scaled(float *out, const float *x, float w, long n);
/* out[i] = cos(w * x[i]) */
void trig_cos_scaled(float *out, const float *x, float w, long n);
/* Lanes in use (4 or 8), for reports. */
int trig_vector_width(void);
/* Tests and benchmarks: force 4 or 8 lanes (8 only where the CPU has AVX2),
 * 0 = choose by CPU.  Not thread-safe; returns the width now in effect. */
int trig_set_width(int lanes);

#endif
