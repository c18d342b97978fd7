/* The delay-based reservoir: the virtual-node map forward and its exact
 * hand-written VJP (the discrete adjoint of the map, along the stored
 * states).  See reservoir.h. */
#include "surrogate/reservoir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

struct reservoir_tape {
    int nodes, window, channels, cap, B;
    long n_theta;
    double *xs;       /* [cap, T*N] every state x_i(k) of the last forward, step-major */
    double *nz;       /* [T*N] loop noise of one row (workspace) */
    double *lam;      /* [T*N] adjoint of one row (workspace) */
    double *gth;      /* [n_theta] parameter gradient in double (workspace) */
    double *gxr;      /* [T*C] input gradient of one row in double (workspace) */
    float *x;         /* [cap, T*C] inputs of the last forward */
    float *theta;     /* [n_theta] parameters of the last forward */
};

reservoir_model reservoir_model_nominal(int nodes, int window, int channels)
{
    reservoir_model m = {
        .nodes = nodes, .window = window, .channels = channels, .out_steps = 1, .out_stride = 1,
        .desync = 1, .nonlin = RES_NL_MG,
        .k = {.eta = 0.9, .p = 2.0, .phi = M_PI / 4, .theta = 1.0, .in_gain = 1.0, .out_gain = 1.0},
    };
    return m;
}

