/* gemm: the single door to BLAS (row-major cblas_sgemm) and the linear layer built on it.
 * Sizes are int64_t in the API but CBLAS takes int: anything beyond INT_MAX is a bug upstream
 * (a 2^31-element operand), so it is an internal error rather than a silent wrap. Leading
 * dimensions are checked too, because OpenBLAS reports a bad one through xerbla and then returns
 * without computing: a silent wrong result. */
#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; op(A) is (M, K), op(B) is (K, N). */
void mdiff_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc) {
    MDIFF_CHECK(M >= 0 && N >= 0 && K >= 0 && M <= INT_MAX && N <= INT_MAX && K <= INT_MAX,
                "gemm: sizes M %lld N %lld K %lld out of range", (long long)M, (long long)N,
                (long long)K);
    MDIFF_CHECK(lda >= max1(trans_a ? M : K) && ldb >= max1(trans_b ? K : N) && ldc >= max1(N) &&
                    lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX,
                "gemm: bad leading dimension (lda %lld ldb %lld ldc %lld for M %lld N %lld K %lld)",
                (long long)lda, (long long)ldb, (long long)ldc, (long long)M, (long long)N,
                (long long)K);
    if (M == 0 || N == 0) return;
    if (beta == 0.0f) {
        /* OpenBLAS clears C for beta = 0 in a separate pass (sgemm_beta, 12% of a 28x28 32 -> 32
         * Winograd forward in perf) that is slower than memset: that conv's forward went from
         * 11.96 to 10.59 ms (bench_conv shapes, best of 6 alternated runs). The kernel then adds
         * alpha A B onto C either way, so clearing here and passing beta = 1 gives the same bits. */
        if (ldc == N)
            memset(C, 0, (size_t)(M * N) * sizeof(float));
        else
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

/* out (B, OC) = inp (B, C) @ weight (OC, C)^T + bias (OC). The bias is written first and the GEMM
 * accumulates onto it (beta = 1): one pass over out instead of two. */
void mdiff_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int C, int OC) {
    float beta = 0.0f;
    if (bias) {
        for (int b = 0; b < B; b++) {
            float *restrict o = out + (int64_t)b * OC;
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
        beta = 1.0f;
    }
    mdiff_gemm(0, 1, B, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

/* dinp (B, C) += dout @ weight; dweight (OC, C) += dout^T @ inp; dbias (OC) += sum_b dout. */
void mdiff_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int C, int OC) {
    if (dinp) mdiff_gemm(0, 0, B, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    mdiff_gemm(1, 0, OC, C, B, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) {
        float *restrict db = dbias;
        for (int b = 0; b < B; b++) {
            const float *restrict d = dout + (int64_t)b * OC;
            for (int j = 0; j < OC; j++) db[j] += d[j];
        }
    }
}
