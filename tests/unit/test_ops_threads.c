/* Tests of the thread contract of the ops and the model (src/ops/par.h): with mdiff_threads() = T,
 *  - every FORWARD is bit-identical to T = 1 (sampling promises byte-identical images for any
 *    thread count): conv2d (3x3 stride 1 and 2, 1x1; several chunks, a partial last one, and the
 *    one-sample-per-chunk direct path), group norm (+SiLU), attention, SiLU, add, broadcast add,
 *    upsample, concat, and the whole U-Net;
 *  - every BACKWARD is bit-identical to T = 1 as well (stronger than the required "deterministic
 *    for a fixed T"): conv sums dweight/dbias in per-slot partials whose grouping never depends on
 *    T, the other ops split only independent outputs; and a rerun gives the same bits.
 * No tolerance anywhere: the comparisons are bitwise. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/model.h"
#include "mdiff/ops.h"
#include "mdiff/rng.h"

#define MAXT 3

static float *randn(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    mdiff_rng_fill_normal(p, n, seed, MDIFF_RNG_TOY, 0, 0);
    return p;
}

static float *zeros(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static void expect_same(const char *what, int T, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0,
                      "%s with %d threads differs from 1 thread at %lld: %.9g vs %.9g", what, T,
                      (long long)i, (double)a[i], (double)b[i]);
}

/* ---- conv2d ----------------------------------------------------------------------------------- */
typedef struct {
    int B, C, H, W, OC, K, stride;
} conv_cfg;

static const conv_cfg CONVS[] = {
    {37, 3, 12, 10, 5, 3, 1},  /* 120-pixel planes: 16 per chunk, 3 chunks, last partial */
    {37, 4, 13, 11, 6, 3, 2},  /* stride 2, odd sides */
    {37, 6, 12, 10, 4, 1, 1},  /* 1x1 */
    {5, 3, 40, 40, 4, 3, 1},   /* 1600-pixel planes: one sample per chunk (the direct path) */
    {5, 4, 40, 40, 3, 1, 1},
    {37, 8, 12, 10, 9, 3, 1},  /* Winograd: 30 tiles per sample, 8 per chunk, last partial */
    {5, 9, 40, 40, 8, 3, 1},   /* Winograd: one sample per chunk */
};

START_TEST(conv_threads) {
    const conv_cfg g = CONVS[_i];
    const int pad = g.K == 3 ? 1 : 0;
    const int OH = (g.H + 2 * pad - g.K) / g.stride + 1, OW = (g.W + 2 * pad - g.K) / g.stride + 1;
    const int64_t ni = (int64_t)g.B * g.C * g.H * g.W, no = (int64_t)g.B * g.OC * OH * OW;
    const int64_t nw = (int64_t)g.OC * g.C * g.K * g.K;
    float *inp = randn(ni, 1), *w = randn(nw, 2), *bias = randn(g.OC, 3), *dout = randn(no, 4);
    mdiff_set_threads(MAXT);
    float *work = zeros(mdiff_conv2d_work_floats(g.B, g.C, g.H, g.W, g.OC, g.K, g.stride, pad));
    float *out[MAXT + 1], *dinp[MAXT + 1], *dw[MAXT + 1], *db[MAXT + 1];
    for (int T = 1; T <= MAXT; T++) {
        mdiff_set_threads(T);
        out[T] = zeros(no), dinp[T] = zeros(ni), dw[T] = zeros(nw), db[T] = zeros(g.OC);
        mdiff_conv2d_forward(out[T], inp, w, bias, g.B, g.C, g.H, g.W, g.OC, g.K, g.stride, pad,
                             work);
        mdiff_conv2d_backward(dinp[T], dw[T], db[T], dout, inp, w, g.B, g.C, g.H, g.W, g.OC, g.K,
                              g.stride, pad, work);
        /* a second backward of the same T adds exactly the same bits again */
        float *dw2 = zeros(nw), *db2 = zeros(g.OC), *di2 = zeros(ni);
        mdiff_conv2d_backward(di2, dw2, db2, dout, inp, w, g.B, g.C, g.H, g.W, g.OC, g.K, g.stride,
                              pad, work);
        expect_same("conv dweight (rerun)", T, dw2, dw[T], nw);
        expect_same("conv dbias (rerun)", T, db2, db[T], g.OC);
        expect_same("conv dinp (rerun)", T, di2, dinp[T], ni);
        free(dw2), free(db2), free(di2);
        if (T == 1) continue;
        expect_same("conv forward", T, out[T], out[1], no);
        expect_same("conv dinp", T, dinp[T], dinp[1], ni);
        expect_same("conv dweight", T, dw[T], dw[1], nw);
        expect_same("conv dbias", T, db[T], db[1], g.OC);
    }
    for (int T = 1; T <= MAXT; T++) free(out[T]), free(dinp[T]), free(dw[T]), free(db[T]);
    free(inp), free(w), free(bias), free(dout), free(work);
    mdiff_set_threads(1);
}
END_TEST

