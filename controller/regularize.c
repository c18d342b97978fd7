/* BEAN and pruning over the model's weight matrices (see regularize.h). */
#include "controller/regularize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate/bean.h"

int model_matrices(const model *m, int physical, model_matrix *out, int max)
{
    int n = 0;
    for (int i = 0; i < m->n_layers && n < max; i++) {
        const layer *L = &m->L[i];
        if (L->spec.kind == LAYER_LINEAR) {
            out[n] = (model_matrix){.offset = L->p_off, .rows = L->c_out, .cols = L->c_in, .layer = i};
            snprintf(out[n].name, sizeof(out[n].name), "layer%d.linear.W", i + 1);
            n++;
        } else if (L->spec.kind == LAYER_PHYSICAL && physical) {
            const struct patctl_device_desc *d = &L->dev->desc;
            for (int b = 0; b < d->n_blocks && n < max; b++) {
                const struct patctl_param_block *pb = &d->blocks[b];
                if (pb->rows < 2 || pb->cols < 2)
                    continue;
                out[n] = (model_matrix){.offset = L->p_off + device_block_offset(d, b), .rows = pb->rows,
                                        .cols = pb->cols, .layer = i, .physical = 1,
                                        .symmetric_pairs = strcmp(d->model, "oscillators") == 0 &&
                                                           pb->rows == pb->cols};
                snprintf(out[n].name, sizeof(out[n].name), "%.40s.%.30s", L->dev->name, pb->name);
                n++;
            }
        }
    }
    return n;
}

double model_bean(const model *m, double alpha, int physical, float *grads, int *rc)
{
    *rc = 0;
    if (alpha == 0)
        return 0.0;
    model_matrix mx[2 * CFG_MAX_LAYERS];
    int n = model_matrices(m, physical, mx, 2 * CFG_MAX_LAYERS);
    size_t need = 0;
    for (int k = 0; k < n; k++) {
        size_t s = bean_scratch_floats(mx[k].rows, mx[k].cols);
        if (s > need)
            need = s;
    }
    float *scratch = need ? malloc(sizeof(float) * need) : NULL;
    if (need && !scratch) {
        *rc = PATCTL_ERR_NOMEM;
        return 0.0;
    }
    double R = 0;
    for (int k = 0; k < n; k++) {
        const float *W = m->params + mx[k].offset;
        R += bean_forward(W, mx[k].rows, mx[k].cols, alpha, scratch);
        if (grads)
            bean_backward(W, mx[k].rows, mx[k].cols, alpha, grads + mx[k].offset, scratch);
    }
    free(scratch);
    return R;
}

typedef struct {
    float mag;
    long a, b;   /* entries to zero (b = -1: one entry) */
} prune_item;

static int by_mag(const void *x, const void *y)
{
    float p = ((const prune_item *)x)->mag, q = ((const prune_item *)y)->mag;
    if (p != q)
        return p < q ? -1 : 1;
    long i = ((const prune_item *)x)->a, j = ((const prune_item *)y)->a;
    return (i > j) - (i < j);   /* ties in index order: deterministic */
}

int model_prune(const model *m, float *params, double fraction, int physical, long *pruned, long *total,
                unsigned char *mask)
{
    *pruned = *total = 0;
    if (mask)
        memset(mask, 0, (size_t)m->n_params);
    if (!(fraction >= 0 && fraction <= 1))
        return PATCTL_ERR_ARG;
    model_matrix mx[2 * CFG_MAX_LAYERS];
    int n = model_matrices(m, physical, mx, 2 * CFG_MAX_LAYERS);
    for (int k = 0; k < n; k++) {
        const model_matrix *x = &mx[k];
        float *W = params + x->offset;
        long len = (long)x->rows * x->cols, cnt = 0;
        prune_item *it = malloc(sizeof(*it) * (size_t)(len + 1));
        if (!it)
            return PATCTL_ERR_NOMEM;
        if (x->symmetric_pairs) {
            for (int i = 0; i < x->rows; i++)
                for (int j = i + 1; j < x->cols; j++) {
                    long a = (long)i * x->cols + j, b = (long)j * x->cols + i;
                    it[cnt++] = (prune_item){fabsf(W[a] + W[b]) * 0.5f, a, b};
                }
        } else {
            for (long a = 0; a < len; a++)
                it[cnt++] = (prune_item){fabsf(W[a]), a, -1};
        }
        qsort(it, (size_t)cnt, sizeof(*it), by_mag);
        long cut = (long)floor(fraction * (double)cnt + 0.5);
        for (long q = 0; q < cut; q++) {
            W[it[q].a] = 0.0f;
            if (it[q].b >= 0)
                W[it[q].b] = 0.0f;
            if (mask) {
                mask[x->offset + it[q].a] = 1;
                if (it[q].b >= 0)
                    mask[x->offset + it[q].b] = 1;
            }
        }
        *pruned += cut;
        *total += cnt;
        free(it);
    }
    return 0;
}
