/* Tests of diffusion: schedules against closed forms and numpy (tests/reference/
 * diffusion_reference.py), posterior identities, respacing, objective conversions, training pairs
 * (statistics, determinism, batch-split independence), user errors, and every sampler with every
 * objective driven by an exact (oracle) denoiser for Gaussian data, whose output distribution is
 * known in closed form: against a propagation of the update rules, and against the data
 * distribution itself (samplers_vs_data, which shares no coefficient with the samplers). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/diffusion.h"
#include "mdiff/rng.h"

#define U32 (1.0 / 16777216.0) /* float unit roundoff 2^-24 */

/* For checks inside loops: Check's ck_assert records its location through the runner's pipe on
 * every call (a system call each), so hot loops test first and only report failures. */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

static double rel_err(double got, double want) { return fabs(got - want) / fabs(want); }

/* ---- schedules ---------------------------------------------------------------------------- */

static double cos_f(double u) {
    double c = cos((u + 0.008) / 1.008 * M_PI / 2.0);
    return c * c;
}

START_TEST(linear_schedule_closed_form) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1000);
    ck_assert_int_eq(s.T, 1000);
    ck_assert_double_eq_tol(s.beta[1], 1e-4, 1e-18);
    ck_assert_double_eq_tol(s.beta[1000], 0.02, 1e-17);
    ck_assert_double_eq_tol(s.beta[500], 1e-4 + 0.0199 * 499.0 / 999.0, 1e-17);
    ck_assert_double_eq(s.alpha_bar[0], 1.0);
    /* ᾱ as exp(Σ log(1-β)) in long double: an independent route to the product. Double rounding
     * over 1000 factors stays below 1e-13 relative. */
    long double logsum = 0;
    for (int t = 1; t <= 1000; t++) {
        logsum += log1pl(-(long double)s.beta[t]);
        EXPECT(rel_err(s.alpha_bar[t], (double)expl(logsum)) < 1e-12, "alpha_bar[%d]", t);
        EXPECT(fabs(s.alpha[t] - (1.0 - s.beta[t])) <= 1e-16, "alpha[%d]", t);
        EXPECT(rel_err(s.one_m_ab[t], (double)-expm1l(logsum)) < 1e-12, "one_m_ab[%d]", t);
        EXPECT(fabs(s.sqrt_ab[t] * s.sqrt_ab[t] + s.sqrt_1m_ab[t] * s.sqrt_1m_ab[t] - 1.0) <= 1e-15,
               "sqrt_ab, sqrt_1m_ab [%d]", t);
    }
    /* numpy: np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)) */
    ck_assert(rel_err(s.alpha_bar[500], 7.858724288178e-02) < 1e-11);
    ck_assert(rel_err(s.alpha_bar[1000], 4.035829765376e-05) < 1e-11);
    mdiff_schedule_free(&s);
    /* T != 1000 scales as improved-diffusion: T = 100 -> 1e-3 .. 0.2 */
    mdiff_schedule_init(&s, "linear", 100);
    ck_assert_double_eq_tol(s.beta[1], 1e-3, 1e-17);
    ck_assert_double_eq_tol(s.beta[100], 0.2, 1e-16);
    mdiff_schedule_free(&s);
    /* T = 10: 0.01 .. 2.0, clipped at 0.999 */
    mdiff_schedule_init(&s, "linear", 10);
    ck_assert_double_eq_tol(s.beta[2], 0.01 + 1.99 / 9.0, 1e-16);
    ck_assert_double_eq(s.beta[10], 0.999);
    mdiff_schedule_free(&s);
}
END_TEST

START_TEST(cosine_schedule_closed_form) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "cosine", 1000);
    /* Unclipped steps telescope: ᾱ_t = f(t/T)/f(0) (relative 1e-11: 1000 roundings of ~1e-16,
     * and f near the end is tiny but computed from cos directly). */
    for (int t = 1; t < 1000; t++) {
        EXPECT(s.beta[t] > 0 && s.beta[t] < 0.999, "beta[%d]", t);
        EXPECT(rel_err(s.alpha_bar[t], cos_f(t / 1000.0) / cos_f(0.0)) < 1e-11, "alpha_bar[%d]", t);
    }
    ck_assert_double_eq(s.beta[1000], 0.999); /* f(1) ≈ 0: clipped */
    ck_assert(rel_err(s.alpha_bar[1000], s.alpha_bar[999] * 0.001) < 1e-14);
    /* numpy, as improved-diffusion's betas_for_alpha_bar + cumprod */
    ck_assert(rel_err(s.alpha_bar[1], 9.999587157752e-01) < 1e-12);
    ck_assert(rel_err(s.alpha_bar[500], 4.938435904406e-01) < 1e-11);
    ck_assert(rel_err(s.alpha_bar[999], 2.428766907035e-06) < 1e-9);
    ck_assert(rel_err(s.alpha_bar[1000], 2.428766907035e-09) < 1e-9);
    mdiff_schedule_free(&s);
}
END_TEST

/* q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) q(x_t | x_{t-1}) as a product of Gaussians:
 *   precision 1/β̃ = 1/(1-ᾱ_{t-1}) + α_t/β_t,
 *   mean β̃ (sqrt(ᾱ_{t-1}) x0/(1-ᾱ_{t-1}) + sqrt(α_t) x_t/β_t);
 * and averaging over x_t ~ q(x_t|x_0) must give back q(x_{t-1}|x_0):
 *   c1 + c2 sqrt(ᾱ_t) = sqrt(ᾱ_{t-1}),  c2² (1-ᾱ_t) + β̃ = 1-ᾱ_{t-1}.
 * Relative 1e-9: double arithmetic, worst at t = 2 where 1-ᾱ ~ 1e-4. */
static void check_posterior(const mdiff_schedule *s) {
    for (int t = 2; t <= s->T; t++) {
        double abp = s->alpha_bar[t - 1], ab = s->alpha_bar[t], b = s->beta[t], a = s->alpha[t];
        double var = s->post_var[t], c1 = s->post_c1[t], c2 = s->post_c2[t];
        EXPECT(rel_err(1.0 / var, 1.0 / (1.0 - abp) + a / b) < 1e-9, "precision t=%d", t);
        EXPECT(rel_err(c1, var * sqrt(abp) / (1.0 - abp)) < 1e-9, "c1 t=%d", t);
        EXPECT(rel_err(c2, var * sqrt(a) / b) < 1e-9, "c2 t=%d", t);
        EXPECT(rel_err(c1 + c2 * sqrt(ab), sqrt(abp)) < 1e-9, "mean t=%d", t);
        EXPECT(rel_err(c2 * c2 * (1.0 - ab) + var, 1.0 - abp) < 1e-9, "var t=%d", t);
    }
    /* t = 1: x_0 is known given itself (exact: 1 - ᾱ_1 is accumulated as β_1 itself) */
    ck_assert_double_eq(s->post_var[1], 0.0);
    ck_assert_double_eq(s->post_c1[1], 1.0);
    ck_assert_double_eq(s->post_c2[1], 0.0);
}

START_TEST(posterior_identities) {
    const char *names[2] = {"linear", "cosine"};
    const int Ts[3] = {1000, 50, 2};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            mdiff_schedule s;
            mdiff_schedule_init(&s, names[i], Ts[j]);
            check_posterior(&s);
            mdiff_schedule_free(&s);
        }
}
END_TEST

