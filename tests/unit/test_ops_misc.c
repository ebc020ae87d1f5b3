/* Tests of src/ops/misc.c: the sinusoidal timestep embedding against a double reference, dropout
 * (p = 0 identity; p = 0.5 masks that are a function of (seed, layer, step, global sample) only,
 * whatever the batch layout; backward against the mask and finite differences) and the MSE loss
 * (closed form, double reference, finite differences, += accumulation). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "mdiff/rng.h"

/* ---- timestep embedding ------------------------------------------------------------------- */

START_TEST(timestep_embedding_matches_double_reference) {
    const float t[] = {0, 1, 17, 500, 999};
    const int B = 5;
    const int dims[] = {2, 8, 32};
    for (int k = 0; k < 3; k++) {
        int dim = dims[k], half = dim / 2;
        float *out = malloc((size_t)B * dim * sizeof(float));
        mdiff_timestep_embedding(out, t, B, dim);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < half; i++) {
                double f = exp(-log(10000.0) * i / half);
                double arg = (double)t[b] * f;
                /* improved-diffusion computes f and t * f in float32: f carries <= ~4 ulp
                 * (2.4e-7 relative, f <= 1) and the product 0.5 ulp, so |arg error| <= 3e-7 t;
                 * cos and sin are 1-Lipschitz and add ~1 ulp: tolerance 1e-6 + 3e-7 t. A
                 * swapped [sin, cos] order or a different frequency law (e.g. / (half - 1)) is
                 * an O(1) error. */
                double tol = 1e-6 + 3e-7 * t[b];
                float c = out[(int64_t)b * dim + i], s = out[(int64_t)b * dim + half + i];
                ck_assert_msg(fabs(c - cos(arg)) <= tol && fabs(s - sin(arg)) <= tol,
                              "dim %d t %g i %d: got (%.8g, %.8g), reference (%.8g, %.8g)", dim,
                              (double)t[b], i, (double)c, (double)s, cos(arg), sin(arg));
            }
        /* t = 0 is exactly [1..1, 0..0] */
        for (int i = 0; i < half; i++) {
            ck_assert_float_eq(out[i], 1.0f);
            ck_assert_float_eq(out[half + i], 0.0f);
        }
        free(out);
    }
}
END_TEST

/* ---- dropout --------------------------------------------------------------------------------- */

#define DN 1000 /* elements per sample */

START_TEST(dropout_p0_is_identity) {
    const int B = 2;
    float inp[2 * DN], out[2 * DN], dout[2 * DN], dinp[2 * DN];
    uint8_t mask[2 * DN];
    fd_fill(inp, 2 * DN, 1);
    fd_fill(dout, 2 * DN, 2);
    memset(mask, 7, sizeof mask);
    mdiff_dropout_forward(out, mask, inp, B, DN, 0.0f, 42, 3, 0, 0);
    for (int i = 0; i < B * DN; i++) {
        ck_assert_float_eq(out[i], inp[i]);
        ck_assert_int_eq(mask[i], 1);
        dinp[i] = 1.0f;
    }
    mdiff_dropout_backward(dinp, dout, mask, B, DN, 0.0f);
    for (int i = 0; i < B * DN; i++) ck_assert_float_eq(dinp[i], 1.0f + dout[i]);
}
END_TEST

/* Masks at p = 0.5 for samples 5, 6, 7 of (seed 42, step 7, layer 3). */
static void dropout_run(float *out, uint8_t *mask, const float *inp, int B, int64_t sample0,
                        uint64_t seed, uint64_t step, int layer) {
    mdiff_dropout_forward(out, mask, inp, B, DN, 0.5f, seed, step, sample0, layer);
}

