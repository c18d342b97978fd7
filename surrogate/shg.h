/* Broadband second-harmonic generation (the optical system of the PAT
 * paper) — the physics, written once.  The simulated device (devices/shg/)
 * runs it with hidden-truth constants plus shot noise and camera
 * quantisation; the surrogate runs it with nominal (or fitted) constants.
 *
 * A pulse shaper has P = n_in + n_par pixels, each covering `bins` frequency
 * bins of the fundamental band (L = P * bins bins).  Input pixels and
 * parameter pixels are interleaved evenly (pixel p holds a parameter iff
 * floor((p+1) n_par / P) > floor(p n_par / P)).  Each pixel is driven by a
 * value (input x or parameter theta) and writes the spectral phase
 * phase_scale * value:
 *
 *   E_k   = A_k exp(i phi_k),          k = 0 .. L-1   (zero for k >= L)
 *   A_k   = exp(-v_k^2 / (2 bw^2)),     v_k = (2k+1)/L - 1 in (-1, 1)
 *   phi_k = phase_scale * pixel value + d2 v_k^2 + d3 v_k^3   (rad; dispersion)
 *   e_t   = IFFT(E)_t                  (N-point, N = power of 2 >= 2L, 1/N)
 *   s_t   = e_t^2                      (the crystal: second harmonic)
 *   S_m   = FFT(s)_m,   I_m = |S_m|^2  (SHG spectrum, m = 0 .. 2L-2)
 *   y_j   = g / P0 * sum_{m in pixel j} R_m I_m      (spectrometer pixels)
 *   R_m   = 1 + r1 u_m + r2 u_m^2 + extra_m,         u_m = (m - (L-1)) / (L-1)
 *
 * The spectrometer covers the centred fraction `span` of the SHG band,
 * m = m_lo .. m_lo + M - 1, split evenly into n_out pixels.  P0 (set from the
 * geometry alone) is the largest pixel of the transform-limited pulse (all
 * phases 0) with the nominal constants, so that pulse peaks at y = 1.
 * Nominal constants: d2 = d3 = r1 = r2 = 0, g = 1, no extra response.
 *
 * FFTs are GSL's radix-2 complex transforms in double precision; inputs,
 * parameters and outputs are float32.  Shapes: x [B, n_in] (drive),
 * phi [n_par] (drive), y [B, n_out] (dimensionless, transform-limited peak 1). */
#ifndef PATCTL_SHG_H
#define PATCTL_SHG_H

#include <stddef.h>

/* Calibration constants (what a grey-box fit estimates); nominal {0,0,0,0,1}. */
typedef struct shg_consts {
    double disp2;   /* quadratic spectral phase at the band edge, rad */
    double disp3;   /* cubic spectral phase at the band edge, rad */
    double resp1;   /* spectrometer response, linear term */
    double resp2;   /* spectrometer response, quadratic term */
    double gain;    /* overall output gain */
} shg_consts;

#define SHG_N_CONSTS 5

typedef struct shg_model {
    int n_in;           /* input pixels */
    int n_par;          /* trainable parameter pixels */
    int bins;           /* frequency bins per pixel */
    int n_out;          /* spectrometer pixels */
    double bandwidth;   /* bw: Gaussian amplitude width, in units of the half band */
    double span;        /* centred fraction of the SHG band on the spectrometer, (0, 1] */
    double phase_scale; /* rad of phase per unit of pixel drive (known, not fitted) */
    shg_consts k;
    const double *resp_extra; /* [shg_spec_bins(m)] extra response (hidden truth
                                 beyond the model family), or NULL; not owned */
} shg_model;

/* Nominal model with the given geometry. */
shg_model shg_model_nominal(int n_in, int n_par, int bins, int n_out);

/* 0 if the geometry is usable, else PATCTL_ERR_ARG with a message. */
int shg_check(const shg_model *m, char *err, size_t errlen);

/* Number of SHG frequency bins the spectrometer covers (M): the length of
 * resp_extra. */
int shg_spec_bins(const shg_model *m);
/* FFT length N. */
int shg_fft_len(const shg_model *m);

/* Geometry-dependent tables, the work arrays and what the VJP needs (the
 * inputs and parameters of the last forward), for batches up to cap.  Caller
 * owns; shg_tape_free accepts NULL.  NULL on bad geometry or no memory. */
typedef struct shg_tape shg_tape;
shg_tape *shg_tape_alloc(const shg_model *m, int cap);
void shg_tape_free(shg_tape *t);
int shg_tape_capacity(const shg_tape *t);

/* y[B, n_out] = SHG(x[B, n_in]; phi[n_par]) with the constants of m.  The
 * tape must come from a model with the same geometry.  Returns 0 or
 * PATCTL_ERR_ARG (B above capacity, geometry mismatch). */
int shg_forward(const shg_model *m, const float *x, const float *phi, int B, float *y,
                shg_tape *t);

/* Gradient of the calibration constants, same layout as shg_consts. */
typedef struct shg_consts shg_consts_grad;

/* VJP of the last shg_forward on this tape (same model).  ACCUMULATES:
 * gx[B, n_in] += ..., gphi[n_par] += ..., gk += ...; any may be NULL. */
int shg_backward(const shg_model *m, shg_tape *t, const float *gy, float *gx, float *gphi,
                 shg_consts_grad *gk);

#endif
