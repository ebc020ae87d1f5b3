/* conv: 2-D convolution, forward and backward, NCHW float32, as GEMMs on OpenBLAS.
 * Supported: K=3 pad 1 stride 1 or 2, and K=1 pad 0 stride 1 (the ResBlock skip and the
 * attention qkv/proj projections).
 * 3x3 stride 1 with >= 8 channels each side (where the tiles do not overhang much) goes to
 * winograd.c (F(2x2, 3x3), 2.25x fewer multiplies); everything below is the im2col path.
 *
 * The batch is cut into chunks of nb samples (at most CONV_CHUNK_COLS output positions, see
 * below). A chunk's im2col matrix is col (C*K*K, nb*OH*OW), column j*OH*OW + oh*OW + ow for
 * sample j, so the weight (OC, C*K*K) multiplies it in ONE GEMM per chunk: per-sample GEMMs have
 * N = OH*OW, only 49 at 7x7, where OpenBLAS is far from peak. With nb > 1 the GEMM output
 * (OC, nb*OH*OW) is not NCHW, so it lands in a buffer and is scattered to `out` with the bias
 * added on the way (one pass); with nb = 1 it IS the sample's NCHW block and the GEMM writes
 * there directly (a 1x1's input is then its col as it stands).
 * Backward per chunk: dout is gathered to dY (OC, nb*OH*OW) (nb = 1: dout's block is dY; dbias
 * summed from it); dweight += dY col^T (one GEMM, K = nb*OH*OW). dinp:
 *  - 3x3 stride 1: dinp is the 3x3 convolution of dout with the flipped, transposed weight
 *    (flipped once per call), so it is im2col(dout) and one GEMM with K = 9 OC, then a streaming
 *    add into dinp (nb = 1: the GEMM accumulates into dinp, beta = 1). This beats weight^T dY
 *    (K = OC only, a 9C-row output) followed by col2im (measured 3-15% per conv).
 *  - 3x3 stride 2: dcol = weight^T dY overwrites col, then col2im adds it into dinp.
 *  - 1x1: dX = weight^T dY in one GEMM over the chunk, added into NCHW (nb = 1: accumulated in
 *    place); per-sample GEMMs had N = 49 at 7x7.
 * Threads: the chunks are the unit of parallelism. T = min(mdiff_threads(), chunks) threads each
 * take whole chunks with their own buffers and single-threaded OpenBLAS, so im2col, GEMM and
 * scatter of a chunk run on one core with the chunk warm in its cache, and no BLAS thread pool
 * competes with OpenMP's. The chunk size depends only on the shape (never on T) and each chunk's
 * GEMM is the same single-threaded call, so the forward is bit-identical for any thread count.
 * Backward: dweight/dbias are summed per slot (a fixed group of consecutive chunks, run in order
 * by one thread), then the slots are added in slot order: bit-identical for any T too. Chunks and
 * slots are handed out dynamically, so a thread that loses its core to another process (a shared
 * node) does not stall the others at a static split.
 * Chunk size: nb = the largest power of two with nb*OH*OW <= CONV_CHUNK_COLS = 1024, i.e. 784
 * columns at every level of the 28x28 U-Net (nb = 1, 4, 16): a power-of-two batch splits into
 * equal chunks (balanced over 2 or 4 threads), 28x28 takes the direct nb = 1 path, and a chunk's
 * col (at most 1152 x 784 floats, 3.6 MB) stays cache-near between im2col and GEMM. Measured
 * single-threaded sgemm at the U-Net's shapes with 784 columns as fast as with 1568 or 3136.
 * Workspace per thread, m = max(C, OC), ncols = nb*OH*OW: K=3: col 9m ncols, y m ncols;
 * K=1: col C ncols, y OC ncols. Per slot: dweight and dbias partials (OC CKK + OC). Shared: the
 * flipped weight 9 C OC (3x3). */
#include <stdint.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "par.h"
#include "winograd.h"

