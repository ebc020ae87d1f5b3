/* Tests of src/ops/elementwise.c: each forward against a closed form in double (SiLU also at
 * saturating inputs and in place), each backward against central differences (B > 1, odd and
 * non-square sizes, C = 1), the += contract (a second backward doubles the gradient exactly,
 * since each term is computed in full before it is added and g + g is exact in float), NULL
 * input gradients, and in-place forwards where the API allows them.
 *
 * Tolerances. add, add_channel, upsample and concat are LINEAR in every input, so central
 * differences have no truncation error and only the float rounding of the one or four outputs
 * an input touches remains: with h = 0.25 that is ~1e-7 / 0.5; atol 1e-5 + rtol 1e-5 leaves a
 * 50x margin and any misplaced term (|grad| ~ 0.1..1) fails.
 * SiLU is smooth with |f'''| <= 0.5: with h = 1e-2 the truncation error is h^2 |f'''| / 6 < 1e-5.
 * The rounding error of the one float output an input touches is ~2 ulp of |out|, over 2h:
 * < 1e-5 where |out| < 1 (inside atol 1e-4), and < 5e-5 up to |out| = 6, where |grad| ~ 1 makes
 * the rtol 1e-3 term 20x larger. A wrong derivative formula is off by O(0.1). Forwards: one float operation (or expf, <= 1 ulp,
 * and a divide) from the double value: rtol 4 eps_f32 (add, 1 rounding), 1e-6 (SiLU: expf's
 * error is damped by 1/(1+e^-x)^2 <= 1, plus 3 roundings). */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"

#define LIN_H 0.25
#define LIN_TOL 1e-5

static float *fmalloc(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    if (seed)
        fd_fill(p, n, seed);
    else
        memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

static float *fcopy(const float *x, int64_t n) {
    float *p = fmalloc(n, 0);
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

/* A second backward on the same buffers must give exactly twice the first. */
static void expect_doubled(const char *what, const float *twice, const float *once, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(twice[i] == 2.0f * once[i], "%s[%lld]: %.9g after two calls, %.9g after one",
                      what, (long long)i, (double)twice[i], (double)once[i]);
}

/* atol FLT_MIN: a value below float's normal range (silu(-100) = -3.7e-42) may flush to 0. */
static void expect_close(const char *what, const float *got, const double *ref, int64_t n,
                         double rtol) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(got[i]) && fabs(got[i] - ref[i]) <= rtol * fabs(ref[i]) + FLT_MIN,
                      "%s[%lld]: got %.9g, reference %.9g", what, (long long)i, (double)got[i],
                      ref[i]);
}

/* ---- SiLU ---------------------------------------------------------------------------------- */

typedef struct {
    int64_t n;
    float *x;
} silu_ctx;

static void silu_fwd(void *p, float *out) {
    silu_ctx *c = p;
    mdiff_silu_forward(out, c->x, c->n);
}

START_TEST(silu_forward_and_backward) {
    const int64_t n = 301;
    silu_ctx c = {n, fmalloc(n, 1)};
    for (int64_t i = 0; i < n; i++) c.x[i] *= 6.0f; /* [-6, 6): both tails and the bend */
    c.x[0] = -100.0f, c.x[1] = 100.0f, c.x[2] = 0.0f, c.x[3] = -20.0f;
    float *out = fmalloc(n, 0), *wt = fmalloc(n, 2);
    double *ref = malloc(n * sizeof(double));
    silu_fwd(&c, out);
    for (int64_t i = 0; i < n; i++) ref[i] = c.x[i] / (1.0 + exp(-(double)c.x[i]));
    expect_close("silu", out, ref, n, 1e-6);

    float *dx = fmalloc(n, 0);
    mdiff_silu_backward(dx, wt, c.x, n);
    for (int i = 0; i < 4; i++) ck_assert(isfinite(dx[i])); /* saturated: no inf/inf */
    /* fd on the moderate range only: the +-100 entries saturate to exactly 0 and 1 */
    fd_check("silu dinp", c.x + 4, dx + 4, n - 4, silu_fwd, &c, out, wt, n, 1e-2, 1e-4, 1e-3, 0);
    ck_assert_float_eq(dx[0], 0.0f);
    ck_assert_float_eq_tol(dx[1], wt[1], 1e-6);

    float *once = fcopy(dx, n);
    mdiff_silu_backward(dx, wt, c.x, n);
    expect_doubled("silu dinp", dx, once, n);

    /* in place */
    float *y = fcopy(c.x, n);
    mdiff_silu_forward(y, y, n);
    silu_fwd(&c, out);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(y[i], out[i]);
    free(c.x), free(out), free(wt), free(ref), free(dx), free(once), free(y);
}
END_TEST

