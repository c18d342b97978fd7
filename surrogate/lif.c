/* The LIF chip: input coding, the membrane recurrence, backprop through time
 * with a surrogate spike derivative, and the ST-RSBP spike-train level
 * gradient.  See lif.h.
 *
 * Both backwards share one structure: a cotangent G[b, t, i] of the input
 * current I_i[t] = sum_j W_ij s_j[t] + b_i (times nothing else), from which
 *   gW += G^T S        (one GEMM over all B*T rows)
 *   gb += sum_t G
 *   gS  = G W          -> gx through the input coding's derivative.
 * BPTT computes G exactly (soft) or with the surrogate derivative (hard);
 * ST-RSBP sets G[b, t, i] = gy_bi [y_bi > 0] K_bi[t] / theta_i with the
 * spike-train level kernel K (see lif_backward_strsbp). */
#include "surrogate/lif.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "surrogate/blas.h"

struct lif_tape {
    int n_in, n_out, steps, cap, B;
    lif_spike spike;      /* of the last forward */
    float *s_in;          /* [cap, T, n_in] input spike trains as used */
    double *u;            /* [cap, T, n_out] membrane before firing */
    double *s;            /* [cap, T, n_out] output spikes (0/1 or soft) */
    float *x;             /* [cap, n_in] inputs of the last forward */
    float *theta;         /* [n_out*(n_in+1)] parameters of the last forward */
    float *cur;           /* [cap*T, n_out] scratch: currents, then cotangents G */
    float *gs;            /* [cap*T, n_in] scratch: cotangent of the input spikes */
};

lif_model lif_model_nominal(int n_in, int n_out)
{
    lif_model m = {
        .n_in = n_in, .n_out = n_out, .steps = 32, .coding = LIF_RATE, .p_max = 0.5,
        .lat_cutoff = 0.05, .theta = 1.0, .leak = 0.9, .gain = 0.25, .spike = LIF_HARD,
        .sg = LIF_SG_SIGMOID, .beta = 4.0, .theta_i = NULL, .leak_i = NULL, .gain_i = NULL,
    };
    return m;
}

