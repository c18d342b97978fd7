/* Broadband SHG: forward through GSL FFTs and its exact hand-written VJP.
 * See shg.h for the equations.  Complex arrays are GSL packed arrays
 * (re, im interleaved), double precision. */
#include "surrogate/shg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_fft_complex.h>

#include "patctl/error.h"

struct shg_tape {
    shg_model geo;      /* geometry it was built for (constants unused) */
    int P, L, N;        /* pixels, fundamental bins, FFT length */
    int m_lo, M;        /* spectrometer coverage: SHG bins m_lo .. m_lo+M-1 */
    int cap, B;         /* capacity; rows of the last forward (0 = none) */
    double P0;          /* normalisation (see shg.h) */
    int *pix_par;       /* [P] 1 = parameter pixel, 0 = input pixel */
    int *pix_idx;       /* [P] index into x row or phi */
    int *mpix;          /* [M] spectrometer pixel of each covered SHG bin */
    double *amp, *v;    /* [L] amplitude A_k and band coordinate v_k */
    double *u;          /* [M] spectrometer coordinate u_m */
    double *ppix;       /* [P] pixel phases of one sample */
    double *E, *e, *S, *W; /* [2N] spectrum, time field, SHG spectrum, work */
    double *gk;         /* [L] gradient of phi_k */
    float *x;           /* [cap, n_in] inputs of the last forward */
    float *phi;         /* [n_par] parameters of the last forward */
};

shg_model shg_model_nominal(int n_in, int n_par, int bins, int n_out)
{
    shg_model m = {
        .n_in = n_in, .n_par = n_par, .bins = bins, .n_out = n_out,
        .bandwidth = 0.6, .span = 0.7, .phase_scale = 1.0,
        .k = {.disp2 = 0, .disp3 = 0, .resp1 = 0, .resp2 = 0, .gain = 1},
        .resp_extra = NULL,
    };
    return m;
}

static void coverage(const shg_model *m, int *m_lo, int *M)
{
    int L = (m->n_in + m->n_par) * m->bins;
    double c = L - 1, hw = m->span * (L - 1);
    int lo = (int)ceil(c - hw - 1e-9), hi = (int)floor(c + hw + 1e-9);
    *m_lo = lo;
    *M = hi - lo + 1;
}

int shg_check(const shg_model *m, char *err, size_t errlen)
{
    long P = (long)m->n_in + m->n_par;
    const char *bad = NULL;
    if (m->n_in < 1 || m->n_par < 0 || m->bins < 1 || m->n_out < 1)
        bad = "n_in >= 1, n_par >= 0, bins >= 1 and n_out >= 1";
    else if (P * m->bins > (1L << 20))
        bad = "(n_in + n_par) * bins <= 2^20";
    else if (!(m->bandwidth > 0) || !(m->span > 0 && m->span <= 1) || !isfinite(m->phase_scale))
        bad = "bandwidth > 0, span in (0, 1] and a finite phase_scale";
    if (!bad) {
        int lo, M;
        coverage(m, &lo, &M);
        if (M < m->n_out)
            bad = "at least one SHG frequency bin per spectrometer pixel (raise bins or span, "
                  "or lower n_out)";
    }
    if (bad) {
        snprintf(err, errlen, "SHG geometry: expected %s", bad);
        return PATCTL_ERR_ARG;
    }
    return 0;
}

int shg_spec_bins(const shg_model *m)
{
    int lo, M;
    coverage(m, &lo, &M);
    return M;
}

int shg_fft_len(const shg_model *m)
{
    int L = (m->n_in + m->n_par) * m->bins, N = 1;
    while (N < 2 * L)
        N *= 2;
    return N;
}

void shg_tape_free(shg_tape *t)
{
    if (!t)
        return;
    free(t->pix_par), free(t->pix_idx), free(t->mpix);
    free(t->amp), free(t->v), free(t->u), free(t->ppix);
    free(t->E), free(t->e), free(t->S), free(t->W), free(t->gk);
    free(t->x), free(t->phi);
    free(t);
}

int shg_tape_capacity(const shg_tape *t) { return t ? t->cap : 0; }

static int same_geometry(const shg_model *a, const shg_model *b)
{
    return a->n_in == b->n_in && a->n_par == b->n_par && a->bins == b->bins &&
           a->n_out == b->n_out && a->bandwidth == b->bandwidth && a->span == b->span &&
           a->phase_scale == b->phase_scale;
}

