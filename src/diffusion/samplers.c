/* diffusion/samplers.c: the reverse process. ddpm (ancestral, respaced when S < T), ddim (η) and
 * dpm++2m, each over its kept steps τ_S = T > ... > τ_1 = 1 (mdiff_sampler_timesteps) and each
 * driving any objective through mdiff_diffusion_predict. The denoiser is a callback; noise is
 * keyed by (seed, sampler iteration, image index), so an image never depends on its batch. */
#include "mdiff/diffusion.h"

#include <math.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/rng.h"

static const char *const sampler_names[] = {"ddpm", "ddim", "dpm++2m"};

int mdiff_sampler_from_name(const char *name) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, sampler_names[i]) == 0) return i;
    mdiff_user_error("unknown sampler '%s': use ddpm, ddim or dpm++2m", name);
}

const char *mdiff_sampler_name(int sampler) {
    MDIFF_CHECK(sampler >= 0 && sampler < 3, "bad sampler %d", sampler);
    return sampler_names[sampler];
}

void mdiff_sampler_validate(int sampler, int steps, double eta, int T) {
    MDIFF_CHECK(sampler >= 0 && sampler < 3, "bad sampler %d", sampler);
    if (steps < 1 || steps > T)
        mdiff_user_error("--steps %d is out of range for %s: use 1..%d (the model's timesteps)",
                         steps, sampler_names[sampler], T);
    if (!(eta >= 0.0) || !isfinite(eta))
        mdiff_user_error("--eta %g is invalid: use a finite value >= 0 (0 = deterministic DDIM)",
                         eta);
}

int64_t mdiff_sample_work_floats(int B, int64_t n, int steps) {
    return 4 * (int64_t)B * n + B + steps + 1; /* out, x̂_0, ε̂, dpm's previous x̂_0, t_net, τ */
}

/* λ = log(sqrt(ᾱ)/sqrt(1-ᾱ)) of step t, with the schedule's cancellation-free 1-ᾱ. */
static double lambda_t(const mdiff_schedule *s, int t) {
    return 0.5 * (log(s->alpha_bar[t]) - log(s->one_m_ab[t]));
}

/* DPM-Solver's "logSNR" spacing: S steps uniform in λ from λ(ᾱ_1) down to λ(ᾱ_T), each the
 * nearest integer step, then made strictly increasing within 1..T. */
static void logsnr_timesteps(int *tau, const mdiff_schedule *s, int S) {
    int T = s->T, t = 1;
    double l_hi = lambda_t(s, 1), l_lo = lambda_t(s, T);
    for (int k = 1; k <= S; k++) {
        double target = l_hi + (l_lo - l_hi) * (double)(k - 1) / (double)(S - 1);
        /* λ decreases with t and the targets decrease with k: one forward scan. */
        while (t < T && fabs(lambda_t(s, t + 1) - target) <= fabs(lambda_t(s, t) - target)) t++;
        tau[k] = t;
    }
    for (int k = 2; k <= S; k++)
        if (tau[k] <= tau[k - 1]) tau[k] = tau[k - 1] + 1;
    for (int k = S; k >= 1; k--)
        if (tau[k] > T - (S - k)) tau[k] = T - (S - k);
}

void mdiff_sampler_timesteps(int *tau, const mdiff_schedule *s, int sampler, int S) {
    MDIFF_CHECK(S >= 1 && S <= s->T, "sampler_timesteps S=%d T=%d", S, s->T);
    tau[0] = 0;
    if (sampler == MDIFF_SAMPLER_DPMPP2M && S > 1) {
        logsnr_timesteps(tau, s, S);
        return;
    }
    for (int k = 1; k <= S; k++) tau[k] = mdiff_spaced_t(s->T, S, k);
}

/* x (B, n) of images image0.. gets fresh normals of (seed, SAMPLE, iteration, image). */
static void fill_noise(float *z, int B, int64_t n, int64_t image0, uint64_t seed, int iteration) {
    for (int b = 0; b < B; b++)
        mdiff_rng_fill_normal(z + (int64_t)b * n, n, seed, MDIFF_RNG_SAMPLE, (uint64_t)iteration,
                              (uint64_t)(image0 + b));
}

/* Copies x into every trajectory frame shown after iteration `it` of S. */
static void capture(const mdiff_sample_extras *ex, const float *x, int B, int64_t n, int it,
                    int S) {
    if (!ex || !ex->traj) return;
    for (int f = 0; f < ex->n_frames; f++) {
        int kf = (int)llround((double)f * S / (double)(ex->n_frames - 1));
        if (kf == it)
            memcpy(ex->traj + (int64_t)f * B * n, x, (size_t)((int64_t)B * n) * sizeof(float));
    }
}

/* State carried across iterations by dpm++2m: the previous x̂_0 and step size in λ. */
typedef struct {
    float *x0_prev;
    double h_prev;
    int have_prev;
} dpm_state;