START_TEST(respacing) {
    /* improved-diffusion's space_timesteps, Python round() (half to even) */
    const int t11[6] = {0, 1, 3, 6, 9, 11};
    for (int k = 0; k <= 5; k++) ck_assert_int_eq(mdiff_spaced_t(11, 5, k), t11[k]);
    ck_assert_int_eq(mdiff_spaced_t(1000, 50, 2), 21);
    ck_assert_int_eq(mdiff_spaced_t(1000, 50, 3), 42);
    ck_assert_int_eq(mdiff_spaced_t(1000, 50, 4), 62);
    ck_assert_int_eq(mdiff_spaced_t(1000, 50, 50), 1000);
    ck_assert_int_eq(mdiff_spaced_t(1000, 1, 1), 1000);
    const char *names[2] = {"linear", "cosine"};
    for (int i = 0; i < 2; i++) {
        mdiff_schedule base, r;
        mdiff_schedule_init(&base, names[i], 1000);
        const int Ss[4] = {1, 7, 50, 1000};
        for (int j = 0; j < 4; j++) {
            int S = Ss[j];
            mdiff_schedule_respace(&r, &base, S);
            ck_assert_int_eq(r.T, S);
            double prod = 1.0;
            for (int k = 1; k <= S; k++) {
                EXPECT(r.tau[k] > r.tau[k - 1], "tau increasing");
                /* the respaced chain of betas reproduces ᾱ at the kept steps: the running product
                 * Π (1 - β'_j), an independent route. 1 - β' recovers ᾱ_k/ᾱ_{k-1} to 1e-16/β'
                 * relative (≤ 1e-12), but only to ~1.1e-16 absolute when β' is near 1 (S = 1 with
                 * cosine: ᾱ = 2.4e-9), so the tolerance is 2e-12 relative plus 4e-16 per factor. */
                prod *= 1.0 - r.beta[k];
                double want = base.alpha_bar[r.tau[k]];
                EXPECT(fabs(prod - want) <= 2e-12 * want + 4e-16 * k,
                       "%s S=%d k=%d: %.15g vs %.15g", names[i], S, k, prod, want);
                EXPECT(r.alpha_bar[k] == base.alpha_bar[r.tau[k]], "copied alpha_bar");
                if (S == 1000) /* S = T: the base betas (rounding of 1 - ᾱ_t/ᾱ_{t-1} ~ 1e-16/β) */
                    EXPECT(rel_err(r.beta[k], base.beta[k]) < 1e-10, "beta S=T k=%d", k);
            }
            check_posterior(&r);
            mdiff_schedule_free(&r);
        }
        mdiff_schedule_free(&base);
    }
}
END_TEST

START_TEST(dpm_logsnr_timesteps) {
    mdiff_schedule s;
    int tau[1001];
    /* tests/reference/diffusion_reference.py */
    const int lin20[21] = {0,   1,   2,   5,   11,  20,  36,  62,  104, 167, 254,
                           354, 455, 547, 630, 705, 773, 835, 894, 948, 1000};
    const int cos10[11] = {0, 1, 15, 106, 477, 873, 976, 995, 998, 999, 1000};
    mdiff_schedule_init(&s, "linear", 1000);
    mdiff_sampler_timesteps(tau, &s, MDIFF_SAMPLER_DPMPP2M, 20);
    for (int k = 0; k <= 20; k++) ck_assert_int_eq(tau[k], lin20[k]);
    mdiff_sampler_timesteps(tau, &s, MDIFF_SAMPLER_DPMPP2M, 1000); /* every step */
    for (int k = 0; k <= 1000; k++) EXPECT(tau[k] == k, "tau[%d] = %d", k, tau[k]);
    mdiff_sampler_timesteps(tau, &s, MDIFF_SAMPLER_DDIM, 50);
    for (int k = 0; k <= 50; k++) ck_assert_int_eq(tau[k], mdiff_spaced_t(1000, 50, k));
    mdiff_schedule_free(&s);
    mdiff_schedule_init(&s, "cosine", 1000);
    mdiff_sampler_timesteps(tau, &s, MDIFF_SAMPLER_DPMPP2M, 10);
    for (int k = 0; k <= 10; k++) ck_assert_int_eq(tau[k], cos10[k]);
    mdiff_schedule_free(&s);
}
END_TEST

/* ---- user errors (exit 1) ------------------------------------------------------------------- */
START_TEST(unknown_schedule_exits_1) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "quadratic", 1000);
}
END_TEST
START_TEST(too_few_timesteps_exits_1) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1);
}
END_TEST
START_TEST(unknown_objective_exits_1) { mdiff_objective_from_name("score"); }
END_TEST
START_TEST(unknown_sampler_exits_1) { mdiff_sampler_from_name("euler"); }
END_TEST
START_TEST(zero_steps_exits_1) { mdiff_sampler_validate(MDIFF_SAMPLER_DDIM, 0, 0.0, 1000); }
END_TEST
START_TEST(steps_above_T_exits_1) { mdiff_sampler_validate(MDIFF_SAMPLER_DDPM, 1001, 0.0, 1000); }
END_TEST
START_TEST(negative_eta_exits_1) { mdiff_sampler_validate(MDIFF_SAMPLER_DDIM, 50, -0.1, 1000); }
END_TEST
START_TEST(nan_eta_exits_1) { mdiff_sampler_validate(MDIFF_SAMPLER_DDIM, 50, NAN, 1000); }
END_TEST

START_TEST(names_round_trip) {
    for (int o = 0; o < 4; o++)
        ck_assert_int_eq(mdiff_objective_from_name(mdiff_objective_name(o)), o);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(mdiff_sampler_from_name(mdiff_sampler_name(k)), k);
    ck_assert_int_eq(mdiff_objective_from_name("eps"), MDIFF_OBJ_EPS);
    ck_assert_int_eq(mdiff_sampler_from_name("dpm++2m"), MDIFF_SAMPLER_DPMPP2M);
    mdiff_sampler_validate(MDIFF_SAMPLER_DDPM, 1000, 0.0, 1000); /* the limits themselves pass */
    mdiff_sampler_validate(MDIFF_SAMPLER_DDIM, 1, 5.0, 1000);
}
END_TEST

/* ---- objectives ---------------------------------------------------------------------------- */

/* What each objective's network should output for the true (x0, ε) at t, in double. xprev: the
 * residual to the posterior mean, which is the MSE-optimal x_{t-1} given x_t and x_0. */
static double true_target(int obj, double x0, double e, double xt, int t, const mdiff_schedule *s) {
    double a = s->sqrt_ab[t], sg = s->sqrt_1m_ab[t];
    switch (obj) {
    case MDIFF_OBJ_EPS: return e;
    case MDIFF_OBJ_X0: return x0;
    case MDIFF_OBJ_V: return a * e - sg * x0;
    default: return (s->post_c1[t] * x0 + s->post_c2[t] * xt - xt) / mdiff_xprev_scale(s, t);
    }
}

/* |∂x̂_0/∂x_t|, |∂x̂_0/∂f|, |∂ε̂/∂x_t|, |∂ε̂/∂f| of the conversion (see diffusion.h), to turn the
 * float rounding of its inputs (x_t and f, 2^-24 relative each) into a tolerance. */
static void conversion_gains(int obj, int t, const mdiff_schedule *s, double g[4]) {
    double a = s->sqrt_ab[t], sg = s->sqrt_1m_ab[t];
    double c1 = s->post_c1[t], c2 = s->post_c2[t], sb = mdiff_xprev_scale(s, t);
    switch (obj) {
    case MDIFF_OBJ_EPS:
        g[0] = 1 / a;
        g[1] = sg / a;
        g[2] = 0;
        g[3] = 1;
        break;
    case MDIFF_OBJ_X0:
        g[0] = 0;
        g[1] = 1;
        g[2] = 1 / sg;
        g[3] = a / sg;
        break;
    case MDIFF_OBJ_V:
        g[0] = a;
        g[1] = sg;
        g[2] = sg;
        g[3] = a;
        break;
    default:
        g[0] = fabs(1 - c2) / c1;
        g[1] = sb / c1;
        g[2] = (1 + a * g[0]) / sg;
        g[3] = a * g[1] / sg;
        break;
    }
}