/* ---- add ----------------------------------------------------------------------------------- */

typedef struct {
    int64_t n;
    float *a, *b;
} add_ctx;

static void add_fwd(void *p, float *out) {
    add_ctx *c = p;
    mdiff_add_forward(out, c->a, c->b, c->n);
}

START_TEST(add_forward_and_backward) {
    const int64_t n = 37;
    add_ctx c = {n, fmalloc(n, 3), fmalloc(n, 4)};
    float *out = fmalloc(n, 0), *wt = fmalloc(n, 5);
    double *ref = malloc(n * sizeof(double));
    add_fwd(&c, out);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)c.a[i] + c.b[i];
    expect_close("add", out, ref, n, 2 * FLT_EPSILON);
    float *da = fmalloc(n, 0), *db = fmalloc(n, 0);
    mdiff_add_backward(da, db, wt, n);
    fd_check("add da", c.a, da, n, add_fwd, &c, out, wt, n, LIN_H, LIN_TOL, LIN_TOL, 0);
    fd_check("add db", c.b, db, n, add_fwd, &c, out, wt, n, LIN_H, LIN_TOL, LIN_TOL, 0);
    float *once = fcopy(da, n);
    mdiff_add_backward(da, NULL, wt, n); /* NULL db: only da moves */
    expect_doubled("add da", da, once, n);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(db[i], once[i]);
    mdiff_add_backward(NULL, db, wt, n);
    expect_doubled("add db", db, once, n);
    /* in place: out aliases a, then b */
    float *x = fcopy(c.a, n);
    mdiff_add_forward(x, x, c.b, n);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(x[i], out[i]);
    memcpy(x, c.b, n * sizeof(float));
    mdiff_add_forward(x, c.a, x, n);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(x[i], out[i]);
    free(c.a), free(c.b), free(out), free(wt), free(ref), free(da), free(db), free(once), free(x);
}
END_TEST

/* ---- add_channel --------------------------------------------------------------------------- */

typedef struct {
    int B, C, HW;
    float *inp, *vec;
} ach_ctx;

static void ach_fwd(void *p, float *out) {
    ach_ctx *c = p;
    mdiff_add_channel_forward(out, c->inp, c->vec, c->B, c->C, c->HW);
}

START_TEST(add_channel_forward_and_backward) {
    /* HW = 35 is not a multiple of the 8 summing lanes: the tail path is covered */
    ach_ctx c = {3, 4, 35, NULL, NULL};
    int64_t n = (int64_t)c.B * c.C * c.HW, nv = c.B * c.C;
    c.inp = fmalloc(n, 6);
    c.vec = fmalloc(nv, 7);
    float *out = fmalloc(n, 0), *wt = fmalloc(n, 8);
    double *ref = malloc(n * sizeof(double));
    ach_fwd(&c, out);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)c.inp[i] + c.vec[i / c.HW];
    expect_close("add_channel", out, ref, n, 2 * FLT_EPSILON);
    float *di = fmalloc(n, 0), *dv = fmalloc(nv, 0);
    mdiff_add_channel_backward(di, dv, wt, c.B, c.C, c.HW);
    fd_check("add_channel dinp", c.inp, di, n, ach_fwd, &c, out, wt, n, LIN_H, LIN_TOL, LIN_TOL,
             0);
    /* dvec sums 35 weights: rounding of L over 2h stays ~35 * 1e-7 / 0.5, inside LIN_TOL */
    fd_check("add_channel dvec", c.vec, dv, nv, ach_fwd, &c, out, wt, n, LIN_H, LIN_TOL, LIN_TOL,
             0);
    float *oi = fcopy(di, n), *ov = fcopy(dv, nv);
    mdiff_add_channel_backward(di, dv, wt, c.B, c.C, c.HW);
    expect_doubled("add_channel dinp", di, oi, n);
    expect_doubled("add_channel dvec", dv, ov, nv);
    mdiff_add_channel_backward(NULL, dv, wt, c.B, c.C, c.HW); /* NULL dinp: dvec still moves */
    for (int64_t i = 0; i < nv; i++) ck_assert_float_eq(dv[i], 3.0f * ov[i]);
    float *x = fcopy(c.inp, n); /* in place */
    mdiff_add_channel_forward(x, x, c.vec, c.B, c.C, c.HW);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(x[i], out[i]);
    free(c.inp), free(c.vec), free(out), free(wt), free(ref), free(di), free(dv), free(oi);
    free(ov), free(x);
}
END_TEST

/* ---- upsample2x ---------------------------------------------------------------------------- */

