/* Tests of group norm (src/ops/norm.c): forward against a two-pass double-precision reference,
 * statistics of large-mean inputs, every backward gradient against central differences in every
 * supported configuration (G = 1, 2, 3, C; odd HW; B > 1; with and without the fused SiLU), and
 * the += accumulation contract. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"
/* private to src/ops; included last because it sets a gcc optimize pragma for what follows */
#include "../../src/ops/vexp.h"

/* Two-pass double reference: mean, biased variance, eps 1e-5 inside the sqrt
 * (torch.nn.GroupNorm). */
static void gn_ref(double *out, double *mean, double *rstd, const float *x, const float *gamma,
                   const float *beta, int B, int C, int HW, int G, int silu) {
    int cpg = C / G;
    int64_t n = (int64_t)cpg * HW;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((int64_t)b * G + g) * n;
            double m = 0, v = 0;
            for (int64_t i = 0; i < n; i++) m += xg[i];
            m /= (double)n;
            for (int64_t i = 0; i < n; i++) v += (xg[i] - m) * (xg[i] - m);
            v /= (double)n;
            double rs = 1.0 / sqrt(v + 1e-5);
            mean[b * G + g] = m;
            rstd[b * G + g] = rs;
            for (int cc = 0; cc < cpg; cc++) {
                int c = g * cpg + cc;
                for (int i = 0; i < HW; i++) {
                    int64_t k = ((int64_t)b * G + g) * n + (int64_t)cc * HW + i;
                    double y = (x[k] - m) * rs * gamma[c] + beta[c];
                    if (silu) y = y / (1.0 + exp(-y));
                    out[k] = y;
                }
            }
        }
}

static void expect_close(const char *what, const float *got, const double *ref, int64_t n,
                         double atol, double rtol) {
    for (int64_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]);
        ck_assert_msg(isfinite(got[i]) && err <= atol + rtol * fabs(ref[i]),
                      "%s[%lld]: got %.9g, reference %.9g (|diff| %.3g)", what, (long long)i,
                      (double)got[i], ref[i], err);
    }
}

typedef struct {
    int B, C, HW, G, silu;
    float *inp, *gamma, *beta, *mean, *rstd;
} gn_case;

static gn_case gn_make(int B, int C, int HW, int G, int silu, uint64_t seed) {
    gn_case c = {B, C, HW, G, silu, NULL, NULL, NULL, NULL, NULL};
    int64_t n = (int64_t)B * C * HW;
    c.inp = malloc(n * sizeof(float));
    c.gamma = malloc(C * sizeof(float));
    c.beta = malloc(C * sizeof(float));
    c.mean = malloc(B * G * sizeof(float));
    c.rstd = malloc(B * G * sizeof(float));
    fd_fill(c.inp, n, seed);
    fd_fill(c.gamma, C, seed + 1);
    fd_fill(c.beta, C, seed + 2);
    /* gamma in [0.5, 1.5), beta in [-0.5, 0.5): away from 0 so no gradient term vanishes */
    for (int i = 0; i < C; i++) {
        c.gamma[i] = 1.0f + 0.5f * c.gamma[i];
        c.beta[i] *= 0.5f;
    }
    return c;
}

static void gn_free(gn_case *c) {
    free(c->inp);
    free(c->gamma);
    free(c->beta);
    free(c->mean);
    free(c->rstd);
}

static void gn_fwd(void *ctx, float *out) {
    gn_case *c = ctx;
    mdiff_groupnorm_forward(out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->B, c->C, c->HW,
                            c->G, c->silu);
}

/* The configurations: C = 6 with every divisor as G, odd HW (5 = prime, 9 = 3x3), B = 2 and 3,
 * plus C = 4 with G = 2 and a larger HW = 49 (7x7) to cross several accumulation lanes. */
static const int cfgs[][4] = {{2, 6, 5, 1}, {2, 6, 5, 2}, {2, 6, 9, 3}, {2, 6, 9, 6},
                              {3, 6, 5, 6}, {2, 4, 49, 2}, {1, 4, 49, 1}};
#define NCFG ((int)(sizeof cfgs / sizeof cfgs[0]))