int lif_check(const lif_model *m, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (m->n_in < 1 || m->n_out < 1 || m->steps < 1)
        bad = "n_in, n_out, steps >= 1";
    else if ((long)m->n_in * m->n_out > 100000000L || m->steps > 100000 ||
             (long)m->steps * (m->n_in + m->n_out) > 100000000L)
        bad = "n_in * n_out <= 1e8 and steps * (n_in + n_out) <= 1e8";
    else if (m->coding != LIF_RATE && m->coding != LIF_LATENCY)
        bad = "coding rate or latency";
    else if (!(m->p_max >= 0 && m->p_max <= 1) || !(m->lat_cutoff >= 0 && m->lat_cutoff <= 1))
        bad = "p_max and lat_cutoff in [0, 1]";
    else if (!(m->theta > 0) || !isfinite(m->theta) || !(m->leak >= 0 && m->leak <= 1) ||
             !isfinite(m->gain))
        bad = "theta > 0, leak in [0, 1], finite gain";
    else if (!(m->beta > 0) || !isfinite(m->beta) || (m->spike != LIF_HARD && m->spike != LIF_SOFT) ||
             (m->sg != LIF_SG_SIGMOID && m->sg != LIF_SG_FAST))
        bad = "beta > 0, spike hard or soft, sg sigmoid or fast";
    if (bad) {
        snprintf(err, errlen, "lif: expected %s", bad);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

void lif_tape_free(lif_tape *t)
{
    if (!t)
        return;
    free(t->s_in), free(t->u), free(t->s), free(t->x), free(t->theta), free(t->cur), free(t->gs);
    free(t);
}

int lif_tape_capacity(const lif_tape *t) { return t ? t->cap : 0; }

lif_tape *lif_tape_alloc(const lif_model *m, int cap)
{
    char err[160];
    if (cap <= 0 || lif_check(m, err, sizeof(err)))
        return NULL;
    lif_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->n_in = m->n_in, t->n_out = m->n_out, t->steps = m->steps, t->cap = cap;
    size_t rows = (size_t)cap * (size_t)m->steps;
    t->s_in = malloc(sizeof(float) * rows * (size_t)m->n_in);
    t->u = malloc(sizeof(double) * rows * (size_t)m->n_out);
    t->s = malloc(sizeof(double) * rows * (size_t)m->n_out);
    t->x = malloc(sizeof(float) * (size_t)cap * (size_t)m->n_in);
    t->theta = malloc(sizeof(float) * (size_t)lif_n_theta(m));
    t->cur = malloc(sizeof(float) * rows * (size_t)m->n_out);
    t->gs = malloc(sizeof(float) * rows * (size_t)m->n_in);
    if (!t->s_in || !t->u || !t->s || !t->x || !t->theta || !t->cur || !t->gs) {
        lif_tape_free(t);
        return NULL;
    }
    return t;
}

static int same_shape(const lif_model *m, const lif_tape *t)
{
    return t && t->n_in == m->n_in && t->n_out == m->n_out && t->steps == m->steps;
}

static double sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

static inline double nth(const lif_model *m, int i) { return m->theta_i ? m->theta_i[i] : m->theta; }
static inline double nleak(const lif_model *m, int i) { return m->leak_i ? m->leak_i[i] : m->leak; }
static inline double ngain(const lif_model *m, int i) { return m->gain_i ? m->gain_i[i] : m->gain; }

static inline double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* s_in [B, T, n_in] from x [B, n_in] */
static void encode(const lif_model *m, const float *x, int B, const float *u_in, float *s_in)
{
    int T = m->steps, n = m->n_in;
    for (int b = 0; b < B; b++) {
        float *sb = s_in + (size_t)b * T * n;
        const float *xb = x + (size_t)b * n;
        if (m->coding == LIF_RATE) {
            for (int t = 0; t < T; t++) {
                const float *ub = u_in ? u_in + ((size_t)b * T + t) * n : NULL;
                for (int j = 0; j < n; j++) {
                    double p = clamp01(xb[j]) * m->p_max;
                    sb[(size_t)t * n + j] = ub ? (ub[j] < p ? 1.0f : 0.0f) : (float)p;
                }
            }
            continue;
        }
        memset(sb, 0, sizeof(float) * (size_t)T * n);
        for (int j = 0; j < n; j++) {
            double xj = clamp01(xb[j]);
            if (xj < m->lat_cutoff)
                continue;
            double tau = (1.0 - xj) * (T - 1);
            if (m->spike == LIF_HARD) {
                int k = (int)floor(tau + 0.5);
                sb[(size_t)(k < T ? k : T - 1) * n + j] = 1.0f;
            } else {
                int k = (int)floor(tau);
                if (k > T - 1)
                    k = T - 1;
                double f = tau - k;
                sb[(size_t)k * n + j] += (float)(1.0 - f);
                if (k + 1 < T)
                    sb[(size_t)(k + 1) * n + j] += (float)f;
            }
        }
    }
}

/* gx [B, n_in] += (ds/dx)^T gs for gs [B, T, n_in] */
static void encode_vjp(const lif_model *m, const float *x, int B, const float *gs, float *gx)
{
    int T = m->steps, n = m->n_in;
    for (int b = 0; b < B; b++) {
        const float *gb = gs + (size_t)b * T * n;
        const float *xb = x + (size_t)b * n;
        float *gxb = gx + (size_t)b * n;
        if (m->coding == LIF_RATE) {
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int t = 0; t < T; t++)
                    acc += gb[(size_t)t * n + j];
                gxb[j] += (float)(m->p_max * acc);
            }
            continue;
        }
        for (int j = 0; j < n; j++) {
            double xj = clamp01(xb[j]);
            if (xj < m->lat_cutoff)
                continue;
            double tau = (1.0 - xj) * (T - 1);
            int k = (int)floor(tau);
            if (k > T - 1)
                k = T - 1;
            double d = gb[(size_t)k * n + j] - (k + 1 < T ? gb[(size_t)(k + 1) * n + j] : 0.0);
            gxb[j] += (float)((T - 1) * d);
        }
    }
}

