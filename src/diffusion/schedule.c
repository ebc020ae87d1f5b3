/* diffusion/schedule.c: noise schedules (linear, cosine) and respacing, the objectives' training
 * pairs keyed by (seed, step, global sample), and the conversion of a prediction to (x̂_0, ε̂).
 * All coefficients are double; per-element arithmetic is double, stored as float. */
#include "mdiff/diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/rng.h"

static const char *const objective_names[] = {"eps", "x0", "v", "xprev"};

int mdiff_objective_from_name(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, objective_names[i]) == 0) return i;
    mdiff_user_error("unknown objective '%s': use eps, x0, v or xprev", name);
}

const char *mdiff_objective_name(int objective) {
    MDIFF_CHECK(objective >= 0 && objective < 4, "bad objective %d", objective);
    return objective_names[objective];
}

/* ---- schedules ---------------------------------------------------------------------------- */

static double cosine_f(double u) {
    const double s = 0.008;
    double c = cos((u + s) / (1.0 + s) * M_PI / 2.0);
    return c * c;
}

static void schedule_alloc(mdiff_schedule *s, int T) {
    memset(s, 0, sizeof *s);
    s->T = T;
    size_t m = (size_t)T + 1;
    double *base = mdiff_calloc(9 * m, sizeof(double), "diffusion schedule");
    s->beta = base;
    s->alpha = base + m;
    s->alpha_bar = base + 2 * m;
    s->sqrt_ab = base + 3 * m;
    s->sqrt_1m_ab = base + 4 * m;
    s->post_var = base + 5 * m;
    s->post_c1 = base + 6 * m;
    s->post_c2 = base + 7 * m;
    s->one_m_ab = base + 8 * m;
}

/* Fills the square roots and the posterior from beta, alpha, alpha_bar, one_m_ab [1..T]. */
static void schedule_derive(mdiff_schedule *s) {
    s->beta[0] = 0.0;
    s->alpha[0] = s->alpha_bar[0] = 1.0;
    s->one_m_ab[0] = 0.0;
    s->sqrt_ab[0] = 1.0;
    s->sqrt_1m_ab[0] = 0.0;
    s->post_var[0] = 0.0;
    s->post_c1[0] = 1.0;
    s->post_c2[0] = 0.0;
    for (int t = 1; t <= s->T; t++) {
        double om = s->one_m_ab[t], omp = s->one_m_ab[t - 1], b = s->beta[t];
        s->sqrt_ab[t] = sqrt(s->alpha_bar[t]);
        s->sqrt_1m_ab[t] = sqrt(om);
        s->post_var[t] = b * omp / om;
        s->post_c1[t] = sqrt(s->alpha_bar[t - 1]) * b / om;
        s->post_c2[t] = sqrt(s->alpha[t]) * omp / om;
    }
}

void mdiff_schedule_init(mdiff_schedule *s, const char *name, int T) {
    if (T < 2)
        mdiff_user_error("timesteps %d is too small: use --timesteps 2 or more (default 1000)", T);
    int linear = strcmp(name, "linear") == 0, cosine = strcmp(name, "cosine") == 0;
    if (!linear && !cosine) mdiff_user_error("unknown schedule '%s': use linear or cosine", name);
    schedule_alloc(s, T);
    s->alpha_bar[0] = 1.0;
    for (int t = 1; t <= T; t++) {
        double b;
        if (linear) {
            double scale = 1000.0 / T, b0 = scale * 1e-4, b1 = scale * 0.02;
            b = b0 + (b1 - b0) * (double)(t - 1) / (double)(T - 1);
        } else {
            b = 1.0 - cosine_f((double)t / T) / cosine_f((double)(t - 1) / T);
        }
        s->beta[t] = b < 0.999 ? b : 0.999;
        s->alpha[t] = 1.0 - s->beta[t];
        s->alpha_bar[t] = s->alpha_bar[t - 1] * s->alpha[t]; /* as numpy's cumprod */
        /* 1 - ᾱ_t = (1 - ᾱ_{t-1}) + ᾱ_{t-1} β_t: no cancellation near t = 1 (1 - ᾱ_1 = β_1) */
        s->one_m_ab[t] = s->one_m_ab[t - 1] + s->alpha_bar[t - 1] * s->beta[t];
    }
    schedule_derive(s);
}

