/* diffusion: the model of diffusion of DESIGN.md §1, independent of any network.
 *  - noise schedules (linear, cosine) and their derived coefficients, in double;
 *  - training pairs per objective (eps, x0, v, xprev), keyed by (seed, step, global sample);
 *  - conversion of any objective's prediction to (x̂_0, ε̂), optional clipping of x̂_0;
 *  - samplers (ddpm, ddim, dpm++2m) that call the denoiser through a callback.
 * Implementation: src/diffusion/schedule.c (schedules, objectives, training pairs) and
 * src/diffusion/samplers.c.
 *
 * Time convention: diffusion time t = 1..T (t = 0 is the data). The network is given the float
 * t_net = t - 1 in [0, T).
 *
 * Objectives (what the network output f predicts at (x_t, t), with a = sqrt(ᾱ_t), s = sqrt(1-ᾱ_t),
 * x_t = a x_0 + s ε):
 *   eps    f ≈ ε                       x̂_0 = (x_t - s f) / a
 *   x0     f ≈ x_0                     ε̂   = (x_t - a f) / s
 *   v      f ≈ v = a ε - s x_0         x̂_0 = a x_t - s f,  ε̂ = s x_t + a f
 *   xprev  the seed's one-step formulation, f_θ(x_t) ≈ x_{t-1}. Training pairs: x_{t-1} from the
 *          closed form with ε, then x_t = sqrt(1-β_t) x_{t-1} + sqrt(β_t) ε_t (ε_t a second,
 *          independent noise). Two changes make it train (measured in README.md):
 *          - a residual on x_t at the scale of one reverse step: the network predicts
 *              r = (x_{t-1} - x_t) / k_t,   k_t = β_t / sqrt(1-ᾱ_t)   (mdiff_xprev_scale),
 *            since E[x_{t-1} | x_t] - x_t ≈ -k_t ε̂: a plain output would have to copy x_t to
 *            within k_t (2e-5 .. 2e-2), and a sqrt(β_t) scale leaves r's signal tiny at large t;
 *          - the regression target is the conditional mean of the sampled x_{t-1} given
 *            (x_t, x_0), μ̃_t = c1_t x_0 + c2_t x_t, not the sample itself: both have the same
 *            minimiser E[x_{t-1} | x_t], but the sample carries ε_t's noise (variance β̃_t per
 *            element, (1-ᾱ_{t-1})(1-ᾱ_t)/β_t after scaling) which swamps the signal.
 *          The prediction of x_{t-1} is x̂_{t-1} = x_t + k_t f, read as the posterior mean, so
 *              x̂_0 = (x̂_{t-1} - c2_t x_t) / c1_t,
 *          then ε̂ from x̂_0. c1_t is small at large t (1.3e-4 at t = T for linear T = 1000), so
 *          errors in f are amplified into x̂_0 there (by k_T/c1_T ≈ 150).
 * Clipping (clip != 0): x̂_0 is clamped to [-1, 1] and ε̂ recomputed from the clamped x̂_0 (as
 * improved-diffusion's clip_denoised), whatever the objective.
 *
 * Randomness (rng.h purposes), so that no result depends on the rank or the batch split:
 *   training sample g at optimizer step `step`: t ~ U{1..T} from (seed, TIMESTEP, step, g),
 *     ε (n normals) from (seed, NOISE, step, g), xprev's ε_t from (seed, NOISE2, step, g);
 *   validation sample g: the same with purpose VAL and step 0 (t), 1 (ε), 2 (ε_t);
 *   sampling image i: x_T from (seed, SAMPLE, 0, i); the noise added by sampler iteration
 *     k = 1..S (in execution order, k = 1 is the first step from x_T) from (seed, SAMPLE, k, i).
 */
#ifndef MDIFF_DIFFUSION_H
#define MDIFF_DIFFUSION_H

#include <stdint.h>