START_TEST(dropout_p05_mask_is_per_sample_and_reproducible) {
    const int B = 3;
    const int64_t s0 = 5;
    static float inp[3 * DN], out[3 * DN], o1[3 * DN], u[DN];
    static uint8_t mask[3 * DN], m1[3 * DN];
    fd_fill(inp, 3 * DN, 9);
    dropout_run(out, mask, inp, B, s0, 42, 7, 3);
    int kept = 0;
    for (int b = 0; b < B; b++) {
        /* the documented contract: keep iff draw i of the stream
         * (seed, MDIFF_RNG_DROPOUT + layer, step, global sample) is >= p */
        mdiff_rng_fill_uniform(u, DN, 42, MDIFF_RNG_DROPOUT + 3, 7, (uint64_t)(s0 + b));
        for (int i = 0; i < DN; i++) {
            int k = b * DN + i;
            ck_assert_int_eq(mask[k], u[i] >= 0.5f);
            /* kept values are scaled by 1 / (1 - p) = 2 exactly, dropped ones are 0 */
            ck_assert_float_eq(out[k], mask[k] ? 2.0f * inp[k] : 0.0f);
            kept += mask[k];
        }
    }
    /* 3000 fair draws: mean 1500, sd 27.4; +-137 is 5 sd (and the seed is fixed, so this is a
     * sanity check of the threshold direction, not a flaky statistic) */
    ck_assert_int_ge(kept, 1500 - 137);
    ck_assert_int_le(kept, 1500 + 137);
    /* each sample alone (B = 1, sample0 = its global index) gives the same mask and output */
    for (int b = 0; b < B; b++) {
        dropout_run(o1, m1, inp + b * DN, 1, s0 + b, 42, 7, 3);
        ck_assert_mem_eq(m1, mask + b * DN, DN);
        ck_assert_mem_eq(o1, out + b * DN, DN * sizeof(float));
    }
    /* another layout: samples 6, 7 as a batch of 2 starting at sample0 = 6 */
    dropout_run(o1, m1, inp + DN, 2, s0 + 1, 42, 7, 3);
    ck_assert_mem_eq(m1, mask + DN, 2 * DN);
    /* a different step, layer or seed gives an unrelated mask (about half the bits differ) */
    const uint64_t alt[3][3] = {{42, 8, 3}, {42, 7, 4}, {43, 7, 3}};
    for (int a = 0; a < 3; a++) {
        dropout_run(o1, m1, inp, 1, s0, alt[a][0], alt[a][1], (int)alt[a][2]);
        int diff = 0;
        for (int i = 0; i < DN; i++) diff += m1[i] != mask[i];
        ck_assert_msg(diff > 350 && diff < 650, "alternative %d: %d of %d mask bits differ", a,
                      diff, DN);
    }
}
END_TEST

typedef struct {
    float *inp, *out_scratch;
    uint8_t *mask;
    int B;
} dr_case;

static void dr_fwd(void *ctx, float *out) {
    dr_case *c = ctx;
    mdiff_dropout_forward(out, c->mask, c->inp, c->B, DN, 0.5f, 42, 7, 5, 3);
}

START_TEST(dropout_backward_matches_mask_and_finite_differences) {
    const int B = 2;
    static float inp[2 * DN], out[2 * DN], w[2 * DN], dinp[2 * DN], d2[2 * DN];
    static uint8_t mask[2 * DN];
    fd_fill(inp, 2 * DN, 21);
    fd_fill(w, 2 * DN, 22);
    dr_case c = {inp, NULL, mask, B};
    dr_fwd(&c, out);
    for (int i = 0; i < B * DN; i++) dinp[i] = d2[i] = 0.25f;
    mdiff_dropout_backward(dinp, w, mask, B, DN, 0.5f);
    mdiff_dropout_backward(d2, w, mask, B, DN, 0.5f);
    mdiff_dropout_backward(d2, w, mask, B, DN, 0.5f);
    for (int i = 0; i < B * DN; i++) {
        /* |0.25 + 2 w| < 4.25 (ulp 4.8e-7): one call rounds once (<= 2.4e-7), two calls twice
         * (<= 4.8e-7); a missed mask or scale is off by >= 0.25 almost everywhere */
        ck_assert_float_eq_tol(dinp[i], 0.25f + (mask[i] ? 2.0f * w[i] : 0.0f), 3e-7);
        ck_assert_float_eq_tol(d2[i], 0.25f + 2 * (mask[i] ? 2.0f * w[i] : 0.0f), 6e-7);
    }
    /* The op is linear with slope 0 or 2: the central difference is exact up to float rounding
     * of the 2000 outputs (~1e-7 each, random signs ~5e-6 in L) over 2h = 2e-2: ~3e-4 worst;
     * atol 1e-3. The mask is recomputed identically at every evaluation. */
    for (int i = 0; i < B * DN; i++) dinp[i] -= 0.25f;
    fd_check("dropout dinp", inp, dinp, B * DN, dr_fwd, &c, out, w, B * DN, 1e-2, 1e-3, 1e-3,
             200);
}
END_TEST

