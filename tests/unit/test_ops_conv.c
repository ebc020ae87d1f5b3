/* Tests of src/ops/gemm.c and src/ops/conv.c: mdiff_gemm (every transpose pair, padded leading
 * dimensions, alpha/beta) against a naive double triple loop; linear and conv2d forwards against
 * naive double references; every backward against central differences in every supported
 * configuration (3x3 stride 1, 3x3 stride 2 with even and odd H/W, 1x1, C = 1, H != W, B > 1,
 * C != OC, with and without bias, a batch split into several workspace chunks); the +=
 * accumulation contract; NULL dinp/dbias; unsupported kernels rejected.
 *
 * Tolerances. Forwards: a float32 dot product of n terms has |error| <= gamma_n sum|terms| with
 * gamma_n ~ n eps_f32 (Higham); we allow 2 (n + 2) eps_f32 sum|terms| per element (+2 for the
 * bias add), a bound a wrong index or transpose exceeds by orders of magnitude.
 * Backwards: conv and linear are LINEAR in each of inp, weight and bias, so a central difference
 * has no truncation error at any step; only the float32 rounding of the perturbed outputs is
 * left. We therefore take a large step h = 0.25: the rounding error of L (a few float ulps of
 * each O(1..10) output touched, weighted by |w| <= 1, e.g. 45 outputs * 1e-6) divided by 2h stays
 * below ~1e-4, and atol 1e-3 + rtol 1e-3 keeps a 10x margin while any wrong term (|grad| ~ 0.1..10)
 * fails. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "../../src/ops/winograd.h"

#define FD_H 0.25
#define FD_ATOL 1e-3
#define FD_RTOL 1e-3
#define EPS32 ((double)FLT_EPSILON / 2)

static float *fmalloc(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    if (seed)
        fd_fill(p, n, seed);
    else
        memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

static void check_dot(const char *what, int64_t i, double got, double ref, double abs_sum, int n) {
    double tol = 2.0 * (n + 2) * EPS32 * abs_sum + 1e-30;
    ck_assert_msg(isfinite(got) && fabs(got - ref) <= tol,
                  "%s[%lld]: got %.9g, reference %.9g (|diff| %.3g > %.3g)", what, (long long)i,
                  got, ref, fabs(got - ref), tol);
}

/* ---- gemm ---------------------------------------------------------------------------------- */

START_TEST(gemm_matches_naive) {
    const int M = 7, N = 9, K = 13;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* stored shapes: A is (M, K) or (K, M); padded row strides catch a lda mix-up */
            int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
            float *A = fmalloc((ta ? K : M) * lda, 11 + ta);
            float *B = fmalloc((tb ? N : K) * ldb, 21 + tb);
            float *C = fmalloc(M * ldc, 31);
            float *C0 = fmalloc(M * ldc, 31);
            const float alpha = 0.75f, beta = -0.5f;
            mdiff_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    double s = 0, sa = 0;
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[k * lda + i] : A[i * lda + k];
                        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                        s += a * b;
                        sa += fabs(a * b);
                    }
                    double ref = alpha * s + beta * C0[i * ldc + j];
                    check_dot("gemm", i * ldc + j, C[i * ldc + j], ref,
                              fabs(alpha) * sa + fabs(beta * C0[i * ldc + j]), K);
                }
                /* the padding past column N must be untouched */
                for (int j = N; j < ldc; j++) ck_assert_float_eq(C[i * ldc + j], C0[i * ldc + j]);
            }
            free(A);
            free(B);
            free(C);
            free(C0);
        }
}
END_TEST

START_TEST(gemm_bad_ld_is_internal_error) {
    float a[4] = {0}, b[4] = {0}, c[4] = {0};
    mdiff_gemm(0, 0, 2, 2, 2, 1.0f, a, 1, b, 2, 0.0f, c, 2); /* lda 1 < K 2 */
}
END_TEST

/* ---- linear -------------------------------------------------------------------------------- */

typedef struct {
    int B, C, OC;
    float *inp, *w, *bias;
} lin_ctx;

static void lin_fwd(void *p, float *out) {
    lin_ctx *c = p;
    mdiff_linear_forward(out, c->inp, c->w, c->bias, c->B, c->C, c->OC);
}

