/* attention: multi-head self-attention over the L = H*W positions of a feature map, forward and
 * backward. Layout (ops.h): qkv (B, 3C, L) straight from the 1x1 conv, head h of sample b reads
 * rows [h d, (h+1) d) of the q, k and v blocks, each a (d, L) row-major matrix with row stride L,
 * so every product is one strided GEMM per (b, h) with no transposition copy.
 * The probabilities att (B, NH, L, L) are a forward output kept for the backward; the backward
 * needs one (L, L) scratch for dA / dS per thread.
 * Threads: the (b, h) pairs are independent in both directions (each writes only its own att,
 * out, dq, dk, dv blocks), so they are split statically over min(mdiff_threads(), B NH) threads,
 * each calling single-threaded OpenBLAS: results do not depend on the thread count. */
#include <math.h>
#include <stdint.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "par.h"
#include <omp.h>
#include "vexp.h"

static int att_threads(int B, int NH) {
    const int64_t pairs = (int64_t)B * NH;
    return pairs < mdiff_threads() ? (int)pairs : mdiff_threads();
}

static void check_sizes(int B, int C, int L, int NH) {
    MDIFF_CHECK(B >= 1 && C >= 1 && L >= 1 && NH >= 1 && C % NH == 0,
                "attention: bad sizes B=%d C=%d L=%d NH=%d (NH must divide C)", B, C, L, NH);
}

/* Row-wise softmax in place; subtracting the row max keeps exp() in (0, 1] for any scores
 * (mdiff_vexpf clamps below at e^-87, negligible against the row max's term of 1). */
static void softmax_rows(float *restrict a, int L) {
    for (int i = 0; i < L; i++) {
        float *r = a + (int64_t)i * L;
        float mx = r[0];
        for (int j = 1; j < L; j++) mx = r[j] > mx ? r[j] : mx;
        float s = 0;
        for (int j = 0; j < L; j++) {
            r[j] = mdiff_vexpf(r[j] - mx);
            s += r[j];
        }
        float inv = 1.0f / s;
        for (int j = 0; j < L; j++) r[j] *= inv;
    }
}

void mdiff_attention_forward(float *out, float *att, const float *qkv, int B, int C, int L,
                             int NH) {
    check_sizes(B, C, L, NH);
    const int d = C / NH;
    const float scale = (float)(1.0 / sqrt((double)d));
    const int64_t LL = (int64_t)L * L;
    const int T = att_threads(B, NH), blas = mdiff_blas_single();
#pragma omp parallel for collapse(2) schedule(static) num_threads(T) if (T > 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + ((int64_t)b * 3 * C + (int64_t)h * d) * L;
            const float *k = q + (int64_t)C * L;
            const float *v = k + (int64_t)C * L;
            float *a = att + ((int64_t)b * NH + h) * LL;
            float *o = out + ((int64_t)b * C + (int64_t)h * d) * L;
            /* S (L, L) = scale * Q^T K; att = softmax over j */
            mdiff_gemm(1, 0, L, L, d, scale, q, L, k, L, 0.0f, a, L);
            softmax_rows(a, L);
            /* out (d, L) = V att^T */
            mdiff_gemm(0, 1, d, L, L, 1.0f, v, L, a, L, 0.0f, o, L);
        }
    mdiff_blas_restore(blas);
}

int64_t mdiff_attention_work_floats(int B, int C, int L, int NH) {
    (void)C;
    return att_threads(B, NH) * (int64_t)L * L;
}

void mdiff_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                              int B, int C, int L, int NH, float *work) {
    check_sizes(B, C, L, NH);
    if (!dqkv) return;
    const int d = C / NH;
    const float scale = (float)(1.0 / sqrt((double)d));
    const int64_t LL = (int64_t)L * L;
    const int T = att_threads(B, NH), blas = mdiff_blas_single();
#pragma omp parallel for collapse(2) schedule(static) num_threads(T) if (T > 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *restrict dS = work + omp_get_thread_num() * LL;
            const int64_t off = ((int64_t)b * 3 * C + (int64_t)h * d) * L;
            const float *q = qkv + off, *k = q + (int64_t)C * L, *v = k + (int64_t)C * L;
            float *dq = dqkv + off, *dk = dq + (int64_t)C * L, *dv = dk + (int64_t)C * L;
            const float *restrict a = att + ((int64_t)b * NH + h) * LL;
            const float *dO = dout + ((int64_t)b * C + (int64_t)h * d) * L;
            /* dV (d, L) += dO att */
            mdiff_gemm(0, 0, d, L, L, 1.0f, dO, L, a, L, 1.0f, dv, L);
            /* dA (L, L) = dO^T V */
            mdiff_gemm(1, 0, L, L, d, 1.0f, dO, L, v, L, 0.0f, dS, L);
            /* softmax backward per row: dS = att * (dA - sum_j dA * att) */
            for (int i = 0; i < L; i++) {
                float *r = dS + (int64_t)i * L;
                const float *p = a + (int64_t)i * L;
                float s = 0;
                for (int j = 0; j < L; j++) s += r[j] * p[j];
                for (int j = 0; j < L; j++) r[j] = p[j] * (r[j] - s);
            }
            /* S = scale Q^T K: dQ (d, L) += scale K dS^T, dK (d, L) += scale Q dS */
            mdiff_gemm(0, 1, d, L, L, scale, k, L, dS, L, 1.0f, dq, L);
            mdiff_gemm(0, 0, d, L, L, scale, q, L, dS, L, 1.0f, dk, L);
        }
    mdiff_blas_restore(blas);
}
