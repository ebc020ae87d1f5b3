#!/usr/bin/python3
"""Exact output laws of the samplers on 1-D Gaussian data, for the allowances of
tests/unit/test_diffusion.c (samplers_recover_the_data): data x0 ~ N(mu, s^2), the exact denoiser
E[x0 | x_t], the linear schedule with T = 1000 (DESIGN.md section 1). Every update is then affine
in x and in fresh noise, so the output is exactly N(B, A^2 + W) with x = A z_T + B + noise(W);
this script propagates (A, B, W) in double from the samplers' definitions in the papers, written
in their own form, not from the C code:
  ddpm      x_tp = E[x_tp | x_t] + sqrt(Var[x_tp | x_t, x0]) z, both by Gaussian conditioning on
            the forward process's joint covariances (Ho et al.; the respaced chain of kept steps);
  ddim      x_tp = sqrt(ab_tp) x0^ + sqrt(1 - ab_tp - sig^2) eps^ + sig z (Song et al. eq. 12);
  dpm++2m   DPM-Solver++(2M), Lu et al. 2022 Alg. 2, first order at the first step, x0^ at the last.
What it prints is each case's deviation of the output law from the data, in the data's units:
(mean - mu)/s and var/s^2 - 1, i.e. the discretisation error of the sampler (plus the x_T ~ N(0, 1)
versus q(x_T) mismatch for the deterministic ones), which the test allows for.
Pure standard library: /usr/bin/python3 tests/reference/gaussian_sampler_laws.py"""
import math

T = 1000
MU, S = 0.5, 0.1
beta = [0.0] + [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]
log_ab = [0.0]
for t in range(1, T + 1):
    log_ab.append(log_ab[-1] + math.log1p(-beta[t]))
ab = [math.exp(l) for l in log_ab]
om = [-math.expm1(l) for l in log_ab]  # 1 - ab without cancellation


def spaced(S_):  # improved-diffusion's space_timesteps; Python's round is half to even
    if S_ == 1:
        return [0, T]
    stride = (T - 1) / (S_ - 1)
    return [0] + [1 + round((k - 1) * stride) for k in range(1, S_ + 1)]


def lam(t):
    return 0.5 * (log_ab[t] - math.log(om[t]))


def logsnr(S_):  # DPM-Solver's logSNR spacing, nearest integer t, made strictly increasing
    tau, t = [0] * (S_ + 1), 1
    for k in range(1, S_ + 1):
        target = lam(1) + (lam(T) - lam(1)) * (k - 1) / (S_ - 1)
        while t < T and abs(lam(t + 1) - target) <= abs(lam(t) - target):
            t += 1
        tau[k] = t
    for k in range(2, S_ + 1):
        tau[k] = max(tau[k], tau[k - 1] + 1)
    for k in range(S_, 0, -1):
        tau[k] = min(tau[k], T - (S_ - k))
    return tau


def mean_var(t):  # marginal of x_t
    return math.sqrt(ab[t]) * MU, ab[t] * S * S + om[t]


def x0_hat(t):  # E[x0 | x_t] = g x_t + c
    m, V = mean_var(t)
    g = math.sqrt(ab[t]) * S * S / V
    return g, MU - g * m


def eps_hat(t):  # E[eps | x_t] = Cov(eps, x_t)/V (x_t - m)
    m, V = mean_var(t)
    g = math.sqrt(om[t]) / V
    return g, -g * m


def law(sampler, S_, eta=0.0):
    tau = logsnr(S_) if sampler == "dpm++2m" and S_ > 1 else spaced(S_)
    A, B, W = 1.0, 0.0, 0.0
    prev, h_prev = None, 0.0
    for k in range(S_, 0, -1):
        t, tp = tau[k], tau[k - 1]
        gx, cx = x0_hat(t)
        ge, ce = eps_hat(t)
        if sampler == "ddpm":
            m, V = mean_var(t)
            mp, Vp = mean_var(tp)
            cov = math.sqrt(ab[t] / ab[tp]) * Vp  # x_t = sqrt(ab_t/ab_tp) x_tp + noise
            g = cov / V
            h = mp - g * m
            # Var[x_tp | x_t, x0]: conditioning (x_tp, x_t) given x0
            pv = om[tp] - (ab[t] / ab[tp]) * om[tp] ** 2 / om[t]
            A, B, W = g * A, g * B + h, g * g * W + max(pv, 0.0)
        elif sampler == "ddim":
            sig = eta * math.sqrt(om[tp] / om[t]) * math.sqrt(1 - ab[t] / ab[tp])
            q = math.sqrt(max(om[tp] - sig * sig, 0.0))
            g = math.sqrt(ab[tp]) * gx + q * ge
            h = math.sqrt(ab[tp]) * cx + q * ce
            A, B, W = g * A, g * B + h, g * g * W + sig * sig
        else:  # dpm++2m, deterministic: W stays 0
            D = (gx * A, gx * B + cx)
            if k == 1:
                return D[0], D[1], 0.0
            hh = lam(tp) - lam(t)
            if prev is not None:
                r = h_prev / hh
                Dc = tuple((1 + 0.5 / r) * D[i] - 0.5 / r * prev[i] for i in range(2))
            else:
                Dc = D
            ratio, phi = math.sqrt(om[tp] / om[t]), -math.sqrt(ab[tp]) * math.expm1(-hh)
            A, B = ratio * A + phi * Dc[0], ratio * B + phi * Dc[1]
            prev, h_prev = D, hh
    return A, B, W


print("data N(%g, %g^2), linear T = %d: deviation of the exact output law" % (MU, S, T))
print("%-10s %5s %4s %12s %12s" % ("sampler", "steps", "eta", "(mean-mu)/s", "var/s^2-1"))
for sampler, S_, eta in [("ddpm", 1000, 0.0), ("ddpm", 100, 0.0), ("ddim", 100, 1.0),
                         ("ddim", 1000, 1.0), ("ddim", 1000, 0.0), ("ddim", 50, 0.0),
                         ("dpm++2m", 25, 0.0)]:
    A, B, W = law(sampler, S_, eta)
    dev_mean, dev_var = (B - MU) / S, (A * A + W) / S**2 - 1
    print("%-10s %5d %4g %+12.5f %+12.5f" % (sampler, S_, eta, dev_mean, dev_var))