START_TEST(linear_forward_and_backward) {
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        lin_ctx c = {3, 5, 4, NULL, NULL, NULL};
        c.inp = fmalloc(c.B * c.C, 1);
        c.w = fmalloc(c.OC * c.C, 2);
        c.bias = with_bias ? fmalloc(c.OC, 3) : NULL;
        int64_t n_out = c.B * c.OC;
        float *out = fmalloc(n_out, 0), *wt = fmalloc(n_out, 4);
        lin_fwd(&c, out);
        for (int b = 0; b < c.B; b++)
            for (int o = 0; o < c.OC; o++) {
                double s = with_bias ? c.bias[o] : 0, sa = fabs(s);
                for (int i = 0; i < c.C; i++) {
                    s += (double)c.inp[b * c.C + i] * c.w[o * c.C + i];
                    sa += fabs((double)c.inp[b * c.C + i] * c.w[o * c.C + i]);
                }
                check_dot("linear out", b * c.OC + o, out[b * c.OC + o], s, sa, c.C);
            }
        float *di = fmalloc(c.B * c.C, 0), *dw = fmalloc(c.OC * c.C, 0), *db = fmalloc(c.OC, 0);
        mdiff_linear_backward(di, dw, with_bias ? db : NULL, wt, c.inp, c.w, c.B, c.C, c.OC);
        fd_check("linear dinp", c.inp, di, c.B * c.C, lin_fwd, &c, out, wt, n_out, FD_H, FD_ATOL,
                 FD_RTOL, 0);
        fd_check("linear dweight", c.w, dw, c.OC * c.C, lin_fwd, &c, out, wt, n_out, FD_H,
                 FD_ATOL, FD_RTOL, 0);
        if (with_bias)
            fd_check("linear dbias", c.bias, db, c.OC, lin_fwd, &c, out, wt, n_out, FD_H, FD_ATOL,
                     FD_RTOL, 0);
        /* += contract: a second call doubles every gradient; NULL dinp leaves dweight intact */
        float *dw1 = fmalloc(c.OC * c.C, 0);
        memcpy(dw1, dw, c.OC * c.C * sizeof(float));
        float *di1 = fmalloc(c.B * c.C, 0);
        memcpy(di1, di, c.B * c.C * sizeof(float));
        mdiff_linear_backward(di, dw, with_bias ? db : NULL, wt, c.inp, c.w, c.B, c.C, c.OC);
        for (int i = 0; i < c.OC * c.C; i++)
            ck_assert_float_eq_tol(dw[i], 2 * dw1[i], 1e-5 * (1 + fabs(dw1[i])));
        for (int i = 0; i < c.B * c.C; i++)
            ck_assert_float_eq_tol(di[i], 2 * di1[i], 1e-5 * (1 + fabs(di1[i])));
        memset(dw, 0, c.OC * c.C * sizeof(float));
        mdiff_linear_backward(NULL, dw, NULL, wt, c.inp, c.w, c.B, c.C, c.OC);
        for (int i = 0; i < c.OC * c.C; i++) ck_assert_float_eq(dw[i], dw1[i]);
        free(c.inp), free(c.w), free(c.bias), free(out), free(wt), free(di), free(dw), free(db);
        free(dw1), free(di1);
    }
}
END_TEST

/* ---- conv2d -------------------------------------------------------------------------------- */

typedef struct {
    int B, C, OC, H, W, K, stride, bias;
} conv_cfg;