START_TEST(objective_round_trips) {
    enum { N = 64 };
    const char *names[2] = {"linear", "cosine"};
    const int ts[7] = {1, 2, 10, 250, 500, 999, 1000};
    float x0[N], e[N], xt[N], f[N], x0h[N], eh[N];
    mdiff_rng_fill_normal(e, N, 11, MDIFF_RNG_TOY, 0, 0);
    mdiff_rng_fill_uniform(x0, N, 11, MDIFF_RNG_TOY, 0, 1);
    for (int j = 0; j < N; j++) x0[j] = 2 * x0[j] - 1;
    for (int i = 0; i < 2; i++) {
        mdiff_schedule s;
        mdiff_schedule_init(&s, names[i], 1000);
        for (int it = 0; it < 7; it++) {
            int t = ts[it];
            mdiff_diffusion_q_sample(xt, x0, e, N, t, &s);
            for (int obj = 0; obj < 4; obj++) {
                for (int j = 0; j < N; j++)
                    f[j] = (float)true_target(obj, x0[j], e[j], xt[j], t, &s);
                mdiff_diffusion_predict(x0h, eh, f, xt, N, t, &s, obj, 0);
                double g[4];
                conversion_gains(obj, t, &s, g);
                for (int j = 0; j < N; j++) {
                    /* x_t and f each carry one float rounding (2^-24 relative); the conversion
                     * multiplies them by its gains; the outputs round once more; factor 4 for
                     * the double-to-float steps inside q_sample and the target. */
                    double tx = 4 * U32 * (g[0] * fabs(xt[j]) + g[1] * fabs(f[j]) + fabs(x0[j]));
                    double te = 4 * U32 * (g[2] * fabs(xt[j]) + g[3] * fabs(f[j]) + fabs(e[j]));
                    EXPECT(fabs(x0h[j] - x0[j]) <= tx, "%s %s t=%d x0 %g vs %g (tol %g)", names[i],
                           mdiff_objective_name(obj), t, x0h[j], x0[j], tx);
                    EXPECT(fabs(eh[j] - e[j]) <= te, "%s %s t=%d eps %g vs %g (tol %g)", names[i],
                           mdiff_objective_name(obj), t, eh[j], e[j], te);
                }
            }
        }
        mdiff_schedule_free(&s);
    }
}
END_TEST

START_TEST(clipping) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1000);
    int t = 300;
    double a = s.sqrt_ab[t], sg = s.sqrt_1m_ab[t];
    const float xt[3] = {0.5f, -2.0f, 0.1f};
    const float f[3] = {1.5f, -3.0f, 0.25f}; /* x0 objective: x̂_0 = f */
    float x0h[3], eh[3];
    mdiff_diffusion_predict(x0h, eh, f, xt, 3, t, &s, MDIFF_OBJ_X0, 1);
    const double want[3] = {1.0, -1.0, 0.25};
    for (int j = 0; j < 3; j++) {
        ck_assert_float_eq(x0h[j], (float)want[j]);
        /* ε̂ recomputed from the clipped x̂_0; one float rounding of a value of size ~|x_t|/sg */
        ck_assert_double_eq_tol(eh[j], (xt[j] - a * want[j]) / sg, 1e-6);
    }
    /* without clipping the values pass through */
    mdiff_diffusion_predict(x0h, NULL, f, xt, 3, t, &s, MDIFF_OBJ_X0, 0);
    ck_assert_float_eq(x0h[0], 1.5f);
    mdiff_schedule_free(&s);
}
END_TEST

/* ---- training pairs -------------------------------------------------------------------------- */

enum { MB_B = 2000, MB_N = 8 };

static void fill_x0(float *x0, int B, int n) {
    mdiff_rng_fill_uniform(x0, (int64_t)B * n, 5, MDIFF_RNG_TOY, 1, 0);
    for (int64_t j = 0; j < (int64_t)B * n; j++) x0[j] = 2 * x0[j] - 1;
}

START_TEST(make_batch_relations_and_statistics) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1000);
    int64_t tot = (int64_t)MB_B * MB_N;
    float *x0 = malloc(tot * sizeof(float)), *xin[4], *tg[4];
    int *ti = malloc(MB_B * sizeof(int));
    float *tn = malloc(MB_B * sizeof(float));
    fill_x0(x0, MB_B, MB_N);
    for (int o = 0; o < 4; o++) {
        xin[o] = malloc(tot * sizeof(float));
        tg[o] = malloc(tot * sizeof(float));
        mdiff_diffusion_make_batch(xin[o], tg[o], ti, tn, x0, MB_B, MB_N, &s, o, 42, 7, 100);
    }
    /* t: in range, t_net = t-1, uniform on 1..T: mean (T+1)/2 with standard error
     * sqrt((T²-1)/12 / B) = 6.45; 5 standard errors. */
    double tsum = 0;
    for (int b = 0; b < MB_B; b++) {
        EXPECT(ti[b] >= 1 && ti[b] <= 1000, "t = %d", ti[b]);
        EXPECT(tn[b] == (float)(ti[b] - 1), "t_net");
        tsum += ti[b];
    }
    ck_assert_double_eq_tol(tsum / MB_B, 500.5, 5 * 6.45);
    /* the same key gives the same t and ε whatever the objective: eps/x0/v share x_t exactly */
    ck_assert_int_eq(memcmp(xin[0], xin[1], tot * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(xin[0], xin[2], tot * sizeof(float)), 0);
    double zs = 0, zs2 = 0, es = 0, es2 = 0;
    for (int b = 0; b < MB_B; b++) {
        int t = ti[b];
        double a = s.sqrt_ab[t], sg = s.sqrt_1m_ab[t];
        float e2[MB_N];
        mdiff_rng_fill_normal(e2, MB_N, 42, MDIFF_RNG_NOISE2, 7, 100 + (uint64_t)b);
        for (int j = 0; j < MB_N; j++) {
            int64_t i = (int64_t)b * MB_N + j;
            double e = tg[0][i], x = x0[i];
            /* each stored value is one float rounding of a double expression of size < 8
             * (normals below ~4.5 here): half an ulp, at most 2.4e-7 */
            EXPECT(fabs(xin[0][i] - (a * x + sg * e)) <= 4e-7, "x_t [%lld]", (long long)i);
            EXPECT(tg[1][i] == x0[i], "x0 target");
            EXPECT(fabs(tg[2][i] - (a * e - sg * x)) <= 4e-7, "v target [%lld]", (long long)i);
            es += e;
            es2 += e * e;
            /* xprev: the one-step process from x_{t-1} with the same ε and ε_t from NOISE2 */
            double xp = s.sqrt_ab[t - 1] * x + s.sqrt_1m_ab[t - 1] * e;
            double xtp = sqrt(s.alpha[t]) * xp + sqrt(s.beta[t]) * e2[j];
            EXPECT(fabs(xin[3][i] - xtp) <= 4e-7, "xprev x_t [%lld]", (long long)i);
            /* target: the residual of the posterior mean given (x_t, x0), over k_t */
            double k = s.beta[t] / s.sqrt_1m_ab[t];
            double r = (s.post_c1[t] * x + (s.post_c2[t] - 1.0) * xtp) / k;
            EXPECT(fabs(tg[3][i] - r) <= 4e-7 * (1 + fabs(r)), "xprev r [%lld]", (long long)i);
            /* its x_t has the closed-form marginal: (x_t - sqrt(ᾱ_t) x0)/sqrt(1-ᾱ_t) ~ N(0, 1) */
            double z = (xin[3][i] - a * x) / sg;
            zs += z;
            zs2 += z * z;
        }
    }
    /* 16000 standard normals: mean SE 0.0079, variance SE sqrt(2/16000) = 0.011; 5 SE each.
     * (xprev's target is checked element by element above.) */
    double M = (double)tot;
    ck_assert_double_eq_tol(es / M, 0.0, 5 * 0.0079);
    ck_assert_double_eq_tol(es2 / M, 1.0, 5 * 0.011);
    ck_assert_double_eq_tol(zs / M, 0.0, 5 * 0.0079);
    ck_assert_double_eq_tol(zs2 / M - (zs / M) * (zs / M), 1.0, 5 * 0.011);
    for (int o = 0; o < 4; o++) {
        free(xin[o]);
        free(tg[o]);
    }
    free(x0);
    free(ti);
    free(tn);
    mdiff_schedule_free(&s);
}
END_TEST