START_TEST(forward_matches_double_reference) {
    for (int k = 0; k < NCFG; k++)
        for (int silu = 0; silu <= 1; silu++) {
            int B = cfgs[k][0], C = cfgs[k][1], HW = cfgs[k][2], G = cfgs[k][3];
            gn_case c = gn_make(B, C, HW, G, silu, 100 + k);
            int64_t n = (int64_t)B * C * HW;
            float *out = malloc(n * sizeof(float));
            double *ref = malloc(n * sizeof(double)), *rm = malloc(B * G * sizeof(double)),
                   *rr = malloc(B * G * sizeof(double));
            gn_fwd(&c, out);
            gn_ref(ref, rm, rr, c.inp, c.gamma, c.beta, B, C, HW, G, silu);
            /* float32 evaluation of O(1) quantities: mean/rstd carry ~1 ulp (6e-8 relative),
             * |xhat| <= ~3 for these group sizes and |y| <= ~5, so a few ulp of 5 is ~1e-6;
             * 1e-5 leaves margin yet catches a wrong eps (1e-6 instead of 1e-5 moves rstd by
             * ~1e-5 relative at unit variance, 3x the rstd tolerance) or an unbiased variance
             * (a factor n/(n-1), >= 0.2% here). */
            expect_close("mean", c.mean, rm, B * G, 1e-6, 1e-6);
            expect_close("rstd", c.rstd, rr, B * G, 0, 1e-6);
            expect_close("out", out, ref, n, 1e-5, 1e-5);
            free(out);
            free(ref);
            free(rm);
            free(rr);
            gn_free(&c);
        }
}
END_TEST

/* Large mean, small spread: a one-pass float E[x^2] - E[x]^2 loses the variance entirely here
 * (x^2 ~ 1e6 has ulp 0.06 against a variance of 1/3). */
START_TEST(large_mean_statistics) {
    const int B = 2, C = 4, HW = 1000, G = 2;
    gn_case c = gn_make(B, C, HW, G, 0, 7);
    int64_t n = (int64_t)B * C * HW;
    for (int64_t i = 0; i < n; i++) c.inp[i] += 1000.0f;
    float *out = malloc(n * sizeof(float));
    double *ref = malloc(n * sizeof(double)), rm[4], rr[4];
    gn_fwd(&c, out);
    gn_ref(ref, rm, rr, c.inp, c.gamma, c.beta, B, C, HW, G, 0);
    /* The saved mean is a float: half an ulp of 1000 is 3.1e-5. The variance comes from shifted
     * sums (x - x0 exact by Sterbenz, float partials of <= 32 terms): ~1e-6 relative. The output
     * inherits the mean's rounding times rstd (~1.7) times gamma (< 1.5): < 1e-4. */
    expect_close("mean", c.mean, rm, B * G, 3.2e-5, 0);
    expect_close("rstd", c.rstd, rr, B * G, 0, 1e-5);
    expect_close("out", out, ref, n, 1e-4, 0);
    free(out);
    free(ref);
    gn_free(&c);
}
END_TEST

START_TEST(backward_matches_finite_differences) {
    for (int k = 0; k < NCFG; k++)
        for (int silu = 0; silu <= 1; silu++) {
            int B = cfgs[k][0], C = cfgs[k][1], HW = cfgs[k][2], G = cfgs[k][3];
            gn_case c = gn_make(B, C, HW, G, silu, 200 + k);
            int64_t n = (int64_t)B * C * HW;
            float *out = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
            float *dinp = calloc(n, sizeof(float)), *dg = calloc(C, sizeof(float)),
                  *db = calloc(C, sizeof(float));
            fd_fill(w, n, 300 + k);
            gn_fwd(&c, out);
            mdiff_groupnorm_backward(dinp, dg, db, w, c.inp, c.mean, c.rstd, c.gamma, c.beta, B,
                                     C, HW, G, silu);
            /* h = 3e-3: truncation h^2/6 * f''' with |f'''| <~ rstd^3 * O(10) ~ 50 gives ~1e-4;
             * rounding: each of the n_out <= 392 float outputs carries ~1 ulp (<= 5e-7 at |y|<=5),
             * random signs, so |dL| noise ~ sqrt(392) * 5e-7 ~ 1e-5, divided by 2h: ~2e-3 worst,
             * ~3e-4 typical for the small cases. atol 3e-3 + rtol 1e-2: a missing term of the GN
             * backward (mean or xhat projection, SiLU factor) is an O(0.1-1) error. */
            char what[64];
            double worst[3];
            snprintf(what, sizeof what, "dinp cfg %d silu %d", k, silu);
            worst[0] = fd_check(what, c.inp, dinp, n, gn_fwd, &c, out, w, n, 3e-3, 3e-3, 1e-2, 0);
            snprintf(what, sizeof what, "dgamma cfg %d silu %d", k, silu);
            worst[1] = fd_check(what, c.gamma, dg, C, gn_fwd, &c, out, w, n, 3e-3, 3e-3, 1e-2, 0);
            snprintf(what, sizeof what, "dbeta cfg %d silu %d", k, silu);
            worst[2] = fd_check(what, c.beta, db, C, gn_fwd, &c, out, w, n, 3e-3, 3e-3, 1e-2, 0);
            if (getenv("FD_VERBOSE"))
                printf("groupnorm cfg %d silu %d: worst |fd - analytic| dinp %.2g dgamma %.2g "
                       "dbeta %.2g\n", k, silu, worst[0], worst[1], worst[2]);
            free(out);
            free(w);
            free(dinp);
            free(dg);
            free(db);
            gn_free(&c);
        }
}
END_TEST

