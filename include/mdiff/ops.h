/* ops: the numerical primitives of the denoisers, forward and backward, NCHW float32.
 * Conventions (DESIGN.md §6, llm.c style):
 *  - arguments are outputs, then inputs, then sizes, then workspace;
 *  - every backward ACCUMULATES (+=) into every gradient it writes, input gradients included;
 *    the caller zeroes gradient buffers once per step. A NULL input-gradient pointer means
 *    "not needed" (e.g. the image fed to the first conv) and skips that work;
 *  - values a backward needs are explicit forward outputs (e.g. GroupNorm mean/rstd,
 *    attention probabilities) or the forward's inputs, passed again;
 *  - sizes are int64_t where they multiply (element counts), int for small dimensions;
 *  - no op allocates: scratch memory is the caller's `work`, sized by the *_work_floats helpers.
 * Implementation split by family: src/ops/gemm.c, conv.c, norm.c, attention.c, elementwise.c. */
#ifndef MDIFF_OPS_H
#define MDIFF_OPS_H

#include <stdint.h>

/* ---- GEMM (row-major) ------------------------------------------------------------------------
 * C (M, N) = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides. */
void mdiff_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc);

/* ---- conv2d ---------------------------------------------------------------------------------
 * out (B, OC, OH, OW) = inp (B, C, H, W) * weight (OC, C, K, K) + bias (OC)
 * OH = (H + 2 pad - K) / stride + 1, likewise OW. Supported: K=3 pad=1 stride 1 or 2; K=1 pad=0
 * stride 1 (a plain GEMM, no im2col). bias may be NULL. */
int64_t mdiff_conv2d_work_floats(int B, int C, int H, int W, int OC, int K, int stride, int pad);
void mdiff_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int C, int H, int W, int OC, int K, int stride, int pad,
                          float *work);
/* dinp (may be NULL) += ..., dweight += ..., dbias (may be NULL) += ... */
void mdiff_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int C, int H, int W,
                           int OC, int K, int stride, int pad, float *work);

/* ---- linear ---------------------------------------------------------------------------------
 * out (B, OC) = inp (B, C) @ weight (OC, C)^T + bias (OC)   (PyTorch nn.Linear layout) */
void mdiff_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int C, int OC);
void mdiff_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int C, int OC);

/* ---- group norm (eps 1e-5, as PyTorch), optionally fused with SiLU ---------------------------
 * out (B, C, HW) = [SiLU](GN(inp) * gamma (C) + beta (C)); mean, rstd (B, G) saved for backward.
 * G must divide C. The backward recomputes the pre-SiLU value from inp, mean, rstd. */
void mdiff_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *gamma, const float *beta, int B, int C, int HW, int G,
                             int fuse_silu);
void mdiff_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *mean, const float *rstd,
                              const float *gamma, const float *beta, int B, int C, int HW, int G,
                              int fuse_silu);

/* ---- elementwise ----------------------------------------------------------------------------- */
/* out (n) = inp * sigmoid(inp) */
void mdiff_silu_forward(float *out, const float *inp, int64_t n);
void mdiff_silu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
/* out (n) = a + b (out may alias a or b). Backward: da += dout, db += dout (either may be NULL). */
void mdiff_add_forward(float *out, const float *a, const float *b, int64_t n);
void mdiff_add_backward(float *da, float *db, const float *dout, int64_t n);
/* out (B, C, HW) = inp + vec (B, C) broadcast over HW (e.g. the time embedding projection).
 * out may alias inp. Backward: dinp += dout; dvec[b,c] += sum over HW of dout. */
void mdiff_add_channel_forward(float *out, const float *inp, const float *vec, int B, int C,
                               int HW);
void mdiff_add_channel_backward(float *dinp, float *dvec, const float *dout, int B, int C, int HW);
/* Nearest 2x upsample: out (B, C, 2H, 2W) from inp (B, C, H, W). */
void mdiff_upsample2x_forward(float *out, const float *inp, int B, int C, int H, int W);
void mdiff_upsample2x_backward(float *dinp, const float *dout, int B, int C, int H, int W);
/* Channel concat: out (B, Ca + Cb, HW) = [a (B, Ca, HW), b (B, Cb, HW)]. */
void mdiff_concat_forward(float *out, const float *a, const float *b, int B, int Ca, int Cb,
                          int HW);
void mdiff_concat_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW);

/* ---- attention over L = H*W positions, NH heads, head dim d = C / NH ---------------------------
 * qkv (B, 3C, L) is the output of a 1x1 conv: q = channels [0, C), k = [C, 2C), v = [2C, 3C);
 * head h uses channels [h d, (h+1) d) of each. For each (b, h):
 *   att (L, L) = softmax_j(q[:, i] . k[:, j] / sqrt(d))  (row i = query position)
 *   out[:, i] = sum_j att[i, j] v[:, j]
 * out (B, C, L); att (B, NH, L, L) saved for backward. */
void mdiff_attention_forward(float *out, float *att, const float *qkv, int B, int C, int L, int NH);
int64_t mdiff_attention_work_floats(int B, int C, int L, int NH);
void mdiff_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                              int B, int C, int L, int NH, float *work);

/* ---- timestep embedding ----------------------------------------------------------------------
 * out (B, dim) = [cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})], h = dim / 2,
 * f_i = exp(-ln(10000) i / h) (improved-diffusion's order). t is the timestep index in [0, T)
 * as a float. dim must be even. No parameters, no backward. */
void mdiff_timestep_embedding(float *out, const float *t, int B, int dim);

/* ---- dropout ----------------------------------------------------------------------------------
 * out (B, n) = inp * mask / (1 - p); mask (B, n) bytes in {0, 1}, drawn from Philox with purpose
 * MDIFF_RNG_DROPOUT + layer, step, index = global sample (sample0 + b): the mask of a sample does
 * not depend on the batch it is in, nor on the rank. p = 0 copies inp and sets mask to 1. */
void mdiff_dropout_forward(float *out, uint8_t *mask, const float *inp, int B, int64_t n, float p,
                           uint64_t seed, uint64_t step, int64_t sample0, int layer);
void mdiff_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, int B, int64_t n,
                            float p);

/* ---- MSE -------------------------------------------------------------------------------------
 * per_sample (B) = mean over n of (pred - target)^2; returns the sum over b of per_sample * scale
 * (scale = 1 / global batch gives the global-batch mean when summed over ranks).
 * Backward: dpred += scale * 2 (pred - target) / n. */
float mdiff_mse_forward(float *per_sample, const float *pred, const float *target, int B,
                        int64_t n, float scale);
void mdiff_mse_backward(float *dpred, const float *pred, const float *target, int B, int64_t n,
                        float scale);

#endif
