/* bench_model: mdiff's side of `make bench` (bench/run.sh) — the default 28x28 U-Net at batch 64.
 *   build/bench/bench_model [--threads T] [--batch 64] [--reps 5] [--warmup 2]
 *                           [--mode train|infer|limit] [--arch unet|mlp]
 * train: one step = zero grads, forward, MSE loss, backward, AdamW update (the PyTorch twin's
 *        step in bench/bench_torch.py); prints images/s and achieved GFLOP/s (3 x the forward's
 *        GEMM flops, mdiff_model_flops) from the median of the timed reps, the peak RSS, and the
 *        time per op family (wall seconds per step) with conv split into GEMM and the rest.
 * infer: one denoiser evaluation (forward, train = 0), what every sampler step costs.
 * limit: the machine's practical sgemm limit: a 2048^3 sgemm on 1 and T OpenBLAS threads, and
 *        the GEMM shapes of one U-Net training step (recorded by the interposer below) timed
 *        alone, weighted by their share of the step's flops: on 1 thread, and on T threads as the
 *        better of one T-threaded call and T concurrent single-threaded calls (how mdiff runs them).
 * T (default 1) is both OpenBLAS's and mdiff's own thread budget (mdiff_set_threads), as
 * mdiff-train sets them. Lines starting with "RESULT" are for run.sh: RESULT key value.
 *
 * The interposer: this program defines cblas_sgemm itself, so the library's calls land here; it
 * records shapes / times each call per OpenMP thread, attributes it to the op family the model is
 * running and forwards to OpenBLAS's (dlsym RTLD_NEXT). */
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/model.h"
#include "mdiff/ops.h"
#include "mdiff/optim.h"
#include "mdiff/rng.h"

/* ---- BLAS interposer ---------------------------------------------------------------------- */
typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
                         const enum CBLAS_TRANSPOSE, const blasint, const blasint, const blasint,
                         const float, const float *, const blasint, const float *, const blasint,
                         const float, float *, const blasint);
static sgemm_fn real_sgemm;
static const mdiff_model *g_model;
#define MAXT 64
/* per thread (padded against false sharing) and family: seconds, flops */
static double g_gemm_time[MAXT][MDIFF_FAM_COUNT + 8], g_gemm_flops[MAXT][MDIFF_FAM_COUNT + 8];

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    double flops;
} shape_t;
#define MAXSHAPES 512
static shape_t g_shapes[MAXSHAPES];
static int g_nshapes, g_record;

static void record_shape(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc) {
    double f = 2.0 * M * N * K;
#pragma omp critical(bench_shapes)
    {
        int i = 0;
        for (; i < g_nshapes; i++) {
            shape_t *s = &g_shapes[i];
            if (s->ta == ta && s->tb == tb && s->M == M && s->N == N && s->K == K &&
                s->lda == lda && s->ldb == ldb && s->ldc == ldc)
                break;
        }
        if (i == g_nshapes && g_nshapes < MAXSHAPES)
            g_shapes[g_nshapes++] = (shape_t){ta, tb, M, N, K, lda, ldb, ldc, 0};
        if (i < g_nshapes) g_shapes[i].flops += f;
    }
}

