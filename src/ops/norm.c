/* norm: group normalisation (eps 1e-5, biased variance, as torch.nn.GroupNorm), forward and
 * backward, optionally fused with the SiLU that follows it in every ResBlock (one pass and one
 * buffer saved per use).
 * A group of (b, g) is one contiguous run of (C/G)*HW floats in NCHW, so every loop is a stream.
 * Forward: one read pass for the statistics, one read/write pass for the output.
 * Backward: pass 1 reads inp and dout, accumulates the per-channel sums (dgamma, dbeta and the two
 * group sums) and adds the direct term rstd*gamma*dy to dinp; pass 2 reads only inp and subtracts
 * the mean terms, so the SiLU derivative (an exp) is computed once per element and no scratch is
 * needed. */
#include <math.h>
#include <stdint.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "par.h"
#include "vexp.h"

#define GN_EPS 1e-5
/* Partial sums run in LANES independent float accumulators (vectorisable, short dependency
 * chains) over blocks of GN_BLOCK elements, then are promoted to double: each float partial sums
 * at most GN_BLOCK / LANES = 32 terms, so its relative rounding error stays ~32 ulp whatever the
 * group size. */
#define LANES 8
#define GN_BLOCK 256

/* Sums over x[0..n) of d and d^2 with d = x - shift. Shifting by a sample of the data (its first
 * element) keeps d at the scale of the spread, so E[d^2] - E[d]^2 does not cancel catastrophically
 * for large-mean inputs (the failure of a naive one-pass E[x^2] - E[x]^2). */
/* (always inlined, so the AVX2 clone of the group kernels vectorises it 8-wide too) */
static inline __attribute__((always_inline)) void
shifted_sums(const float *restrict x, int64_t n, float shift, double *s1, double *s2) {
    double a1 = 0, a2 = 0;
    int64_t i = 0;
    while (i < n) {
        int64_t end = n - i > GN_BLOCK ? i + GN_BLOCK : n;
        float p1[LANES] = {0}, p2[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float d = x[i + l] - shift;
                p1[l] += d;
                p2[l] += d * d;
            }
        for (; i < end; i++) {
            float d = x[i] - shift;
            p1[0] += d;
            p2[0] += d * d;
        }
        for (int l = 0; l < LANES; l++) {
            a1 += p1[l];
            a2 += p2[l];
        }
    }
    *s1 = a1;
    *s2 = a2;
}

/* y = (x - mean) * sc + beta [then SiLU] over one channel. (x - mean) first rather than the folded
 * x * sc + (beta - mean * sc): the folded form cancels two values of size |mean| * rstd and loses
 * all precision when |mean| >> std. */
static inline __attribute__((always_inline)) void
gn_apply(float *restrict y, const float *restrict x, int64_t n, float mean, float sc,
         float beta, int fuse_silu) {
    if (fuse_silu) {
        for (int64_t i = 0; i < n; i++) {
            float v = (x[i] - mean) * sc + beta;
            y[i] = v * mdiff_vsigmoidf(v);
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * sc + beta;
    }
}

/* One group: cpg channels of HW values, contiguous; gamma, beta are the group's own. */
MDIFF_SIMD_CLONES static void gn_forward_group(float *restrict y, float *restrict mean,
                                               float *restrict rstd, const float *restrict x,
                                               const float *restrict gamma,
                                               const float *restrict beta, int cpg, int HW,
                                               int fuse_silu) {
    const int64_t gsize = (int64_t)cpg * HW;
    double s1, s2;
    shifted_sums(x, gsize, x[0], &s1, &s2);
    double md = s1 / (double)gsize;
    double var = s2 / (double)gsize - md * md;
    if (var < 0) var = 0;
    /* The saved (float) mean is the one used below and again in the backward. */
    float m = (float)((double)x[0] + md);
    float rs = (float)(1.0 / sqrt(var + GN_EPS));
    *mean = m;
    *rstd = rs;
    for (int c = 0; c < cpg; c++)
        gn_apply(y + (int64_t)c * HW, x + (int64_t)c * HW, HW, m, rs * gamma[c], beta[c],
                 fuse_silu);
}

static void check_sizes(int B, int C, int HW, int G) {
    MDIFF_CHECK(B >= 1 && C >= 1 && HW >= 1 && G >= 1 && C % G == 0,
                "groupnorm: bad sizes B=%d C=%d HW=%d G=%d (G must divide C)", B, C, HW, G);
}

void mdiff_groupnorm_forward(float *restrict out, float *restrict mean, float *restrict rstd,
                             const float *restrict inp, const float *restrict gamma,
                             const float *restrict beta, int B, int C, int HW, int G,
                             int fuse_silu) {
    check_sizes(B, C, HW, G);
    const int cpg = C / G;
    const int64_t gsize = (int64_t)cpg * HW;
    /* every (b, g) is independent: any split gives the same bits */
    MDIFF_PAR_FOR2(gsize * B * G)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const int64_t bg = (int64_t)b * G + g;
            gn_forward_group(out + bg * gsize, mean + bg, rstd + bg, inp + bg * gsize,
                             gamma + g * cpg, beta + g * cpg, cpg, HW, fuse_silu);
        }
}