/* A sample's pair depends only on (seed, step, g): any split of the batch gives the same bits. */
START_TEST(make_batch_split_independent) {
    enum { B = 10, N = 5 };
    mdiff_schedule s;
    mdiff_schedule_init(&s, "cosine", 200);
    float x0[B * N], xa[B * N], ta[B * N], xb[B * N], tb[B * N], tna[B], tnb[B];
    int ia[B], ib[B];
    fill_x0(x0, B, N);
    for (int o = 0; o < 4; o++) {
        mdiff_diffusion_make_batch(xa, ta, ia, tna, x0, B, N, &s, o, 9, 3, 50);
        mdiff_diffusion_make_batch(xb, tb, ib, tnb, x0, 3, N, &s, o, 9, 3, 50);
        mdiff_diffusion_make_batch(xb + 3 * N, tb + 3 * N, ib + 3, tnb + 3, x0 + 3 * N, 7, N, &s, o,
                                   9, 3, 53);
        ck_assert_int_eq(memcmp(xa, xb, sizeof xa), 0);
        ck_assert_int_eq(memcmp(ta, tb, sizeof ta), 0);
        ck_assert_int_eq(memcmp(ia, ib, sizeof ia), 0);
        /* another step or seed: different draws */
        mdiff_diffusion_make_batch(xb, tb, ib, tnb, x0, B, N, &s, o, 9, 4, 50);
        ck_assert_int_ne(memcmp(xa, xb, sizeof xa), 0);
        mdiff_diffusion_make_batch(xb, tb, ib, tnb, x0, B, N, &s, o, 10, 3, 50);
        ck_assert_int_ne(memcmp(xa, xb, sizeof xa), 0);
        /* validation pairs: fixed (no step), reproducible, and not the training stream */
        mdiff_diffusion_make_val_batch(xa, ta, ia, tna, x0, B, N, &s, o, 9, 50);
        mdiff_diffusion_make_val_batch(xb, tb, ib, tnb, x0, B, N, &s, o, 9, 50);
        ck_assert_int_eq(memcmp(xa, xb, sizeof xa), 0);
        mdiff_diffusion_make_batch(xb, tb, ib, tnb, x0, B, N, &s, o, 9, 0, 50);
        ck_assert_int_ne(memcmp(xa, xb, sizeof xa), 0);
    }
    mdiff_schedule_free(&s);
}
END_TEST

/* ---- samplers with an exact denoiser --------------------------------------------------------
 * Data: D independent dimensions, x0_d ~ N(μ_d, σ_d²). Then x_t = a x0 + s ε is Gaussian and
 *   E[x0|x_t] = μ + a σ² (x_t - a μ)/k,  E[ε|x_t] = s (x_t - a μ)/k,  k = a² σ² + s²,
 * so the oracle returns the exact MSE-optimal prediction for each objective. Every sampler step
 * is then affine in x and in fresh noise, so the output is exactly Gaussian with a mean and
 * variance the test propagates in double (oracle_propagate): x = A z_T + Bc + (independent noise
 * of variance W). The sampler's samples must match that law within sampling error, and the law
 * must be near N(μ, σ²) up to the sampler's discretisation error, which the propagation gives. */

enum { OD = 4 };
static const double O_MU[OD] = {0.3, -0.5, 0.0, 0.8};
static const double O_SD[OD] = {0.5, 0.2, 1.0, 0.7};

typedef struct {
    int obj, T;
    double ab[1001], beta[1001]; /* the test's own linear schedule */
    int calls;
    float *record; /* optional: inputs of each call (B*OD each) */
    int B;
} oracle_ctx;

static void oracle_init(oracle_ctx *o, int obj) {
    memset(o, 0, sizeof *o);
    o->obj = obj;
    o->T = 1000;
    o->ab[0] = 1.0;
    for (int t = 1; t <= 1000; t++) {
        o->beta[t] = 1e-4 + (0.02 - 1e-4) * (t - 1) / 999.0;
        o->ab[t] = o->ab[t - 1] * (1.0 - o->beta[t]);
    }
}

/* E[x0|x_t] = A x_t + C for dimension d at t. */
static void oracle_affine(const oracle_ctx *o, int t, int d, double *A, double *C) {
    double a = sqrt(o->ab[t]), s2 = 1.0 - o->ab[t], v = O_SD[d] * O_SD[d];
    double k = a * a * v + s2;
    *A = a * v / k;
    *C = O_MU[d] - *A * a * O_MU[d];
}

static void oracle_denoise(void *ctx, float *out, const float *x, const float *t_net, int B) {
    oracle_ctx *o = ctx;
    int t = (int)lrintf(t_net[0]) + 1;
    if (o->record)
        memcpy(o->record + (int64_t)o->calls * B * OD, x, (size_t)B * OD * sizeof(float));
    o->calls++;
    double a = sqrt(o->ab[t]), s = sqrt(1.0 - o->ab[t]);
    double abp = o->ab[t - 1], b = o->beta[t];
    double c1 = sqrt(abp) * b / (1.0 - o->ab[t]),
           c2 = sqrt(1.0 - b) * (1.0 - abp) / (1.0 - o->ab[t]);
    for (int i = 0; i < B; i++) {
        EXPECT(t_net[i] == t_net[0], "one t per call");
        for (int d = 0; d < OD; d++) {
            double A, C, xt = x[i * OD + d];
            oracle_affine(o, t, d, &A, &C);
            double x0 = A * xt + C, e = (xt - a * x0) / s, f;
            switch (o->obj) {
            case MDIFF_OBJ_EPS: f = e; break;
            case MDIFF_OBJ_X0: f = x0; break;
            case MDIFF_OBJ_V: f = a * e - s * x0; break;
            default: f = (c1 * x0 + c2 * xt - xt) / (b / s); break; /* k_t = β/sqrt(1-ᾱ) */
            }
            out[i * OD + d] = (float)f;
        }
    }
}

typedef struct {
    double A, Bc, W; /* x = A z_T + Bc + N(0, W) */
} law;