int lif_forward(const lif_model *m, const float *x, const float *theta, int B, float *y,
                lif_tape *t, const lif_noise *nz)
{
    if (!same_shape(m, t) || B < 0 || B > t->cap)
        return PATCTL_ERR_ARG;
    int T = m->steps, ni = m->n_in, no = m->n_out;
    const float *W = theta, *bias = theta + (size_t)no * ni;
    const float *u_in = nz ? nz->u_in : NULL, *n_mem = nz ? nz->n_mem : NULL;
    t->B = B;
    t->spike = m->spike;
    memcpy(t->theta, theta, sizeof(float) * (size_t)lif_n_theta(m));
    if (B == 0)
        return 0;
    memcpy(t->x, x, sizeof(float) * (size_t)B * ni);
    encode(m, x, B, m->coding == LIF_RATE ? u_in : NULL, t->s_in);
    /* I [B*T, n_out] = S [B*T, n_in] W^T */
    blas_sgemm(0, 1, B * T, no, ni, 1.0f, t->s_in, W, 0.0f, t->cur);
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < no; i++) {
            double th = nth(m, i), lk = nleak(m, i), g = ngain(m, i), v = 0.0, cnt = 0.0;
            for (int tt = 0; tt < T; tt++) {
                size_t k = ((size_t)b * T + tt) * no + i;
                double u = lk * v + g * ((double)t->cur[k] + bias[i]);
                if (n_mem)
                    u += n_mem[k];
                double s = m->spike == LIF_HARD ? (u >= th ? 1.0 : 0.0) : sigmoid(m->beta * (u - th));
                t->u[k] = u;
                t->s[k] = s;
                v = u * (1.0 - s);
                cnt += s;
            }
            y[(size_t)b * no + i] = (float)cnt;
        }
    }
    return 0;
}

/* from the cotangents of the currents in t->cur: gtheta and gx */
static void current_vjp(const lif_model *m, lif_tape *t, float *gx, float *gtheta)
{
    int B = t->B, T = m->steps, ni = m->n_in, no = m->n_out;
    const float *W = t->theta;
    if (gtheta) {
        /* gW [n_out, n_in] += G^T [n_out, B*T] S [B*T, n_in] */
        blas_sgemm(1, 0, no, ni, B * T, 1.0f, t->cur, t->s_in, 1.0f, gtheta);
        float *gb = gtheta + (size_t)no * ni;
        for (int i = 0; i < no; i++) {
            double acc = 0;
            for (long r = 0; r < (long)B * T; r++)
                acc += t->cur[(size_t)r * no + i];
            gb[i] += (float)acc;
        }
    }
    if (gx) {
        /* gS [B*T, n_in] = G [B*T, n_out] W [n_out, n_in] */
        blas_sgemm(0, 0, B * T, ni, no, 1.0f, t->cur, W, 0.0f, t->gs);
        encode_vjp(m, t->x, B, t->gs, gx);
    }
}

static inline double spike_deriv(const lif_model *m, lif_spike kind, double z, double s)
{
    if (kind == LIF_SOFT)
        return m->beta * s * (1.0 - s); /* exact: s = sigmoid(beta z) */
    if (m->sg == LIF_SG_FAST) {
        double a = 1.0 + m->beta * fabs(z);
        return 0.5 * m->beta / (a * a);
    }
    double q = sigmoid(m->beta * z);
    return m->beta * q * (1.0 - q);
}

int lif_backward(const lif_model *m, lif_tape *t, const float *gy, float *gx, float *gtheta)
{
    if (!same_shape(m, t) || t->B <= 0)
        return PATCTL_ERR_STATE;
    int B = t->B, T = m->steps, no = m->n_out;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < no; i++) {
            double th = nth(m, i), lk = nleak(m, i), g = ngain(m, i);
            double gyi = gy[(size_t)b * no + i], av = 0.0; /* av = dL/dv[t+1] */
            for (int tt = T - 1; tt >= 0; tt--) {
                size_t k = ((size_t)b * T + tt) * no + i;
                double u = t->u[k], s = t->s[k];
                /* v[t+1] = u (1 - s), y += s */
                double ds = gyi - av * u;
                double du = av * (1.0 - s) + ds * spike_deriv(m, t->spike, u - th, s);
                t->cur[k] = (float)(du * g);
                av = du * lk;
            }
        }
    }
    current_vjp(m, t, gx, gtheta);
    return 0;
}

