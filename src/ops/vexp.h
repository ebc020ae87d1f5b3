/* vexp: an exp and a sigmoid that gcc can vectorise (private to src/ops).
 * glibc's expf is a scalar call at -O3 without -ffast-math, which made the fused GroupNorm+SiLU
 * ~5x slower than the plain GroupNorm; this version is branch-free straight-line arithmetic
 * (Cephes' expf: round x / ln2 to n, a degree-6 polynomial on the remainder, 2^n through the
 * exponent bits), vectorised with SSE2 (AVX2 under NATIVE=1). SiLU: 3.7 -> 2.2 ns/element. */
#ifndef MDIFF_OPS_VEXP_H
#define MDIFF_OPS_VEXP_H

#include <stdint.h>
#include <string.h>

/* gcc threads the two clamps below into a branch nest and, under the default -ftrapping-math,
 * will not if-convert a float compare that the source did not execute on every path, so the loop
 * stays scalar. We never trap on FP exceptions: drop that assumption for the including file
 * (from here on; NaN and inf semantics are unchanged). Include this header after the others. */
#pragma GCC optimize("no-trapping-math")

/* exp(x) for x in [-87, 88] (no clamping: callers clamp). */
static inline float mdiff_vexpf_core(float x) {
    /* n = round(x / ln2): adding 1.5 * 2^23 rounds to an integer in the default rounding mode */
    const float magic = 12582912.0f;
    float n = (x * 1.44269504088896341f + magic) - magic;
    /* r = x - n ln2 with ln2 split in two so n * C1 is exact (C1 has 9 significant bits) */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* exp(x) with x clamped to [-87, 88]: results from 1.6e-38 (still a normal float) to 1.65e38.
 * Measured < 1 ulp from exp over the whole range. NaN passes through both clamps. */
static inline float mdiff_vexpf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    return mdiff_vexpf_core(x);
}

/* 1 / (1 + exp(-x)), ~2.5 ulp, with x clamped to [-40, 40]: sigmoid(40) rounds to 1 and the
 * error below -40 is < 4.3e-18 absolute. The narrow clamp matters for speed: the vectoriser
 * evaluates the clamped branch on every lane (e.g. x * sigmoid(-88) = x * 6e-39 in a SiLU), and
 * a denormal result costs a microcode assist per element (measured 2.5x slower). */
static inline float mdiff_vsigmoidf(float x) {
    x = x < -40.0f ? -40.0f : x;
    x = x > 40.0f ? 40.0f : x;
    return 1.0f / (1.0f + mdiff_vexpf_core(-x));
}

#endif