/* The output law of `sampler` for dimension d, from the papers' update rules in affine form. */
static law oracle_propagate(const oracle_ctx *o, int sampler, int S, double eta, int d,
                            const int *tau) {
    law x = {1.0, 0.0, 0.0}, x0prev = {0, 0, 0};
    double hprev = 0;
    for (int k = S; k >= 1; k--) {
        int t = tau[k], tp = tau[k - 1];
        double ab = o->ab[t], abp = o->ab[tp], a = sqrt(ab), s = sqrt(1 - ab), A, C;
        oracle_affine(o, t, d, &A, &C);
        law x0 = {A * x.A, A * x.Bc + C, A * A * x.W};
        if (sampler == MDIFF_SAMPLER_DPMPP2M) {
            if (k == 1) return x0;
            double lam = 0.5 * log(ab / (1 - ab)), lamp = 0.5 * log(abp / (1 - abp)),
                   h = lamp - lam;
            double ratio = sqrt(1 - abp) / s, phi = -sqrt(abp) * expm1(-h);
            law D = x0;
            if (k < S) {
                double r = hprev / h;
                D.A = (1 + 0.5 / r) * x0.A - 0.5 / r * x0prev.A;
                D.Bc = (1 + 0.5 / r) * x0.Bc - 0.5 / r * x0prev.Bc;
            }
            x.A = ratio * x.A + phi * D.A;
            x.Bc = ratio * x.Bc + phi * D.Bc;
            x0prev = x0;
            hprev = h;
            continue;
        }
        /* x' = P x̂_0 + Q ε̂ + R x + σ z with ε̂ = (x - a x̂_0)/s, x̂_0 = A x + C */
        double P, Q, R, sig;
        if (sampler == MDIFF_SAMPLER_DDPM) {
            double b = 1 - ab / abp;
            sig = sqrt(b * (1 - abp) / (1 - ab));
            P = sqrt(abp) * b / (1 - ab);
            R = sqrt(1 - b) * (1 - abp) / (1 - ab);
            Q = 0;
        } else {
            sig = eta * sqrt((1 - abp) / (1 - ab)) * sqrt(1 - ab / abp);
            P = sqrt(abp);
            Q = sqrt(fmax(0.0, 1 - abp - sig * sig));
            R = 0;
        }
        double G = P * A + Q * (1 - a * A) / s + R, H = P * C - Q * a * C / s;
        x.A *= G;
        x.Bc = G * x.Bc + H;
        x.W = G * G * x.W + sig * sig;
    }
    return x;
}

typedef struct {
    int sampler, steps;
    double eta;
    double disc_var;  /* bound on |var/σ² - 1| of the exact output law (discretisation) */
    double disc_mean; /* bound on |mean - μ|/σ */
} sampler_case;

/* Discretisation bounds. The exact output law of each sampler for these four dimensions, from
 * oracle_propagate (and independently in numpy while designing), worst over the dimensions:
 *   sampler        var/σ² - 1           |mean - μ|/σ
 *   ddpm T=1000    -0.009 .. -0.037     2.3e-5
 *   ddpm 100       -0.079 .. -0.238     2.3e-5
 *   ddim η=0, 50   -0.072 .. -0.227     4.9e-3
 *   ddim η=1, 50   -0.145 .. -0.373     2.3e-5
 *   dpm++2m 20     +0.028 .. +0.029     5.2e-3
 * Variance is lost by few-step first-order samplers and by ancestral sampling with the small
 * (posterior) variance, most for the narrowest dimension (σ = 0.2); all converge as S grows. The
 * deterministic samplers keep the mismatch of x_T ~ N(0, 1) with q(x_T) = N(sqrt(ᾱ_T) μ, ~1),
 * a mean shift of about sqrt(ᾱ_T) μ/σ·σ = 0.0064 μ. The bounds below are these rounded up: a
 * wrong update rule moves them far more (evenly spaced dpm++2m steps: +0.56 variance). */
static const sampler_case CASES[5] = {
    {MDIFF_SAMPLER_DDPM, 1000, 0.0, 0.04, 1e-4},
    {MDIFF_SAMPLER_DDPM, 100, 0.0, 0.25, 1e-4},
    {MDIFF_SAMPLER_DDIM, 50, 0.0, 0.24, 6e-3},
    {MDIFF_SAMPLER_DDIM, 50, 1.0, 0.39, 1e-4},
    {MDIFF_SAMPLER_DPMPP2M, 20, 0.0, 0.035, 6e-3},
}; /* one case per line */
enum { ON = 4000 };

/* Loop index i: case i / 4, objective i % 4. */
START_TEST(oracle_samplers_recover_gaussian) {
    const sampler_case *c = &CASES[_i / 4];
    int obj = _i % 4;
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1000);
    oracle_ctx o;
    oracle_init(&o, obj);
    float *x = malloc((size_t)ON * OD * sizeof(float));
    float *work = malloc((size_t)mdiff_sample_work_floats(ON, OD, c->steps) * sizeof(float));
    mdiff_sample_batch(x, ON, OD, 0, c->sampler, c->steps, c->eta, 0, 1234, &s, obj, oracle_denoise,
                       &o, NULL, work);
    ck_assert_int_eq(o.calls, c->steps);
    int tau[1001];
    mdiff_sampler_timesteps(tau, &s, c->sampler, c->steps);
    float zT[OD];
    for (int d = 0; d < OD; d++) {
        law L = oracle_propagate(&o, c->sampler, c->steps, c->eta, d, tau);
        double m = L.Bc, v = L.A * L.A + L.W, mu = O_MU[d], v0 = O_SD[d] * O_SD[d];
        /* discretisation: the exact law is close to the data's */
        ck_assert_msg(fabs(m - mu) <= c->disc_mean * O_SD[d], "%s %d: law mean %g vs %g",
                      mdiff_sampler_name(c->sampler), c->steps, m, mu);
        ck_assert_msg(fabs(v / v0 - 1) <= c->disc_var, "%s %d: law var %g vs %g",
                      mdiff_sampler_name(c->sampler), c->steps, v, v0);
        double sum = 0, sum2 = 0, maxdev = 0;
        for (int i = 0; i < ON; i++) {
            double xi = x[i * OD + d];
            sum += xi;
            sum2 += xi * xi;
            if (L.W == 0) { /* deterministic: each sample is exactly A z_T + Bc */
                mdiff_rng_fill_normal(zT, OD, 1234, MDIFF_RNG_SAMPLE, 0, (uint64_t)i);
                maxdev = fmax(maxdev, fabs(xi - (L.A * zT[d] + L.Bc)));
            }
        }
        double em = sum / ON, ev = sum2 / ON - em * em;
        /* sampling error: 5 standard errors of the mean (sqrt(v/N)) and of the variance
         * (v sqrt(2/(N-1)) for Gaussian samples), i.e. 0.079 σ and 11% of v at N = 4000 */
        double se_m = sqrt(v / ON), se_v = v * sqrt(2.0 / (ON - 1));
        ck_assert_msg(fabs(em - m) <= 5 * se_m, "%s %d %s d=%d: mean %g, law %g",
                      mdiff_sampler_name(c->sampler), c->steps, mdiff_objective_name(obj), d, em,
                      m);
        ck_assert_msg(fabs(ev - v) <= 5 * se_v, "%s %d %s d=%d: var %g, law %g",
                      mdiff_sampler_name(c->sampler), c->steps, mdiff_objective_name(obj), d, ev,
                      v);
        /* hence the data are recovered within sampling + discretisation error */
        ck_assert(fabs(em - mu) <= 5 * se_m + c->disc_mean * O_SD[d]);
        ck_assert(fabs(ev - v0) <= 5 * se_v + c->disc_var * v0);
        /* Per-sample float error of a deterministic run: each of S ≤ 50 steps rounds the state
         * (2^-24 relative, |x| ≤ ~5: 3e-7) and the prediction; the conversion amplifies the
         * prediction's rounding most for xprev at t = T (k_T/c1 ≈ 150, so 1e-5 in x̂_0), which
         * the next update multiplies by sqrt(ᾱ_prev) < 1e-2: under 1e-6. The maps contract (σ ≤ 1),
         * so 50 · (3e-7 + 1e-6) = 6.5e-5 bounds the sum; 1e-4 allowed. */
        ck_assert_msg(maxdev <= 1e-4, "%s %s d=%d: sample off its exact value by %g",
                      mdiff_sampler_name(c->sampler), mdiff_objective_name(obj), d, maxdev);
    }
    free(x);
    free(work);
    mdiff_schedule_free(&s);
}
END_TEST