static sgemm_fn real(void) {
    if (!real_sgemm) {
        real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        MDIFF_CHECK(real_sgemm != NULL, "bench: cannot find the real cblas_sgemm");
    }
    return real_sgemm;
}

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
                 const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N, const blasint K,
                 const float alpha, const float *A, const blasint lda, const float *B,
                 const blasint ldb, const float beta, float *C, const blasint ldc) {
    sgemm_fn f = real();
    int fam = g_model ? mdiff_model_current_family(g_model) : -1;
    if (fam < 0) fam = MDIFF_FAM_COUNT;
    if (g_record) record_shape(ta == CblasTrans, tb == CblasTrans, M, N, K, lda, ldb, ldc);
    int t = omp_get_thread_num();
    if (t >= MAXT) t = MAXT - 1;
    double t0 = mdiff_now();
    f(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    g_gemm_time[t][fam] += mdiff_now() - t0;
    g_gemm_flops[t][fam] += 2.0 * M * N * K;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *buf(int64_t n) {
    float *p = mdiff_alloc_aligned((size_t)n * sizeof(float), "bench buffer");
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

/* CPU seconds of the whole process (all threads): on a shared machine the 1-thread figure is
 * what the step costs when it has a core, whatever the load */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* ---- the model step ------------------------------------------------------------------------ */
typedef struct {
    mdiff_model *m;
    int B;
    int64_t np, nx;
    float *params, *grads, *adam_m, *adam_v, *x, *out, *target, *dout, *t, *per_sample;
    int64_t k; /* AdamW update count */
} bench_t;

static void bench_init(bench_t *b, const char *arch, int B) {
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_model_cfg cfg = c.model;
    mdiff_strcpy(cfg.arch, sizeof cfg.arch, arch);
    if (strcmp(arch, "mlp") == 0)
        cfg.in_ch = 2, cfg.height = cfg.width = 1;
    else
        cfg.in_ch = 1, cfg.height = cfg.width = 28;
    memset(b, 0, sizeof *b);
    b->B = B;
    b->m = mdiff_model_create(&cfg, B);
    b->np = mdiff_model_num_params(b->m);
    b->nx = (int64_t)B * mdiff_model_sample_numel(b->m);
    size_t pb = sizeof(float) * (size_t)b->np, xb = sizeof(float) * (size_t)b->nx;
    b->params = mdiff_alloc_aligned(pb, "params");
    b->grads = mdiff_alloc_aligned(pb, "grads");
    b->adam_m = mdiff_alloc_aligned(pb, "adam m");
    b->adam_v = mdiff_alloc_aligned(pb, "adam v");
    b->x = mdiff_alloc_aligned(xb, "x");
    b->out = mdiff_alloc_aligned(xb, "out");
    b->target = mdiff_alloc_aligned(xb, "target");
    b->dout = mdiff_alloc_aligned(xb, "dout");
    b->t = mdiff_alloc_aligned(sizeof(float) * (size_t)B, "t");
    b->per_sample = mdiff_alloc_aligned(sizeof(float) * (size_t)B, "per-sample loss");
    mdiff_model_init(b->m, b->params, 0);
    /* Non-zero everywhere (the zero-init tensors too): the timing of a trained model. */
    float *noise = mdiff_alloc_aligned(pb, "noise");
    mdiff_rng_fill_normal(noise, b->np, 1, MDIFF_RNG_TOY, 0, 0);
    for (int64_t i = 0; i < b->np; i++) b->params[i] += 0.01f * noise[i];
    mdiff_free_aligned(noise);
    mdiff_rng_fill_normal(b->x, b->nx, 2, MDIFF_RNG_TOY, 0, 0);
    mdiff_rng_fill_normal(b->target, b->nx, 3, MDIFF_RNG_TOY, 0, 0);
    for (int i = 0; i < B; i++) b->t[i] = (float)((i * 37) % 1000);
}

static void train_step(bench_t *b, uint64_t step) {
    memset(b->grads, 0, sizeof(float) * (size_t)b->np);
    mdiff_model_forward(b->m, b->out, b->params, b->x, b->t, b->B, 1, 0, step, 0);
    memset(b->dout, 0, sizeof(float) * (size_t)b->nx);
    const int64_t n = mdiff_model_sample_numel(b->m);
    mdiff_mse_forward(b->per_sample, b->out, b->target, b->B, n, 1.0f / (float)b->B);
    mdiff_mse_backward(b->dout, b->out, b->target, b->B, n, 1.0f / (float)b->B);
    mdiff_model_backward(b->m, b->grads, b->params, b->dout, b->B, NULL, NULL);
    mdiff_adamw_update(b->params, b->adam_m, b->adam_v, b->grads, b->np, 2e-4, 0.9, 0.999, 1e-8,
                       0.0, ++b->k);
}

static void infer_step(bench_t *b) {
    mdiff_model_forward(b->m, b->out, b->params, b->x, b->t, b->B, 0, 0, 0, 0);
}

/* ---- the sgemm limit ------------------------------------------------------------------------ */
/* GFLOP/s of shape s: T concurrent single-threaded calls (T > 1: also one T-threaded call, the
 * better counts). Each repeated to at least ~min_s seconds; best of 3 such runs. */
static double shape_gflops(const shape_t *s, int T, double min_s) {
    const int64_t na = (int64_t)(s->ta ? s->K : s->M) * s->lda;
    const int64_t nb = (int64_t)(s->tb ? s->N : s->K) * s->ldb;
    const int64_t nc = (int64_t)s->M * s->ldc;
    float *a[MAXT], *bb[MAXT], *c[MAXT];
    for (int t = 0; t < T; t++) a[t] = buf(na), bb[t] = buf(nb), c[t] = buf(nc);
    double f = 2.0 * s->M * s->N * s->K, best = 0;
    for (int mode = 0; mode < (T > 1 ? 2 : 1); mode++) {
        /* mode 0: T copies on single-threaded BLAS; mode 1: one call on T BLAS threads */
        openblas_set_num_threads(mode == 0 ? 1 : T);
        const int copies = mode == 0 ? T : 1;
        int iters = 1;
        for (int run = 0; run < 4; run++) {
            double t0 = mdiff_now();
#pragma omp parallel for num_threads(copies) schedule(static, 1) if (copies > 1)
            for (int t = 0; t < copies; t++)
                for (int i = 0; i < iters; i++)
                    real()(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                           s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, a[t],
                           s->lda, bb[t], s->ldb, 0.0f, c[t], s->ldc);
            double dt = mdiff_now() - t0;
            if (run == 0) { /* calibration (and warm-up) */
                iters = (int)(min_s / (dt > 1e-7 ? dt : 1e-7)) + 1;
                continue;
            }
            double g = copies * iters * f / dt / 1e9;
            if (g > best) best = g;
        }
    }
    for (int t = 0; t < T; t++)
        mdiff_free_aligned(a[t]), mdiff_free_aligned(bb[t]), mdiff_free_aligned(c[t]);
    return best;
}

static void run_limit(int T, int B, const char *arch) {
    shape_t sq = {0, 0, 2048, 2048, 2048, 2048, 2048, 2048, 0};
    double sq1 = shape_gflops(&sq, 1, 0.3), sqT = 0;
    if (T > 1) { /* the classic figure: one call on T OpenBLAS threads */
        shape_t s = sq;
        float *a = buf(2048 * 2048), *b = buf(2048 * 2048), *c = buf(2048 * 2048);
        openblas_set_num_threads(T);
        for (int r = 0; r < 4; r++) {
            double t0 = mdiff_now();
            real()(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.M, s.N, s.K, 1.0f, a, s.lda, b,
                   s.ldb, 0.0f, c, s.ldc);
            double g = 2.0 * s.M * s.N * s.K / (mdiff_now() - t0) / 1e9;
            if (r > 0 && g > sqT) sqT = g;
        }
        mdiff_free_aligned(a), mdiff_free_aligned(b), mdiff_free_aligned(c);
    } else {
        sqT = sq1;
    }
    printf("sgemm 2048^3: %.1f GFLOP/s on 1 thread, %.1f on %d\n", sq1, sqT, T);
    printf("RESULT sgemm_square_1 %.2f\nRESULT sgemm_square_T %.2f\n", sq1, sqT);
    /* the shapes of one training step, as mdiff calls them with T threads */
    bench_t b;
    mdiff_set_threads(T);
    bench_init(&b, arch, B);
    g_record = 1;
    train_step(&b, 0);
    g_record = 0;
    double tot = 0, w1 = 0, wT = 0;
    for (int i = 0; i < g_nshapes; i++) tot += g_shapes[i].flops;
    for (int i = 0; i < g_nshapes; i++) {
        const shape_t *s = &g_shapes[i];
        /* time budget proportional to the flop share, at least a few calls */
        double budget = 0.02 + 0.4 * s->flops / tot;
        double g1 = shape_gflops(s, 1, budget), gT = T > 1 ? shape_gflops(s, T, budget) : g1;
        w1 += s->flops / g1;
        wT += s->flops / gT;
        if (s->flops / tot >= 0.01)
            printf("  gemm %c%c M %5d N %5d K %5d  %5.1f%% of flops  %6.1f GFLOP/s 1 thread  %6.1f "
                   "on %d\n", s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K,
                   100 * s->flops / tot, g1, gT, T);
    }
    printf("U-Net step GEMMs: %d shapes, %.1f GFLOP; flop-weighted %.1f GFLOP/s on 1 thread, "
           "%.1f on %d\n", g_nshapes, tot / 1e9, tot / w1, tot / wT, T);
    printf("RESULT sgemm_unet_1 %.2f\nRESULT sgemm_unet_T %.2f\n", tot / w1, tot / wT);
}

int main(int argc, char **argv) {
    mdiff_set_progname("bench_model");
    int B = 64, reps = 5, warmup = 2, T = 1;
    const char *arch = "unet", *mode = "train";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0)
            B = (int)mdiff_parse_i64("--batch", mdiff_opt_value(argc, argv, &i), 1, 4096);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = (int)mdiff_parse_i64("--reps", mdiff_opt_value(argc, argv, &i), 1, 1000);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = (int)mdiff_parse_i64("--warmup", mdiff_opt_value(argc, argv, &i), 0, 100);
        else if (strcmp(argv[i], "--threads") == 0)
            T = (int)mdiff_parse_i64("--threads", mdiff_opt_value(argc, argv, &i), 1, MAXT);
        else if (strcmp(argv[i], "--arch") == 0)
            arch = mdiff_opt_value(argc, argv, &i);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = mdiff_opt_value(argc, argv, &i);
        else
            mdiff_user_error("unknown option '%s' (--threads T --batch N --reps N --warmup N "
                             "--mode train|infer|limit --arch unet|mlp)", argv[i]);
    }
    if (strcmp(mode, "limit") == 0) {
        run_limit(T, B, arch);
        return 0;
    }
    const int train = strcmp(mode, "train") == 0;
    if (!train && strcmp(mode, "infer") != 0)
        mdiff_user_error("--mode %s: use train, infer or limit", mode);
    openblas_set_num_threads(T);
    mdiff_set_threads(T); /* mdiff's own loops get the BLAS budget, as mdiff-train sets it */
    bench_t b;
    bench_init(&b, arch, B);
    mdiff_model *m = b.m;
    const double flops = mdiff_model_flops(m, B) * (train ? 3.0 : 1.0);
    printf("bench_model: %s %s, %lld parameters, batch %d, %d threads, arena+workspace %.0f MB, "
           "%.2f GFLOP per step\n", arch, mode, (long long)b.np, B, T,
           mdiff_model_activation_bytes(m) / 1e6, flops / 1e9);

    g_model = m;
    double *tt = mdiff_malloc(sizeof(double) * (size_t)reps, "times");
    double *tc = mdiff_malloc(sizeof(double) * (size_t)reps, "times");
    double t_opt = 0;
    for (int r = -warmup; r < reps; r++) {
        if (r == 0) {
            mdiff_model_set_timing(m, 1);
            mdiff_model_reset_timing(m);
            memset(g_gemm_time, 0, sizeof g_gemm_time);
            memset(g_gemm_flops, 0, sizeof g_gemm_flops);
        }
        double t0 = mdiff_now(), c0 = cpu_now();
        if (train)
            train_step(&b, (uint64_t)r + 100);
        else
            infer_step(&b);
        double dt = mdiff_now() - t0;
        if (r >= 0) tt[r] = dt, tc[r] = cpu_now() - c0;
    }
    /* the optimizer alone (AdamW over the flat buffers), for the breakdown */
    if (train) {
        double t0 = mdiff_now();
        mdiff_adamw_update(b.params, b.adam_m, b.adam_v, b.grads, b.np, 2e-4, 0.9, 0.999, 1e-8,
                           0.0, ++b.k);
        t_opt = mdiff_now() - t0;
    }
    double fam[MDIFF_FAM_COUNT], total = 0;
    mdiff_model_timing(m, fam);
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) total += fam[f];
    qsort(tt, (size_t)reps, sizeof *tt, cmp_double);
    qsort(tc, (size_t)reps, sizeof *tc, cmp_double);
    const double med = tt[reps / 2];
    printf("step median of %d (after %d warm-up): %.3f s (min %.3f, max %.3f): %.1f images/s, "
           "%.1f GFLOP/s\n", reps, warmup, med, tt[0], tt[reps - 1], B / med, flops / med / 1e9);
    printf("RESULT step_cpu_s %.4f\n", tc[reps / 2]);
    printf("RESULT img_s %.2f\nRESULT gflops %.2f\nRESULT step_s %.4f\nRESULT peak_rss_mb %.0f\n",
           B / med, flops / med / 1e9, med, peak_rss_mb());
    /* GEMM seconds are summed over the threads that ran them: divide by T for wall time */
    double gt[MDIFF_FAM_COUNT + 1] = {0}, gfl[MDIFF_FAM_COUNT + 1] = {0};
    for (int t = 0; t < MAXT; t++)
        for (int f = 0; f <= MDIFF_FAM_COUNT; f++)
            gt[f] += g_gemm_time[t][f] / T, gfl[f] += g_gemm_flops[t][f];
    const double step_all = total / reps + t_opt;
    printf("time per step by op family (wall ms per step, share of the step's op time):\n");
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) {
        const double s = fam[f] / reps;
        if (f == MDIFF_FAM_CONV) {
            const double g = gt[f] / reps;
            printf("  %-28s %8.1f ms %5.1f%%   (%.1f GFLOP/s per thread in sgemm)\n", "conv: sgemm",
                   1e3 * g, 100 * g / step_all, gt[f] > 0 ? gfl[f] / gt[f] / T / 1e9 : 0.0);
            printf("  %-28s %8.1f ms %5.1f%%\n", "conv: transforms/im2col", 1e3 * (s - g),
                   100 * (s - g) / step_all);
            printf("RESULT fam_conv_gemm_ms %.2f\nRESULT fam_conv_other_ms %.2f\n", 1e3 * g,
                   1e3 * (s - g));
        } else {
            printf("  %-28s %8.1f ms %5.1f%%\n", mdiff_model_family_name(f), 1e3 * s,
                   100 * s / step_all);
            printf("RESULT fam_%s_ms %.2f\n", mdiff_model_family_name(f), 1e3 * s);
        }
    }
    if (train) {
        printf("  %-28s %8.1f ms %5.1f%%\n", "optimizer (AdamW)", 1e3 * t_opt,
               100 * t_opt / step_all);
        printf("RESULT fam_optimizer_ms %.2f\n", 1e3 * t_opt);
    }
    printf("  %-28s %8.1f ms (median step %.1f ms; the rest is the loss and zeroing grads)\n",
           "sum", 1e3 * step_all, 1e3 * med);
    mdiff_model_free(m);
    g_model = NULL;
    free(tt), free(tc);
    return 0;
}
