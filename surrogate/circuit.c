/* The analog RLC + diode circuit: RK4 forward and its exact hand-written
 * VJP (discrete adjoint of the RK4 steps).  See circuit.h. */
#include "surrogate/circuit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"

struct circuit_tape {
    int n_in, sps, substeps, cap, B;
    double *z;          /* [cap, n_in*substeps, 2] state (i, v) at the start of every step */
    double *vs;         /* [cap, n_out] sampled capacitor voltage (before the ADC gain) */
    float *x;           /* [cap, n_in] inputs of the last forward */
    float *theta;       /* [2 n_in] parameters of the last forward */
};

circuit_model circuit_model_nominal(int n_in, int sps)
{
    circuit_model m = {
        .n_in = n_in, .sps = sps, .substeps = 10, .t_slot = 10e-6, .nvt = 0.05,
        .k = {.r = 50.0, .l = 1e-3, .c = 100e-9, .von = 0.5, .ron = 20.0,
              .in_gain = 1.0, .out_gain = 1.0, .out_offset = 0.0},
    };
    return m;
}

int circuit_check(const circuit_model *m, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (m->n_in < 1 || m->sps < 1 || m->substeps < 1 || m->substeps % m->sps)
        bad = "n_in >= 1, sps >= 1 and substeps a positive multiple of sps";
    else if ((long)m->n_in * m->substeps > 10000000L)
        bad = "n_in * substeps <= 1e7";
    else if (!(m->t_slot > 0) || !(m->nvt > 0) || !(m->k.r >= 0) || !(m->k.l > 0) ||
             !(m->k.c > 0) || !(m->k.ron > 0) || !isfinite(m->k.von) || !isfinite(m->k.in_gain) ||
             !isfinite(m->k.out_gain) || !isfinite(m->k.out_offset))
        bad = "t_slot, nVt, L, C, R_on > 0, R >= 0 and finite calibration";
    if (bad) {
        snprintf(err, errlen, "circuit: expected %s", bad);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

void circuit_tape_free(circuit_tape *t)
{
    if (!t)
        return;
    free(t->z), free(t->vs), free(t->x), free(t->theta);
    free(t);
}

int circuit_tape_capacity(const circuit_tape *t) { return t ? t->cap : 0; }

circuit_tape *circuit_tape_alloc(const circuit_model *m, int cap)
{
    char err[160];
    if (cap <= 0 || circuit_check(m, err, sizeof(err)))
        return NULL;
    circuit_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->n_in = m->n_in, t->sps = m->sps, t->substeps = m->substeps, t->cap = cap;
    size_t steps = (size_t)m->n_in * (size_t)m->substeps;
    t->z = malloc(sizeof(double) * 2 * steps * (size_t)cap);
    t->vs = malloc(sizeof(double) * (size_t)circuit_n_out(m) * (size_t)cap);
    t->x = malloc(sizeof(float) * (size_t)m->n_in * (size_t)cap);
    t->theta = malloc(sizeof(float) * 2 * (size_t)m->n_in);
    if (!t->z || !t->vs || !t->x || !t->theta) {
        circuit_tape_free(t);
        return NULL;
    }
    return t;
}

static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }
static double sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* dz/dt = f(z; u) into f[2] */
static void rhs(const circuit_model *m, const double *z, double u, double *f)
{
    const circuit_consts *k = &m->k;
    double i = z[0], v = z[1];
    double id = (m->nvt / k->ron) * (softplus((v - k->von) / m->nvt) - softplus((-v - k->von) / m->nvt));
    f[0] = (u - k->r * i - v) / k->l;
    f[1] = (i - id) / k->c;
}

/* Cotangent of one rhs evaluation: given lk = dLoss/df at state z and drive
 * u, ADD J^T lk to lz, df/du^T lk to *lu and the constants' part to gk. */
static void rhs_vjp(const circuit_model *m, const double *z, double u, const double *lk,
                    double *lz, double *lu, double *gk)
{
    const circuit_consts *k = &m->k;
    double i = z[0], v = z[1];
    double a = (v - k->von) / m->nvt, b = (-v - k->von) / m->nvt;
    double id = (m->nvt / k->ron) * (softplus(a) - softplus(b));
    double sa = sigmoid(a), sb = sigmoid(b);
    double did_dv = (sa + sb) / k->ron;
    double f0 = (u - k->r * i - v) / k->l, f1 = (i - id) / k->c;
    lz[0] += -k->r / k->l * lk[0] + lk[1] / k->c;
    lz[1] += -lk[0] / k->l - did_dv / k->c * lk[1];
    *lu += lk[0] / k->l;
    if (gk) {
        gk[0] += -i / k->l * lk[0];                    /* r */
        gk[1] += -f0 / k->l * lk[0];                   /* l */
        gk[2] += -f1 / k->c * lk[1];                   /* c */
        gk[3] += -((sb - sa) / k->ron) / k->c * lk[1]; /* von: dI_d/dV_on = (sb - sa)/R_on */
        gk[4] += id / (k->ron * k->c) * lk[1];         /* ron: dI_d/dR_on = -I_d/R_on */
    }
}

int circuit_forward(const circuit_model *m, const float *x, const float *theta, int B,
                    float *y, circuit_tape *t)
{
    if (!t || B < 0 || B > t->cap || t->n_in != m->n_in || t->sps != m->sps ||
        t->substeps != m->substeps)
        return PATCTL_ERR_ARG;
    int n = m->n_in, S = m->substeps, per = S / m->sps, n_out = circuit_n_out(m);
    double h = m->t_slot / S;
    const float *g = theta, *bias = theta + n;
    for (int b = 0; b < B; b++) {
        double z[2] = {0.0, 0.0}, k1[2], k2[2], k3[2], k4[2], zz[2];
        double *zt = t->z + (size_t)b * 2 * (size_t)n * (size_t)S;
        double *vs = t->vs + (size_t)b * (size_t)n_out;
        for (int s = 0; s < n; s++) {
            double u = m->k.in_gain * ((double)g[s] * x[(long)b * n + s] + (double)bias[s]);
            for (int st = 0; st < S; st++) {
                double *zs = zt + 2 * ((size_t)s * S + st);
                zs[0] = z[0], zs[1] = z[1];
                rhs(m, z, u, k1);
                zz[0] = z[0] + 0.5 * h * k1[0], zz[1] = z[1] + 0.5 * h * k1[1];
                rhs(m, zz, u, k2);
                zz[0] = z[0] + 0.5 * h * k2[0], zz[1] = z[1] + 0.5 * h * k2[1];
                rhs(m, zz, u, k3);
                zz[0] = z[0] + h * k3[0], zz[1] = z[1] + h * k3[1];
                rhs(m, zz, u, k4);
                z[0] += h / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]);
                z[1] += h / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]);
                if ((st + 1) % per == 0) {
                    int j = s * m->sps + (st + 1) / per - 1;
                    vs[j] = z[1];
                    y[(long)b * n_out + j] = (float)(m->k.out_gain * z[1] + m->k.out_offset);
                }
            }
            if (!isfinite(z[0]) || !isfinite(z[1]))
                return PATCTL_ERR_NUMERIC;
        }
    }
    memcpy(t->x, x, sizeof(float) * (size_t)B * (size_t)n);
    memcpy(t->theta, theta, sizeof(float) * 2 * (size_t)n);
    t->B = B;
    return 0;
}

