/* bench_conv: times conv2d forward+backward at every conv shape of the default 28x28 U-Net
 * (ch 32, mult 1,2,2, nres 2, attention at 7) at batch 64, and compares the achieved GFLOP/s with
 * cblas_sgemm on a large square and on the same GEMM shapes alone (the bound of im2col + GEMM;
 * the Winograd shapes beat it).
 * Usage: build/bench/bench_conv [batch] [reps]; the thread count is OPENBLAS_NUM_THREADS.
 * Times are the fastest of `reps` runs. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"

typedef struct {
    int C, OC, H, K, stride, count, need_dinp;
} conv_case;

/* The default U-Net's convs (count = how many times the shape occurs in one forward). */
static const conv_case CASES[] = {
    {1, 32, 28, 3, 1, 1, 0},   /* input conv (no dinp: the image) */
    {32, 32, 28, 3, 1, 4, 1},  /* down level 0 ResBlocks */
    {32, 32, 28, 3, 2, 1, 1},  /* downsample 28 -> 14 */
    {32, 64, 14, 3, 1, 1, 1},  /* ResBlock 32 -> 64 */
    {32, 64, 14, 1, 1, 1, 1},  /*   its 1x1 skip */
    {64, 64, 14, 3, 1, 7, 1},  /* level 1: 3 down, 3 up second convs, upsample conv */
    {64, 64, 14, 3, 2, 1, 1},  /* downsample 14 -> 7 */
    {64, 64, 7, 3, 1, 11, 1},  /* level 2 down 4, middle 4, up 3 second convs */
    {64, 192, 7, 1, 1, 6, 1},  /* attention qkv */
    {64, 64, 7, 1, 1, 6, 1},   /* attention proj */
    {128, 64, 7, 3, 1, 3, 1},  /* up level 2 first convs */
    {128, 64, 7, 1, 1, 3, 1},  /*   skips */
    {128, 64, 14, 3, 1, 2, 1}, /* up level 1 first convs */
    {128, 64, 14, 1, 1, 2, 1}, /*   skips */
    {96, 64, 14, 3, 1, 1, 1},  /* up level 1 last block */
    {96, 64, 14, 1, 1, 1, 1},
    {64, 64, 28, 3, 1, 1, 1},  /* upsample conv at 28 */
    {96, 32, 28, 3, 1, 1, 1},  /* up level 0 */
    {96, 32, 28, 1, 1, 1, 1},
    {64, 32, 28, 3, 1, 2, 1},
    {64, 32, 28, 1, 1, 2, 1},
    {32, 32, 28, 3, 1, 3, 1},  /* up level 0 second convs */
    {32, 1, 28, 3, 1, 1, 1},   /* output conv */
};

static float *buf(int64_t n) {
    float *p = mdiff_alloc_aligned((size_t)n * sizeof(float), "bench buffer");
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

static double sgemm_gflops(int M, int N, int K, int reps) {
    float *a = buf((int64_t)M * K), *b = buf((int64_t)K * N), *c = buf((int64_t)M * N);
    mdiff_gemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = mdiff_now();
        mdiff_gemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        double dt = mdiff_now() - t0;
        if (dt < best) best = dt;
    }
    mdiff_free_aligned(a);
    mdiff_free_aligned(b);
    mdiff_free_aligned(c);
    return 2.0 * M * N * K / best * 1e-9;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *th = getenv("OPENBLAS_NUM_THREADS");
    mdiff_set_threads(openblas_get_num_threads()); /* the ops' own budget (BLAS runs 1 inside) */
    printf("bench_conv: batch %d, reps %d, OPENBLAS_NUM_THREADS=%s\n", B, reps, th ? th : "(unset)");
    printf("sgemm 2048^3: %.1f GFLOP/s\n", sgemm_gflops(2048, 2048, 2048, 3));
    /* GFLOP/s counts the three direct-convolution GEMMs' flops (2 without dinp), whichever
     * algorithm ran; gemm-only is cblas_sgemm alone on the im2col forward's shape (OC x B*OH*OW x
     * C*K*K), im2col's bound without its layout passes, which Winograd (3x3 stride 1 with >= 8
     * channels, src/ops/winograd.c) can beat. */
    printf("%-22s %5s %9s %9s %9s %9s %8s\n", "shape", "count", "fwd ms", "bwd ms", "GFLOP/s",
           "gemm-only", "total ms");
    double tot_t = 0, tot_f = 0;
    int n_cases = (int)(sizeof CASES / sizeof CASES[0]);
    for (int i = 0; i < n_cases; i++) {
        const conv_case *c = &CASES[i];
        int H = c->H, pad = c->K == 3 ? 1 : 0;
        int OH = (H + 2 * pad - c->K) / c->stride + 1;
        int64_t n_in = (int64_t)B * c->C * H * H, n_out = (int64_t)B * c->OC * OH * OH;
        int64_t n_w = (int64_t)c->OC * c->C * c->K * c->K;
        int64_t n_work = mdiff_conv2d_work_floats(B, c->C, H, H, c->OC, c->K, c->stride, pad);
        float *inp = buf(n_in), *out = buf(n_out), *w = buf(n_w), *bias = buf(c->OC);
        float *dinp = buf(n_in), *dw = buf(n_w), *db = buf(c->OC), *work = buf(n_work);
        float *di = c->need_dinp ? dinp : NULL;
        mdiff_conv2d_forward(out, inp, w, bias, B, c->C, H, H, c->OC, c->K, c->stride, pad, work);
        mdiff_conv2d_backward(di, dw, db, out, inp, w, B, c->C, H, H, c->OC, c->K, c->stride, pad,
                              work);
        /* the fastest of `reps` runs: robust to other processes on a shared 2-core machine */
        double tf = 1e30, tb = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = mdiff_now();
            mdiff_conv2d_forward(out, inp, w, bias, B, c->C, H, H, c->OC, c->K, c->stride, pad,
                                 work);
            double t1 = mdiff_now();
            mdiff_conv2d_backward(di, dw, db, out, inp, w, B, c->C, H, H, c->OC, c->K, c->stride,
                                  pad, work);
            double t2 = mdiff_now();
            if (t1 - t0 < tf) tf = t1 - t0;
            if (t2 - t1 < tb) tb = t2 - t1;
        }
        double gemm_f = 2.0 * c->OC * c->C * c->K * c->K * (double)B * OH * OH;
        double flops = gemm_f * (c->need_dinp ? 3 : 2);
        double g = sgemm_gflops(c->OC, B * OH * OH, c->C * c->K * c->K, reps);
        char name[64];
        snprintf(name, sizeof name, "%dx%d %d->%d k%d s%d", H, H, c->C, c->OC, c->K, c->stride);
        printf("%-22s %5d %9.2f %9.2f %9.1f %9.1f %8.1f\n", name, c->count, tf * 1e3, tb * 1e3,
               flops / (tf + tb) * 1e-9, g, (tf + tb) * c->count * 1e3);
        tot_t += (tf + tb) * c->count;
        tot_f += flops * c->count;
        mdiff_free_aligned(inp);
        mdiff_free_aligned(out);
        mdiff_free_aligned(w);
        mdiff_free_aligned(bias);
        mdiff_free_aligned(dinp);
        mdiff_free_aligned(dw);
        mdiff_free_aligned(db);
        mdiff_free_aligned(work);
    }
    printf("all convs of one U-Net step (fwd+bwd): %.1f ms, %.1f GFLOP, %.1f GFLOP/s\n",
           tot_t * 1e3, tot_f * 1e-9, tot_f / tot_t * 1e-9);
    return 0;
}
