/* Tests of optim: warmup, EMA decay, global-norm clipping, AdamW against updates hand-computed in
 * double here, and the whole step (clip + AdamW + warmup + EMA) against a PyTorch run
 * (tests/reference/optim_reference.py). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/optim.h"

/* Float per-element arithmetic against a double reference: each of the few float operations of an
 * update rounds at 2^-24 ≈ 6e-8 relative, so a handful of steps stays well inside 1e-6 relative to
 * the magnitudes involved. */
#define REL 1e-6

static void check_close(const char *what, int i, double got, double want, double scale) {
    ck_assert_msg(fabs(got - want) <= REL * scale, "%s[%d] = %.9g, want %.9g (tol %.3g)", what, i,
                  got, want, REL * scale);
}

START_TEST(warmup_schedule) {
    ck_assert_double_eq(mdiff_lr_at(2e-4, 0, 0), 2e-4);
    ck_assert_double_eq(mdiff_lr_at(2e-4, 0, 12345), 2e-4);
    const double want[6] = {0.25, 0.5, 0.75, 1.0, 1.0, 1.0};
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(mdiff_lr_at(1.0, 4, k), want[k], 1e-15);
    ck_assert_double_eq_tol(mdiff_lr_at(2e-4, 500, 0), 2e-4 / 500, 1e-18);
}
END_TEST

START_TEST(ema_decay_and_update) {
    ck_assert_double_eq_tol(mdiff_ema_decay(0.9999, 0), 0.1, 1e-15);
    ck_assert_double_eq_tol(mdiff_ema_decay(0.9999, 1), 2.0 / 11.0, 1e-15);
    ck_assert_double_eq_tol(mdiff_ema_decay(0.9999, 90), 91.0 / 100.0, 1e-15);
    /* (1+u)/(10+u) passes 0.9999 at u = 89992: after that D. */
    ck_assert_double_eq_tol(mdiff_ema_decay(0.9999, 89990), 89991.0 / 90000.0, 1e-15);
    ck_assert_double_eq(mdiff_ema_decay(0.9999, 89992), 0.9999);
    ck_assert_double_eq(mdiff_ema_decay(0.9999, 10000000), 0.9999);
    float ema[3] = {1.0f, -2.0f, 0.0f};
    const float p[3] = {3.0f, 2.0f, 1.0f};
    mdiff_ema_update(ema, p, 3, 0.75);
    /* 0.75 e + 0.25 p, exact in float */
    ck_assert_float_eq(ema[0], 1.5f);
    ck_assert_float_eq(ema[1], -1.0f);
    ck_assert_float_eq(ema[2], 0.25f);
}
END_TEST

START_TEST(clip_global_norm) {
    float g[2] = {3.0f, 4.0f};
    ck_assert_double_eq(mdiff_clip_grad_norm(g, 2, 10.0), 5.0); /* below: untouched */
    ck_assert_float_eq(g[0], 3.0f);
    ck_assert_double_eq(mdiff_clip_grad_norm(g, 2, 0.0), 5.0); /* 0: disabled */
    ck_assert_float_eq(g[1], 4.0f);
    ck_assert_double_eq(mdiff_clip_grad_norm(g, 2, 1.0), 5.0); /* returns the pre-clip norm */
    double sc = 1.0 / (5.0 + 1e-6);                            /* PyTorch's clip_coef */
    ck_assert_double_eq_tol(g[0], 3.0 * sc, 1e-7);
    ck_assert_double_eq_tol(g[1], 4.0 * sc, 1e-7);
    ck_assert_double_eq_tol(mdiff_grad_norm(g, 2), 5.0 * sc, 1e-7);
    float bad[3] = {1.0f, INFINITY, 2.0f};
    ck_assert(isinf(mdiff_clip_grad_norm(bad, 3, 1.0)));
    ck_assert_float_eq(bad[0], 1.0f); /* non-finite: untouched, the caller skips the step */
    bad[1] = NAN;
    ck_assert(isnan(mdiff_clip_grad_norm(bad, 3, 1.0)));
    ck_assert_float_eq(bad[2], 2.0f);
}
END_TEST

/* The norm is accumulated in double: 2^22 squares of 0.1f. A float accumulator would be off by
 * percents (once the sum nears 4e4 its ulp, 2^-8, is a third of each 0.01 term). */
START_TEST(grad_norm_in_double) {
    int64_t n = (int64_t)1 << 22;
    float *g = mdiff_malloc((size_t)n * sizeof(float), "test");
    for (int64_t i = 0; i < n; i++) g[i] = 0.1f;
    double want = sqrt((double)n) * (double)0.1f;
    ck_assert_double_eq_tol(mdiff_grad_norm(g, n), want, 1e-9 * want);
    free(g);
}
END_TEST

/* AdamW by the textbook formula in double: m̂ = m/(1-β1^k), v̂ = v/(1-β2^k),
 * p = p (1 - lr wd) - lr m̂ / (sqrt(v̂) + eps). */