void mdiff_schedule_free(mdiff_schedule *s) {
    free(s->beta); /* the block of all nine arrays */
    free(s->tau);
    memset(s, 0, sizeof *s);
}

int mdiff_spaced_t(int T, int S, int k) {
    MDIFF_CHECK(S >= 1 && S <= T && k >= 0 && k <= S, "spaced_t(T=%d, S=%d, k=%d)", T, S, k);
    if (k == 0) return 0;
    if (S == 1) return T;
    /* improved-diffusion: round(i * (T-1)/(S-1)) with Python's round (half to even). */
    double stride = (double)(T - 1) / (double)(S - 1);
    return 1 + (int)nearbyint((double)(k - 1) * stride);
}

void mdiff_schedule_respace(mdiff_schedule *out, const mdiff_schedule *base, int S) {
    MDIFF_CHECK(!base->tau, "respacing a respaced schedule");
    MDIFF_CHECK(S >= 1 && S <= base->T, "respace %d of %d steps", S, base->T);
    schedule_alloc(out, S);
    out->tau = mdiff_malloc(((size_t)S + 1) * sizeof(int), "respaced schedule");
    for (int k = 0; k <= S; k++) out->tau[k] = mdiff_spaced_t(base->T, S, k);
    out->alpha_bar[0] = 1.0;
    for (int k = 1; k <= S; k++) {
        /* ᾱ and 1-ᾱ are the base's exactly; β'_k = 1 - ᾱ_k/ᾱ_{k-1} (relative error <= 1e-12,
         * worst for the smallest β') */
        int t = out->tau[k], tp = out->tau[k - 1];
        out->alpha_bar[k] = base->alpha_bar[t];
        out->one_m_ab[k] = base->one_m_ab[t];
        out->alpha[k] = base->alpha_bar[t] / base->alpha_bar[tp];
        out->beta[k] = tp == 0 ? base->one_m_ab[t] : 1.0 - out->alpha[k]; /* exact at the data */
    }
    schedule_derive(out);
}

/* ---- training pairs ----------------------------------------------------------------------- */

void mdiff_diffusion_q_sample(float *x_t, const float *x0, const float *eps, int64_t n, int t,
                              const mdiff_schedule *s) {
    MDIFF_CHECK(t >= 0 && t <= s->T, "q_sample t=%d of T=%d", t, s->T);
    double a = s->sqrt_ab[t], b = s->sqrt_1m_ab[t];
    for (int64_t j = 0; j < n; j++) x_t[j] = (float)(a * x0[j] + b * eps[j]);
}

/* One sample: x_in and target hold ε_t (xprev only) and ε on entry, x_t and the target on exit. */
static void make_pair(float *x_in, float *target, const float *x0, int64_t n, int t,
                      const mdiff_schedule *s, int objective) {
    double a = s->sqrt_ab[t], sg = s->sqrt_1m_ab[t];
    if (objective == MDIFF_OBJ_XPREV) {
        /* The seed's pair: x_{t-1} = sqrt(ᾱ_{t-1}) x0 + sqrt(1-ᾱ_{t-1}) ε, then one forward step
         * x_t = sqrt(α_t) x_{t-1} + sqrt(β_t) ε_t. The target is E[x_{t-1} | x_t, x0] = c1 x0 + c2 x_t
         * (its conditional mean: same minimiser, without ε_t's variance), as a residual on x_t
         * over the drift scale k_t (diffusion.h). */
        double ap = s->sqrt_ab[t - 1], sp = s->sqrt_1m_ab[t - 1];
        double sa = sqrt(s->alpha[t]), sb = sqrt(s->beta[t]);
        double c1 = s->post_c1[t], c2m1 = s->post_c2[t] - 1.0, k = mdiff_xprev_scale(s, t);
        for (int64_t j = 0; j < n; j++) {
            double xp = ap * x0[j] + sp * target[j], xt = sa * xp + sb * x_in[j];
            x_in[j] = (float)xt;
            target[j] = (float)((c1 * x0[j] + c2m1 * xt) / k);
        }
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        double e = target[j], xt = a * x0[j] + sg * e, tg;
        switch (objective) {
        case MDIFF_OBJ_EPS: tg = e; break;
        case MDIFF_OBJ_X0: tg = x0[j]; break;
        default: tg = a * e - sg * x0[j]; break; /* v */
        }
        x_in[j] = (float)xt;
        target[j] = (float)tg;
    }
}