/* One update of x from kept step t to the previous kept step tp (0 at the data). x0h, eps: the
 * converted prediction; z: scratch for the noise. */
static void step_update(float *x, const float *x0h, const float *eps, float *z, int sampler,
                        double eta, const mdiff_schedule *s, int t, int tp, int last,
                        dpm_state *dpm, int B, int64_t n, int64_t image0, uint64_t seed, int it) {
    int64_t N = (int64_t)B * n;
    double ab = s->alpha_bar[t], abp = s->alpha_bar[tp], om = s->one_m_ab[t], omp = s->one_m_ab[tp];
    if (sampler == MDIFF_SAMPLER_DPMPP2M) {
        if (last) { /* first order to σ = 0: x = α x̂_0 with α = 1 */
            memcpy(x, x0h, (size_t)N * sizeof(float));
            return;
        }
        double h = lambda_t(s, tp) - lambda_t(s, t);
        double ratio = sqrt(omp / om), phi = -sqrt(abp) * expm1(-h);
        double w1 = 1.0, w0 = 0.0;
        if (dpm->have_prev) { /* D = (1 + 1/(2r)) x̂_0 - 1/(2r) x̂_0,prev, r = h_prev/h */
            double r = dpm->h_prev / h;
            w1 = 1.0 + 0.5 / r;
            w0 = -0.5 / r;
        }
        for (int64_t j = 0; j < N; j++) {
            double D = w1 * x0h[j] + (dpm->have_prev ? w0 * dpm->x0_prev[j] : 0.0);
            x[j] = (float)(ratio * x[j] + phi * D);
        }
        memcpy(dpm->x0_prev, x0h, (size_t)N * sizeof(float));
        dpm->h_prev = h;
        dpm->have_prev = 1;
        return;
    }
    /* the respaced one-step α', β' (β' = 1 - ᾱ_t exactly at the data, so the last step is x̂_0) */
    double sigma, cx0, ce, cx, a = ab / abp, b = tp == 0 ? om : 1.0 - a;
    if (sampler == MDIFF_SAMPLER_DDPM) { /* posterior q(x_tp | x_t, x̂_0) of the respaced chain */
        sigma = sqrt(b * omp / om);
        cx0 = sqrt(abp) * b / om;
        cx = sqrt(a) * omp / om;
        ce = 0.0;
    } else {
        sigma = eta * sqrt(omp / om) * sqrt(b);
        double rest = omp - sigma * sigma;
        cx0 = sqrt(abp);
        ce = rest > 0.0 ? sqrt(rest) : 0.0;
        cx = 0.0;
    }
    if (sigma > 0.0) fill_noise(z, B, n, image0, seed, it);
    for (int64_t j = 0; j < N; j++) {
        double v = cx0 * x0h[j] + ce * eps[j] + cx * x[j];
        if (sigma > 0.0) v += sigma * z[j];
        x[j] = (float)v;
    }
}

void mdiff_sample_batch(float *x, int B, int64_t n, int64_t image0, int sampler, int steps,
                        double eta, int clip, uint64_t seed, const mdiff_schedule *s, int objective,
                        mdiff_denoise_fn denoise, void *ctx, const mdiff_sample_extras *extras,
                        float *work) {
    MDIFF_CHECK(!s->tau, "sampling needs the base schedule");
    MDIFF_CHECK(B >= 1 && n >= 1 && image0 >= 0, "sample_batch B=%d n=%lld", B, (long long)n);
    MDIFF_CHECK(!extras || !extras->traj || extras->n_frames >= 2, "trajectory needs >= 2 frames");
    mdiff_sampler_validate(sampler, steps, eta, s->T);
    int64_t N = (int64_t)B * n;
    float *out = work, *x0h = work + N, *eps = work + 2 * N;
    float *t_net = work + 4 * N;
    int *tau = (int *)(work + 4 * N + B); /* plain malloc'd floats: storing ints there is fine */
    dpm_state dpm = {work + 3 * N, 0.0, 0};
    int S = steps;
    mdiff_sampler_timesteps(tau, s, sampler, S);

    fill_noise(x, B, n, image0, seed, 0);
    capture(extras, x, B, n, 0, S);
    for (int k = S, it = 1; k >= 1; k--, it++) {
        int t = tau[k], tp = tau[k - 1];
        for (int b = 0; b < B; b++) t_net[b] = (float)(t - 1);
        denoise(ctx, out, x, t_net, B);
        mdiff_diffusion_predict(x0h, eps, out, x, N, t, s, objective, clip);
        /* `out` is free now: it holds the step's noise. */
        step_update(x, x0h, eps, out, sampler, eta, s, t, tp, k == 1, &dpm, B, n, image0, seed, it);
        capture(extras, x, B, n, it, S);
        if (extras && extras->progress) extras->progress(extras->progress_ctx, it, S);
    }
}