#include <omp.h>

/* Backward partial sums: chunk ci belongs to slot ci * nslots / nchunks (consecutive chunks,
 * nslots = min(chunks, CONV_SLOTS), never dependent on the thread count). */
#define CONV_SLOTS 16

#ifndef CONV_CHUNK_COLS
#define CONV_CHUNK_COLS 1024
#endif

typedef struct {
    int B, C, H, W, OC, K, stride, pad, OH, OW;
    int64_t HW, OHW, CKK; /* input plane, output plane, im2col rows */
    int nb;               /* samples per chunk */
    int nchunks, T;       /* chunks, threads used (<= mdiff_threads()) */
    int nslots;           /* backward: groups of consecutive chunks with their own partials */
} conv_shape;

static conv_shape conv_setup(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
    MDIFF_CHECK((K == 3 && pad == 1 && (stride == 1 || stride == 2)) ||
                    (K == 1 && pad == 0 && stride == 1),
                "conv2d: unsupported kernel %d stride %d pad %d", K, stride, pad);
    MDIFF_CHECK(B > 0 && C > 0 && H > 0 && W > 0 && OC > 0,
                "conv2d: bad sizes B %d C %d H %d W %d OC %d", B, C, H, W, OC);
    conv_shape s = {B, C, H, W, OC, K, stride, pad, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    s.HW = (int64_t)H * W;
    s.OHW = (int64_t)s.OH * s.OW;
    s.CKK = (int64_t)C * K * K;
    int64_t nb = 1;
    while (2 * nb * s.OHW <= CONV_CHUNK_COLS) nb *= 2;
    s.nb = nb > B ? B : (int)nb;
    s.nchunks = (B + s.nb - 1) / s.nb;
    s.nslots = s.nchunks < CONV_SLOTS ? s.nchunks : CONV_SLOTS;
    s.T = mdiff_threads() < s.nchunks ? mdiff_threads() : s.nchunks;
    return s;
}

/* Workspace regions of a chunk of ncols columns (see the layout above). */
static int64_t col_rows(const conv_shape *s) {
    return s->K == 3 ? 9 * (int64_t)(s->C > s->OC ? s->C : s->OC) : s->C;
}
static int64_t y_rows(const conv_shape *s) {
    return s->K == 3 ? (s->C > s->OC ? s->C : s->OC) : s->OC;
}

/* Floats of one thread's chunk buffers, and of one slot's dweight + dbias partial (rounded to 16
 * floats: every region starts 64-byte aligned). */
static int64_t thread_floats(const conv_shape *s) {
    return ((col_rows(s) + y_rows(s)) * s->nb * s->OHW + 15) / 16 * 16;
}
static int64_t slot_floats(const conv_shape *s) {
    return ((int64_t)s->OC * s->CKK + s->OC + 15) / 16 * 16;
}

int64_t mdiff_conv2d_work_floats(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
    conv_shape s = conv_setup(B, C, H, W, OC, K, stride, pad);
    if (mdiff_wino_applies(C, OC, H, W, K, stride, pad))
        return mdiff_wino_work_floats(B, C, H, W, OC);
    int64_t wf = K == 3 ? 9 * (int64_t)C * OC : 0;
    return s.T * thread_floats(&s) + s.nslots * slot_floats(&s) + wf;
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
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, C = s->C;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < C; c++) {
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
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, C = s->C;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < C; c++) {
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

/* dst (n, rows, plane) += src (rows, n*plane): the adjoint of gather_cm. */
static void add_from_cm(float *restrict dst, const float *restrict src, int n, int rows,
                        int64_t plane) {
    const int64_t ld = (int64_t)n * plane;
    for (int j = 0; j < n; j++)
        for (int r = 0; r < rows; r++) {
            float *restrict d = dst + ((int64_t)j * rows + r) * plane;
            const float *restrict q = src + r * ld + j * plane;
            for (int64_t p = 0; p < plane; p++) d[p] += q[p];
        }
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
    if (n == 1) { /* one sample: its (OC, OHW) block IS the GEMM output; a 1x1's input is col */
        const float *c1 = inp;
        if (s->K == 3) fill_col(col, inp, 1, s), c1 = col;
        mdiff_gemm(0, 0, s->OC, ncols, s->CKK, 1.0f, weight, s->CKK, c1, ncols, 0.0f, out, ncols);
        if (bias)
            for (int oc = 0; oc < s->OC; oc++) {
                float *restrict o = out + (int64_t)oc * s->OHW;
                const float bv = bias[oc];
                for (int64_t p = 0; p < s->OHW; p++) o[p] = o[p] + bv;
            }
        return;
    }
    fill_col(col, inp, n, s);
    mdiff_gemm(0, 0, s->OC, ncols, s->CKK, 1.0f, weight, s->CKK, col, ncols, 0.0f, y, ncols);
    const int OC = s->OC;
    for (int j = 0; j < n; j++)
        for (int oc = 0; oc < OC; oc++) {
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
    if (mdiff_wino_applies(C, OC, H, W, K, stride, pad)) {
        mdiff_wino_forward(out, inp, weight, bias, B, C, H, W, OC, work);
        return;
    }
    const int blas = mdiff_blas_single();
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.T) if (s.T > 1)
    for (int ci = 0; ci < s.nchunks; ci++) {
        const int b0 = ci * s.nb, n = B - b0 < s.nb ? B - b0 : s.nb;
        float *w = work + omp_get_thread_num() * thread_floats(&s);
        forward_chunk(out + (int64_t)b0 * OC * s.OHW, inp + (int64_t)b0 * C * s.HW, weight, bias,
                      n, &s, w);
    }
    mdiff_blas_restore(blas);
}

/* 3x3 stride 1: dinp (n, C, H, W) += conv(dout, wf), wf (C, OC, 3, 3) the weight transposed
 * and flipped: dinp[c, i] = sum_{oc, k} W[oc, c, k] dout[oc, i - k + 1] = sum W[oc, c, 2 - k']
 * dout[oc, i + k' - 1], which is im2col3 of dout (OC channels, same size). col and y are free. */
static void flip_weight(float *restrict wf, const float *restrict weight, const conv_shape *s) {
    for (int oc = 0; oc < s->OC; oc++)
        for (int c = 0; c < s->C; c++)
            for (int k = 0; k < 9; k++)
                wf[((int64_t)c * s->OC + oc) * 9 + k] = weight[((int64_t)oc * s->C + c) * 9 + 8 - k];
}

/* wf was filled once per call by flip_weight. */
static void dinp_s1(float *dinp, const float *dout, const float *wf, int n, const conv_shape *s,
                    float *col, float *y) {
    int64_t ncols = (int64_t)n * s->OHW;
    conv_shape t = *s;
    t.C = s->OC;
    im2col3(col, ncols, dout, n, &t);
    if (n == 1) { /* accumulate straight into the sample's NCHW block */
        mdiff_gemm(0, 0, s->C, ncols, 9 * (int64_t)s->OC, 1.0f, wf, 9 * (int64_t)s->OC, col,
                   ncols, 1.0f, dinp, ncols);
        return;
    }
    mdiff_gemm(0, 0, s->C, ncols, 9 * (int64_t)s->OC, 1.0f, wf, 9 * (int64_t)s->OC, col, ncols,
               0.0f, y, ncols);
    add_from_cm(dinp, y, n, s->C, s->HW);
}

static void backward_chunk(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *wf, int n,
                           const conv_shape *s, float *work) {
    int64_t ncols = (int64_t)n * s->OHW;
    float *col = work, *ybuf = work + col_rows(s) * ncols;
    const float *cl = col, *dy = ybuf;
    if (n == 1) { /* dout's block is dY already; a 1x1's input is col */
        dy = dout;
        if (s->K == 1) cl = inp;
        else fill_col(col, inp, 1, s);
    } else {
        fill_col(col, inp, n, s);
        gather_cm(ybuf, dout, n, s->OC, s->OHW);
    }
    if (dbias) {
        const int OC = s->OC; /* each oc summed by one thread in a fixed order */
        for (int oc = 0; oc < OC; oc++) dbias[oc] += (float)mdiff_sum_lanes(dy + oc * ncols, ncols);
    }
    mdiff_gemm(0, 1, s->OC, s->CKK, ncols, 1.0f, dy, ncols, cl, ncols, 1.0f, dweight, s->CKK);
    if (!dinp) return;
    if (s->K == 1 && n == 1) {
        mdiff_gemm(1, 0, s->C, ncols, s->OC, 1.0f, weight, s->C, dy, ncols, 1.0f, dinp, ncols);
    } else if (s->K == 1) { /* dX (C, ncols) = W^T dY in one GEMM (col is free), then added */
        mdiff_gemm(1, 0, s->C, ncols, s->OC, 1.0f, weight, s->C, dy, ncols, 0.0f, col, ncols);
        add_from_cm(dinp, col, n, s->C, s->HW);
    } else if (s->stride == 1) {
        dinp_s1(dinp, dout, wf, n, s, col, ybuf);
    } else {
        mdiff_gemm(1, 0, s->CKK, ncols, s->OC, 1.0f, weight, s->CKK, dy, ncols, 0.0f, col, ncols);
        col2im3(dinp, col, ncols, n, s);
    }
}

void mdiff_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int B, int C, int H, int W,
                           int OC, int K, int stride, int pad, float *work) {
    conv_shape s = conv_setup(B, C, H, W, OC, K, stride, pad);
    if (mdiff_wino_applies(C, OC, H, W, K, stride, pad)) {
        mdiff_wino_backward(dinp, dweight, dbias, dout, inp, weight, B, C, H, W, OC, work);
        return;
    }
    const int64_t tf = thread_floats(&s), sf = slot_floats(&s), nw = (int64_t)OC * s.CKK;
    float *parts = work + s.T * tf;      /* the slots' partials, after the threads' buffers */
    float *wf = parts + s.nslots * sf;   /* the flipped weight, shared */
    if (dinp && K == 3 && stride == 1) flip_weight(wf, weight, &s);
    const int blas = mdiff_blas_single();
    /* a slot's chunks run in order on one thread; slots go to whichever thread is free */
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.T) if (s.T > 1)
    for (int sl = 0; sl < s.nslots; sl++) {
        float *w = work + omp_get_thread_num() * tf, *pw = parts + sl * sf;
        float *pb = dbias ? pw + nw : NULL;
        memset(pw, 0, (size_t)(nw + OC) * sizeof(float));
        const int c0 = (int)((int64_t)sl * s.nchunks / s.nslots);
        const int c1 = (int)((int64_t)(sl + 1) * s.nchunks / s.nslots);
        for (int ci = c0; ci < c1; ci++) {
            const int b0 = ci * s.nb, n = B - b0 < s.nb ? B - b0 : s.nb;
            backward_chunk(dinp ? dinp + (int64_t)b0 * C * s.HW : NULL, pw, pb,
                           dout + (int64_t)b0 * OC * s.OHW, inp + (int64_t)b0 * C * s.HW, weight,
                           wf, n, &s, w);
        }
    }
    mdiff_blas_restore(blas);
    /* slots summed in slot order: the same bits for every thread count */
    const int64_t nsum = dbias ? nw + OC : nw;
    const int nsl = s.nslots;
    MDIFF_PAR_FOR(nsum * nsl)
    for (int64_t i = 0; i < nsum; i++) {
        float acc = 0.0f;
        for (int sl = 0; sl < nsl; sl++) acc += parts[sl * sf + i];
        if (i < nw)
            dweight[i] += acc;
        else
            dbias[i - nw] += acc;
    }
}
