/* Coupling correction of the oscillator model by iterated linear least
 * squares (fit_osc.h, FIT_COUPLING_LS) — for large devices, where the
 * Gauss-Newton fit is too slow and Adam too weak.
 *
 * Over the short integration time the output responds to the coupling
 * almost linearly:  y ~ a_out (q0 + t_end^2/2 (e + s M)) + b_out,  with s
 * the coupling input sin(w q) averaged over the trajectory
 * (osc_tape_coupling_input; sin(w q0) to first order).  So a change dD of
 * the correction moves the outputs by about  c S dD,  c = a_out t_end^2/2,
 * S [rows, N] those inputs for the training samples under the current
 * model (row-major: column i of D couples into oscillator i).  Every
 * iteration solves
 *     min_dD |R - c S dD|^2 + lambda |dD|^2      (R: the current residuals)
 * for all N columns of dD at once: one Cholesky factor of G = S^T S +
 * lambda I (GSL, double) and one multi-right-hand-side solve, then
 * D += alpha dD.  The residuals are always those of the full nonlinear
 * model, so the iteration converges to the least-squares fit of the real
 * model wherever the linear map is a good preconditioner (a Gauss-Newton
 * method with an approximate Jacobian); alpha is halved whenever the
 * training residual grows.  D is a symmetric [N,N] matrix (couplings are
 * reciprocal, and osc_backward relies on M = M^T): each step is the
 * symmetric part of the solution, which averages the two estimates of every
 * off-diagonal entry; the diagonal is free (it also absorbs a detuning), or,
 * with o->laplacian, minus the sum of the row's off-diagonal entries (the
 * structure of the device's hidden coupling; then eta stays identifiable).
 * The constants stay fixed. */
#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patctl/error.h"
#include "surrogate/fit_osc.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    osc_model *m;
    const fit_set *d;
    const uint8_t *role;
    int n;
    long nn, Bmax;
    float *y;          /* [Bmax, n] model output */
    double *Sd, *Rd;   /* [Bmax, n] features, residuals */
    osc_tape *tape;
} ls_ctx;

/* Sum of squared residuals and their count over settings of role `which`;
 * with G, rhs != NULL also G [n,n] += S^T S (lower triangle) and
 * rhs [n,n] += S^T R over those settings. */
static int residuals(ls_ctx *c, int which, double *G, double *rhs, double *sse, long *cnt)
{
    const fit_set *d = c->d;
    long s0, s1, k;
    *sse = 0.0, *cnt = 0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (c->role ? c->role[k] != which : which != FIT_TRAIN)
            continue;
        const float *th = d->theta + k * d->n_theta;
        int B = (int)(s1 - s0);
        int rc = osc_forward(c->m, th, th + c->nn, d->x + s0 * d->n_in, NULL, B, c->y, c->tape);
        if (rc)
            return rc;
        const float *ym = d->y + s0 * d->n_out;
        long len = (long)B * c->n;
        for (long i = 0; i < len; i++) {
            c->Rd[i] = (double)ym[i] - c->y[i];
            *sse += c->Rd[i] * c->Rd[i];
        }
        *cnt += len;
        if (rhs) {
            if ((rc = osc_tape_coupling_input(c->tape, c->y)))
                return rc;
            for (long i = 0; i < len; i++)
                c->Sd[i] = c->y[i];
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, c->n, B, 1.0, c->Sd, c->n, 1.0, G, c->n);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->n, c->n, B, 1.0, c->Sd, c->n, c->Rd,
                        c->n, 1.0, rhs, c->n);
        }
    }
    if (!isfinite(*sse))
        return PATCTL_ERR_NUMERIC;
    return 0;
}

static double rms(double sse, long cnt) { return cnt ? sqrt(sse / (double)cnt) : -1.0; }

double fit_ridge(double *G, int n, double rel)
{
    double mean = 0.0;
    for (int i = 0; i < n; i++)
        mean += G[(long)i * n + i] / n;
    double lambda = rel * (mean > 0 ? mean : 1.0);
    for (int i = 0; i < n; i++)
        G[(long)i * n + i] += lambda;
    return lambda;
}

int fit_cholesky_solve(double *G, const double *B, double *X, int n)
{
    gsl_matrix_view g = gsl_matrix_view_array(G, (size_t)n, (size_t)n);
    gsl_matrix_const_view b = gsl_matrix_const_view_array(B, (size_t)n, (size_t)n);
    gsl_matrix_view x = gsl_matrix_view_array(X, (size_t)n, (size_t)n);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    int gs = gsl_linalg_cholesky_decomp1(&g.matrix);
    if (!gs)
        gs = gsl_linalg_cholesky_solve_mat(&g.matrix, &b.matrix, &x.matrix);
    gsl_set_error_handler(old);
    return gs;
}

