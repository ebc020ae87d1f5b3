/* Finite-difference gradient checks shared by the op and model suites (header-only).
 *
 * The scalar checked is L = sum_i w_i * f(x)_i with fixed random weights w, so every output
 * element contributes with a distinct weight (a transposed or shifted gradient cannot cancel).
 * Central differences in double around float32 evaluations: with step h the truncation error is
 * O(h^2 f''') and the rounding error about eps_f32 * |L| / h; h = 1e-2..1e-3 balances them for
 * O(1) inputs. Callers state their tolerance and why. */
#ifndef MDIFF_FDCHECK_H
#define MDIFF_FDCHECK_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Deterministic test data in [-1, 1) (xorshift; independent of mdiff's rng on purpose). */
static inline void fd_fill(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

static inline double fd_dot(const float *a, const float *w, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)w[i];
    return s;
}

/* Evaluates the forward into `out` (n_out floats) from the current inputs. */
typedef void (*fd_forward_fn)(void *ctx, float *out);

/* Compares analytic gradient `grad` (of L w.r.t. x[0..n)) with central differences, at up to
 * `max_checks` evenly spread indices (all when n is small). Fails the Check test on the first
 * index where |fd - an| > atol + rtol * max(|fd|, |an|), printing the worst case. Returns the max
 * absolute error seen. */
static inline double fd_check(const char *what, float *x, const float *grad, int64_t n,
                              fd_forward_fn fwd, void *ctx, float *out, const float *w,
                              int64_t n_out, double h, double atol, double rtol,
                              int64_t max_checks) {
    int64_t stride = (max_checks > 0 && n > max_checks) ? n / max_checks : 1;
    double worst = 0;
    for (int64_t i = 0; i < n; i += stride) {
        float saved = x[i];
        x[i] = (float)(saved + h);
        double hp = (double)x[i] - saved;
        fwd(ctx, out);
        double lp = fd_dot(out, w, n_out);
        x[i] = (float)(saved - h);
        double hm = saved - (double)x[i];
        fwd(ctx, out);
        double lm = fd_dot(out, w, n_out);
        x[i] = saved;
        double fd = (lp - lm) / (hp + hm);
        double an = grad[i];
        double err = fabs(fd - an);
        if (err > worst) worst = err;
        double scale = fabs(fd) > fabs(an) ? fabs(fd) : fabs(an);
        if (err > atol + rtol * scale) {
            fwd(ctx, out); /* restore outputs for the caller */
            ck_abort_msg("%s: gradient mismatch at index %lld: finite difference %.6g, analytic "
                         "%.6g (|diff| %.3g > atol %.1g + rtol %.1g * %.3g)",
                         what, (long long)i, fd, an, err, atol, rtol, scale);
        }
    }
    fwd(ctx, out);
    return worst;
}

#endif