START_TEST(dropout_p1_drops_everything) {
    float inp[DN], out[DN], dinp[DN] = {0}, dout[DN];
    uint8_t mask[DN];
    fd_fill(inp, DN, 5);
    fd_fill(dout, DN, 6);
    mdiff_dropout_forward(out, mask, inp, 1, DN, 1.0f, 1, 1, 0, 0);
    mdiff_dropout_backward(dinp, dout, mask, 1, DN, 1.0f);
    for (int i = 0; i < DN; i++) {
        ck_assert_int_eq(mask[i], 0);
        ck_assert_float_eq(out[i], 0.0f);
        ck_assert_float_eq(dinp[i], 0.0f);
    }
}
END_TEST

/* ---- MSE ------------------------------------------------------------------------------------- */

START_TEST(mse_closed_form) {
    const int B = 3, n = 10;
    const float cst[3] = {0.5f, -1.0f, 2.0f}, scale = 0.125f;
    float pred[30], target[30], ps[3], dpred[30] = {0};
    fd_fill(target, 30, 31);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) pred[b * n + i] = target[b * n + i] + cst[b];
    float loss = mdiff_mse_forward(ps, pred, target, B, n, scale);
    mdiff_mse_backward(dpred, pred, target, B, n, scale);
    /* pred - target = c up to the rounding of target + c (ulp(3) / 2 = 1.2e-7): per-sample c^2
     * within 2 * 1.2e-7 * |c| ~ 5e-7; gradients scale * 2 c / n within 1e-8. */
    for (int b = 0; b < B; b++) {
        ck_assert_float_eq_tol(ps[b], cst[b] * cst[b], 1e-6);
        for (int i = 0; i < n; i++)
            ck_assert_float_eq_tol(dpred[b * n + i], scale * 2 * cst[b] / n, 1e-7);
    }
    ck_assert_float_eq_tol(loss, (0.25f + 1.0f + 4.0f) * scale, 1e-6);
    /* per_sample may be NULL */
    ck_assert_float_eq(mdiff_mse_forward(NULL, pred, target, B, n, scale), loss);
}
END_TEST

typedef struct {
    float *pred, *target;
    int B;
    int64_t n;
    float scale;
} mse_case;

static void mse_fwd(void *ctx, float *out) {
    mse_case *c = ctx;
    out[0] = mdiff_mse_forward(NULL, c->pred, c->target, c->B, c->n, c->scale);
}

START_TEST(mse_matches_reference_and_finite_differences) {
    const int B = 2;
    const int64_t n = 333;
    static float pred[666], target[666], ps[2], dpred[666], d2[666];
    fd_fill(pred, 2 * n, 41);
    fd_fill(target, 2 * n, 42);
    mse_case c = {pred, target, B, n, 0.5f};
    float loss = mdiff_mse_forward(ps, pred, target, B, n, 0.5f);
    double tot = 0;
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)pred[b * n + i] - target[b * n + i];
            s += e * e;
        }
        /* accumulated in double: only the final float rounding (6e-8 relative) */
        ck_assert_double_eq_tol(ps[b], s / n, 1e-7 * s / n);
        tot += 0.5 * s / n;
    }
    ck_assert_double_eq_tol(loss, tot, 2e-7 * tot);
    memset(dpred, 0, sizeof dpred);
    memset(d2, 0, sizeof d2);
    mdiff_mse_backward(dpred, pred, target, B, n, 0.5f);
    mdiff_mse_backward(d2, pred, target, B, n, 0.5f);
    mdiff_mse_backward(d2, pred, target, B, n, 0.5f);
    for (int64_t i = 0; i < 2 * n; i++) ck_assert_float_eq(d2[i], 2 * dpred[i]); /* x + x = 2x */
    /* The loss is quadratic, so central differences have no truncation error; the rounding of
     * the float loss (~0.33, ulp 3e-8) over 2h = 2e-2 gives ~3e-6; gradients are ~1e-3, so
     * atol 1e-5 + rtol 1e-3. */
    float out1[1], one[1] = {1.0f};
    fd_check("mse dpred", pred, dpred, 2 * n, mse_fwd, &c, out1, one, 1, 1e-2, 1e-5, 1e-3, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_misc");
    TCase *tc = tcase_create("misc");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, timestep_embedding_matches_double_reference);
    tcase_add_test(tc, dropout_p0_is_identity);
    tcase_add_test(tc, dropout_p05_mask_is_per_sample_and_reproducible);
    tcase_add_test(tc, dropout_backward_matches_mask_and_finite_differences);
    tcase_add_test(tc, dropout_p1_drops_everything);
    tcase_add_test(tc, mse_closed_form);
    tcase_add_test(tc, mse_matches_reference_and_finite_differences);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