int reservoir_check(const reservoir_model *m, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (m->nodes < 1 || m->nodes > 100000 || m->window < 1 || m->window > 1000000 ||
        m->channels < 1 || m->channels > 100000)
        bad = "nodes 1..100000, window 1..1000000 and channels 1..100000";
    else if ((long)m->nodes * m->window > 20000000L || (long)m->window * m->channels > 20000000L ||
             (long)m->nodes * m->channels > 20000000L)
        bad = "nodes * window, window * channels and nodes * channels <= 2e7";
    else if (m->out_steps < 1 || m->out_stride < 1 ||
             (long)(m->out_steps - 1) * m->out_stride > (long)m->window - 1)
        bad = "out_steps >= 1, out_stride >= 1 and (out_steps - 1) * out_stride < window";
    else if (m->desync < 0 || m->desync > m->nodes)
        bad = "desync 0..nodes";
    else if (m->nonlin != RES_NL_MG && m->nonlin != RES_NL_SIN2)
        bad = "nonlinearity mg or sin2";
    else if (!(m->k.eta >= 0 && m->k.eta <= 100) || !(m->k.p > 0 && m->k.p <= 50) ||
             !isfinite(m->k.phi) || !(m->k.theta > 0 && m->k.theta <= 50) ||
             !isfinite(m->k.in_gain) || !isfinite(m->k.out_gain))
        bad = "eta in 0..100, p in (0, 50], theta in (0, 50], finite phi and gains";
    if (bad) {
        snprintf(err, errlen, "reservoir: expected %s", bad);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

void reservoir_tape_free(reservoir_tape *t)
{
    if (!t)
        return;
    free(t->xs), free(t->nz), free(t->lam), free(t->gth), free(t->gxr), free(t->x), free(t->theta);
    free(t);
}

int reservoir_tape_capacity(const reservoir_tape *t) { return t ? t->cap : 0; }

reservoir_tape *reservoir_tape_alloc(const reservoir_model *m, int cap)
{
    char err[160];
    if (cap <= 0 || reservoir_check(m, err, sizeof(err)))
        return NULL;
    reservoir_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nodes = m->nodes, t->window = m->window, t->channels = m->channels, t->cap = cap;
    t->n_theta = reservoir_n_theta(m);
    size_t tn = (size_t)m->window * (size_t)m->nodes;
    t->xs = malloc(sizeof(double) * tn * (size_t)cap);
    t->nz = malloc(sizeof(double) * tn);
    t->lam = malloc(sizeof(double) * tn);
    t->gth = malloc(sizeof(double) * (size_t)t->n_theta);
    t->gxr = malloc(sizeof(double) * (size_t)reservoir_n_in(m));
    t->x = malloc(sizeof(float) * (size_t)reservoir_n_in(m) * (size_t)cap);
    t->theta = malloc(sizeof(float) * (size_t)t->n_theta);
    if (!t->xs || !t->nz || !t->lam || !t->gth || !t->gxr || !t->x || !t->theta) {
        reservoir_tape_free(t);
        return NULL;
    }
    return t;
}

/* F(z), dF/dz, and the derivative by the shape constant (p or phi) */
static double nonlin(const reservoir_model *m, double z, double *dfdz, double *dfdk)
{
    if (m->nonlin == RES_NL_SIN2) {
        double s = sin(z + m->k.phi), sp = sin(m->k.phi);
        double d = sin(2.0 * (z + m->k.phi));
        *dfdz = d;
        if (dfdk)
            *dfdk = d - sin(2.0 * m->k.phi);
        return s * s - sp * sp;
    }
    double az = fabs(z);
    if (az == 0.0) {
        *dfdz = 1.0;
        if (dfdk)
            *dfdk = 0.0;
        return 0.0;
    }
    double a = pow(az, m->k.p), d = 1.0 + a;
    *dfdz = (1.0 + (1.0 - m->k.p) * a) / (d * d);
    if (dfdk)
        *dfdk = -z * a * log(az) / (d * d);
    return z / d;
}

double reservoir_f(const reservoir_model *m, double z, double *dfdz)
{
    double d;
    double f = nonlin(m, z, &d, NULL);
    if (dfdz)
        *dfdz = d;
    return f;
}

static int same_shape(const reservoir_model *m, const reservoir_tape *t)
{
    return t->nodes == m->nodes && t->window == m->window && t->channels == m->channels;
}

/* the masked drive sum_c M_ic u_c + b_i of node i at step k */
static inline double drive(const float *M, const float *bias, const float *uk, int C, int i)
{
    const float *Mi = M + (long)i * C;
    double s = bias[i];
    for (int c = 0; c < C; c++)
        s += (double)Mi[c] * uk[c];
    return s;
}

int reservoir_forward(const reservoir_model *m, const float *x, const float *theta, int B,
                      float *y, reservoir_tape *t, reservoir_noise_fn noise, void *noise_ctx)
{
    if (!t || B < 0 || B > t->cap || !same_shape(m, t))
        return PATCTL_ERR_ARG;
    int N = m->nodes, T = m->window, C = m->channels, K = m->out_steps, S = m->out_stride;
    long TN = (long)T * N, nout = (long)K * N;
    const float *M = theta, *bias = theta + (long)N * C;
    double G = m->k.in_gain * (double)theta[(long)N * C + N];
    double c = exp(-m->k.theta), ae = (1.0 - c) * m->k.eta;
    for (int b = 0; b < B; b++) {
        double *xs = t->xs + (size_t)b * (size_t)TN;
        const float *u = x + (long)b * T * C;
        if (noise)
            noise(noise_ctx, b, t->nz, TN);
        long lag = (long)N + m->desync; /* the delay tau = (N + D) theta, in slots */
        double left = 0.0, dF;
        for (int k = 0; k < T; k++) {
            const float *uk = u + (long)k * C;
            long s0 = (long)k * N;
            const double *nk = noise ? t->nz + s0 : NULL;
            for (int i = 0; i < N; i++) {
                long s = s0 + i;
                double z = (s >= lag ? xs[s - lag] : 0.0) + G * drive(M, bias, uk, C, i);
                double v = c * left + ae * nonlin(m, z, &dF, NULL);
                if (nk)
                    v += nk[i];
                xs[s] = left = v;
            }
            if (!isfinite(left))
                return PATCTL_ERR_NUMERIC;
        }
        float *yb = y + (long)b * nout;
        for (int j = 0; j < K; j++) {
            const double *xk = xs + (long)(T - 1 - (K - 1 - j) * S) * N;
            for (int i = 0; i < N; i++) {
                if (!isfinite(xk[i]))
                    return PATCTL_ERR_NUMERIC;
                yb[(long)j * N + i] = (float)(m->k.out_gain * xk[i]);
            }
        }
    }
    memcpy(t->x, x, sizeof(float) * (size_t)B * (size_t)T * (size_t)C);
    memcpy(t->theta, theta, sizeof(float) * (size_t)t->n_theta);
    t->B = B;
    return 0;
}

int reservoir_backward(const reservoir_model *m, reservoir_tape *t, const float *gy, float *gx,
                       float *gtheta, reservoir_consts_grad *gk)
{
    if (!t || t->B <= 0 || !same_shape(m, t))
        return PATCTL_ERR_STATE;
    int N = m->nodes, T = m->window, C = m->channels, K = m->out_steps, S = m->out_stride;
    long TN = (long)T * N, nout = (long)K * N, nth = t->n_theta;
    const float *M = t->theta, *bias = t->theta + (long)N * C;
    double g = t->theta[(long)N * C + N], G = m->k.in_gain * g;
    double c = exp(-m->k.theta), ae = (1.0 - c) * m->k.eta;
    double *gM = t->gth, *gb = t->gth + (long)N * C, *gg = gb + N;
    double k_eta = 0, k_shape = 0, k_c = 0, k_in = 0, k_out = 0;
    memset(t->gth, 0, sizeof(double) * (size_t)nth);
    for (int b = 0; b < t->B; b++) {
        const double *xs = t->xs + (size_t)b * (size_t)TN;
        const float *u = t->x + (long)b * T * C;
        const float *gyb = gy + (long)b * nout;
        double *lam = t->lam;
        memset(lam, 0, sizeof(double) * (size_t)TN);
        for (int j = 0; j < K; j++) {
            long s0 = (long)(T - 1 - (K - 1 - j) * S) * N;
            for (int i = 0; i < N; i++) {
                lam[s0 + i] += m->k.out_gain * gyb[(long)j * N + i];
                k_out += (double)gyb[(long)j * N + i] * xs[s0 + i];
            }
        }
        double *gxr = gx ? t->gxr : NULL;
        if (gxr)
            memset(gxr, 0, sizeof(double) * (size_t)T * (size_t)C);
        long lag = (long)N + m->desync;
        for (long s = TN - 1; s >= 0; s--) {
            int k = (int)(s / N), i = (int)(s % N);
            double l = lam[s];
            if (l == 0.0)
                continue; /* nothing flows back from here (e.g. after the last read-out) */
            const float *uk = u + (long)k * C;
            double left = s ? xs[s - 1] : 0.0, zp = s >= lag ? xs[s - lag] : 0.0;
            double dr = drive(M, bias, uk, C, i), dF, dk;
            double F = nonlin(m, zp + G * dr, &dF, gk ? &dk : NULL);
            if (s)
                lam[s - 1] += c * l;
            double gz = l * ae * dF;
            if (s >= lag)
                lam[s - lag] += gz;
            if (gk) {
                k_eta += l * (1.0 - c) * F;
                k_shape += l * ae * dk;
                k_c += l * (left - m->k.eta * F);
                k_in += gz * g * dr;
            }
            double gd = G * gz;
            const float *Mi = M + (long)i * C;
            if (gxr) {
                double *gxk = gxr + (long)k * C;
                for (int cc = 0; cc < C; cc++)
                    gxk[cc] += gd * Mi[cc];
            }
            double *gMi = gM + (long)i * C;
            for (int cc = 0; cc < C; cc++)
                gMi[cc] += gd * uk[cc];
            gb[i] += gd;
            gg[0] += m->k.in_gain * dr * gz;
        }
        if (gxr) {
            float *gxb = gx + (long)b * T * C;
            for (long j = 0; j < (long)T * C; j++)
                gxb[j] += (float)gxr[j];
        }
    }
    if (gtheta)
        for (long j = 0; j < nth; j++)
            gtheta[j] += (float)t->gth[j];
    if (gk) {
        gk->eta += k_eta;
        if (m->nonlin == RES_NL_SIN2)
            gk->phi += k_shape;
        else
            gk->p += k_shape;
        gk->theta += -c * k_c; /* dc/dtheta = -c */
        gk->in_gain += k_in;
        gk->out_gain += k_out;
    }
    return 0;
}