/* ---- samplers against the data distribution itself -------------------------------------------
 * The oracle test above compares each sampler with a propagation of the same update rules, so an
 * error that both copies share (the posterior variance, a dropped square root, a sign) passes it.
 * Here the reference is the data distribution alone. Data: x0 ~ N(μ, s²) in 1-D, μ = 0.5,
 * s = 0.1; each of the G_D coordinates of an "image" is an independent sample (the samplers draw
 * independent noise per coordinate and per image). The denoiser is the exact one, from Gaussian
 * conditioning on the forward process with the test's own ᾱ (long double), in each objective's
 * form: with x_t ~ N(m_t, V_t), m_t = sqrt(ᾱ_t) μ, V_t = ᾱ_t s² + 1 - ᾱ_t,
 *   E[x0 | x_t] = μ + sqrt(ᾱ_t) s² (x_t - m_t)/V_t,   E[ε | x_t] = sqrt(1-ᾱ_t) (x_t - m_t)/V_t,
 *   E[v | x_t]  = sqrt(ᾱ_t) E[ε | x_t] - sqrt(1-ᾱ_t) E[x0 | x_t],
 *   E[x_{t-1} | x_t] = m_{t-1} + Cov(x_{t-1}, x_t)/V_t (x_t - m_t), Cov = sqrt(ᾱ_t/ᾱ_{t-1}) V_{t-1},
 *   xprev outputs the residual (E[x_{t-1} | x_t] - x_t)/k_t, k_t = β_t/sqrt(1-ᾱ_t) (diffusion.h).
 * Nothing here uses the schedule's posterior coefficients or any sampler's update rule.
 *
 * Ancestral sampling follows the reverse chain and the deterministic samplers integrate the
 * probability-flow ODE from N(0, 1), so every sampler ends at N(μ, s²) up to its discretisation
 * error. That error is exactly computable for Gaussian data (every step is affine), and
 * tests/reference/gaussian_sampler_laws.py computes it from the papers' definitions (DDPM by Gaussian
 * conditioning, not through c1, c2): the deviation of each output law from the data is
 *   sampler            (mean - μ)/s   var/s² - 1
 *   ddpm    S = 1000     -0.00000      -0.07241   β̃_t leaves out the c1² Var[x0|x_t] part of
 *   ddpm    S = 100      -0.00000      -0.37056     the true reverse variance (-0.0724; with β_t
 *   ddim η=1 S = 100     -0.00000      -0.37056     instead it would be +0.0254)
 *   ddim η=0 S = 1000    -0.00312      -0.03334   first-order ODE steps; the mean is off by
 *   ddim η=0 S = 50      -0.00248      -0.38901     x_T ~ N(0, 1) vs q(x_T) = N(0.0064 μ, ~1)
 *   dpm++2m S = 25       -0.00319      +0.00688
 * (s is small on purpose: at s = 0.1, ancestral sampling with β_t in place of β̃_t moves the variance
 * by +0.098 s², about 10 standard errors of the pooled sample; at s = 1 the two are the same.)
 * The test allows each deviation of the table ± G_SLACK, plus 5 Monte Carlo standard errors: of the
 * mean sqrt(v/n), of the sample variance v sqrt(2/(n-1)), v = s² (1 + dev) the law's variance. Per
 * objective n = 5000: 5 SE = 0.071 s sqrt(1 + dev) and 0.100 s² (1 + dev); pooled over the four
 * objectives (disjoint images, so independent) n = 20000: 0.035 s sqrt(1 + dev), 0.050 s² (1 + dev).
 * The deterministic samplers are also checked without Monte Carlo error: their output is exactly
 * x = A z_T + B, and a least-squares fit on the (z_T, x) pairs recovers the law's (B, A²) to float
 * rounding. Measured (2026-12, this machine): every fit within 4e-6 of the table in both figures,
 * which includes the table's 5-digit rounding; G_SLACK = 1e-4 leaves 25x for other compilers and
 * libm (FMA contraction, Box-Muller's log/sin/cos). Measured Monte Carlo figures, in standard
 * errors from the table, at these seeds: |z| <= 2.15 per objective, <= 1.41 pooled, 0.81 for
 * ddim η = 1 vs ddpm; over 8 other seed sets (496 figures) z had sd 1.05 and |z| <= 3.6. */
enum { G_T = 1000, G_D = 4, G_IMG = 1250, G_N = G_IMG * G_D }; /* per objective */
static const double G_MU = 0.5, G_SD = 0.1;
#define G_SLACK 1e-4

typedef struct {
    int obj;
    double m[G_T + 1], V[G_T + 1];           /* marginal of x_t */
    double sab[G_T + 1], s1m[G_T + 1], k[G_T + 1]; /* sqrt(ᾱ), sqrt(1-ᾱ), xprev's k_t */
} gdata_ctx;

static void gdata_init(gdata_ctx *g, int obj) {
    g->obj = obj;
    long double log_ab = 0;
    for (int t = 0; t <= G_T; t++) {
        long double beta = t == 0 ? 0.0L : 1e-4L + (0.02L - 1e-4L) * (t - 1) / (G_T - 1);
        log_ab += log1pl(-beta);
        long double ab = expl(log_ab), om = -expm1l(log_ab);
        g->sab[t] = (double)sqrtl(ab);
        g->s1m[t] = (double)sqrtl(om);
        g->m[t] = (double)(sqrtl(ab) * G_MU);
        g->V[t] = (double)(ab * G_SD * G_SD + om);
        g->k[t] = t == 0 ? 0.0 : (double)(beta / sqrtl(om));
    }
}

static void gdata_denoise(void *ctx, float *out, const float *x, const float *t_net, int B) {
    const gdata_ctx *g = ctx;
    int t = (int)lrintf(t_net[0]) + 1;
    EXPECT(t >= 1 && t <= G_T, "t = %d", t);
    double m = g->m[t], V = g->V[t], a = g->sab[t], sg = g->s1m[t];
    double cov = g->sab[t] / g->sab[t - 1] * g->V[t - 1]; /* Cov(x_{t-1}, x_t) */
    for (int64_t i = 0; i < (int64_t)B * G_D; i++) {
        double d = (double)x[i] - m, x0 = G_MU + a * G_SD * G_SD * d / V, e = sg * d / V, f;
        switch (g->obj) {
        case MDIFF_OBJ_EPS: f = e; break;
        case MDIFF_OBJ_X0: f = x0; break;
        case MDIFF_OBJ_V: f = a * e - sg * x0; break;
        default: f = (g->m[t - 1] + cov * d / V - x[i]) / g->k[t]; break; /* xprev */
        }
        out[i] = (float)f;
    }
}

typedef struct {
    int sampler, steps;
    double eta;
    uint64_t seed;
    double dev_mean, dev_var; /* the law's (mean - μ)/s and var/s² - 1 (table above) */
} gdata_case;

static const gdata_case G_CASES[6] = {
    {MDIFF_SAMPLER_DDPM, 1000, 0.0, 101, -0.00000, -0.07241},
    {MDIFF_SAMPLER_DDPM, 100, 0.0, 102, -0.00000, -0.37056},
    {MDIFF_SAMPLER_DDIM, 100, 1.0, 103, -0.00000, -0.37056},
    {MDIFF_SAMPLER_DDIM, 1000, 0.0, 104, -0.00312, -0.03334},
    {MDIFF_SAMPLER_DDIM, 50, 0.0, 105, -0.00248, -0.38901},
    {MDIFF_SAMPLER_DPMPP2M, 25, 0.0, 106, -0.00319, +0.00688},
};