/* Backward accumulates: twice from zero = 2x once; dinp = NULL skips dinp and leaves the
 * parameter gradients unchanged. */
START_TEST(backward_accumulates) {
    for (int silu = 0; silu <= 1; silu++) {
        const int B = 2, C = 6, HW = 9, G = 3;
        gn_case c = gn_make(B, C, HW, G, silu, 11);
        int64_t n = (int64_t)B * C * HW;
        float *out = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        float *d1 = calloc(n, sizeof(float)), *d2 = calloc(n, sizeof(float));
        float g1[6] = {0}, b1[6] = {0}, g2[6] = {0}, b2[6] = {0}, g3[6] = {0}, b3[6] = {0};
        fd_fill(w, n, 12);
        gn_fwd(&c, out);
        mdiff_groupnorm_backward(d1, g1, b1, w, c.inp, c.mean, c.rstd, c.gamma, c.beta, B, C, HW,
                                 G, silu);
        for (int r = 0; r < 2; r++)
            mdiff_groupnorm_backward(d2, g2, b2, w, c.inp, c.mean, c.rstd, c.gamma, c.beta, B, C,
                                     HW, G, silu);
        mdiff_groupnorm_backward(NULL, g3, b3, w, c.inp, c.mean, c.rstd, c.gamma, c.beta, B, C,
                                 HW, G, silu);
        /* Each call adds one float partial per sample b, so two calls round differently from
         * one call doubled: a few ulp of the partials (|partial| <~ 10): 1e-5 absolute. A
         * missing accumulation (= instead of +=) is off by 100%. dinp = NULL must not change
         * the parameter gradients at all (same code path for the sums). */
        for (int i = 0; i < C; i++) {
            ck_assert_float_eq_tol(g2[i], 2 * g1[i], 1e-5);
            ck_assert_float_eq_tol(b2[i], 2 * b1[i], 1e-5);
            ck_assert_float_eq(g3[i], g1[i]);
            ck_assert_float_eq(b3[i], b1[i]);
        }
        for (int64_t i = 0; i < n; i++) ck_assert_float_eq_tol(d2[i], 2 * d1[i], 1e-5);
        int nonzero = 0;
        for (int64_t i = 0; i < n; i++) nonzero += d1[i] != 0.0f;
        ck_assert_int_eq(nonzero, n);
        free(out);
        free(w);
        free(d1);
        free(d2);
        gn_free(&c);
    }
}
END_TEST

/* The vectorisable exp and sigmoid used by the fused SiLU and the softmax: against libm in double
 * over their whole domain (about 1.4M points). exp: Cephes' polynomial is within 1 ulp (the
 * bound used: 2 ulp). sigmoid: 1 / (1 + e) adds 2 roundings to exp's error: 2.5 ulp ~ 1.5e-7
 * relative where it is > 4.3e-18 (x >= -40); below -40 the clamp's absolute error < 4.3e-18. */
START_TEST(vexp_and_vsigmoid_accuracy) {
    /* worst error found, checked once (a Check assertion per point would dominate the time) */
    double worst = 0, wx = 0;
    for (double xd = -87.0; xd <= 88.0; xd += 1.234e-4) {
        float x = (float)xd;
        double e = exp((double)x);
        double ulp = (double)nextafterf((float)e, INFINITY) - (float)e;
        double err = fabs(mdiff_vexpf(x) - e) / ulp;
        if (!(err <= worst)) worst = err, wx = x;
    }
    ck_assert_msg(worst <= 2.0, "vexpf: %.3g ulp at x = %.9g", worst, wx);
    worst = 0;
    for (double xd = -100.0; xd <= 100.0; xd += 1.234e-4) {
        float x = (float)xd;
        double s = 1.0 / (1.0 + exp(-(double)x));
        double tol = x >= -40.0f ? 3e-7 * s : 4.3e-18;
        double err = fabs(mdiff_vsigmoidf(x) - s) / tol;
        if (!(err <= worst)) worst = err, wx = x;
    }
    ck_assert_msg(worst <= 1.0, "vsigmoidf: error %.3g x tolerance at x = %.9g", worst, wx);
    ck_assert(isnan(mdiff_vexpf(NAN)) && isnan(mdiff_vsigmoidf(NAN)));
    ck_assert_float_eq(mdiff_vexpf(-INFINITY), mdiff_vexpf(-87.0f));
    ck_assert_float_eq(mdiff_vsigmoidf(INFINITY), 1.0f);
    ck_assert_float_eq(mdiff_vexpf(0.0f), 1.0f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_norm");
    TCase *tc = tcase_create("groupnorm");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, forward_matches_double_reference);
    tcase_add_test(tc, large_mean_statistics);
    tcase_add_test(tc, backward_matches_finite_differences);
    tcase_add_test(tc, backward_accumulates);
    tcase_add_test(tc, vexp_and_vsigmoid_accuracy);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