/* ---- schedules ------------------------------------------------------------------------------
 * Arrays of T+1 doubles indexed by t = 0..T; [0] holds the t = 0 values (β = 0, ᾱ = 1).
 *   linear: β_t = b0 + (b1 - b0) (t-1)/(T-1), b0 = 1e-4·1000/T, b1 = 0.02·1000/T (DDPM at
 *           T = 1000; improved-diffusion's scaling otherwise). β is clipped at 0.999, which only
 *           matters for T <= 20 (where b1 >= 1).
 *   cosine: β_t = min(1 - f(t/T)/f((t-1)/T), 0.999), f(u) = cos(((u + s)/(1 + s)) π/2)², s = 0.008.
 *   ᾱ_t = Π_{s<=t} (1 - β_s) (running product, as numpy cumprod).
 * Posterior q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, β̃_t) with
 *   β̃_t = β_t (1-ᾱ_{t-1})/(1-ᾱ_t),  c1_t = sqrt(ᾱ_{t-1}) β_t/(1-ᾱ_t),
 *   c2_t = sqrt(α_t)(1-ᾱ_{t-1})/(1-ᾱ_t);  at t = 0: β̃ = 0, c1 = 1, c2 = 0.
 * A respaced schedule (mdiff_schedule_respace) keeps steps τ_1 < ... < τ_S = T of a base schedule
 * and has β'_k = 1 - ᾱ_{τ_k}/ᾱ_{τ_{k-1}} (τ_0 = 0); its ᾱ'_k is ᾱ_{τ_k} (copied); `tau` maps its
 * steps to the base's (NULL for a base schedule). */
typedef struct {
    int T;
    double *beta, *alpha, *alpha_bar;
    double *one_m_ab;               /* 1 - ᾱ_t, accumulated without cancellation */
    double *sqrt_ab, *sqrt_1m_ab;   /* sqrt(ᾱ_t), sqrt(1 - ᾱ_t) */
    double *post_var;               /* β̃_t */
    double *post_c1, *post_c2;      /* posterior mean coefficients of x_0 and x_t */
    int *tau;                       /* respaced: base step of step k (tau[0] = 0); base: NULL */
} mdiff_schedule;

/* name "linear" | "cosine", T >= 2; otherwise a user error. Free with mdiff_schedule_free. */
void mdiff_schedule_init(mdiff_schedule *s, const char *name, int T);
void mdiff_schedule_free(mdiff_schedule *s);
/* The S kept steps of a base schedule of T steps, evenly spaced as improved-diffusion's
 * space_timesteps(T, [S]): τ_k = 1 + round((k-1)(T-1)/(S-1)) for k = 1..S (round half to even as
 * Python), so τ_1 = 1 and τ_S = T; S = 1 keeps τ_1 = T. 1 <= S <= T, k in 0..S (τ_0 = 0). */
int mdiff_spaced_t(int T, int S, int k);
/* out = base restricted to S evenly spaced steps (as above); S = T gives base (to rounding). */
void mdiff_schedule_respace(mdiff_schedule *out, const mdiff_schedule *base, int S);

/* ---- objectives -----------------------------------------------------------------------------*/
enum { MDIFF_OBJ_EPS = 0, MDIFF_OBJ_X0 = 1, MDIFF_OBJ_V = 2, MDIFF_OBJ_XPREV = 3 };
/* "eps" | "x0" | "v" | "xprev"; anything else is a user error. */
int mdiff_objective_from_name(const char *name);
const char *mdiff_objective_name(int objective);

/* Training batch: for each sample b of B (global index g0 + b), draw t and the noise (see the
 * top of this file) and build the network input and the regression target.
 *   x_in (B, n)   out: x_t (xprev: x_t of the one-step process)
 *   target (B, n) out: what the network must predict (objective table above)
 *   t_index (B)   out: t in 1..T;  t_net (B) out: t - 1 as float (the network's time input)
 *   x0 (B, n)     in:  clean samples in [-1, 1] (images) or any scale (points)
 * x_in, target must not alias x0. No allocation. */
void mdiff_diffusion_make_batch(float *x_in, float *target, int *t_index, float *t_net,
                                const float *x0, int B, int64_t n, const mdiff_schedule *s,
                                int objective, uint64_t seed, uint64_t step, uint64_t g0);
/* The same with the validation streams (purpose VAL): fixed t and noise per validation sample g. */
void mdiff_diffusion_make_val_batch(float *x_in, float *target, int *t_index, float *t_net,
                                    const float *x0, int B, int64_t n, const mdiff_schedule *s,
                                    int objective, uint64_t seed, uint64_t g0);
/* Closed-form forward process: x_t (n) = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) eps, t in 0..T. */
void mdiff_diffusion_q_sample(float *x_t, const float *x0, const float *eps, int64_t n, int t,
                              const mdiff_schedule *s);
/* xprev's residual scale k_t = β_t / sqrt(1-ᾱ_t), t in 1..T. */
double mdiff_xprev_scale(const mdiff_schedule *s, int t);
/* Network output `out` (n values at step t of schedule s, input x_t) -> x̂_0 and ε̂ (either may be
 * NULL when not needed; they may alias `out` but not x_t). Computed in double per element;
 * clip != 0 clamps x̂_0 to [-1, 1] and recomputes ε̂ from it. t in 1..T of the base schedule. */