/* Runs case c with every objective: x (4 G_N) gets objective o's samples at [o G_N, (o+1) G_N),
 * images o G_IMG .. (o+1) G_IMG - 1. */
static void gdata_run(const gdata_case *c, float *x) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", G_T);
    float *work = malloc((size_t)mdiff_sample_work_floats(G_IMG, G_D, c->steps) * sizeof(float));
    for (int obj = 0; obj < 4; obj++) {
        gdata_ctx g;
        gdata_init(&g, obj);
        mdiff_sample_batch(x + (int64_t)obj * G_N, G_IMG, G_D, (int64_t)obj * G_IMG, c->sampler,
                           c->steps, c->eta, 0, c->seed, &s, obj, gdata_denoise, &g, NULL, work);
    }
    free(work);
    mdiff_schedule_free(&s);
}

static void moments(const float *x, int n, double *mean, double *var) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *var = v / (n - 1);
}

/* Sample mean and variance of x (n values) against the data N(μ, s²) moved by the case's measured
 * deviation, within 5 standard errors + G_SLACK. Returns 0 and appends a line to msg on failure. */
static int check_vs_data(const gdata_case *c, const char *what, const float *x, int n, char *msg,
                         size_t cap) {
    double m, v, s2 = G_SD * G_SD;
    moments(x, n, &m, &v);
    double lv = s2 * (1 + c->dev_var);
    double se_m = sqrt(lv / n) / G_SD, se_v = (1 + c->dev_var) * sqrt(2.0 / (n - 1));
    double dm = (m - G_MU) / G_SD, dv = v / s2 - 1;
    double tm = 5 * se_m + G_SLACK, tv = 5 * se_v + G_SLACK;
    int ok = fabs(dm - c->dev_mean) <= tm && fabs(dv - c->dev_var) <= tv;
    size_t used = strlen(msg);
    if (!ok && used < cap)
        snprintf(msg + used, cap - used,
                 "\n  %s (n=%d): (mean - mu)/s = %+.5f, want %+.5f within %.5f; var/s^2 - 1 = "
                 "%+.5f, want %+.5f within %.5f (5 SE + slack %.0e)",
                 what, n, dm, c->dev_mean, tm, dv, c->dev_var, tv, G_SLACK);
    return ok;
}

/* Each objective's samples and the pooled ones against the data (every failing figure reported);
 * deterministic samplers also by the least-squares fit x = A z_T + B (z_T regenerated from its
 * documented key). */
static void check_case(const gdata_case *c, const float *x) {
    char msg[2048] = "";
    int ok = 1;
    for (int obj = 0; obj < 4; obj++)
        ok &= check_vs_data(c, mdiff_objective_name(obj), x + (int64_t)obj * G_N, G_N, msg,
                            sizeof msg);
    ok &= check_vs_data(c, "all objectives", x, 4 * G_N, msg, sizeof msg);
    ck_assert_msg(ok, "%s S=%d eta=%g: samples not distributed as the data:%s",
                  mdiff_sampler_name(c->sampler), c->steps, c->eta, msg);
    if (c->sampler == MDIFF_SAMPLER_DDPM || c->eta > 0) return;
    for (int obj = 0; obj < 4; obj++) {
        const float *xo = x + (int64_t)obj * G_N;
        double sz = 0, sx = 0, szz = 0, szx = 0;
        for (int i = 0; i < G_IMG; i++) {
            float z[G_D];
            mdiff_rng_fill_normal(z, G_D, c->seed, MDIFF_RNG_SAMPLE, 0,
                                  (uint64_t)(obj * G_IMG + i));
            for (int d = 0; d < G_D; d++) {
                sz += z[d];
                sx += xo[i * G_D + d];
            }
        }
        double mz = sz / G_N, mx = sx / G_N;
        for (int i = 0; i < G_IMG; i++) {
            float z[G_D];
            mdiff_rng_fill_normal(z, G_D, c->seed, MDIFF_RNG_SAMPLE, 0,
                                  (uint64_t)(obj * G_IMG + i));
            for (int d = 0; d < G_D; d++) {
                szz += (z[d] - mz) * (z[d] - mz);
                szx += (z[d] - mz) * (xo[i * G_D + d] - mx);
            }
        }
        double A = szx / szz, B = mx - A * mz;
        double dm = (B - G_MU) / G_SD, dv = A * A / (G_SD * G_SD) - 1;
        ck_assert_msg(fabs(dm - c->dev_mean) <= G_SLACK && fabs(dv - c->dev_var) <= G_SLACK,
                      "%s S=%d, %s: the exact output law (fit x = A z_T + B) has (mean - mu)/s = "
                      "%+.5f, var/s^2 - 1 = %+.5f; want %+.5f, %+.5f within %.0e",
                      mdiff_sampler_name(c->sampler), c->steps, mdiff_objective_name(obj), dm, dv,
                      c->dev_mean, c->dev_var, G_SLACK);
    }
}

/* DDPM over all T steps and over 100 respaced steps, and DDIM with η = 1 over the same 100 steps:
 * each against the data, and DDIM η = 1 against DDPM in distribution (independent seeds): the
 * difference of the means within 5 sqrt(v1/n + v2/n), of the variances within
 * 5 sqrt(2 v1²/(n-1) + 2 v2²/(n-1)) (n = 20000, v = 0.63 s²: 0.040 s and 0.045 s²). */
START_TEST(ancestral_samplers_recover_the_data) {
    float *a = malloc(4 * G_N * sizeof(float)), *b = malloc(4 * G_N * sizeof(float));
    gdata_run(&G_CASES[0], a);
    check_case(&G_CASES[0], a);
    gdata_run(&G_CASES[1], a);
    check_case(&G_CASES[1], a);
    gdata_run(&G_CASES[2], b);
    check_case(&G_CASES[2], b);
    double ma, va, mb, vb;
    int n = 4 * G_N;
    moments(a, n, &ma, &va);
    moments(b, n, &mb, &vb);
    double tm = 5 * sqrt(va / n + vb / n), tv = 5 * sqrt(2 * (va * va + vb * vb) / (n - 1));
    ck_assert_msg(fabs(ma - mb) <= tm, "ddpm vs ddim eta=1, S=100 (n=%d each): means %.5f vs "
                  "%.5f differ by more than 5 SE = %.5f", n, ma, mb, tm);
    ck_assert_msg(fabs(va - vb) <= tv, "ddpm vs ddim eta=1, S=100 (n=%d each): variances %.6f vs "
                  "%.6f differ by more than 5 SE = %.6f", n, va, vb, tv);
    free(a);
    free(b);
}
END_TEST

/* Loop index: G_CASES[3 + _i]: the deterministic samplers, ddim η = 0 (S = T and mdiff-sample's
 * S = 50) and dpm++2m. */
START_TEST(samplers_recover_the_data) {
    const gdata_case *c = &G_CASES[3 + _i];
    float *x = malloc(4 * G_N * sizeof(float));
    gdata_run(c, x);
    check_case(c, x);
    free(x);
}
END_TEST

/* ---- sampler plumbing ---------------------------------------------------------------------- */

static void run_sampler(float *x, int B, int64_t image0, int sampler, int S, double eta, int obj,
                        const mdiff_sample_extras *ex, oracle_ctx *o) {
    mdiff_schedule s;
    mdiff_schedule_init(&s, "linear", 1000);
    float *work = malloc((size_t)mdiff_sample_work_floats(B, OD, S) * sizeof(float));
    mdiff_sample_batch(x, B, OD, image0, sampler, S, eta, 1, 77, &s, obj, oracle_denoise, o, ex,
                       work);
    free(work);
    mdiff_schedule_free(&s);
}