/* E, e, S of one sample from the pixel phases in t->ppix and constants k. */
static void field(shg_tape *t, const shg_consts *k)
{
    int L = t->L, N = t->N, bins = t->geo.bins;
    memset(t->E, 0, sizeof(double) * 2 * (size_t)N);
    for (int i = 0; i < L; i++) {
        double v = t->v[i];
        double ph = t->ppix[i / bins] + k->disp2 * v * v + k->disp3 * v * v * v;
        t->E[2 * i] = t->amp[i] * cos(ph);
        t->E[2 * i + 1] = t->amp[i] * sin(ph);
    }
    memcpy(t->e, t->E, sizeof(double) * 2 * (size_t)N);
    gsl_fft_complex_radix2_inverse(t->e, 1, (size_t)N);
    for (int i = 0; i < N; i++) {
        double a = t->e[2 * i], b = t->e[2 * i + 1];
        t->S[2 * i] = a * a - b * b;
        t->S[2 * i + 1] = 2.0 * a * b;
    }
    gsl_fft_complex_radix2_forward(t->S, 1, (size_t)N);
}

static double response(const shg_tape *t, const shg_consts *k, const double *extra, int i)
{
    double u = t->u[i];
    return 1.0 + k->resp1 * u + k->resp2 * u * u + (extra ? extra[i] : 0.0);
}

shg_tape *shg_tape_alloc(const shg_model *m, int cap)
{
    char err[160];
    if (cap <= 0 || shg_check(m, err, sizeof(err)))
        return NULL;
    shg_tape *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->geo = *m;
    t->P = m->n_in + m->n_par;
    t->L = t->P * m->bins;
    t->N = shg_fft_len(m);
    coverage(m, &t->m_lo, &t->M);
    t->cap = cap;
    size_t N2 = 2 * (size_t)t->N;
    t->pix_par = malloc(sizeof(int) * (size_t)t->P);
    t->pix_idx = malloc(sizeof(int) * (size_t)t->P);
    t->mpix = malloc(sizeof(int) * (size_t)t->M);
    t->amp = malloc(sizeof(double) * (size_t)t->L);
    t->v = malloc(sizeof(double) * (size_t)t->L);
    t->u = malloc(sizeof(double) * (size_t)t->M);
    t->ppix = malloc(sizeof(double) * (size_t)t->P);
    t->E = malloc(sizeof(double) * N2);
    t->e = malloc(sizeof(double) * N2);
    t->S = malloc(sizeof(double) * N2);
    t->W = malloc(sizeof(double) * N2);
    t->gk = malloc(sizeof(double) * (size_t)t->L);
    t->x = malloc(sizeof(float) * (size_t)cap * (size_t)m->n_in);
    t->phi = malloc(sizeof(float) * (size_t)(m->n_par + 1));
    if (!t->pix_par || !t->pix_idx || !t->mpix || !t->amp || !t->v || !t->u || !t->ppix ||
        !t->E || !t->e || !t->S || !t->W || !t->gk || !t->x || !t->phi) {
        shg_tape_free(t);
        return NULL;
    }
    /* interleave parameter pixels evenly among the input pixels */
    int ni = 0, np = 0;
    for (int p = 0; p < t->P; p++) {
        long a = ((long)(p + 1) * m->n_par) / t->P, b = ((long)p * m->n_par) / t->P;
        t->pix_par[p] = a > b;
        t->pix_idx[p] = t->pix_par[p] ? np++ : ni++;
    }
    for (int i = 0; i < t->L; i++) {
        t->v[i] = (2.0 * i + 1.0) / t->L - 1.0;
        t->amp[i] = exp(-t->v[i] * t->v[i] / (2.0 * m->bandwidth * m->bandwidth));
    }
    for (int i = 0; i < t->M; i++) {
        t->mpix[i] = (int)(((long)i * m->n_out) / t->M);
        t->u[i] = t->L > 1 ? (double)(t->m_lo + i - (t->L - 1)) / (t->L - 1) : 0.0;
    }
    /* P0: the largest pixel of the transform-limited pulse, nominal constants */
    shg_consts nom = {0, 0, 0, 0, 1};
    memset(t->ppix, 0, sizeof(double) * (size_t)t->P);
    field(t, &nom);
    double *acc = t->W, best = 0;
    memset(acc, 0, sizeof(double) * (size_t)m->n_out);
    for (int i = 0; i < t->M; i++) {
        const double *s = t->S + 2 * (t->m_lo + i);
        acc[t->mpix[i]] += s[0] * s[0] + s[1] * s[1];
    }
    for (int j = 0; j < m->n_out; j++)
        best = fmax(best, acc[j]);
    t->P0 = best > 0 ? best : 1.0;
    return t;
}

static void pixel_phases(shg_tape *t, const float *xrow, const float *phi)
{
    double sc = t->geo.phase_scale;
    for (int p = 0; p < t->P; p++)
        t->ppix[p] = sc * (t->pix_par[p] ? (double)phi[t->pix_idx[p]] : (double)xrow[t->pix_idx[p]]);
}