/* ---- group norm, attention, elementwise: exact for every T ------------------------------------- */
START_TEST(norm_attention_elementwise_threads) {
    const int B = 6, C = 16, HW = 400, G = 4, NH = 2, L = 49, CA = 8; /* n above MDIFF_PAR_MIN */
    const int64_t n = (int64_t)B * C * HW, na = (int64_t)B * CA * L;
    float *x = randn(n, 5), *y = randn(n, 6), *gam = randn(C, 7), *bet = randn(C, 8);
    float *dout = randn(n, 9), *vec = randn(B * C, 10), *qkv = randn(3 * na, 11);
    float *dao = randn(na, 12);
    float *r[MAXT + 1][12];
    mdiff_set_threads(MAXT);
    float *work = zeros(mdiff_attention_work_floats(B, CA, L, NH));
    for (int T = 1; T <= MAXT; T++) {
        mdiff_set_threads(T);
        float **o = r[T];
        o[0] = zeros(n), o[1] = zeros(B * G), o[2] = zeros(B * G);
        mdiff_groupnorm_forward(o[0], o[1], o[2], x, gam, bet, B, C, HW, G, 1);
        o[3] = zeros(n), o[4] = zeros(C), o[5] = zeros(C);
        mdiff_groupnorm_backward(o[3], o[4], o[5], dout, x, o[1], o[2], gam, bet, B, C, HW, G, 1);
        o[6] = zeros(na), o[7] = zeros((int64_t)B * NH * L * L), o[8] = zeros(3 * na);
        mdiff_attention_forward(o[6], o[7], qkv, B, CA, L, NH);
        mdiff_attention_backward(o[8], dao, qkv, o[7], B, CA, L, NH, work);
        o[9] = zeros(n);
        mdiff_silu_forward(o[9], x, n);
        mdiff_add_channel_forward(o[9], o[9], vec, B, C, HW);
        mdiff_add_forward(o[9], o[9], y, n);
        o[10] = zeros(4 * n);
        mdiff_upsample2x_forward(o[10], x, B, C, 10, 40);
        o[11] = zeros(2 * n);
        mdiff_concat_forward(o[11], x, y, B, C, C, HW);
        if (T == 1) continue;
        const char *names[12] = {"gn out", "gn mean", "gn rstd", "gn dinp", "gn dgamma",
                                 "gn dbeta", "attn out", "attn att", "attn dqkv",
                                 "silu+addch+add", "upsample", "concat"};
        const int64_t sizes[12] = {n, B * G, B * G, n, C, C, na, (int64_t)B * NH * L * L,
                                   3 * na, n, 4 * n, 2 * n};
        for (int k = 0; k < 12; k++) expect_same(names[k], T, o[k], r[1][k], sizes[k]);
    }
    for (int T = 1; T <= MAXT; T++)
        for (int k = 0; k < 12; k++) free(r[T][k]);
    free(x), free(y), free(gam), free(bet), free(dout), free(vec), free(qkv), free(dao);
    free(work);
    mdiff_set_threads(1);
}
END_TEST

/* ---- the whole U-Net ---------------------------------------------------------------------------- */
START_TEST(model_threads) {
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_model_cfg cfg = c.model;
    mdiff_strcpy(cfg.arch, sizeof cfg.arch, "unet");
    cfg.in_ch = 1, cfg.height = cfg.width = 28;
    cfg.ch = 16;
    cfg.n_levels = 2, cfg.mult[0] = 1, cfg.mult[1] = 2;
    cfg.nres = 1, cfg.n_attn = 1, cfg.attn_res[0] = 14, cfg.heads = 2, cfg.groups = 4;
    const int B = 6;
    mdiff_model *m = mdiff_model_create(&cfg, B);
    const int64_t np = mdiff_model_num_params(m), nx = B * mdiff_model_sample_numel(m);
    float *p = zeros(np), *x = randn(nx, 20), *t = zeros(B), *dout = randn(nx, 21);
    mdiff_model_init(m, p, 3);
    float *noise = randn(np, 22);
    for (int64_t i = 0; i < np; i++) p[i] += 0.05f * noise[i]; /* no zero-init blocks */
    for (int b = 0; b < B; b++) t[b] = (float)(b * 97 % 1000);
    /* T = 1, 2 only: with 3 threads on a 2-core machine the spinning barriers make it slow */
    float *out[MAXT + 1] = {0}, *g[MAXT + 1] = {0};
    for (int T = 1; T <= 2; T++) {
        mdiff_set_threads(T); /* the model regrows its workspace for T */
        out[T] = zeros(nx), g[T] = zeros(np);
        mdiff_model_forward(m, out[T], p, x, t, B, 1, 0, 0, 0);
        mdiff_model_backward(m, g[T], p, dout, B, NULL, NULL);
        if (T == 1) continue;
        expect_same("U-Net forward", T, out[T], out[1], nx);
        expect_same("U-Net gradient", T, g[T], g[1], np);
    }
    for (int T = 1; T <= MAXT; T++) free(out[T]), free(g[T]);
    free(p), free(x), free(t), free(dout), free(noise);
    mdiff_model_free(m);
    mdiff_set_threads(1);
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("ops_threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, conv_threads, 0, (int)(sizeof CONVS / sizeof CONVS[0]));
    tcase_add_test(tc, norm_attention_elementwise_threads);
    tcase_add_test(tc, model_threads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