static const conv_cfg CFGS[] = {
    {2, 3, 4, 5, 7, 3, 1, 1}, /* 3x3 s1, H != W, C != OC */
    {2, 3, 4, 5, 7, 3, 1, 0}, /* ... without bias */
    {2, 3, 4, 6, 8, 3, 2, 1}, /* 3x3 s2, even H and W */
    {2, 3, 4, 5, 7, 3, 2, 1}, /* 3x3 s2, odd H and W */
    {3, 2, 5, 7, 6, 3, 2, 0}, /* 3x3 s2, odd H even W, no bias */
    {2, 1, 3, 4, 5, 3, 1, 1}, /* C = 1 (the input conv) */
    {2, 3, 1, 4, 3, 3, 1, 1}, /* OC = 1 (the output conv) */
    {2, 2, 3, 1, 1, 3, 1, 1}, /* 1x1 image: only the centre tap is inside */
    {2, 2, 3, 2, 1, 3, 2, 1}, /* tiny stride 2 */
    {2, 3, 5, 3, 5, 1, 1, 1}, /* 1x1 */
    {2, 4, 3, 3, 5, 1, 1, 0}, /* 1x1, OC < C, no bias */
    /* 3x3 stride 1 with >= 8 channels each side (and tiles covering <= 1.2 H W): the Winograd
     * F(2x2, 3x3) path */
    {2, 8, 9, 13, 11, 3, 1, 1}, /* odd H and W: the last tile row and column are cut */
    {2, 9, 8, 6, 4, 3, 1, 0},   /* even H and W, no bias */
    {2, 8, 10, 2, 16, 3, 1, 1}, /* one tile row, 8 tiles wide */
    {3, 8, 8, 7, 7, 3, 1, 1},   /* 7x7 (tiles cover 8x8): im2col, the same results */
};

typedef struct {
    conv_cfg g;
    int OH, OW;
    int64_t n_in, n_out, n_w;
    float *inp, *w, *bias, *work;
} conv_ctx;

static conv_ctx conv_make(conv_cfg g, uint64_t seed) {
    conv_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    int pad = g.K == 3 ? 1 : 0;
    c.OH = (g.H + 2 * pad - g.K) / g.stride + 1;
    c.OW = (g.W + 2 * pad - g.K) / g.stride + 1;
    c.n_in = (int64_t)g.B * g.C * g.H * g.W;
    c.n_out = (int64_t)g.B * g.OC * c.OH * c.OW;
    c.n_w = (int64_t)g.OC * g.C * g.K * g.K;
    c.inp = fmalloc(c.n_in, seed);
    c.w = fmalloc(c.n_w, seed + 1);
    c.bias = g.bias ? fmalloc(g.OC, seed + 2) : NULL;
    c.work = fmalloc(mdiff_conv2d_work_floats(g.B, g.C, g.H, g.W, g.OC, g.K, g.stride, pad), 0);
    return c;
}

static void conv_free(conv_ctx *c) {
    free(c->inp), free(c->w), free(c->bias), free(c->work);
}

static void conv_fwd(void *p, float *out) {
    conv_ctx *c = p;
    const conv_cfg *g = &c->g;
    mdiff_conv2d_forward(out, c->inp, c->w, c->bias, g->B, g->C, g->H, g->W, g->OC, g->K,
                         g->stride, g->K == 3 ? 1 : 0, c->work);
}

static void conv_bwd(conv_ctx *c, float *di, float *dw, float *db, const float *dout) {
    const conv_cfg *g = &c->g;
    mdiff_conv2d_backward(di, dw, db, dout, c->inp, c->w, g->B, g->C, g->H, g->W, g->OC, g->K,
                          g->stride, g->K == 3 ? 1 : 0, c->work);
}

/* Direct convolution in double, checked element by element with the dot-product bound. */
static void conv_check_forward(conv_ctx *c, const float *out) {
    const conv_cfg *g = &c->g;
    int pad = g->K == 3 ? 1 : 0;
    for (int b = 0; b < g->B; b++)
        for (int o = 0; o < g->OC; o++)
            for (int oh = 0; oh < c->OH; oh++)
                for (int ow = 0; ow < c->OW; ow++) {
                    double s = c->bias ? c->bias[o] : 0, sa = fabs(s);
                    for (int ch = 0; ch < g->C; ch++)
                        for (int kh = 0; kh < g->K; kh++)
                            for (int kw = 0; kw < g->K; kw++) {
                                int ih = oh * g->stride - pad + kh, iw = ow * g->stride - pad + kw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                double t = (double)c->w[((o * g->C + ch) * g->K + kh) * g->K + kw] *
                                           c->inp[(((int64_t)b * g->C + ch) * g->H + ih) * g->W + iw];
                                s += t;
                                sa += fabs(t);
                            }
                    int64_t k = (((int64_t)b * g->OC + o) * c->OH + oh) * c->OW + ow;
                    check_dot("conv out", k, out[k], s, sa, g->C * g->K * g->K);
                }
}

