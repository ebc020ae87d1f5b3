/* Tests of multi-head self-attention (src/ops/attention.c): forward outputs and probabilities
 * against a naive double-precision reference, stability with large scores, the backward against
 * central differences for NH = 1 and 2, odd L (7, 9), C = 4 and 6, B = 2, the += accumulation
 * contract and the workspace size. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"

/* out (B, C, L), att (B, NH, L, L) from qkv (B, 3C, L), all in double, max-subtracted softmax. */
static void attn_ref(double *out, double *att, const float *qkv, int B, int C, int L, int NH) {
    int d = C / NH;
    double *s = malloc((size_t)L * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + ((int64_t)b * 3 * C + h * d) * L;
            const float *k = q + (int64_t)C * L, *v = k + (int64_t)C * L;
            double *a = att + ((int64_t)b * NH + h) * L * L;
            for (int i = 0; i < L; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    s[j] = 0;
                    for (int c = 0; c < d; c++) s[j] += (double)q[c * L + i] * k[c * L + j];
                    s[j] /= sqrt((double)d);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < L; j++) sum += (s[j] = exp(s[j] - mx));
                for (int j = 0; j < L; j++) a[i * L + j] = s[j] / sum;
            }
            for (int c = 0; c < d; c++)
                for (int i = 0; i < L; i++) {
                    double o = 0;
                    for (int j = 0; j < L; j++) o += a[i * L + j] * v[c * L + j];
                    out[((int64_t)b * C + h * d + c) * L + i] = o;
                }
        }
    free(s);
}

static void expect_close(const char *what, const float *got, const double *ref, int64_t n,
                         double atol) {
    for (int64_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]);
        ck_assert_msg(isfinite(got[i]) && err <= atol,
                      "%s[%lld]: got %.9g, reference %.9g (|diff| %.3g > %.1g)", what,
                      (long long)i, (double)got[i], ref[i], err, atol);
    }
}

/* Every row of att sums to 1: each of the L probabilities carries a few ulp relative error and
 * they sum to 1, so the row sum is off by a few ulp of 1 (~2e-7); 1e-6 leaves margin. */
static void expect_rows_sum_to_1(const float *att, int64_t rows, int L) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int j = 0; j < L; j++) {
            ck_assert(att[r * L + j] >= 0.0f);
            s += att[r * L + j];
        }
        ck_assert_msg(fabs(s - 1.0) <= 1e-6, "att row %lld sums to %.9g", (long long)r, s);
    }
}

typedef struct {
    int B, C, L, NH;
    float *qkv, *att;
} at_case;

static void at_fwd(void *ctx, float *out) {
    at_case *c = ctx;
    mdiff_attention_forward(out, c->att, c->qkv, c->B, c->C, c->L, c->NH);
}

/* {C, L, NH}: every combination of C in {4, 6}, odd L in {7, 9}, NH in {1, 2}; B = 2. */
static const int cfgs[][3] = {{4, 7, 1}, {4, 7, 2}, {4, 9, 1}, {4, 9, 2},
                              {6, 7, 1}, {6, 7, 2}, {6, 9, 1}, {6, 9, 2}};
#define NCFG ((int)(sizeof cfgs / sizeof cfgs[0]))
#define BATCH 2

START_TEST(forward_matches_double_reference) {
    for (int k = 0; k < NCFG; k++) {
        int B = BATCH, C = cfgs[k][0], L = cfgs[k][1], NH = cfgs[k][2];
        int64_t nq = (int64_t)B * 3 * C * L, no = (int64_t)B * C * L,
                na = (int64_t)B * NH * L * L;
        float *qkv = malloc(nq * sizeof(float)), *out = malloc(no * sizeof(float)),
              *att = malloc(na * sizeof(float));
        double *ro = malloc(no * sizeof(double)), *ra = malloc(na * sizeof(double));
        fd_fill(qkv, nq, 40 + k);
        mdiff_attention_forward(out, att, qkv, B, C, L, NH);
        attn_ref(ro, ra, qkv, B, C, L, NH);
        /* Inputs in [-1, 1): |scores| <= sqrt(d) <= 2.5, exp and the sums are float32 with a
         * few ulp of error on O(1) values (<~ 1e-6); 2e-6 on probabilities and 1e-5 on outputs
         * leave margin yet catch a wrong scale (sqrt(d) vs d changes scores by tens of %), a
         * transposed att or a swapped q/k/v block. */
        expect_close("att", att, ra, na, 2e-6);
        expect_close("out", out, ro, no, 1e-5);
        expect_rows_sum_to_1(att, (int64_t)B * NH * L, L);
        free(qkv);
        free(out);
        free(att);
        free(ro);
        free(ra);
    }
}
END_TEST