/* Gradient at the normalised value: dy = dout [* SiLU'(v)], v = (x - m) * k + bc with k = rs * gc,
 * the forward's exact expression, so the SiLU derivative is taken at the forward's value. */
static inline __attribute__((always_inline)) float gn_dy(float dout, float x, float m, float rs,
                                                         float k, float bc, const int fuse_silu,
                                                         float *xh) {
    *xh = (x - m) * rs;
    if (!fuse_silu) return dout;
    float v = (x - m) * k + bc;
    float s = mdiff_vsigmoidf(v);
    return dout * (s * (1.0f + v * (1.0f - s)));
}

/* Pass 1 over one channel (always inlined so the fuse/dinp branches fold away):
 * dy = dout [* SiLU'(v)], v = xhat * gc + bc; returns sum dy and sum dy * xhat in *sdy, *sdyx;
 * dinp += rs * gc * dy when dinp is given. */
static inline __attribute__((always_inline)) void
gn_bwd_ch(float *restrict dinp, const float *restrict dout, const float *restrict x, int64_t n,
          float m, float rs, float gc, float bc, const int fuse_silu, double *sdy, double *sdyx) {
    const float k = rs * gc;
    double a1 = 0, a2 = 0;
    int64_t i = 0;
    while (i < n) {
        int64_t end = n - i > GN_BLOCK ? i + GN_BLOCK : n;
        float p1[LANES] = {0}, p2[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float xh, dy = gn_dy(dout[i + l], x[i + l], m, rs, k, bc, fuse_silu, &xh);
                p1[l] += dy;
                p2[l] += dy * xh;
                if (dinp) dinp[i + l] += k * dy;
            }
        for (; i < end; i++) {
            float xh, dy = gn_dy(dout[i], x[i], m, rs, k, bc, fuse_silu, &xh);
            p1[0] += dy;
            p2[0] += dy * xh;
            if (dinp) dinp[i] += k * dy;
        }
        for (int l = 0; l < LANES; l++) {
            a1 += p1[l];
            a2 += p2[l];
        }
    }
    *sdy = a1;
    *sdyx = a2;
}

/* One (b, g) group: dx (may be NULL) += ..., dgamma/dbeta (the group's cpg channels) += ... */
MDIFF_SIMD_CLONES static void gn_backward_group(float *restrict dx, float *restrict dgamma,
                                                float *restrict dbeta, const float *restrict dy,
                                                const float *restrict x, float m, float rs,
                                                const float *restrict gamma,
                                                const float *restrict beta, int cpg, int HW,
                                                int fuse_silu) {
    const int64_t gsize = (int64_t)cpg * HW;
    /* sums over the group of dxhat = gamma * dy and of dxhat * xhat */
    double sdx = 0, sdxx = 0;
    for (int c = 0; c < cpg; c++) {
        const int64_t o = (int64_t)c * HW;
        const float gc = gamma[c], bc = beta[c];
        double s1, s2;
        /* four literal-flag calls so each inlined copy has no per-element branch */
        if (fuse_silu && dx)
            gn_bwd_ch(dx + o, dy + o, x + o, HW, m, rs, gc, bc, 1, &s1, &s2);
        else if (fuse_silu) gn_bwd_ch(NULL, dy + o, x + o, HW, m, rs, gc, bc, 1, &s1, &s2);
        else if (dx) gn_bwd_ch(dx + o, dy + o, x + o, HW, m, rs, gc, bc, 0, &s1, &s2);
        else gn_bwd_ch(NULL, dy + o, x + o, HW, m, rs, gc, bc, 0, &s1, &s2);
        if (dgamma) dgamma[c] += (float)s2;
        if (dbeta) dbeta[c] += (float)s1;
        sdx += gc * s1;
        sdxx += gc * s2;
    }
    if (!dx) return;
    /* dinp = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)); the first term was
     * added in pass 1. */
    const float k1 = (float)(rs * sdx / (double)gsize);
    const float k2 = (float)(rs * sdxx / (double)gsize);
    for (int64_t i = 0; i < gsize; i++) dx[i] -= k1 + (x[i] - m) * rs * k2;
}

void mdiff_groupnorm_backward(float *restrict dinp, float *restrict dgamma, float *restrict dbeta,
                              const float *restrict dout, const float *restrict inp,
                              const float *restrict mean, const float *restrict rstd,
                              const float *restrict gamma, const float *restrict beta, int B,
                              int C, int HW, int G, int fuse_silu) {
    check_sizes(B, C, HW, G);
    const int cpg = C / G;
    const int64_t gsize = (int64_t)cpg * HW;
    /* Split over groups only: a thread owns the channels of its groups, so dgamma/dbeta are summed
     * over b in the serial order whatever the thread count (bit-identical to one thread). */
    MDIFF_PAR_FOR(gsize * B * G)
    for (int g = 0; g < G; g++)
        for (int b = 0; b < B; b++) {
            const int64_t bg = (int64_t)b * G + g, o = bg * gsize, c0 = (int64_t)g * cpg;
            gn_backward_group(dinp ? dinp + o : NULL, dgamma ? dgamma + c0 : NULL,
                              dbeta ? dbeta + c0 : NULL, dout + o, inp + o, mean[bg], rstd[bg],
                              gamma + c0, beta + c0, cpg, HW, fuse_silu);
        }
}
