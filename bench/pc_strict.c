/* How close is strict predictive coding's gradient to PAT's?  On the
 * quickstart (or a config, or a run's last checkpoint), for a batch of
 * training images: PAT's gradient of the feedforward pass, then strict PC
 * for every (iterations, eta) of the grid, each from the SAME feedforward
 * (the devices' query counters are put back, so seeded devices measure the
 * same noise; strict's own measurements at the beliefs come after).  Prints
 * the relative error |g_pc - g_pat| / |g_pat| and the cosine, over all
 * parameters and per parameter block, and the device queries strict made.
 * Fixedpred and exact are printed for reference.
 *
 *   bench_pc [--config FILE | --run RUN] [--batch B] [--batches K] [--noiseless]
 *            [--iters 1,5,20,50] [--eta 0.1,0.5,1] [--seed N]
 *   --run RUN    the run's config and the parameters of its last checkpoint
 *   --noiseless  devices with sigma = 0 (input noise off): strict's
 *                predictions then differ from the feedforward by the belief
 *                updates alone
 *   --batches K  average the numbers over K batches (default 4) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/loss.h"
#include "controller/model.h"
#include "controller/pc.h"
#include "controller/rng.h"
#include "controller/run_setup.h"
#include "controller/runstore.h"

static void quiet(void *u, const char *dev, int level, const char *msg) { (void)u, (void)dev, (void)level, (void)msg; }

static int parse_list(const char *s, double *v, int max)
{
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        v[n++] = atof(t);
    return n;
}

typedef struct {
    double rel, cos, cos_block[CFG_MAX_LAYERS];
} agreement;

static agreement agree(const model *m, const float *g, const float *ref)
{
    agreement a = {0};
    double d = 0, r = 0, ab = 0, aa = 0;
    for (long i = 0; i < m->n_params; i++) {
        d += ((double)g[i] - ref[i]) * ((double)g[i] - ref[i]);
        r += (double)ref[i] * ref[i], ab += (double)g[i] * ref[i], aa += (double)g[i] * g[i];
    }
    a.rel = sqrt(d / fmax(r, 1e-300));
    a.cos = ab / sqrt(fmax(aa * r, 1e-300));
    for (int k = 0; k < m->n_layers; k++) {
        const layer *L = &m->L[k];
        double x = 0, y = 0, z = 0;
        for (long i = L->p_off; i < L->p_off + L->p_len; i++)
            x += (double)g[i] * ref[i], y += (double)g[i] * g[i], z += (double)ref[i] * ref[i];
        a.cos_block[k] = L->p_len ? x / sqrt(fmax(y * z, 1e-300)) : NAN;
    }
    return a;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *run = NULL;
    int B = 32, batches = 4, noiseless = 0;
    double iters[16] = {1, 5, 20, 50}, etas[16] = {0.1, 0.5, 1};
    int n_it = 4, n_eta = 3;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[++i];
        else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) run = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) batches = atoi(argv[++i]);
        else if (strcmp(argv[i], "--noiseless") == 0) noiseless = 1;
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) n_it = parse_list(argv[++i], iters, 16);
        else if (strcmp(argv[i], "--eta") == 0 && i + 1 < argc) n_eta = parse_list(argv[++i], etas, 16);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_pc [--config FILE | --run RUN] [--batch B] [--batches K] [--noiseless]\n"
                            "                [--iters LIST] [--eta LIST] [--seed N]\n");
            return 2;
        }
    }
    if (B < 1 || batches < 1 || n_it < 1 || n_eta < 1)
        return 2;
    char err[1024] = "";
    run_config c;
    runstore *rs = NULL;
    checkpoint ck;
    memset(&ck, 0, sizeof(ck));
    int rc = 0;
    if (run) {
        rc = runstore_open(&rs, run, 0, err, sizeof(err));
        if (!rc)
            rc = run_config_from_store(rs, run, &c, err, sizeof(err));
        if (!rc)
            rc = runstore_checkpoint_load(rs, 0, &ck, err, sizeof(err));
    } else if (config) {
        rc = config_load(&c, config, err, sizeof(err));
        c.seed = seed;
    } else {
        config_quickstart(&c);
        c.seed = seed;
    }
    if (rc) {
        fprintf(stderr, "bench_pc: %s\n", err);
        return 1;
    }
    c.mode = MODE_PC;
    if (noiseless)
        config_device_option(&c, "oscillators", "sigma", "0");
    dataset tr, te;
    c.train_limit = (long)B * batches;
    c.test_limit = 1;
    if ((rc = run_load_data(&c, &tr, &te, err, sizeof(err)))) {
        fprintf(stderr, "bench_pc: %s\n", err);
        return 1;
    }
    rng_streams rng;
    rng_streams_init(&rng, c.seed);
    model m;
    if ((rc = model_build(&m, &c, tr.h, tr.w, B, &rng, err, sizeof(err)))) {
        fprintf(stderr, "bench_pc: %s\n", err);
        return 1;
    }
    for (int i = 0; i < m.n_devices; i++)
        device_set_logger(m.devices[i], quiet, NULL);
    if (run) {
        if (ck.n_params != m.n_params) {
            fprintf(stderr, "bench_pc: checkpoint has %ld parameters, the model %ld\n", ck.n_params, m.n_params);
            return 1;
        }
        memcpy(m.params, ck.params, sizeof(float) * (size_t)m.n_params);
    }
    pc_state pc;
    if (pc_init(&pc, &m))
        return 1;
    long np = m.n_params;
    float *gpat = malloc(sizeof(float) * (size_t)np), *dl = malloc(sizeof(float) * (size_t)B * m.classes);
    int n_cfg = n_it * n_eta + 2;
    agreement *acc = calloc((size_t)n_cfg * batches, sizeof(*acc));
    long *queries = calloc((size_t)n_cfg, sizeof(long));
    uint64_t next[CFG_MAX_DEVICES];
    printf("bench_pc: %s%s, %d batches of %d images, %ld parameters, %d layers (%s)\n",
           run ? run : config ? config : "the quickstart", run ? " (last checkpoint)" : " (initial parameters)",
           batches, B, np, m.n_layers, noiseless ? "noiseless devices" : "devices as configured");
    for (int bt = 0; bt < batches; bt++) {
        const float *x = tr.x + (long)bt * B * tr.h * tr.w;
        const uint8_t *y = tr.y + (long)bt * B;
        for (int i = 0; i < m.n_devices; i++)
            next[i] = m.devices[i]->next_id;
        for (int k = 0; k < n_cfg; k++) {
            /* the same feedforward (same query ids, same noise) for every variant */
            for (int i = 0; i < m.n_devices; i++)
                m.devices[i]->next_id = next[i];
            if ((rc = model_forward(&m, x, B, PASS_PAT, err, sizeof(err))))
                break;
            softmax_xent(model_logits(&m), y, B, m.classes, dl, NULL);
            model_zero_grad(&m);
            if (k == 0) {
                if ((rc = model_backward(&m, dl, B, MODE_PAT, err, sizeof(err))))
                    break;
                memcpy(gpat, m.grads, sizeof(float) * (size_t)np);
                continue;
            }
            pc_variant_kind v = k == 1 ? PC_FIXEDPRED : PC_STRICT;
            double eta = k == 1 ? 1.0 : etas[(k - 2) % n_eta];
            int it = k == 1 ? m.n_layers : (int)iters[(k - 2) / n_eta];
            long q0 = pc.extra_queries;
            if ((rc = pc_gradient(&pc, &m, dl, y, NULL, B, v, eta, it, err, sizeof(err))))
                break;
            queries[k] = pc.extra_queries - q0;
            acc[(long)bt * n_cfg + k] = agree(&m, m.grads, gpat);
        }
        if (rc)
            break;
    }
    if (rc) {
        fprintf(stderr, "bench_pc: %s\n", err);
        return 1;
    }
    printf("\n%-10s %6s %5s %12s %8s %14s", "variant", "iters", "eta", "rel. error", "cosine", "extra queries");
    for (int k = 0; k < m.n_layers; k++)
        if (m.L[k].p_len)
            printf("  cos L%d %-8s", k + 1, m.L[k].spec.kind == LAYER_PHYSICAL ? m.L[k].dev->name
                                              : layer_kind_name(m.L[k].spec.kind));
    printf("\n");
    for (int k = 1; k < n_cfg; k++) {
        agreement mean = {0};
        for (int bt = 0; bt < batches; bt++) {
            agreement *a = &acc[(long)bt * n_cfg + k];
            mean.rel += a->rel / batches, mean.cos += a->cos / batches;
            for (int l = 0; l < m.n_layers; l++)
                mean.cos_block[l] += a->cos_block[l] / batches;
        }
        int it = k == 1 ? m.n_layers : (int)iters[(k - 2) / n_eta];
        double eta = k == 1 ? 1.0 : etas[(k - 2) % n_eta];
        printf("%-10s %6d %5.2f %12.4g %8.4f %14ld", k == 1 ? "fixedpred" : "strict", it, eta, mean.rel, mean.cos,
               queries[k]);
        for (int l = 0; l < m.n_layers; l++)
            if (m.L[l].p_len)
                printf("  %16.4f", mean.cos_block[l]);
        printf("\n");
    }
    printf("(rel. error = |g_pc - g_pat| / |g_pat| over all parameters, mean over the batches; cosine likewise; "
           "extra queries: strict's measurements at the beliefs in the last batch; the feedforward is shared)\n");
    free(gpat), free(dl), free(acc), free(queries);
    pc_free(&pc);
    model_free(&m);
    rng_streams_free(&rng);
    dataset_free(&tr);
    dataset_free(&te);
    checkpoint_free(&ck);
    runstore_close(&rs);
    return 0;
}