int shg_forward(const shg_model *m, const float *x, const float *phi, int B, float *y,
                shg_tape *t)
{
    if (!t || B < 0 || B > t->cap || !same_geometry(m, &t->geo))
        return PATCTL_ERR_ARG;
    int n_in = m->n_in, n_out = m->n_out;
    double scale = m->k.gain / t->P0;
    double *acc = t->W;
    for (int b = 0; b < B; b++) {
        pixel_phases(t, x + (long)b * n_in, phi);
        field(t, &m->k);
        memset(acc, 0, sizeof(double) * (size_t)n_out);
        for (int i = 0; i < t->M; i++) {
            const double *s = t->S + 2 * (t->m_lo + i);
            acc[t->mpix[i]] += response(t, &m->k, m->resp_extra, i) * (s[0] * s[0] + s[1] * s[1]);
        }
        for (int j = 0; j < n_out; j++)
            y[(long)b * n_out + j] = (float)(scale * acc[j]);
    }
    memcpy(t->x, x, sizeof(float) * (size_t)B * (size_t)n_in);
    if (m->n_par)
        memcpy(t->phi, phi, sizeof(float) * (size_t)m->n_par);
    t->B = B;
    return 0;
}

int shg_backward(const shg_model *m, shg_tape *t, const float *gy, float *gx, float *gphi,
                 shg_consts_grad *gk)
{
    if (!t || t->B <= 0 || !same_geometry(m, &t->geo))
        return PATCTL_ERR_STATE;
    int n_in = m->n_in, n_out = m->n_out, N = t->N, L = t->L, bins = m->bins;
    double scale = m->k.gain / t->P0;
    double g_d2 = 0, g_d3 = 0, g_r1 = 0, g_r2 = 0, g_g = 0;
    for (int b = 0; b < t->B; b++) {
        const float *gyb = gy + (long)b * n_out;
        pixel_phases(t, t->x + (long)b * n_in, t->phi);
        field(t, &m->k); /* recompute E, e, S of this sample */
        /* I_m = |S_m|^2 -> cotangent of S: 2 gI S (outside the coverage 0) */
        double *G = t->W;
        memset(G, 0, sizeof(double) * 2 * (size_t)N);
        for (int i = 0; i < t->M; i++) {
            int mm = t->m_lo + i;
            const double *s = t->S + 2 * mm;
            double I = s[0] * s[0] + s[1] * s[1], gyj = gyb[t->mpix[i]];
            double R = response(t, &m->k, m->resp_extra, i), u = t->u[i];
            double gI = scale * R * gyj;
            G[2 * mm] = 2.0 * gI * s[0];
            G[2 * mm + 1] = 2.0 * gI * s[1];
            g_r1 += scale * gyj * I * u;
            g_r2 += scale * gyj * I * u * u;
            g_g += R * I * gyj / t->P0;
        }
        /* S = FFT(s): cotangent of s = unnormalised inverse DFT */
        gsl_fft_complex_radix2_backward(G, 1, (size_t)N);
        /* s = e^2: cotangent of e = 2 conj(e) gs */
        for (int i = 0; i < N; i++) {
            double er = t->e[2 * i], ei = t->e[2 * i + 1], gr = G[2 * i], gi = G[2 * i + 1];
            G[2 * i] = 2.0 * (er * gr + ei * gi);
            G[2 * i + 1] = 2.0 * (er * gi - ei * gr);
        }
        /* e = IFFT(E) = conj(F) E / N: cotangent of E = F ge / N */
        gsl_fft_complex_radix2_forward(G, 1, (size_t)N);
        /* E = A exp(i phi): g_phi = -Im(conj(gE) E) */
        for (int i = 0; i < L; i++) {
            double gr = G[2 * i] / N, gi = G[2 * i + 1] / N;
            double Er = t->E[2 * i], Ei = t->E[2 * i + 1];
            double gp = gi * Er - gr * Ei;
            double v = t->v[i];
            t->gk[i] = gp;
            g_d2 += gp * v * v;
            g_d3 += gp * v * v * v;
        }
        for (int p = 0; p < t->P; p++) {
            double s = 0;
            for (int i = p * bins; i < (p + 1) * bins; i++)
                s += t->gk[i];
            s *= m->phase_scale;
            if (t->pix_par[p]) {
                if (gphi)
                    gphi[t->pix_idx[p]] += (float)s;
            } else if (gx) {
                gx[(long)b * n_in + t->pix_idx[p]] += (float)s;
            }
        }
    }
    if (gk) {
        gk->disp2 += g_d2;
        gk->disp3 += g_d3;
        gk->resp1 += g_r1;
        gk->resp2 += g_r2;
        gk->gain += g_g;
    }
    return 0;
}