/* Scores up to ~140 (q, k scaled by 10): exp without the max subtraction overflows float. */
START_TEST(forward_stable_for_large_scores) {
    const int B = 2, C = 4, L = 9, NH = 2;
    int64_t nq = (int64_t)B * 3 * C * L, no = (int64_t)B * C * L, na = (int64_t)B * NH * L * L;
    float *qkv = malloc(nq * sizeof(float)), *out = malloc(no * sizeof(float)),
          *att = malloc(na * sizeof(float));
    double *ro = malloc(no * sizeof(double)), *ra = malloc(na * sizeof(double));
    fd_fill(qkv, nq, 77);
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < 2 * C * L; i++) qkv[(int64_t)b * 3 * C * L + i] *= 10.0f;
    mdiff_attention_forward(out, att, qkv, B, C, L, NH);
    attn_ref(ro, ra, qkv, B, C, L, NH);
    /* A float score of size 140 carries ~ few ulp = ~3e-5 absolute error, which moves each
     * probability by that relative amount: <= 3e-5 on att and, with |v| < 1, on out; 2e-4. */
    expect_close("att", att, ra, na, 2e-4);
    expect_close("out", out, ro, no, 2e-4);
    expect_rows_sum_to_1(att, (int64_t)B * NH * L, L);
    free(qkv);
    free(out);
    free(att);
    free(ro);
    free(ra);
}
END_TEST

START_TEST(backward_matches_finite_differences) {
    for (int k = 0; k < NCFG; k++) {
        int B = BATCH, C = cfgs[k][0], L = cfgs[k][1], NH = cfgs[k][2];
        int64_t nq = (int64_t)B * 3 * C * L, no = (int64_t)B * C * L,
                na = (int64_t)B * NH * L * L;
        at_case c = {B, C, L, NH, malloc(nq * sizeof(float)), malloc(na * sizeof(float))};
        float *out = malloc(no * sizeof(float)), *w = malloc(no * sizeof(float));
        float *dqkv = calloc(nq, sizeof(float));
        int64_t nw = mdiff_attention_work_floats(B, C, L, NH);
        float *work = malloc(nw * sizeof(float));
        fd_fill(c.qkv, nq, 50 + k);
        fd_fill(w, no, 60 + k);
        at_fwd(&c, out);
        mdiff_attention_backward(dqkv, w, c.qkv, c.att, B, C, L, NH, work);
        /* h = 3e-3: the map is smooth with O(1) derivatives (|scores| <= 2.5), so truncation
         * h^2/6 * |f'''| is ~1e-5; rounding: <= 108 float outputs of ~1 ulp (6e-8) each,
         * random signs: ~1e-6 in L, /2h ~ 2e-4. atol 1e-3 + rtol 1e-2 is 5x that, while a wrong
         * softmax backward or a missing 1/sqrt(d) is an O(10-100%) error. */
        char what[64];
        snprintf(what, sizeof what, "dqkv C %d L %d NH %d", C, L, NH);
        double worst = fd_check(what, c.qkv, dqkv, nq, at_fwd, &c, out, w, no, 3e-3, 1e-3,
                                1e-2, 0);
        if (getenv("FD_VERBOSE"))
            printf("attention C %d L %d NH %d: worst |fd - analytic| %.2g\n", C, L, NH, worst);
        free(c.qkv);
        free(c.att);
        free(out);
        free(w);
        free(dqkv);
        free(work);
    }
}
END_TEST

/* Twice = 2x once; NULL dqkv is a no-op; the backward writes no float beyond the workspace
 * size it advertises (canaries after it). */
START_TEST(backward_accumulates_and_respects_workspace) {
    const int B = 2, C = 6, L = 9, NH = 2;
    int64_t nq = (int64_t)B * 3 * C * L, no = (int64_t)B * C * L, na = (int64_t)B * NH * L * L;
    float *qkv = malloc(nq * sizeof(float)), *att = malloc(na * sizeof(float)),
          *out = malloc(no * sizeof(float)), *w = malloc(no * sizeof(float));
    float *d1 = calloc(nq, sizeof(float)), *d2 = calloc(nq, sizeof(float));
    int64_t nw = mdiff_attention_work_floats(B, C, L, NH);
    ck_assert_int_ge(nw, 1);
    float *work = malloc((nw + 16) * sizeof(float));
    for (int i = 0; i < 16; i++) work[nw + i] = 1234.5f;
    fd_fill(qkv, nq, 3);
    fd_fill(w, no, 4);
    mdiff_attention_forward(out, att, qkv, B, C, L, NH);
    mdiff_attention_backward(d1, w, qkv, att, B, C, L, NH, work);
    mdiff_attention_backward(d2, w, qkv, att, B, C, L, NH, work);
    mdiff_attention_backward(d2, w, qkv, att, B, C, L, NH, work);
    mdiff_attention_backward(NULL, w, qkv, att, B, C, L, NH, work);
    /* Each dqkv element gets one GEMM contribution per call, identical in both calls: 2x up to
     * the final rounding of the accumulation (1 ulp of |d| <~ 2). */
    int nonzero = 0;
    for (int64_t i = 0; i < nq; i++) {
        ck_assert_float_eq_tol(d2[i], 2 * d1[i], 1e-6);
        nonzero += d1[i] != 0.0f;
    }
    ck_assert_int_eq(nonzero, nq);
    for (int i = 0; i < 16; i++) ck_assert_float_eq(work[nw + i], 1234.5f);
    free(qkv);
    free(att);
    free(out);
    free(w);
    free(d1);
    free(d2);
    free(work);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_attention");
    TCase *tc = tcase_create("attention");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forward_matches_double_reference);
    tcase_add_test(tc, forward_stable_for_large_scores);
    tcase_add_test(tc, backward_matches_finite_differences);
    tcase_add_test(tc, backward_accumulates_and_respects_workspace);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
