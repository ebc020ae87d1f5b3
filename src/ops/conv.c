/* conv: 2-D convolution, forward and backward, NCHW float32, as GEMMs on OpenBLAS.
 * Supported: K=3 pad 1 stride 1 or 2, and K=1 pad 0 stride 1 (the ResBlock skip and the
 * attention qkv/proj projections).
 *
 * The batch is cut into chunks of nb samples (about CONV_CHUNK_COLS output positions). A chunk's
 * im2col matrix is col (C*K*K, nb*OH*OW), column j*OH*OW + oh*OW + ow for sample j, so the weight
 * (OC, C*K*K) multiplies it in ONE GEMM per chunk: per-sample GEMMs have N = OH*OW, only 49 at
 * 7x7, where OpenBLAS is far from peak. The GEMM output (OC, nb*OH*OW) is not NCHW, so it lands
 * in a buffer and is scattered to `out` with the bias added on the way (one pass).
 * Why chunks rather than the whole batch: the workspace is bounded whatever the batch (at most
 * ~21 MB for the default U-Net, vs 170 MB whole-batch at batch 64) and stays L3-warm between
 * im2col and GEMM: bench/bench_conv at batch 64 measured 48 GFLOP/s whole-batch vs 54 with 2048
 * columns on 1 thread, and 40 vs 62-67 on 2 threads (2048-4096 columns; 4096 chosen).
 * Backward per chunk: dout is gathered to dY (OC, nb*OH*OW) (dbias summed from it);
 * dweight += dY col^T (one GEMM, K = nb*OH*OW). dinp:
 *  - 3x3 stride 1: dinp is the 3x3 convolution of dout with the flipped, transposed weight, so it
 *    is im2col(dout) and one GEMM with K = 9 OC, then a streaming add into dinp. This beats
 *    weight^T dY (K = OC only, a 9C-row output) followed by col2im (measured 3-15% per conv).
 *  - 3x3 stride 2: dcol = weight^T dY overwrites col, then col2im adds it into dinp.
 *  - 1x1: col is the input gathered to (C, nb*H*W) (no im2col), and dinp takes weight^T dY from
 *    per-sample GEMMs with beta = 1, straight into NCHW.
 * Workspace, m = max(C, OC), ncols = nb*OH*OW: K=3: col 9m ncols, y m ncols, flipped weight
 * 9 C OC; K=1: col C ncols, y OC ncols. */
#include <stdint.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"

#define CONV_CHUNK_COLS 4096

typedef struct {
    int B, C, H, W, OC, K, stride, pad, OH, OW;
    int64_t HW, OHW, CKK; /* input plane, output plane, im2col rows */
    int nb;               /* samples per chunk */
} conv_shape;

static conv_shape conv_setup(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
    MDIFF_CHECK((K == 3 && pad == 1 && (stride == 1 || stride == 2)) ||
                    (K == 1 && pad == 0 && stride == 1),
                "conv2d: unsupported kernel %d stride %d pad %d", K, stride, pad);
    MDIFF_CHECK(B > 0 && C > 0 && H > 0 && W > 0 && OC > 0,
                "conv2d: bad sizes B %d C %d H %d W %d OC %d", B, C, H, W, OC);
    conv_shape s = {B, C, H, W, OC, K, stride, pad, 0, 0, 0, 0, 0, 0};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    s.HW = (int64_t)H * W;
    s.OHW = (int64_t)s.OH * s.OW;
    s.CKK = (int64_t)C * K * K;
    int64_t nb = (CONV_CHUNK_COLS + s.OHW - 1) / s.OHW;
    s.nb = nb > B ? B : (int)nb;
    return s;
}

/* Workspace regions of a chunk of ncols columns (see the layout above). */
static int64_t col_rows(const conv_shape *s) {
    return s->K == 3 ? 9 * (int64_t)(s->C > s->OC ? s->C : s->OC) : s->C;
}
static int64_t y_rows(const conv_shape *s) {
    return s->K == 3 ? (s->C > s->OC ? s->C : s->OC) : s->OC;
}

int64_t mdiff_conv2d_work_floats(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
    conv_shape s = conv_setup(B, C, H, W, OC, K, stride, pad);
    int64_t wf = K == 3 ? 9 * (int64_t)C * OC : 0;
    return (col_rows(&s) + y_rows(&s)) * s.nb * s.OHW + wf;
}

/* Output columns [lo, hi) of a row whose input index ow*stride + off lies inside [0, W). */
static void valid_range(int OW, int W, int stride, int off, int *lo, int *hi) {
    int l = 0;
    while (l < OW && l * stride + off < 0) l++;
    int h = OW;
    while (h > l && (h - 1) * stride + off >= W) h--;
    *lo = l;
    *hi = h;
}

