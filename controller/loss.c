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
