/* Coupled nonlinear oscillators — the physics, written once.  The simulated
 * device runs it with hidden-truth constants and noise; the surrogate runs it
 * with nominal (or fitted) constants.  float32, row-major, batch first.
 *
 *   q(0)  = a_in x + b_in + n            n: input noise supplied by the caller
 *   p(0)  = 0
 *   dq/dt = p
 *   dp/dt = -sin(w q) + e + (g Q + Qn) sin(w q),     w = 1 + eta
 *   y     = a_out q(t_end) + b_out
 *
 * Q = L((C + C^T)/2), where L replaces the diagonal by minus the sum of the
 * off-diagonal entries of its column, so (Q s)_i = sum_j J_ij (s_j - s_i).
 * Qn (hidden truth) has the same structure.  Trainable: C [N,N], e [N].
 * Integrated with classic RK4, `steps` steps of t_end/steps.  Shapes:
 * x, y [B, N].  Units: q in rad, t in units of the natural period / 2 pi. */
#ifndef PATCTL_OSCILLATOR_H
#define PATCTL_OSCILLATOR_H

/* Calibration constants; the nominal model is {0, 1, 1, 0, 1, 0}. */
typedef struct osc_consts {
    float eta;            /* nonlinearity detuning, w = 1 + eta */
    float coupling_gain;  /* g */
    float in_gain;        /* a_in */
    float in_offset;      /* b_in, rad */
    float out_gain;       /* a_out */
    float out_offset;     /* b_out, rad */
} osc_consts;

#define OSC_N_CONSTS 6

typedef struct osc_model {
    int n;                /* number of oscillators N */
    int steps;            /* RK4 steps */
    float t_end;          /* integration time */
    osc_consts k;
    const float *q_noise; /* [N,N] extra coupling, SYMMETRIC (osc_backward
                             uses M for M^T); the device's has the structure of L; or
                             NULL; not owned */
    int exact_trig;       /* 0 (default): vectorised sin/cos (surrogate/trig.h,
                             < 1.2e-7 absolute error); 1: libm sinf/cosf, the
                             reference arithmetic of tests/osc_ref.c */
    int row_exact;        /* 0 (default): the coupling GEMM runs over the
                             whole batch (fastest; OpenBLAS rounds
                             differently for different shapes, so a row's
                             last bits depend on the batch it is in);
                             1: osc_forward computes every row on its own
                             (one GEMV per row, column blocks fixed by N):
                             a row's result does not depend on the batch
                             size.  The simulated device sets it, so a batch
                             split across a pool of servers gives
                             bit-identical results (~1.4-2x slower GEMM part) */
} osc_model;

/* The nominal model: N oscillators, 5 RK4 steps to t_end = 0.5, no gap. */
osc_model osc_model_nominal(int n);

/* Forward states kept for the VJP; sized for up to `cap` rows.  Caller owns;
 * osc_tape_free accepts NULL. */
typedef struct osc_tape osc_tape;
osc_tape *osc_tape_alloc(int n, int cap, int steps);
void osc_tape_free(osc_tape *t);
int osc_tape_capacity(const osc_tape *t);

/* M = g L(sym(C)) + Qn - I   [N,N] */
void osc_coupling(float *M, const osc_model *m, const float *C);

/* out[N,N] = L((A + A^T)/2) — the structure map, exposed for building Qn. */
void osc_laplacian_sym(float *out, const float *A, int n);

/* y[B,N] = model(x[B,N]; C, e) with optional additive input noise[B,N]
 * (NULL = none).  Keeps what the VJP needs in tape (NULL = do not keep).
 * Returns 0, or PATCTL_ERR_ARG if B exceeds the tape capacity. */
int osc_forward(const osc_model *m, const float *C, const float *e,
                const float *x, const float *noise, int B, float *y,
                osc_tape *tape);

/* The coupling input sin(w q) of the last osc_forward recorded in tape,
 * averaged over its trajectory with the weights by which a state-independent
 * acceleration at each RK4 stage moves q(t_end), normalised so that a
 * constant input gives itself:
 *   F [B,N] = sum_{step n, stage k} beta_nk sin(w q_nk),
 *   beta_nk = ([k < 3] + (steps-1-n) (1,2,2,1)_k) / (3 steps^2),  sum = 1.
 * The design matrix of the coupling least-squares fit (fit_coupling_ls.c).
 * Returns 0, or PATCTL_ERR_ARG when the tape holds no forward. */
int osc_tape_coupling_input(const osc_tape *t, float *F);

/* The self-sensitivity of the last osc_forward in tape: J [B,N] =
 * d y_i / d q_i(0) along the recorded trajectory, with the coupling between
 * oscillators neglected (only M_ii acts on the tangent; RK4 on the
 * variational equation with the recorded stage states).  For estimating the
 * input noise a device's measurement implies (fit_online.c).  0 or
 * PATCTL_ERR_ARG (no forward recorded, or m does not match the tape). */
int osc_tape_self_sensitivity(const osc_model *m, const osc_tape *t, float *J);

/* Gradient of the calibration constants, same layout as osc_consts. */
typedef struct osc_consts osc_consts_grad;

/* VJP of the last osc_forward recorded in tape (same model and C).
 * ACCUMULATES: gx[B,N] += ..., gC[N,N] += ..., ge[N] += ..., gk += ...;
 * any output pointer may be NULL. */
int osc_backward(const osc_model *m, osc_tape *tape, const float *gy,
                 float *gx, float *gC, float *ge, osc_consts_grad *gk);

/* Blocks (OpenBLAS calls) per RK4 stage for B rows of N oscillators; they
 * run in parallel over the thread team (surrogate/team.h).  Fixed by the
 * shape, so results never depend on the number of threads.  For tests and
 * reports. */
int osc_stage_blocks(int B, int n);

/* FLOPs of one forward of B rows (GEMMs only), for benchmarks. */
double osc_forward_flops(int n, int steps, int B);

#endif
