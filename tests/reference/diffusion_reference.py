#!/usr/bin/python3
"""Reference numbers for tests/unit/test_diffusion.c, computed independently with numpy the way
openai/improved-diffusion does (np.linspace betas, np.cumprod, space_timesteps' rounding) and
DPM-Solver's logSNR time spacing. Run: /usr/bin/python3 tests/reference/diffusion_reference.py"""
import math
import numpy as np

T = 1000
betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
ab = np.cumprod(1.0 - betas)
print("/* linear T=1000: alpha_bar[500], alpha_bar[1000] */")
print("%.12e %.12e" % (ab[499], ab[-1]))


def cos_betas(T, s=0.008):
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])


cb = np.cumprod(1.0 - cos_betas(T))
print("/* cosine T=1000: alpha_bar[1], alpha_bar[500], alpha_bar[999], alpha_bar[1000] */")
print("%.12e %.12e %.12e %.12e" % (cb[0], cb[499], cb[998], cb[999]))

print("/* improved-diffusion space_timesteps(1000, [50]) (1-based) */")
frac = (T - 1) / (50 - 1)
print([1 + round(i * frac) for i in range(50)])


def logsnr_taus(abar, S):
    """Uniform in lambda from t=1 to t=T, nearest integer t (ties to the larger t), then
    made strictly increasing."""
    lam = 0.5 * (np.log(abar) - np.log1p(-abar))  # index t-1
    targets = np.linspace(lam[0], lam[-1], S)
    taus = []
    for l in targets:
        d = np.abs(lam - l)
        taus.append(int(np.flatnonzero(d == d.min())[-1]) + 1)
    for k in range(1, S):
        taus[k] = max(taus[k], taus[k - 1] + 1)
    for k in range(S - 1, -1, -1):
        taus[k] = min(taus[k], len(abar) - (S - 1 - k))
    return taus


print("/* dpm++2m logSNR steps, linear T=1000, S=20 */")
print(logsnr_taus(ab, 20))
print("/* dpm++2m logSNR steps, cosine T=1000, S=10 */")
print(logsnr_taus(cb, 10))