START_TEST(adamw_hand_computed) {
    enum { N = 5, K = 4 };
    const double lr = 1e-3, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    float p[N] = {1.0f, -0.5f, 0.25f, 2.0f, 0.0f}, m[N] = {0}, v[N] = {0};
    double pd[N], md[N] = {0}, vd[N] = {0};
    for (int i = 0; i < N; i++) pd[i] = p[i];
    for (int k = 1; k <= K; k++) {
        float g[N];
        for (int i = 0; i < N; i++) g[i] = (float)((i - 2) * 0.5 + 0.1 * k); /* includes ±, 0 */
        mdiff_adamw_update(p, m, v, g, N, lr, b1, b2, eps, wd, k);
        for (int i = 0; i < N; i++) {
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
            double mh = md[i] / (1 - pow(b1, k)), vh = vd[i] / (1 - pow(b2, k));
            pd[i] = pd[i] * (1 - lr * wd) - lr * mh / (sqrt(vh) + eps);
        }
        for (int i = 0; i < N; i++) {
            check_close("p", i, p[i], pd[i], fabs(pd[i]) + lr);
            check_close("m", i, m[i], md[i], fabs(md[i]) + 1e-3);
            check_close("v", i, v[i], vd[i], fabs(vd[i]) + 1e-6);
        }
    }
    /* First step by hand: m̂ = g, v̂ = g², so the move is lr·g/(|g|+eps) ≈ lr sign(g), plus decay */
    float q = 1.0f, mq = 0, vq = 0, gq = -3.0f;
    mdiff_adamw_update(&q, &mq, &vq, &gq, 1, 0.1, b1, b2, eps, 0.5, 1);
    ck_assert_double_eq_tol(q, 1.0 * (1 - 0.05) + 0.1 * 3.0 / (3.0 + 1e-8), 1e-7);
}
END_TEST

/* Generated by tests/reference/optim_reference.py (torch 1.13.0a0). */
static const double REF_NORMS[5] = {3.072051525e+00, 1.068343297e-01, 9.581068754e-01,
                                    8.587781906e+00, 5.986638665e-01};
static const double REF_P[6] = {5.265375376e-01,  -1.279973269e+00, 1.956893682e+00,
                                -2.149769105e-03, -6.643129140e-02, 2.953116655e+00};
static const double REF_M[6] = {-3.843065351e-02, 5.825083703e-02, 1.549323201e-01,
                                1.957824081e-02,  1.162597239e-01, 2.129411995e-01};
static const double REF_V[6] = {1.250648638e-04, 1.205225562e-04, 8.618981810e-04,
                                3.282932812e-05, 4.758377618e-04, 1.664764248e-03};
static const double REF_EMA[6] = {5.236764550e-01, -1.276104212e+00, 1.962393403e+00,
                                  3.946413635e-04, -6.190384924e-02, 2.959070444e+00};

static float ref_grad(int k, int i) { /* the script's grad(k, i); dyadic, exact in float */
    const double scale[5] = {4.0, 0.125, 1.0, 8.0, 0.5};
    return (float)(scale[k] * ((i % 3) - 1 + 0.25 * (i + k)) / 4.0);
}

START_TEST(optim_matches_pytorch) {
    enum { N = 6, STEPS = 5 };
    float p[N] = {0.5f, -1.25f, 2.0f, 0.0f, -0.03125f, 3.0f}, m[N] = {0}, v[N] = {0}, ema[N], g[N];
    memcpy(ema, p, sizeof p);
    mdiff_optim_cfg c;
    mdiff_optim_cfg_defaults(&c);
    c.lr = 1e-2;
    c.warmup = 3;
    c.weight_decay = 0.1;
    c.clip = 1.0;
    c.ema = 0.999;
    for (int k = 0; k < STEPS; k++) {
        for (int i = 0; i < N; i++) g[i] = ref_grad(k, i);
        double norm = mdiff_optim_step(p, m, v, ema, g, N, &c, k);
        /* the norm is a double sum of exact squares: PyTorch's float32 norm is good to ~1e-7 */
        check_close("norm", k, norm, REF_NORMS[k], REF_NORMS[k]);
    }
    /* Both sides in float32; PyTorch orders some operations differently (fused addcdiv, lerp):
     * a few ulp per step on values of order 1, inside 1e-6 of (|x| + typical size). */
    for (int i = 0; i < N; i++) {
        check_close("p", i, p[i], REF_P[i], fabs(REF_P[i]) + 1e-2);
        check_close("m", i, m[i], REF_M[i], fabs(REF_M[i]) + 1e-2);
        check_close("v", i, v[i], REF_V[i], fabs(REF_V[i]) + 1e-5);
        check_close("ema", i, ema[i], REF_EMA[i], fabs(REF_EMA[i]) + 1e-2);
    }
}
END_TEST

START_TEST(nonfinite_step_changes_nothing) {
    float p[2] = {1.0f, 2.0f}, m[2] = {0.5f, 0.5f}, v[2] = {0.25f, 0.25f}, ema[2] = {3.0f, 4.0f};
    float g[2] = {NAN, 1.0f};
    mdiff_optim_cfg c;
    mdiff_optim_cfg_defaults(&c);
    ck_assert(!isfinite(mdiff_optim_step(p, m, v, ema, g, 2, &c, 7)));
    ck_assert_float_eq(p[0], 1.0f);
    ck_assert_float_eq(p[1], 2.0f);
    ck_assert_float_eq(m[1], 0.5f);
    ck_assert_float_eq(v[1], 0.25f);
    ck_assert_float_eq(ema[1], 4.0f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, warmup_schedule);
    tcase_add_test(tc, ema_decay_and_update);
    tcase_add_test(tc, clip_global_norm);
    tcase_add_test(tc, grad_norm_in_double);
    tcase_add_test(tc, adamw_hand_computed);
    tcase_add_test(tc, optim_matches_pytorch);
    tcase_add_test(tc, nonfinite_step_changes_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
