/* bench_model: forward + backward of the default 28x28 U-Net (issue 3's "Speed"), not a test.
 *   build/bench/bench_model [--batch 64] [--reps 5] [--warmup 1] [--arch unet|mlp]
 * Prints images/s and achieved GFLOP/s (3 x the forward GEMM flops per step), from the median of
 * the timed reps, and the share of time per op family. To split the conv family into GEMM and
 * im2col/col2im (plus the bias/scatter passes), this program interposes cblas_sgemm: its own
 * definition wins over libopenblas' for the library's calls, times each call, attributes it to
 * the op family the model is running and forwards to the real function (dlsym RTLD_NEXT).
 * Set OPENBLAS_NUM_THREADS to choose the BLAS thread count. */
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/model.h"
#include "mdiff/rng.h"

/* ---- BLAS interposer ---------------------------------------------------------------------- */
typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
                         const enum CBLAS_TRANSPOSE, const blasint, const blasint, const blasint,
                         const float, const float *, const blasint, const float *, const blasint,
                         const float, float *, const blasint);
static sgemm_fn real_sgemm;
static const mdiff_model *g_model;
static double g_gemm_time[MDIFF_FAM_COUNT + 1], g_gemm_flops[MDIFF_FAM_COUNT + 1];

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N, const blasint K,
                 const float alpha, const float *A, const blasint lda, const float *B,
                 const blasint ldb, const float beta, float *C, const blasint ldc) {
    if (!real_sgemm) {
        real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        MDIFF_CHECK(real_sgemm != NULL, "bench: cannot find the real cblas_sgemm");
    }
    int fam = g_model ? mdiff_model_current_family(g_model) : -1;
    if (fam < 0) fam = MDIFF_FAM_COUNT;
    double t0 = mdiff_now();
    real_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    g_gemm_time[fam] += mdiff_now() - t0;
    g_gemm_flops[fam] += 2.0 * M * N * K;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    mdiff_set_progname("bench_model");
    int B = 64, reps = 5, warmup = 1;
    const char *arch = "unet";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0)
            B = (int)mdiff_parse_i64("--batch", mdiff_opt_value(argc, argv, &i), 1, 4096);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = (int)mdiff_parse_i64("--reps", mdiff_opt_value(argc, argv, &i), 1, 1000);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = (int)mdiff_parse_i64("--warmup", mdiff_opt_value(argc, argv, &i), 0, 100);
        else if (strcmp(argv[i], "--arch") == 0)
            arch = mdiff_opt_value(argc, argv, &i);
        else
            mdiff_user_error("unknown option '%s' (--batch N --reps N --warmup N --arch unet|mlp)",
                             argv[i]);
    }
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_model_cfg cfg = c.model;
    mdiff_strcpy(cfg.arch, sizeof cfg.arch, arch);
    if (strcmp(arch, "mlp") == 0)
        cfg.in_ch = 2, cfg.height = cfg.width = 1;
    else
        cfg.in_ch = 1, cfg.height = cfg.width = 28;

    mdiff_model *m = mdiff_model_create(&cfg, B);
    const int64_t np = mdiff_model_num_params(m), nx = (int64_t)B * mdiff_model_sample_numel(m);
    float *params = mdiff_alloc_aligned(sizeof(float) * (size_t)np, "params");
    float *grads = mdiff_alloc_aligned(sizeof(float) * (size_t)np, "grads");
    float *x = mdiff_alloc_aligned(sizeof(float) * (size_t)nx, "x");
    float *out = mdiff_alloc_aligned(sizeof(float) * (size_t)nx, "out");
    float *dout = mdiff_alloc_aligned(sizeof(float) * (size_t)nx, "dout");
    float *t = mdiff_alloc_aligned(sizeof(float) * (size_t)B, "t");
    mdiff_model_init(m, params, 0);
    /* Non-zero everywhere (the zero-init tensors too): the timing of a trained model. */
    float *noise = mdiff_alloc_aligned(sizeof(float) * (size_t)np, "noise");
    mdiff_rng_fill_normal(noise, np, 1, MDIFF_RNG_TOY, 0, 0);
    for (int64_t i = 0; i < np; i++) params[i] += 0.01f * noise[i];
    mdiff_rng_fill_normal(x, nx, 2, MDIFF_RNG_TOY, 0, 0);
    mdiff_rng_fill_normal(dout, nx, 3, MDIFF_RNG_TOY, 0, 0);
    for (int b = 0; b < B; b++) t[b] = (float)((b * 37) % 1000);

    const double flops = mdiff_model_flops(m, B);
    /* (also keeps libopenblas linked under --as-needed, so RTLD_NEXT finds its sgemm) */
    printf("bench_model: %s, %lld parameters, batch %d, %d OpenBLAS threads, arena %.0f MB\n",
           arch, (long long)np, B, openblas_get_num_threads(),
           mdiff_model_activation_bytes(m) / 1e6);
    printf("forward %.2f GFLOP per batch (GEMM flops; backward counted as 2x)\n", flops / 1e9);

    g_model = m;
    double *tf = mdiff_malloc(sizeof(double) * (size_t)reps, "times");
    double *tb = mdiff_malloc(sizeof(double) * (size_t)reps, "times");
    double *tt = mdiff_malloc(sizeof(double) * (size_t)reps, "times");
    double fam_fwd[MDIFF_FAM_COUNT] = {0};
    for (int r = -warmup; r < reps; r++) {
        if (r == 0) {
            mdiff_model_set_timing(m, 1);
            mdiff_model_reset_timing(m);
            memset(g_gemm_time, 0, sizeof g_gemm_time);
            memset(g_gemm_flops, 0, sizeof g_gemm_flops);
        }
        memset(grads, 0, sizeof(float) * (size_t)np);
        double f0[MDIFF_FAM_COUNT], f1[MDIFF_FAM_COUNT];
        mdiff_model_timing(m, f0);
        double t0 = mdiff_now();
        mdiff_model_forward(m, out, params, x, t, B, 1, 0, (uint64_t)r + 100, 0);
        double t1 = mdiff_now();
        mdiff_model_timing(m, f1);
        for (int f = 0; f < MDIFF_FAM_COUNT; f++) fam_fwd[f] += r >= 0 ? f1[f] - f0[f] : 0;
        mdiff_model_backward(m, grads, params, dout, B, NULL, NULL);
        double t2 = mdiff_now();
        if (r >= 0) tf[r] = t1 - t0, tb[r] = t2 - t1, tt[r] = t2 - t0;
    }
    double fam[MDIFF_FAM_COUNT], total = 0;
    mdiff_model_timing(m, fam);
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) total += fam[f];
    qsort(tf, (size_t)reps, sizeof *tf, cmp_double);
    qsort(tb, (size_t)reps, sizeof *tb, cmp_double);
    qsort(tt, (size_t)reps, sizeof *tt, cmp_double);
    const double med = tt[reps / 2];
    printf("step (forward+backward), median of %d: %.3f s (forward %.3f s, backward %.3f s; "
           "min %.3f, max %.3f)\n", reps, med, tf[reps / 2], tb[reps / 2], tt[0], tt[reps - 1]);
    printf("throughput: %.1f images/s, %.1f GFLOP/s achieved (3 x forward flops / step time)\n",
           B / med, 3.0 * flops / med / 1e9);
    printf("time share by op family (sum over the timed reps; forward / backward seconds per "
           "step):\n");
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) {
        if (f == MDIFF_FAM_CONV) {
            const double g = g_gemm_time[f];
            printf("  %-24s %5.1f%%   (%.1f GFLOP/s in sgemm)\n", "conv GEMM", 100 * g / total,
                   g > 0 ? g_gemm_flops[f] / g / 1e9 : 0.0);
            printf("  %-24s %5.1f%%\n", "conv im2col/col2im/bias", 100 * (fam[f] - g) / total);
            printf("  %-24s          %.3f / %.3f s\n", "(conv: all)", fam_fwd[f] / reps,
                   (fam[f] - fam_fwd[f]) / reps);
        } else {
            printf("  %-24s %5.1f%%   %.3f / %.3f s", mdiff_model_family_name(f),
                   100 * fam[f] / total, fam_fwd[f] / reps, (fam[f] - fam_fwd[f]) / reps);
            if (g_gemm_time[f] > 0)
                printf("   (of which sgemm %.1f%%, %.1f GFLOP/s)", 100 * g_gemm_time[f] / total,
                       g_gemm_flops[f] / g_gemm_time[f] / 1e9);
            printf("\n");
        }
    }
    double gt = 0, gf = 0;
    for (int f = 0; f <= MDIFF_FAM_COUNT; f++) gt += g_gemm_time[f], gf += g_gemm_flops[f];
    printf("all sgemm calls: %.1f%% of op time at %.1f GFLOP/s\n", 100 * gt / total,
           gt > 0 ? gf / gt / 1e9 : 0.0);
    mdiff_model_free(m);
    g_model = NULL;
    mdiff_free_aligned(params), mdiff_free_aligned(grads), mdiff_free_aligned(x);
    mdiff_free_aligned(out), mdiff_free_aligned(dout), mdiff_free_aligned(t);
    mdiff_free_aligned(noise);
    free(tf), free(tb), free(tt);
    return 0;
}