/* Stride 1: the row of tap (kh, kw) is the input plane shifted by (kh-1) W + (kw-1) (OW = W),
 * so it is one contiguous copy, then the taps that fell outside are zeroed: the top or bottom
 * row, and the wrapped-around first or last column. Far fewer, longer loops than row by row
 * (rows are only 7 wide at the U-Net's lowest level). */
static void im2col3_s1_plane(float *restrict dst, const float *restrict img, int H, int W, int kh,
                             int kw) {
    const int64_t HW = (int64_t)H * W, shift = (int64_t)(kh - 1) * W + (kw - 1);
    int64_t lo = kh == 0 ? W : 0, hi = kh == 2 ? HW - W : HW;
    if (lo + shift < 0) lo = -shift;
    if (hi + shift > HW) hi = HW - shift;
    if (hi < lo) hi = lo;
    for (int64_t p = 0; p < lo; p++) dst[p] = 0.0f;
    for (int64_t p = lo; p < hi; p++) dst[p] = img[p + shift]; /* index, no out-of-range pointer */
    for (int64_t p = hi; p < HW; p++) dst[p] = 0.0f;
    if (kw == 0)
        for (int oh = 0; oh < H; oh++) dst[(int64_t)oh * W] = 0.0f;
    if (kw == 2)
        for (int oh = 0; oh < H; oh++) dst[(int64_t)oh * W + W - 1] = 0.0f;
}

/* col (C*9, ldcol) rows (c, kh, kw), columns [j*OHW, (j+1)*OHW) for sample j of inp (n, C, H, W).
 * Stride 2 goes row by row. Sample- and channel-outer so each input plane stays in L1 while its 9 rows are written. */
static void im2col3(float *restrict col, int64_t ldcol, const float *restrict inp, int n,
                    const conv_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < s->C; c++) {
            const float *restrict img = inp + ((int64_t)j * s->C + c) * s->HW;
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    float *restrict dst = col + ((int64_t)c * 9 + kh * 3 + kw) * ldcol +
                                          (int64_t)j * s->OHW;
                    if (st == 1) {
                        im2col3_s1_plane(dst, img, H, W, kh, kw);
                        continue;
                    }
                    int off = kw - 1, lo, hi;
                    valid_range(OW, W, st, off, &lo, &hi);
                    for (int oh = 0; oh < OH; oh++) {
                        float *restrict d = dst + (int64_t)oh * OW;
                        int ih = oh * st + kh - 1;
                        if (ih < 0 || ih >= H) {
                            for (int ow = 0; ow < OW; ow++) d[ow] = 0.0f;
                            continue;
                        }
                        const float *restrict r = img + (int64_t)ih * W;
                        for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                        for (int ow = lo; ow < hi; ow++) d[ow] = r[ow * st + off];
                        for (int ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                    }
                }
        }
}

/* dinp (n, C, H, W) += col2im(dcol): the adjoint of im2col3 (used for stride 2 only). */
static void col2im3(float *restrict dinp, const float *restrict dcol, int64_t ldcol, int n,
                    const conv_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < s->C; c++) {
            float *restrict img = dinp + ((int64_t)j * s->C + c) * s->HW;
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    const float *restrict src = dcol + ((int64_t)c * 9 + kh * 3 + kw) * ldcol +
                                                (int64_t)j * s->OHW;
                    int off = kw - 1, lo, hi;
                    valid_range(OW, W, st, off, &lo, &hi);
                    for (int oh = 0; oh < OH; oh++) {
                        int ih = oh * st + kh - 1;
                        if (ih < 0 || ih >= H) continue;
                        const float *restrict q = src + (int64_t)oh * OW;
                        float *restrict r = img + (int64_t)ih * W;
                        for (int ow = lo; ow < hi; ow++) r[ow * st + off] += q[ow];
                    }
                }
        }
}

/* dst (rows, n*plane) from src (n, rows, plane): the NCHW -> channel-major gather. */
static void gather_cm(float *restrict dst, const float *restrict src, int n, int rows,
                      int64_t plane) {
    int64_t ld = (int64_t)n * plane;
    for (int j = 0; j < n; j++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + r * ld + j * plane, src + ((int64_t)j * rows + r) * plane,
                   (size_t)plane * sizeof(float));
}

/* Sum of x[0..n) in 8 float lanes (vectorisable) promoted to double at the end. */
static double sum_lanes(const float *restrict x, int64_t n) {
    float p[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) p[l] += x[i + l];
    double t = 0;
    for (; i < n; i++) t += x[i];
    for (int l = 0; l < 8; l++) t += p[l];
    return t;
}

/* Fills col (CKK, n*OHW) from the chunk's input. */
static void fill_col(float *col, const float *inp, int n, const conv_shape *s) {
    if (s->K == 3)
        im2col3(col, (int64_t)n * s->OHW, inp, n, s);
    else
        gather_cm(col, inp, n, s->C, s->HW);
}

