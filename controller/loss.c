#include "controller/loss.h"

#include <math.h>

int argmax(const float *v, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (v[k] > v[best])
            best = k;
    return best;
}

double softmax_xent(const float *logits, const uint8_t *labels, int B, int K,
                    float *dlogits, int *correct)
{
    double total = 0.0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (long)b * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > mx)
                mx = z[k];
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += exp((double)(z[k] - mx));
        double lse = mx + log(sum);
        total += lse - z[labels[b]];
        if (argmax(z, K) == labels[b])
            hits++;
        if (dlogits)
            for (int k = 0; k < K; k++) {
                double p = exp((double)z[k] - lse);
                dlogits[(long)b * K + k] = (float)((p - (k == labels[b])) / B);
            }
    }
    if (correct)
        *correct = hits;
    return total / B;
}

double mse_loss(const float *pred, const float *targets, int B, int K, float *dpred)
{
    double total = 0.0;
    long n = (long)B * K;
    for (long i = 0; i < n; i++) {
        double d = (double)pred[i] - targets[i];
        total += d * d;
        if (dpred)
            dpred[i] = (float)(2.0 * d / (double)n);
    }
    return n ? total / (double)n : 0.0;
}

double task_loss(const float *out, const uint8_t *labels, const float *targets, int B, int K, float *dout,
                 int *correct)
{
    if (targets) {
        if (correct)
            *correct = 0;
        return mse_loss(out, targets, B, K, dout);
    }
    return softmax_xent(out, labels, B, K, dout, correct);
}

void score_batch(const float *z, const uint8_t *y, const float *t, int B, int K, long *hits, double *sse,
                 int conf[10][10])
{
    if (t) {
        double s = 0;
        for (long i = 0; i < (long)B * K; i++)
            s += ((double)z[i] - t[i]) * ((double)z[i] - t[i]);
        *sse += s;
        return;
    }
    for (int b = 0; b < B; b++) {
        int k = argmax(z + (long)b * K, K);
        *hits += (k == y[b]);
        if (y[b] < 10 && k < 10)
            conf[y[b]][k]++;
    }
}

double score_final(long n, int K, long hits, double sse, double t_var, int regression)
{
    if (n <= 0)
        return 0.0;
    if (regression)
        return t_var > 0 ? sqrt(sse / ((double)n * K) / t_var) : NAN;
    return (double)hits / (double)n;
}