int circuit_backward(const circuit_model *m, circuit_tape *t, const float *gy, float *gx,
                     float *gtheta, circuit_consts_grad *gk)
{
    if (!t || t->B <= 0 || t->n_in != m->n_in || t->sps != m->sps || t->substeps != m->substeps)
        return PATCTL_ERR_STATE;
    int n = m->n_in, S = m->substeps, per = S / m->sps, n_out = circuit_n_out(m);
    double h = m->t_slot / S;
    const float *g = t->theta, *bias = t->theta + n;
    double gc[5] = {0, 0, 0, 0, 0}, g_ain = 0, g_aout = 0, g_bout = 0;
    double *gcp = gk ? gc : NULL;
    for (int b = 0; b < t->B; b++) {
        const double *zt = t->z + (size_t)b * 2 * (size_t)n * (size_t)S;
        const double *vs = t->vs + (size_t)b * (size_t)n_out;
        const float *gyb = gy + (long)b * n_out;
        const float *xb = t->x + (long)b * n;
        for (int j = 0; j < n_out; j++) {
            g_aout += (double)gyb[j] * vs[j];
            g_bout += gyb[j];
        }
        double lam[2] = {0.0, 0.0};
        for (int s = n - 1; s >= 0; s--) {
            double pre = (double)g[s] * xb[s] + (double)bias[s];
            double u = m->k.in_gain * pre, lu = 0.0;
            for (int st = S - 1; st >= 0; st--) {
                if ((st + 1) % per == 0)
                    lam[1] += m->k.out_gain * gyb[s * m->sps + (st + 1) / per - 1];
                const double *z = zt + 2 * ((size_t)s * S + st);
                double k1[2], k2[2], k3[2], z2[2], z3[2], z4[2];
                rhs(m, z, u, k1);
                z2[0] = z[0] + 0.5 * h * k1[0], z2[1] = z[1] + 0.5 * h * k1[1];
                rhs(m, z2, u, k2);
                z3[0] = z[0] + 0.5 * h * k2[0], z3[1] = z[1] + 0.5 * h * k2[1];
                rhs(m, z3, u, k3);
                z4[0] = z[0] + h * k3[0], z4[1] = z[1] + h * k3[1];
                double l1[2], l2[2], l3[2], l4[2], lz[2] = {lam[0], lam[1]}, lt[2];
                for (int c = 0; c < 2; c++) {
                    l1[c] = h / 6.0 * lam[c];
                    l2[c] = h / 3.0 * lam[c];
                    l3[c] = h / 3.0 * lam[c];
                    l4[c] = h / 6.0 * lam[c];
                }
                /* stage 4 at z4 = z + h k3 */
                lt[0] = lt[1] = 0.0;
                rhs_vjp(m, z4, u, l4, lt, &lu, gcp);
                for (int c = 0; c < 2; c++)
                    lz[c] += lt[c], l3[c] += h * lt[c];
                /* stage 3 at z3 = z + h/2 k2 */
                lt[0] = lt[1] = 0.0;
                rhs_vjp(m, z3, u, l3, lt, &lu, gcp);
                for (int c = 0; c < 2; c++)
                    lz[c] += lt[c], l2[c] += 0.5 * h * lt[c];
                /* stage 2 at z2 = z + h/2 k1 */
                lt[0] = lt[1] = 0.0;
                rhs_vjp(m, z2, u, l2, lt, &lu, gcp);
                for (int c = 0; c < 2; c++)
                    lz[c] += lt[c], l1[c] += 0.5 * h * lt[c];
                /* stage 1 at z */
                rhs_vjp(m, z, u, l1, lz, &lu, gcp);
                lam[0] = lz[0], lam[1] = lz[1];
            }
            /* u = a_in (g x + b) */
            g_ain += lu * pre;
            if (gx)
                gx[(long)b * n + s] += (float)(lu * m->k.in_gain * g[s]);
            if (gtheta) {
                gtheta[s] += (float)(lu * m->k.in_gain * xb[s]);
                gtheta[n + s] += (float)(lu * m->k.in_gain);
            }
        }
    }
    if (gk) {
        gk->r += gc[0], gk->l += gc[1], gk->c += gc[2], gk->von += gc[3], gk->ron += gc[4];
        gk->in_gain += g_ain;
        gk->out_gain += g_aout;
        gk->out_offset += g_bout;
    }
    return 0;
}