static void forward_chunk(float *restrict out, const float *inp, const float *weight,
                          const float *restrict bias, int n, const conv_shape *s, float *work) {
    int64_t ncols = (int64_t)n * s->OHW;
    float *col = work, *y = work + col_rows(s) * ncols;
    fill_col(col, inp, n, s);
    mdiff_gemm(0, 0, s->OC, ncols, s->CKK, 1.0f, weight, s->CKK, col, ncols, 0.0f, y, ncols);
    for (int j = 0; j < n; j++)
        for (int oc = 0; oc < s->OC; oc++) {
            float *restrict o = out + ((int64_t)j * s->OC + oc) * s->OHW;
            const float *restrict yr = y + oc * ncols + j * s->OHW;
            const float bv = bias ? bias[oc] : 0.0f;
            for (int64_t p = 0; p < s->OHW; p++) o[p] = yr[p] + bv;
        }
}

void mdiff_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int B, int C, int H, int W, int OC, int K, int stride, int pad,
                          float *work) {
    conv_shape s = conv_setup(B, C, H, W, OC, K, stride, pad);
    for (int b0 = 0; b0 < B; b0 += s.nb) {
        int n = B - b0 < s.nb ? B - b0 : s.nb;
        forward_chunk(out + (int64_t)b0 * OC * s.OHW, inp + (int64_t)b0 * C * s.HW, weight, bias,
                      n, &s, work);
    }
}

/* 3x3 stride 1: dinp (n, C, H, W) += conv(dout, wf), wf (C, OC, 3, 3) the weight transposed
 * and flipped: dinp[c, i] = sum_{oc, k} W[oc, c, k] dout[oc, i - k + 1] = sum W[oc, c, 2 - k']
 * dout[oc, i + k' - 1], which is im2col3 of dout (OC channels, same size). col and y are free. */
static void dinp_s1(float *dinp, const float *dout, const float *weight, int n,
                    const conv_shape *s, float *col, float *y, float *wf) {
    int64_t ncols = (int64_t)n * s->OHW;
    for (int oc = 0; oc < s->OC; oc++)
        for (int c = 0; c < s->C; c++)
            for (int k = 0; k < 9; k++)
                wf[((int64_t)c * s->OC + oc) * 9 + k] = weight[((int64_t)oc * s->C + c) * 9 + 8 - k];
    conv_shape t = *s;
    t.C = s->OC;
    im2col3(col, ncols, dout, n, &t);
    mdiff_gemm(0, 0, s->C, ncols, 9 * (int64_t)s->OC, 1.0f, wf, 9 * (int64_t)s->OC, col, ncols,
               0.0f, y, ncols);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < s->C; c++) {
            float *restrict d = dinp + ((int64_t)j * s->C + c) * s->HW;
            const float *restrict r = y + c * ncols + j * s->HW;
            for (int64_t p = 0; p < s->HW; p++) d[p] += r[p];
        }
}

static void backward_chunk(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int n, const conv_shape *s,
                           float *work) {
    int64_t ncols = (int64_t)n * s->OHW;
    float *col = work, *dy = work + col_rows(s) * ncols, *wf = dy + y_rows(s) * ncols;
    fill_col(col, inp, n, s);
    gather_cm(dy, dout, n, s->OC, s->OHW);
    if (dbias)
        for (int oc = 0; oc < s->OC; oc++) dbias[oc] += (float)sum_lanes(dy + oc * ncols, ncols);
    mdiff_gemm(0, 1, s->OC, s->CKK, ncols, 1.0f, dy, ncols, col, ncols, 1.0f, dweight, s->CKK);
    if (!dinp) return;
    if (s->K == 1) {
        for (int j = 0; j < n; j++)
            mdiff_gemm(1, 0, s->C, s->HW, s->OC, 1.0f, weight, s->C, dy + j * s->OHW, ncols, 1.0f,
                       dinp + (int64_t)j * s->C * s->HW, s->HW);
    } else if (s->stride == 1) {
        dinp_s1(dinp, dout, weight, n, s, col, dy, wf);
    } else {
        mdiff_gemm(1, 0, s->CKK, ncols, s->OC, 1.0f, weight, s->CKK, dy, ncols, 0.0f, col, ncols);
        col2im3(dinp, col, ncols, n, s);
    }
}

void mdiff_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int C, int H, int W,
                           int OC, int K, int stride, int pad, float *work) {
    conv_shape s = conv_setup(B, C, H, W, OC, K, stride, pad);
    for (int b0 = 0; b0 < B; b0 += s.nb) {
        int n = B - b0 < s.nb ? B - b0 : s.nb;
        backward_chunk(dinp ? dinp + (int64_t)b0 * C * s.HW : NULL, dweight, dbias,
                       dout + (int64_t)b0 * OC * s.OHW, inp + (int64_t)b0 * C * s.HW, weight, n,
                       &s, work);
    }
}