/* K[t] of neuron i in sample b into t->cur's slots (scaled by c): the
 * effect on the membrane, at neuron i's first spike at or after step t, of
 * a unit input current at step t (0 when it fires no more): gain_i
 * leak_i^(t_f - t).  Returns sum_t K[t] (unscaled). */
static double kernel(const lif_model *m, const lif_tape *t, int b, int i, double c, float *out, int stride)
{
    int T = m->steps, no = m->n_out;
    double lk = nleak(m, i), g = ngain(m, i), kk = 0.0, sum = 0.0;
    for (int tt = T - 1; tt >= 0; tt--) {
        size_t k = ((size_t)b * T + tt) * no + i;
        kk = t->s[k] > 0.5 ? g : kk * lk;
        sum += kk;
        out[(size_t)tt * stride] = (float)(c * kk);
    }
    return sum;
}

/* ST-RSBP for one feed-forward layer (our simplification of Zhang & Li,
 * NeurIPS 2019).  The spike-train level PSP of input train j at neuron i is
 *   e_ij = sum_f sum_{t in (t_{f-1}, t_f]} gain_i leak_i^(t_f - t) s_j[t]
 *        = sum_t K_i[t] s_j[t],
 * the total PSP train j delivered at neuron i's firing times t_f, each
 * counted up to the firing it contributed to (the reset to zero wipes the
 * rest); e_ib the same for the bias current.  With reset to zero,
 *   sum_j W_ij e_ij + b_i e_ib (+ noise) = sum_f u_i[t_f] ~= theta_i y_i,
 * which ST-RSBP turns into the spike-train level rate model y_i ~= a_i /
 * theta_i, a_i = sum_j W_ij e_ij + b_i e_ib, for neurons that fired.  Holding
 * the firing times fixed (the dependence of e on the postsynaptic firing,
 * which the paper also treats, is neglected here):
 *   dy_i/dW_ij = e_ij / theta_i,   dy_i/db_i = e_ib / theta_i,
 *   dy_i/dx_j  = (W_ij / theta_i) de_ij/dx_j,  de_ij/dx_j = sum_t K_i[t] ds_j[t]/dx_j
 * (rate coding: p_max sum_t K_i[t], the paper's e_ij / o_j per presynaptic
 * spike in the nominal model); neurons that did not fire get no gradient.
 * So G[b, t, i] = gy_bi [y_bi > 0] K_bi[t] / theta_i and current_vjp does
 * the rest. */
int lif_backward_strsbp(const lif_model *m, lif_tape *t, const float *gy, float *gx,
                        float *gtheta)
{
    if (!same_shape(m, t) || t->B <= 0)
        return PATCTL_ERR_STATE;
    if (t->spike != LIF_HARD)
        return PATCTL_ERR_ARG;
    int B = t->B, T = m->steps, no = m->n_out;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < no; i++) {
            int fired = 0;
            for (int tt = 0; tt < T && !fired; tt++)
                fired = t->s[((size_t)b * T + tt) * no + i] > 0.5;
            double c = fired ? gy[(size_t)b * no + i] / nth(m, i) : 0.0;
            kernel(m, t, b, i, c, t->cur + (size_t)b * T * no + i, no);
        }
    }
    current_vjp(m, t, gx, gtheta);
    return 0;
}

int lif_tape_spsp(const lif_model *m, const lif_tape *t, int b, float *e, float *eb)
{
    if (!same_shape(m, t) || b < 0 || b >= t->B || t->spike != LIF_HARD)
        return PATCTL_ERR_ARG;
    int T = m->steps, ni = m->n_in, no = m->n_out;
    float *K = malloc(sizeof(float) * (size_t)T * no);
    if (!K)
        return PATCTL_ERR_NOMEM;
    for (int i = 0; i < no; i++) {
        double sum = kernel(m, t, b, i, 1.0, K + i, no);
        if (eb)
            eb[i] = (float)sum;
    }
    /* e [n_out, n_in] = K^T [n_out, T] S_b [T, n_in] */
    if (e)
        blas_sgemm(1, 0, no, ni, T, 1.0f, K, t->s_in + (size_t)b * T * ni, 0.0f, e);
    free(K);
    return 0;
}