typedef struct {
    int B, C, H, W;
    float *inp;
} up_ctx;

static void up_fwd(void *p, float *out) {
    up_ctx *c = p;
    mdiff_upsample2x_forward(out, c->inp, c->B, c->C, c->H, c->W);
}

START_TEST(upsample_forward_and_backward) {
    static const int sizes[3][4] = {{2, 3, 3, 5}, {1, 1, 1, 1}, {2, 2, 4, 1}}; /* B C H W */
    for (int k = 0; k < 3; k++) {
        up_ctx c = {sizes[k][0], sizes[k][1], sizes[k][2], sizes[k][3], NULL};
        int64_t n = (int64_t)c.B * c.C * c.H * c.W, no = 4 * n;
        c.inp = fmalloc(n, 9 + k);
        float *out = fmalloc(no, 0), *wt = fmalloc(no, 12 + k);
        up_fwd(&c, out);
        int OH = 2 * c.H, OW = 2 * c.W;
        for (int64_t bc = 0; bc < (int64_t)c.B * c.C; bc++)
            for (int y = 0; y < OH; y++)
                for (int x = 0; x < OW; x++)
                    ck_assert_float_eq(out[(bc * OH + y) * OW + x],
                                       c.inp[(bc * c.H + y / 2) * c.W + x / 2]);
        float *di = fmalloc(n, 0);
        mdiff_upsample2x_backward(di, wt, c.B, c.C, c.H, c.W);
        fd_check("upsample dinp", c.inp, di, n, up_fwd, &c, out, wt, no, LIN_H, LIN_TOL, LIN_TOL,
                 0);
        float *once = fcopy(di, n);
        mdiff_upsample2x_backward(di, wt, c.B, c.C, c.H, c.W);
        expect_doubled("upsample dinp", di, once, n);
        free(c.inp), free(out), free(wt), free(di), free(once);
    }
}
END_TEST

/* ---- concat -------------------------------------------------------------------------------- */

typedef struct {
    int B, Ca, Cb, HW;
    float *a, *b;
} cat_ctx;

static void cat_fwd(void *p, float *out) {
    cat_ctx *c = p;
    mdiff_concat_forward(out, c->a, c->b, c->B, c->Ca, c->Cb, c->HW);
}

START_TEST(concat_forward_and_backward) {
    cat_ctx c = {3, 2, 5, 7, NULL, NULL}; /* Ca != Cb, B > 1, odd HW */
    int64_t na = (int64_t)c.B * c.Ca * c.HW, nb = (int64_t)c.B * c.Cb * c.HW, no = na + nb;
    c.a = fmalloc(na, 20);
    c.b = fmalloc(nb, 21);
    float *out = fmalloc(no, 0), *wt = fmalloc(no, 22);
    cat_fwd(&c, out);
    for (int s = 0; s < c.B; s++)
        for (int ch = 0; ch < c.Ca + c.Cb; ch++)
            for (int p = 0; p < c.HW; p++) {
                float want = ch < c.Ca ? c.a[((int64_t)s * c.Ca + ch) * c.HW + p]
                                       : c.b[((int64_t)s * c.Cb + ch - c.Ca) * c.HW + p];
                ck_assert_float_eq(out[((int64_t)s * (c.Ca + c.Cb) + ch) * c.HW + p], want);
            }
    float *da = fmalloc(na, 0), *db = fmalloc(nb, 0);
    mdiff_concat_backward(da, db, wt, c.B, c.Ca, c.Cb, c.HW);
    fd_check("concat da", c.a, da, na, cat_fwd, &c, out, wt, no, LIN_H, LIN_TOL, LIN_TOL, 0);
    fd_check("concat db", c.b, db, nb, cat_fwd, &c, out, wt, no, LIN_H, LIN_TOL, LIN_TOL, 0);
    float *oa = fcopy(da, na), *ob = fcopy(db, nb);
    mdiff_concat_backward(da, NULL, wt, c.B, c.Ca, c.Cb, c.HW);
    expect_doubled("concat da", da, oa, na);
    for (int64_t i = 0; i < nb; i++) ck_assert_float_eq(db[i], ob[i]);
    mdiff_concat_backward(NULL, db, wt, c.B, c.Ca, c.Cb, c.HW);
    expect_doubled("concat db", db, ob, nb);
    free(c.a), free(c.b), free(out), free(wt), free(da), free(db), free(oa), free(ob);
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("ops_elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, silu_forward_and_backward);
    tcase_add_test(tc, add_forward_and_backward);
    tcase_add_test(tc, add_channel_forward_and_backward);
    tcase_add_test(tc, upsample_forward_and_backward);
    tcase_add_test(tc, concat_forward_and_backward);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