/* Forward vs direct, backward vs finite differences, += contract, NULL dinp/dbias. */
static void conv_full_check(conv_cfg g, uint64_t seed, int64_t max_checks) {
    conv_ctx c = conv_make(g, seed);
    float *out = fmalloc(c.n_out, 0), *wt = fmalloc(c.n_out, seed + 7);
    /* out is poisoned first: the forward must overwrite every element (no += on out) */
    for (int64_t i = 0; i < c.n_out; i++) out[i] = NAN;
    conv_fwd(&c, out);
    conv_check_forward(&c, out);

    float *di = fmalloc(c.n_in, 0), *dw = fmalloc(c.n_w, 0), *db = fmalloc(g.OC, 0);
    conv_bwd(&c, di, dw, g.bias ? db : NULL, wt);
    char what[128];
    snprintf(what, sizeof what, "conv B%d C%d OC%d %dx%d k%d s%d bias%d", g.B, g.C, g.OC, g.H, g.W,
             g.K, g.stride, g.bias);
    char name[160];
    snprintf(name, sizeof name, "%s dinp", what);
    fd_check(name, c.inp, di, c.n_in, conv_fwd, &c, out, wt, c.n_out, FD_H, FD_ATOL, FD_RTOL,
             max_checks);
    snprintf(name, sizeof name, "%s dweight", what);
    fd_check(name, c.w, dw, c.n_w, conv_fwd, &c, out, wt, c.n_out, FD_H, FD_ATOL, FD_RTOL,
             max_checks);
    if (g.bias) {
        snprintf(name, sizeof name, "%s dbias", what);
        fd_check(name, c.bias, db, g.OC, conv_fwd, &c, out, wt, c.n_out, FD_H, FD_ATOL, FD_RTOL,
                 0);
    }

    /* += contract: a second backward doubles every gradient (the sums are regrouped by the
     * GEMM's accumulation into a nonzero C, so allow 1e-5 relative to the largest entry). */
    float *di2 = fmalloc(c.n_in, 0), *dw2 = fmalloc(c.n_w, 0), *db2 = fmalloc(g.OC, 0);
    conv_bwd(&c, di2, dw2, db2, wt);
    conv_bwd(&c, di2, dw2, db2, wt);
    double mi = 0, mw = 0, mb = 0;
    for (int64_t i = 0; i < c.n_in; i++) mi = fmax(mi, fabs(di[i]));
    for (int64_t i = 0; i < c.n_w; i++) mw = fmax(mw, fabs(dw[i]));
    for (int i = 0; i < g.OC; i++) mb = fmax(mb, fabs(db2[i] / 2));
    for (int64_t i = 0; i < c.n_in; i++)
        ck_assert_msg(fabs(di2[i] - 2 * di[i]) <= 1e-5 * (mi + 1e-30), "%s: dinp[%lld] twice",
                      what, (long long)i);
    for (int64_t i = 0; i < c.n_w; i++)
        ck_assert_msg(fabs(dw2[i] - 2 * dw[i]) <= 1e-5 * (mw + 1e-30), "%s: dweight[%lld] twice",
                      what, (long long)i);
    if (g.bias)
        for (int i = 0; i < g.OC; i++)
            ck_assert_msg(fabs(db2[i] - 2 * db[i]) <= 1e-5 * (mb + 1e-30), "%s: dbias[%d] twice",
                          what, i);

    /* NULL dinp and dbias: dweight is the same computation, so bit-identical */
    memset(dw2, 0, c.n_w * sizeof(float));
    conv_bwd(&c, NULL, dw2, NULL, wt);
    for (int64_t i = 0; i < c.n_w; i++)
        ck_assert_msg(dw2[i] == dw[i], "%s: dweight[%lld] differs with NULL dinp", what,
                      (long long)i);
    free(out), free(wt), free(di), free(dw), free(db), free(di2), free(dw2), free(db2);
    conv_free(&c);
}

START_TEST(conv_configs) {
    int n = (int)(sizeof CFGS / sizeof CFGS[0]);
    conv_full_check(CFGS[_i], 100 + 10 * (uint64_t)_i, 0);
    (void)n;
}
END_TEST