/* Image i depends only on (seed, i): 10 images at once = 4 + 6 in two batches, bit for bit. */
START_TEST(sampling_batch_independent) {
    const int samplers[3] = {MDIFF_SAMPLER_DDPM, MDIFF_SAMPLER_DDIM, MDIFF_SAMPLER_DPMPP2M};
    for (int k = 0; k < 3; k++) {
        float a[10 * OD], b[10 * OD], c[10 * OD];
        oracle_ctx o;
        oracle_init(&o, MDIFF_OBJ_EPS);
        run_sampler(a, 10, 0, samplers[k], 20, 0.7, MDIFF_OBJ_EPS, NULL, &o);
        run_sampler(b, 4, 0, samplers[k], 20, 0.7, MDIFF_OBJ_EPS, NULL, &o);
        run_sampler(b + 4 * OD, 6, 4, samplers[k], 20, 0.7, MDIFF_OBJ_EPS, NULL, &o);
        ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
        run_sampler(c, 6, 4, samplers[k], 20, 0.7, MDIFF_OBJ_EPS, NULL, &o); /* reproducible */
        ck_assert_int_eq(memcmp(a + 4 * OD, c, 6 * OD * sizeof(float)), 0);
    }
}
END_TEST

/* Mathematical identities between samplers, per sample (same noise keys):
 *   ddpm over S steps == ddim with η = 1 over S steps (posterior-mean form vs x̂_0/ε̂ form);
 *   dpm++2m with S = 2 == ddim η = 0 with S = 2 (first-order step, then x̂_0);
 *   S = 1: all three == x̂_0(x_T).
 * Float rounding of two different formulas over ≤ 50 steps on values of size ≤ ~3: 1e-4. */
START_TEST(sampler_identities) {
    enum { B = 50 };
    float a[B * OD], b[B * OD];
    oracle_ctx o;
    for (int obj = 0; obj < 4; obj++) {
        oracle_init(&o, obj);
        const int Ss[2] = {50, 1000};
        for (int j = 0; j < 2; j++) {
            run_sampler(a, B, 3, MDIFF_SAMPLER_DDPM, Ss[j], 0.0, obj, NULL, &o);
            run_sampler(b, B, 3, MDIFF_SAMPLER_DDIM, Ss[j], 1.0, obj, NULL, &o);
            for (int i = 0; i < B * OD; i++)
                EXPECT(fabs(a[i] - b[i]) < 1e-4, "ddpm/ddim S=%d %s: %g vs %g", Ss[j],
                       mdiff_objective_name(obj), a[i], b[i]);
        }
        run_sampler(a, B, 0, MDIFF_SAMPLER_DPMPP2M, 2, 0.0, obj, NULL, &o);
        run_sampler(b, B, 0, MDIFF_SAMPLER_DDIM, 2, 0.0, obj, NULL, &o);
        for (int i = 0; i < B * OD; i++) EXPECT(fabs(a[i] - b[i]) < 1e-4, "dpm/ddim S=2");
        float c[B * OD];
        run_sampler(a, B, 0, MDIFF_SAMPLER_DPMPP2M, 1, 0.0, obj, NULL, &o);
        run_sampler(b, B, 0, MDIFF_SAMPLER_DDIM, 1, 0.3, obj, NULL, &o);
        run_sampler(c, B, 0, MDIFF_SAMPLER_DDPM, 1, 0.0, obj, NULL, &o);
        for (int i = 0; i < B * OD; i++) {
            EXPECT(fabs(a[i] - b[i]) < 1e-4, "S=1 dpm/ddim");
            EXPECT(fabs(a[i] - c[i]) < 1e-4, "S=1 dpm/ddpm");
        }
    }
}
END_TEST

typedef struct {
    int last, count;
} progress_rec;

static void on_progress(void *ctx, int k, int S) {
    progress_rec *p = ctx;
    ck_assert_int_eq(S, 8);
    ck_assert_int_eq(k, p->last + 1);
    p->last = k;
    p->count++;
}

/* Frames at iterations round(f S/(F-1)) = 0, 2, 4, 6, 8 of S = 8; the state after iteration k < S
 * is what the denoiser sees at call k+1 (recorded); frame 0 is x_T; the last frame the output. */
START_TEST(trajectory_and_progress) {
    enum { B = 3, S = 8, F = 5 };
    float x[B * OD], traj[F * B * OD], rec[S * B * OD];
    oracle_ctx o;
    oracle_init(&o, MDIFF_OBJ_V);
    o.record = rec;
    progress_rec pr = {0, 0};
    mdiff_sample_extras ex = {traj, F, on_progress, &pr};
    run_sampler(x, B, 5, MDIFF_SAMPLER_DDPM, S, 0.0, MDIFF_OBJ_V, &ex, &o);
    ck_assert_int_eq(pr.count, S);
    for (int b = 0; b < B; b++) {
        float z[OD];
        mdiff_rng_fill_normal(z, OD, 77, MDIFF_RNG_SAMPLE, 0, (uint64_t)(5 + b));
        ck_assert_int_eq(memcmp(traj + b * OD, z, sizeof z), 0);
    }
    for (int f = 1; f < F - 1; f++) /* after iteration 2f = input of call 2f+1 (index 2f) */
        ck_assert_int_eq(memcmp(traj + f * B * OD, rec + 2 * f * B * OD, B * OD * sizeof(float)),
                         0);
    ck_assert_int_eq(memcmp(traj + (F - 1) * B * OD, x, sizeof x), 0);
    /* clipping was on: every output within [-1, 1] */
    for (int i = 0; i < B * OD; i++) EXPECT(x[i] >= -1.0f && x[i] <= 1.0f, "clipped");
}
END_TEST

int main(void) {
    Suite *s = suite_create("diffusion");
    TCase *tc = tcase_create("schedules");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, linear_schedule_closed_form);
    tcase_add_test(tc, cosine_schedule_closed_form);
    tcase_add_test(tc, posterior_identities);
    tcase_add_test(tc, respacing);
    tcase_add_test(tc, dpm_logsnr_timesteps);
    tcase_add_test(tc, names_round_trip);
    tcase_add_exit_test(tc, unknown_schedule_exits_1, 1);
    tcase_add_exit_test(tc, too_few_timesteps_exits_1, 1);
    tcase_add_exit_test(tc, unknown_objective_exits_1, 1);
    tcase_add_exit_test(tc, unknown_sampler_exits_1, 1);
    tcase_add_exit_test(tc, zero_steps_exits_1, 1);
    tcase_add_exit_test(tc, steps_above_T_exits_1, 1);
    tcase_add_exit_test(tc, negative_eta_exits_1, 1);
    tcase_add_exit_test(tc, nan_eta_exits_1, 1);
    suite_add_tcase(s, tc);
    tc = tcase_create("objectives");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, objective_round_trips);
    tcase_add_test(tc, clipping);
    tcase_add_test(tc, make_batch_relations_and_statistics);
    tcase_add_test(tc, make_batch_split_independent);
    suite_add_tcase(s, tc);
    tc = tcase_create("samplers");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, oracle_samplers_recover_gaussian, 0, 5 * 4);
    tcase_add_test(tc, sampling_batch_independent);
    tcase_add_test(tc, sampler_identities);
    tcase_add_test(tc, trajectory_and_progress);
    suite_add_tcase(s, tc);
    tc = tcase_create("samplers_vs_data");
    tcase_set_timeout(tc, 60); /* ~1.5 s here; room for sanitizer builds */
    tcase_add_test(tc, ancestral_samplers_recover_the_data);
    tcase_add_loop_test(tc, samplers_recover_the_data, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