void mdiff_diffusion_predict(float *x0_hat, float *eps_hat, const float *out, const float *x_t,
                             int64_t n, int t, const mdiff_schedule *s, int objective, int clip);

/* ---- samplers -------------------------------------------------------------------------------
 * The denoiser: out (B, n) = f(x (B, n), t_net (B)). Every t_net of one call is equal; the
 * callback must not keep the pointers. */
typedef void (*mdiff_denoise_fn)(void *ctx, float *out, const float *x, const float *t_net, int B);

enum { MDIFF_SAMPLER_DDPM = 0, MDIFF_SAMPLER_DDIM = 1, MDIFF_SAMPLER_DPMPP2M = 2 };
/* "ddpm" | "ddim" | "dpm++2m"; anything else is a user error. */
int mdiff_sampler_from_name(const char *name);
const char *mdiff_sampler_name(int sampler);
/* User errors for steps outside 1..T or eta < 0 (or non-finite). Called by mdiff_sample_batch;
 * drivers call it early to fail before loading anything heavy. */
void mdiff_sampler_validate(int sampler, int steps, double eta, int T);

/* Optional extras of one sampling run (NULL: none).
 *   traj: frames (n_frames, B, n): frame f is the state after iteration round(f S/(n_frames-1))
 *         (frame 0 = x_T, the last frame = the returned x_0); n_frames >= 2.
 *   progress: called after each iteration k = 1..S with (ctx, k, S). */
typedef struct {
    float *traj;
    int n_frames;
    void (*progress)(void *ctx, int k, int S);
    void *progress_ctx;
} mdiff_sample_extras;

/* Floats of workspace mdiff_sample_batch needs for B images of n values and S steps. */
int64_t mdiff_sample_work_floats(int B, int64_t n, int steps);

/* The kept steps of a sampler: tau[0] = 0 < tau[1] = 1 < ... < tau[S] = T (tau: S+1 ints).
 * ddpm, ddim: mdiff_spaced_t (evenly spaced in t, as improved-diffusion).
 * dpm++2m: uniform in λ = log(sqrt(ᾱ)/sqrt(1-ᾱ)) between t = 1 and T, each the nearest integer
 *   step, made strictly increasing (DPM-Solver's "logSNR" spacing, its advice for pixel-space
 *   models). Evenly spaced t would leave one huge final jump in λ (t = 54 -> 1 at S = 20) where
 *   the second-order extrapolation overshoots: on Gaussian data with the exact denoiser the
 *   sample variance comes out +54% at S = 20 (linear, T = 1000), against +3% with this spacing. */
void mdiff_sampler_timesteps(int *tau, const mdiff_schedule *s, int sampler, int S);

/* Generates images image0 .. image0+B-1 into x (B, n), starting from x_T = N(0, I).
 * Each sampler runs over its S kept steps τ_S = T > ... > τ_1 = 1 (mdiff_sampler_timesteps) and
 * ends at the data with x = x̂_0 predicted at τ_1:
 *   ddpm     ancestral on the respaced schedule: x_{k-1} = c1'_k x̂_0 + c2'_k x_k + sqrt(β̃'_k) z
 *            (S = T: plain DDPM with the posterior variance β̃_t). eta is ignored.
 *   ddim     x_{k-1} = sqrt(ᾱ_{k-1}) x̂_0 + sqrt(1-ᾱ_{k-1}-σ_k²) ε̂ + σ_k z,
 *            σ_k = eta sqrt((1-ᾱ_{k-1})/(1-ᾱ_k)) sqrt(1-ᾱ_k/ᾱ_{k-1}) (Song et al.; eta = 1 is
 *            ddpm; eta > 1 clamps the ε̂ coefficient at 0).
 *   dpm++2m  DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in data prediction with
 *            λ = log(sqrt(ᾱ)/sqrt(1-ᾱ)): a first-order first step, second-order multistep steps,
 *            and a first-order last step to σ = 0 (x = x̂_0 at τ_1), as diffusers'
 *            lower_order_final. Deterministic; eta is ignored.
 * Image i's result depends only on (seed, i) and the denoiser (bit-for-bit when the denoiser's
 * output for an image does not depend on the batch it is in). work: mdiff_sample_work_floats
 * floats (malloc'd memory: it also holds the τ ints). */
void mdiff_sample_batch(float *x, int B, int64_t n, int64_t image0, int sampler, int steps,
                        double eta, int clip, uint64_t seed, const mdiff_schedule *s, int objective,
                        mdiff_denoise_fn denoise, void *ctx, const mdiff_sample_extras *extras,
                        float *work);

#endif