/* Samples per workspace chunk: the workspace grows with B up to one chunk, then stays flat. */
static int chunk_samples(conv_cfg g) {
    int pad = g.K == 3 ? 1 : 0;
    for (int b = 1; b < g.B; b++)
        if (mdiff_conv2d_work_floats(b + 1, g.C, g.H, g.W, g.OC, g.K, g.stride, pad) ==
            mdiff_conv2d_work_floats(b, g.C, g.H, g.W, g.OC, g.K, g.stride, pad))
            return b;
    return g.B;
}

/* A batch larger than one workspace chunk, with a partial last chunk: the chunk offsets into
 * inp, out, dinp and the dweight/dbias accumulation across chunks are exercised. */
START_TEST(conv_multi_chunk) {
    const conv_cfg base[4] = {
        {64, 2, 3, 40, 37, 3, 1, 1},
        {64, 2, 3, 80, 75, 3, 2, 1},
        {64, 2, 3, 40, 37, 1, 1, 1},
        {64, 8, 9, 9, 10, 3, 1, 1}, /* Winograd: several samples per chunk */
    };
    conv_cfg g = base[_i];
    int nb = chunk_samples(g);
    ck_assert_msg(nb < g.B, "chunk of %d samples: the case no longer splits the batch", nb);
    g.B = nb + 1 + (nb > 1); /* one full chunk and a partial one (when nb > 1) */
    conv_full_check(g, 500 + (uint64_t)_i, 40);
}
END_TEST

/* The configurations meant for the Winograd path take it (and the 7x7 one does not): otherwise
 * the checks above would silently test im2col twice. */
START_TEST(conv_winograd_dispatch) {
    int n = 0;
    for (size_t i = 0; i < sizeof CFGS / sizeof CFGS[0]; i++) {
        const conv_cfg g = CFGS[i];
        int wino = mdiff_wino_applies(g.C, g.OC, g.H, g.W, g.K, g.stride, g.K == 3 ? 1 : 0);
        if (g.C >= 8 && g.OC >= 8 && !(g.H == 7 && g.W == 7)) {
            ck_assert_msg(wino, "config %zu should take the Winograd path", i);
            n++;
        } else {
            ck_assert_msg(!wino, "config %zu should not take the Winograd path", i);
        }
    }
    ck_assert_int_eq(n, 3);
    ck_assert(mdiff_wino_applies(32, 32, 28, 28, 3, 1, 1) && mdiff_wino_applies(64, 64, 14, 14, 3, 1, 1));
    ck_assert(!mdiff_wino_applies(64, 64, 7, 7, 3, 1, 1) && !mdiff_wino_applies(1, 32, 28, 28, 3, 1, 1));
}
END_TEST

START_TEST(conv_unsupported_k5) { mdiff_conv2d_work_floats(1, 1, 8, 8, 1, 5, 1, 2); }
END_TEST
START_TEST(conv_unsupported_pad0) {
    float x[64] = {0}, w[9] = {0}, o[64], work[1024];
    mdiff_conv2d_forward(o, x, w, NULL, 1, 1, 8, 8, 1, 3, 1, 0, work);
}
END_TEST
START_TEST(conv_unsupported_1x1_s2) {
    float x[64] = {0}, w[1] = {0}, d[64] = {0}, work[1024];
    mdiff_conv2d_backward(NULL, w, NULL, d, x, w, 1, 1, 8, 8, 1, 1, 2, 0, work);
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("ops_conv");
    TCase *tc = tcase_create("gemm_conv");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, gemm_matches_naive);
    tcase_add_exit_test(tc, gemm_bad_ld_is_internal_error, 2);
    tcase_add_test(tc, linear_forward_and_backward);
    tcase_add_loop_test(tc, conv_configs, 0, (int)(sizeof CFGS / sizeof CFGS[0]));
    tcase_add_loop_test(tc, conv_multi_chunk, 0, 4);
    tcase_add_test(tc, conv_winograd_dispatch);
    tcase_add_exit_test(tc, conv_unsupported_k5, 2);
    tcase_add_exit_test(tc, conv_unsupported_pad0, 2);
    tcase_add_exit_test(tc, conv_unsupported_1x1_s2, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