int fit_osc_coupling_ls(osc_model *m, float *D, const fit_set *d, const uint8_t *role,
                        const fit_osc_options *o, fit_osc_result *r, char *err, size_t errlen)
{
    if (m->n != d->n_in || m->n != d->n_out || d->n_theta != (long)m->n * m->n + m->n) {
        snprintf(err, errlen, "data (n_in %d, n_out %d, n_theta %ld) does not match a %d-oscillator model",
                 d->n_in, d->n_out, d->n_theta, m->n);
        return PATCTL_ERR_ARG;
    }
    double c_lin = (double)m->k.out_gain * m->t_end * m->t_end / 2.0;
    if (fabs(c_lin) < 1e-6) {
        snprintf(err, errlen, "output gain %g too close to 0 for the coupling fit", m->k.out_gain);
        return PATCTL_ERR_NUMERIC;
    }
    double t0 = now_s();
    int n = m->n, rc = 0;
    long nn = (long)n * n, Bmax = 0, s0, s1, k, rows_tr = 0;
    int have_val = 0;
    for (long s = 0; (k = fit_next_group(d, s, &s0, &s1)) >= 0; s = s1) {
        if (s1 - s0 > Bmax)
            Bmax = s1 - s0;
        if (!role || role[k] == FIT_TRAIN)
            rows_tr += s1 - s0;
        else if (role[k] == FIT_VAL)
            have_val = 1;
    }
    if (!rows_tr) {
        snprintf(err, errlen, "no training settings for the coupling fit");
        return PATCTL_ERR_ARG;
    }
    ls_ctx c = {m, d, role, n, nn, Bmax, NULL, NULL, NULL, NULL};
    c.y = malloc(sizeof(float) * (size_t)(Bmax * n));
    c.Sd = malloc(sizeof(double) * (size_t)(Bmax * n));
    c.Rd = malloc(sizeof(double) * (size_t)(Bmax * n));
    c.tape = osc_tape_alloc(n, (int)Bmax, m->steps);
    gsl_matrix *G = gsl_matrix_calloc((size_t)n, (size_t)n);
    gsl_matrix *rhs = gsl_matrix_alloc((size_t)n, (size_t)n);
    gsl_matrix *Z = gsl_matrix_alloc((size_t)n, (size_t)n);
    float *step = malloc(sizeof(float) * (size_t)nn), *base = malloc(sizeof(float) * (size_t)nn);
    float *best = malloc(sizeof(float) * (size_t)nn);
    if (!c.y || !c.Sd || !c.Rd || !c.tape || !G || !rhs || !Z || !step || !base || !best) {
        rc = PATCTL_ERR_NOMEM;
        goto out;
    }
    m->q_noise = D;

    if (o->verbose)
        fprintf(stderr, "  coupling (least squares): %ld training samples, %d x %d unknowns\n", rows_tr, n, n);
    double sse, val_sse, best_val = INFINITY, prev = INFINITY, alpha = 1.0;
    long cnt, val_cnt;
    int iters = o->ls_iter > 0 ? o->ls_iter : 15, it, halvings = 0, worse_val = 0, gs;
    memcpy(best, D, sizeof(float) * (size_t)nn);
    memcpy(base, D, sizeof(float) * (size_t)nn);
    memset(step, 0, sizeof(float) * (size_t)nn);
    for (it = 0; it < iters; it++) {
        if (o->stop && *o->stop)
            break;
        gsl_matrix_set_zero(rhs);
        gsl_matrix_set_zero(G);
        if ((rc = residuals(&c, FIT_TRAIN, G->data, rhs->data, &sse, &cnt)))
            goto out;
        double tr = rms(sse, cnt), val = -1.0;
        if (tr > prev * (1.0 + 1e-9)) {
            /* the last step went too far: halve it, from the same base */
            if (halvings >= 8)
                break;
            alpha *= 0.5, halvings++;
            for (long j = 0; j < nn; j++)
                D[j] = base[j] + (float)alpha * step[j];
            if (o->verbose)
                fprintf(stderr, "  coupling iteration %2d: train rms %.5f rose; step x %.3g\n", it + 1, tr, alpha);
            continue;
        }
        if (have_val) {
            if ((rc = residuals(&c, FIT_VAL, NULL, NULL, &val_sse, &val_cnt)))
                goto out;
            val = rms(val_sse, val_cnt);
            if (val < best_val)
                best_val = val, worse_val = 0, memcpy(best, D, sizeof(float) * (size_t)nn);
            else
                worse_val++;
        } else {
            memcpy(best, D, sizeof(float) * (size_t)nn);
        }
        r->rms_train = tr, r->rms_val = val;
        if (o->verbose)
            fprintf(stderr, "  coupling iteration %2d: train rms %.5f  val rms %.5f  (%.1f s)\n", it + 1, tr, val,
                    now_s() - t0);
        if (worse_val >= 2 || (prev < INFINITY && prev - tr < 1e-3 * prev))
            break;
        prev = tr, halvings = 0, alpha = alpha < 0.5 ? 2 * alpha : 1.0;
        /* Z = (G + lambda I)^-1 S^T R; dD = Z / c (the acceleration is
         * a = e + s M: column i of D couples into oscillator i) */
        fit_ridge(G->data, n, o->ridge > 0 ? o->ridge : 1e-3);
        if ((gs = fit_cholesky_solve(G->data, rhs->data, Z->data, n))) {
            snprintf(err, errlen, "coupling fit: solve failed (%s)", gsl_strerror(gs));
            rc = PATCTL_ERR_NUMERIC;
            goto out;
        }
        memcpy(base, D, sizeof(float) * (size_t)nn);
        for (int i = 0; i < n; i++) {
            double off = 0.0;
            for (int j = 0; j < n; j++) {
                double v = 0.5 * (Z->data[(long)i * n + j] + Z->data[(long)j * n + i]) / c_lin;
                step[(long)i * n + j] = (float)v;
                off += j != i ? v : 0.0;
            }
            if (o->laplacian) /* D = L(sym A): the diagonal follows the off-diagonal */
                step[(long)i * n + i] = (float)-off;
        }
        for (long j = 0; j < nn; j++)
            D[j] = base[j] + (float)alpha * step[j];
    }
    memcpy(D, best, sizeof(float) * (size_t)nn);
    r->epochs_done = it;
    r->seconds = now_s() - t0;
out:
    free(c.y), free(c.Sd), free(c.Rd), osc_tape_free(c.tape);
    if (G) gsl_matrix_free(G);
    if (rhs) gsl_matrix_free(rhs);
    if (Z) gsl_matrix_free(Z);
    free(step), free(base), free(best);
    return rc;
}