/* Shared by the training and validation batches: purposes and steps of (t, ε, ε_t). */
static void make_batch_keyed(float *x_in, float *target, int *t_index, float *t_net,
                             const float *x0, int B, int64_t n, const mdiff_schedule *s,
                             int objective, uint64_t seed, const uint32_t purpose[3],
                             const uint64_t step[3], uint64_t g0) {
    MDIFF_CHECK(objective >= 0 && objective < 4, "bad objective %d", objective);
    MDIFF_CHECK(!s->tau, "training on a respaced schedule");
    for (int b = 0; b < B; b++) {
        uint64_t g = g0 + (uint64_t)b;
        mdiff_rng r;
        mdiff_rng_init(&r, seed, purpose[0], step[0], g);
        int t = 1 + (int)mdiff_rng_below(&r, (uint64_t)s->T);
        t_index[b] = t;
        t_net[b] = (float)(t - 1);
        float *xi = x_in + (int64_t)b * n, *tg = target + (int64_t)b * n;
        mdiff_rng_fill_normal(tg, n, seed, purpose[1], step[1], g);
        if (objective == MDIFF_OBJ_XPREV)
            mdiff_rng_fill_normal(xi, n, seed, purpose[2], step[2], g);
        make_pair(xi, tg, x0 + (int64_t)b * n, n, t, s, objective);
    }
}

void mdiff_diffusion_make_batch(float *x_in, float *target, int *t_index, float *t_net,
                                const float *x0, int B, int64_t n, const mdiff_schedule *s,
                                int objective, uint64_t seed, uint64_t step, uint64_t g0) {
    const uint32_t p[3] = {MDIFF_RNG_TIMESTEP, MDIFF_RNG_NOISE, MDIFF_RNG_NOISE2};
    const uint64_t st[3] = {step, step, step};
    make_batch_keyed(x_in, target, t_index, t_net, x0, B, n, s, objective, seed, p, st, g0);
}

void mdiff_diffusion_make_val_batch(float *x_in, float *target, int *t_index, float *t_net,
                                    const float *x0, int B, int64_t n, const mdiff_schedule *s,
                                    int objective, uint64_t seed, uint64_t g0) {
    const uint32_t p[3] = {MDIFF_RNG_VAL, MDIFF_RNG_VAL, MDIFF_RNG_VAL};
    const uint64_t st[3] = {0, 1, 2};
    make_batch_keyed(x_in, target, t_index, t_net, x0, B, n, s, objective, seed, p, st, g0);
}

double mdiff_xprev_scale(const mdiff_schedule *s, int t) { return s->beta[t] / s->sqrt_1m_ab[t]; }

/* ---- prediction -> (x̂_0, ε̂) -------------------------------------------------------------- */

void mdiff_diffusion_predict(float *x0_hat, float *eps_hat, const float *out, const float *x_t,
                             int64_t n, int t, const mdiff_schedule *s, int objective, int clip) {
    MDIFF_CHECK(t >= 1 && t <= s->T, "predict t=%d of T=%d", t, s->T);
    MDIFF_CHECK(objective >= 0 && objective < 4, "bad objective %d", objective);
    double a = s->sqrt_ab[t], sg = s->sqrt_1m_ab[t];
    double k = mdiff_xprev_scale(s, t), c1 = s->post_c1[t], c2 = s->post_c2[t];
    for (int64_t j = 0; j < n; j++) {
        double f = out[j], xt = x_t[j], x0, e;
        switch (objective) {
        case MDIFF_OBJ_EPS:
            e = f;
            x0 = (xt - sg * f) / a;
            break;
        case MDIFF_OBJ_X0:
            x0 = f;
            e = (xt - a * f) / sg;
            break;
        case MDIFF_OBJ_V:
            x0 = a * xt - sg * f;
            e = sg * xt + a * f;
            break;
        default:
            x0 = (xt + k * f - c2 * xt) / c1;
            e = (xt - a * x0) / sg;
            break; /* xprev */
        }
        if (clip && (x0 < -1.0 || x0 > 1.0)) {
            x0 = x0 < -1.0 ? -1.0 : 1.0;
            e = (xt - a * x0) / sg;
        }
        if (x0_hat) x0_hat[j] = (float)x0;
        if (eps_hat) eps_hat[j] = (float)e;
    }
}
