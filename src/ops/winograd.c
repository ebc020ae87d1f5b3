/* winograd: 3x3 stride 1 pad 1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
 * Gray 2016), forward and backward, NCHW float32, the GEMMs on OpenBLAS.
 *
 * Why: im2col + GEMM spends 9 C multiply-adds per output; F(2x2, 3x3) computes a 2x2 output tile
 * from a 4x4 input tile with 16 instead of 36 products per channel pair, 2.25x fewer, and its
 * transforms expand the input 4x instead of im2col's 9x. The sums over channels become 16
 * independent GEMMs, one per position xi of the 4x4 transformed tile:
 *   V[xi] (C, T)  = (B^T d B)[xi]     for the T input tiles d (4x4, stride 2, zero padded)
 *   U[xi] (OC, C) = (G g G^T)[xi]     for every 3x3 filter g = weight[oc, c]
 *   M[xi] (OC, T) = U[xi] V[xi]       (GEMM, K = C)
 *   Y = A^T M A                       the 2x2 output tile (tiles cut at the edge for odd H, W)
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. The result equals the direct convolution in exact arithmetic; in
 * float32 its rounding differs by a small constant factor (the transforms add at most 4 terms
 * with coefficients of size <= 1).
 * Backward is the adjoint of each linear step, so it is the exact gradient of this forward (and
 * so of the convolution): dM = A dY A^T from dout (no data-dependent work), then
 *   dU[xi] += dM[xi] V[xi]^T   (OC, C), K = T       -> dweight += G^T dU G
 *   dV[xi]  = U[xi]^T dM[xi]   (C, T),  K = OC      -> dinp += the adjoint of the input transform
 * (B dV B^T added back over the overlapping tiles). One dM serves both GEMMs.
 *
 * Chunks, threads and determinism follow conv.c: a chunk is nb whole samples (nb the largest power
 * of two with nb * tiles-per-sample <= WINO_CHUNK_TILES, a function of the shape only), each
 * thread takes whole chunks with its own buffers and single-threaded OpenBLAS, so the chunk's
 * transforms and GEMMs run on one core with its data cache-warm, and dinp's overlapping tile adds
 * never cross threads (a sample is in one chunk). dweight/dbias are summed per slot (a fixed group
 * of consecutive chunks, in order) and the slots in slot order: bit-identical for any thread count.
 * Workspace: per thread V (16 C T) and M/dM (16 OC T) with T = nb tiles, and a padded plane; per
 * slot a dU + dbias partial (16 OC C + OC); shared U (16 OC C). */
#include <stdint.h>
#include <string.h>

#include <omp.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "par.h"
#include "winograd.h"

#define WINO_SLOTS 16

#ifndef WINO_CHUNK_TILES
#define WINO_CHUNK_TILES 256
#endif

/* Below this many channels on either side the GEMMs (K = C or M = OC) are too thin for OpenBLAS
 * to beat im2col's K = 9 C GEMM (the U-Net's 1 -> 32 input and 32 -> 1 output convs). */
#ifndef WINO_MIN_CH
#define WINO_MIN_CH 8
#endif

/* Odd sides waste the cut half of the last tile row/column: 7x7 computes 8x8 outputs (1.31x) and
 * measured slower than im2col there (bench_conv, 64 -> 64 at batch 64: 3.8 + 8.3 ms vs 3.4 +
 * 7.0 ms forward + backward); at <= 1.2x it wins. */
int mdiff_wino_applies(int C, int OC, int H, int W, int K, int stride, int pad) {
    if (K != 3 || stride != 1 || pad != 1 || C < WINO_MIN_CH || OC < WINO_MIN_CH) return 0;
    const int64_t covered = 4 * (int64_t)((H + 1) / 2) * ((W + 1) / 2);
    return 5 * covered <= 6 * (int64_t)H * W;
}

typedef struct {
    int B, C, H, W, OC;
    int TH, TW;       /* tile rows and columns: ceil(H / 2), ceil(W / 2) */
    int TWV;          /* TW rounded up to a multiple of 8: the transforms' vector blocks */
    int64_t HW, tps;  /* plane size, tiles per sample */
    int64_t PH, PW;   /* the zero-padded plane, split by column parity (see pad_plane): PH rows
                         (-1 .. 2 TH), each an even and an odd half of PW floats */
    int nb, nchunks, nslots, T;
} wino_shape;

static wino_shape wino_setup(int B, int C, int H, int W, int OC) {
    MDIFF_CHECK(B > 0 && C > 0 && H > 0 && W > 0 && OC > 0,
                "winograd: bad sizes B %d C %d H %d W %d OC %d", B, C, H, W, OC);
    wino_shape s;
    memset(&s, 0, sizeof s);
    s.B = B, s.C = C, s.H = H, s.W = W, s.OC = OC;
    s.TH = (H + 1) / 2, s.TW = (W + 1) / 2;
    s.HW = (int64_t)H * W;
    s.tps = (int64_t)s.TH * s.TW;
    s.TWV = (s.TW + 7) / 8 * 8;
    s.PH = 2 * (int64_t)s.TH + 2, s.PW = (int64_t)s.TWV + 8;
    int64_t nb = 1;
    while (2 * nb * s.tps <= WINO_CHUNK_TILES) nb *= 2;
    s.nb = nb > B ? B : (int)nb;
    s.nchunks = (B + s.nb - 1) / s.nb;
    s.nslots = s.nchunks < WINO_SLOTS ? s.nchunks : WINO_SLOTS;
    s.T = mdiff_threads() < s.nchunks ? mdiff_threads() : s.nchunks;
    return s;
}

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }
/* Distance between the 16 xi planes of a (16, rows, T) transform buffer: rows * T rounded to 64
 * bytes, plus 64 bytes where that is a multiple of 4 KB. A transform writes one element to each
 * of the 16 planes per tile; at a 4 KB multiple (7x7 planes: 64 x 256 floats) all 16 streams fall
 * into one L1 set and the transforms ran 4x slower. */
static int64_t plane_stride(int64_t rows, int64_t T) {
    int64_t p = round16(rows * T + 8); /* >= 8 floats of slack: see input_plane */
    return p % 1024 == 0 ? p + 16 : p;
}
static int64_t v_stride(const wino_shape *s) { return plane_stride(s->C, (int64_t)s->nb * s->tps); }
static int64_t m_stride(const wino_shape *s) { return plane_stride(s->OC, (int64_t)s->nb * s->tps); }
static int64_t v_floats(const wino_shape *s) { return 16 * v_stride(s); }
static int64_t m_floats(const wino_shape *s) { return 16 * m_stride(s); }
/* The transforms' per-band scratch (see input_plane) and the split padded plane (pad_plane). */
static int64_t band_floats(const wino_shape *s) { return 16 * ((int64_t)s->TWV + 8); }
static int64_t pad_floats(const wino_shape *s) { return 2 * s->PH * s->PW; }
static int64_t thread_floats(const wino_shape *s) {
    return v_floats(s) + m_floats(s) + round16(pad_floats(s) + band_floats(s));
}
static int64_t u_floats(const wino_shape *s) { return round16(16 * (int64_t)s->OC * s->C); }
static int64_t slot_floats(const wino_shape *s) { return round16(16 * (int64_t)s->OC * s->C + s->OC); }

int64_t mdiff_wino_work_floats(int B, int C, int H, int W, int OC) {
    wino_shape s = wino_setup(B, C, H, W, OC);
    return s.T * thread_floats(&s) + s.nslots * slot_floats(&s) + u_floats(&s);
}

/* ---- transforms ----------------------------------------------------------------------------- */

/* U[xi][oc][c] (16, OC, C) = G g G^T for every filter g = weight[oc][c] (3x3). */
static void weight_transform(float *restrict U, const float *restrict weight, const wino_shape *s) {
    const int64_t n = (int64_t)s->OC * s->C;
    MDIFF_PAR_FOR(16 * n)
    for (int64_t f = 0; f < n; f++) {
        const float *g = weight + f * 9;
        float t[4][3], u[4][4];
        for (int k = 0; k < 3; k++) {
            t[0][k] = g[k];
            t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
            t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
            t[3][k] = g[6 + k];
        }
        for (int i = 0; i < 4; i++) {
            u[i][0] = t[i][0];
            u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            u[i][3] = t[i][2];
        }
        for (int xi = 0; xi < 16; xi++) U[xi * n + f] = u[xi / 4][xi % 4];
    }
}

/* dweight[oc][c] += G^T dU G (3x3 from 4x4): the adjoint of weight_transform. */
static void weight_grad_transform(float *restrict dweight, const float *restrict dU,
                                  const wino_shape *s) {
    const int64_t n = (int64_t)s->OC * s->C;
    MDIFF_PAR_FOR(16 * n)
    for (int64_t f = 0; f < n; f++) {
        float u[4][4], t[4][3];
        for (int xi = 0; xi < 16; xi++) u[xi / 4][xi % 4] = dU[xi * n + f];
        for (int i = 0; i < 4; i++) {
            t[i][0] = u[i][0] + 0.5f * (u[i][1] + u[i][2]);
            t[i][1] = 0.5f * (u[i][1] - u[i][2]);
            t[i][2] = 0.5f * (u[i][1] + u[i][2]) + u[i][3];
        }
        float *g = dweight + f * 9;
        for (int k = 0; k < 3; k++) {
            g[k] += t[0][k] + 0.5f * (t[1][k] + t[2][k]);
            g[3 + k] += 0.5f * (t[1][k] - t[2][k]);
            g[6 + k] += 0.5f * (t[1][k] + t[2][k]) + t[3][k];
        }
    }
}

/* The four data transforms work one tile row ("band") at a time with loops over the band's TW
 * tiles, so each of the 16 xi planes is read or written as a contiguous run (the per-tile form
 * touched 16 planes per tile, one float each, and ran 2x slower). Each plane's work is a noinline
 * SIMD-cloned worker (par.h): AVX2 where the CPU has it, the same operations in the same order
 * either way. `band` is scratch of band_floats().
 * Vector blocks: the loops over a band's tiles run to TWV (TW rounded up to 8), not TW: bands are
 * only 4, 7 or 14 tiles wide in the U-Net, and remainder loops cost more than the extra lanes.
 * Lanes TW .. TWV-1 compute junk from whatever follows, harmlessly, because (1) scratch and the
 * padded plane are TWV wide, (2) a junk lane written into V or dM lands on tiles that are written
 * later: the next band, or the next plane's first tiles (planes are visited in memory order,
 * channel outer, sample inner), or the >= 8 floats of slack after each xi plane (plane_stride),
 * and (3) no junk lane is ever added into an output (input_grad_plane scatters exactly TW). */

/* v (16 planes xs apart, tile t = ty TW + tx) = B^T d B of each 4x4 tile d of pad (pad_plane's
 * split layout): rows a_i = (r0 - r2, r1 + r2, r2 - r1, r1 - r3) of the band's 4 input rows, on
 * the even and the odd halves, then the same combination of columns 2tx .. 2tx+3, which are
 * even[tx], odd[tx], even[tx+1], odd[tx+1]: contiguous loads, no shuffles. */
MDIFF_SIMD_CLONES
static void input_plane(float *restrict v, int64_t xs, const float *restrict pad,
                        const wino_shape *s, float *restrict band) {
    const int TW = s->TW, TWV = s->TWV;
    const int64_t PW = s->PW, row = 2 * PW; /* a pad row: even half, then odd half */
    for (int ty = 0; ty < s->TH; ty++) {
        for (int half = 0; half < 2; half++) { /* a_i of the even, then the odd columns */
            const float *restrict r0 = pad + 2 * ty * row + half * PW, *restrict r1 = r0 + row;
            const float *restrict r2 = r1 + row, *restrict r3 = r2 + row;
            float *restrict a0 = band + half * 4 * PW, *restrict a1 = a0 + PW;
            float *restrict a2 = a1 + PW, *restrict a3 = a2 + PW;
            for (int64_t x = 0; x < PW; x++) {
                a0[x] = r0[x] - r2[x];
                a1[x] = r1[x] + r2[x];
                a2[x] = r2[x] - r1[x];
                a3[x] = r1[x] - r3[x];
            }
        }
        for (int i = 0; i < 4; i++) {
            const float *restrict e = band + i * PW, *restrict o = band + (4 + i) * PW;
            float *restrict v0 = v + (4 * i) * xs + ty * TW, *restrict v1 = v0 + xs;
            float *restrict v2 = v1 + xs, *restrict v3 = v2 + xs;
            for (int tx = 0; tx < TWV; tx++) {
                v0[tx] = e[tx] - e[tx + 1];
                v1[tx] = o[tx] + e[tx + 1];
                v2[tx] = e[tx + 1] - o[tx];
                v3[tx] = o[tx] - o[tx + 1];
            }
        }
    }
}

/* pad (split layout) += B dV B^T of each tile of dv (16 planes xs apart), the adjoint of
 * input_plane: per tile q = dV B^T (columns), D = B q (rows), and D's 4x4 is added at the tile's
 * place; neighbouring tiles overlap by two rows/columns, so the adds go in two non-overlapping
 * passes, each exactly TW tiles wide (a junk lane would land on a real column). */
MDIFF_SIMD_CLONES
static void input_grad_plane(float *restrict pad, const float *restrict dv, int64_t xs,
                             const wino_shape *s, float *restrict band) {
    const int TW = s->TW, TWV = s->TWV;
    const int64_t PW = s->PW;
    float *restrict D = band; /* q, then D in place: (4 rows, 4 columns, TWV) */
    for (int ty = 0; ty < s->TH; ty++) {
        const float *restrict vt = dv + ty * TW;
        for (int i = 0; i < 4; i++) { /* q row i = (a, b - e + f, b + e - a, -f) */
            const float *restrict va = vt + (4 * i) * xs, *restrict vb = va + xs;
            const float *restrict ve = vb + xs, *restrict vf = ve + xs;
            float *restrict q0 = D + (4 * i) * TWV, *restrict q1 = q0 + TWV;
            float *restrict q2 = q1 + TWV, *restrict q3 = q2 + TWV;
            for (int tx = 0; tx < TWV; tx++) {
                q0[tx] = va[tx];
                q1[tx] = vb[tx] - ve[tx] + vf[tx];
                q2[tx] = vb[tx] + ve[tx] - va[tx];
                q3[tx] = -vf[tx];
            }
        }
        for (int k = 0; k < 4; k++) { /* D column k = (q0, q1 - q2 + q3, q1 + q2 - q0, -q3) */
            float *restrict d0 = D + k * TWV, *restrict d1 = d0 + 4 * TWV;
            float *restrict d2 = d1 + 4 * TWV, *restrict d3 = d2 + 4 * TWV;
            for (int tx = 0; tx < TWV; tx++) {
                const float q0 = d0[tx], q1 = d1[tx], q2 = d2[tx], q3 = d3[tx];
                d1[tx] = q1 - q2 + q3;
                d2[tx] = q1 + q2 - q0;
                d3[tx] = -q3;
            }
        }
        for (int r = 0; r < 4; r++) { /* columns 2tx + k: even[tx], odd[tx], even[tx+1], odd[tx+1] */
            float *restrict pe = pad + (2 * ty + r) * 2 * PW, *restrict po = pe + PW;
            const float *restrict d0 = D + (r * 4) * TWV, *restrict d1 = d0 + TWV;
            const float *restrict d2 = d1 + TWV, *restrict d3 = d2 + TWV;
            for (int tx = 0; tx < TW; tx++) {
                pe[tx] += d0[tx];
                po[tx] += d1[tx];
            }
            for (int tx = 0; tx < TW; tx++) {
                pe[tx + 1] += d2[tx];
                po[tx + 1] += d3[tx];
            }
        }
    }
}

/* o (H, W) = A^T M A + bias of each tile of m (16 planes xs apart), the band's two output rows
 * assembled in `band` and cut to W columns (and the last band to one row when H is odd). */
MDIFF_SIMD_CLONES
static void output_plane(float *restrict o, const float *restrict m, int64_t xs, float bv,
                         const wino_shape *s, float *restrict band) {
    const int TW = s->TW, TWV = s->TWV, H = s->H, W = s->W;
    float *restrict y0 = band, *restrict y1 = band + 2 * TWV;
    for (int ty = 0; ty < s->TH; ty++) {
        const float *restrict mt = m + ty * TW;
        for (int tx = 0; tx < TWV; tx++) {
            float t[2][4];
            for (int k = 0; k < 4; k++) {
                const float a = mt[k * xs + tx], b = mt[(4 + k) * xs + tx];
                const float c = mt[(8 + k) * xs + tx], d = mt[(12 + k) * xs + tx];
                t[0][k] = a + b + c;
                t[1][k] = b - c - d;
            }
            y0[2 * tx] = (t[0][0] + t[0][1] + t[0][2]) + bv;
            y0[2 * tx + 1] = (t[0][1] - t[0][2] - t[0][3]) + bv;
            y1[2 * tx] = (t[1][0] + t[1][1] + t[1][2]) + bv;
            y1[2 * tx + 1] = (t[1][1] - t[1][2] - t[1][3]) + bv;
        }
        memcpy(o + (int64_t)(2 * ty) * W, y0, (size_t)W * sizeof(float));
        if (2 * ty + 1 < H) memcpy(o + (int64_t)(2 * ty + 1) * W, y1, (size_t)W * sizeof(float));
    }
}

/* m (16 planes xs apart) = A dY A^T of each 2x2 tile dY of g (H, W), zero past the edge: the
 * adjoint of output_plane. */
MDIFF_SIMD_CLONES
static void output_grad_plane(float *restrict m, int64_t xs, const float *restrict g,
                              const wino_shape *s, float *restrict band) {
    const int TW = s->TW, TWV = s->TWV, H = s->H, W = s->W, W2 = 2 * TWV;
    float *restrict g0 = band, *restrict g1 = g0 + W2, *restrict c = g1 + W2; /* c: (4, W2) */
    for (int ty = 0; ty < s->TH; ty++) {
        memcpy(g0, g + (int64_t)(2 * ty) * W, (size_t)W * sizeof(float));
        if (2 * ty + 1 < H)
            memcpy(g1, g + (int64_t)(2 * ty + 1) * W, (size_t)W * sizeof(float));
        else
            memset(g1, 0, (size_t)W * sizeof(float));
        if (W % 2) g0[W] = 0.0f, g1[W] = 0.0f;
        float *restrict c0 = c, *restrict c1 = c0 + W2, *restrict c2 = c1 + W2;
        float *restrict c3 = c2 + W2;
        for (int x = 0; x < W2; x++) { /* rows: A (y0, y1) = (y0, y0 + y1, y0 - y1, -y1) */
            c0[x] = g0[x];
            c1[x] = g0[x] + g1[x];
            c2[x] = g0[x] - g1[x];
            c3[x] = -g1[x];
        }
        for (int i = 0; i < 4; i++) { /* columns, the same combination */
            const float *restrict ci = c + i * W2;
            float *restrict m0 = m + (4 * i) * xs + ty * TW, *restrict m1 = m0 + xs;
            float *restrict m2 = m1 + xs, *restrict m3 = m2 + xs;
            for (int tx = 0; tx < TWV; tx++) {
                m0[tx] = ci[2 * tx];
                m1[tx] = ci[2 * tx] + ci[2 * tx + 1];
                m2[tx] = ci[2 * tx] - ci[2 * tx + 1];
                m3[tx] = -ci[2 * tx + 1];
            }
        }
    }
}

/* The padded plane is stored split by column parity: pad row p (image row p - 1) is an even half
 * E (pad columns 0, 2, 4, ..., i.e. image columns -1, 1, 3, ...) then an odd half O (image
 * columns 0, 2, 4, ...), PW floats each. Everything outside the image stays zero: the plane is
 * cleared once per chunk and every plane of the shape writes the same positions. */
static void pad_plane(float *restrict pad, const float *restrict plane, const wino_shape *s) {
    const int W = s->W, half = W / 2, TW = s->TW;
    for (int h = 0; h < s->H; h++) {
        float *restrict e = pad + (h + 1) * 2 * s->PW, *restrict o = e + s->PW;
        const float *restrict r = plane + (int64_t)h * W;
        for (int x = 0; x < half; x++) {
            o[x] = r[2 * x];
            e[x + 1] = r[2 * x + 1];
        }
        if (W % 2) o[TW - 1] = r[W - 1];
    }
}

/* V[xi][c][t] (16, C, n tps) = B^T d B of every 4x4 input tile d of the chunk's n samples. */
static void input_transform(float *V, const float *inp, int n, const wino_shape *s, float *pad) {
    const int64_t T = n * s->tps;
    float *band = pad + pad_floats(s);
    memset(pad, 0, (size_t)pad_floats(s) * sizeof(float)); /* the image part is rewritten */
    for (int c = 0; c < s->C; c++) /* c outer: see the vector blocks above */
        for (int j = 0; j < n; j++) {
            pad_plane(pad, inp + ((int64_t)j * s->C + c) * s->HW, s);
            input_plane(V + c * T + j * s->tps, v_stride(s), pad, s, band);
        }
}

/* dinp (n, C, H, W) += the adjoint of input_transform applied to dV (16, C, n tps). */
static void input_grad_transform(float *dinp, const float *dV, int n, const wino_shape *s,
                                 float *pad) {
    const int64_t T = n * s->tps, PW = s->PW;
    const int W = s->W, half = W / 2, TW = s->TW;
    float *band = pad + pad_floats(s);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < s->C; c++) {
            memset(pad, 0, (size_t)pad_floats(s) * sizeof(float));
            input_grad_plane(pad, dV + c * T + j * s->tps, v_stride(s), s, band);
            float *restrict di = dinp + ((int64_t)j * s->C + c) * s->HW;
            for (int h = 0; h < s->H; h++) { /* the adjoint of pad_plane */
                const float *restrict e = pad + (h + 1) * 2 * PW, *restrict o = e + PW;
                float *restrict r = di + (int64_t)h * W;
                for (int x = 0; x < half; x++) {
                    r[2 * x] += o[x];
                    r[2 * x + 1] += e[x + 1];
                }
                if (W % 2) r[W - 1] += o[TW - 1];
            }
        }
}

/* out (n, OC, H, W) = A^T M A + bias of every tile. */
static void output_transform(float *out, const float *M, const float *bias, int n,
                             const wino_shape *s, float *band) {
    const int64_t T = n * s->tps;
    for (int j = 0; j < n; j++)
        for (int oc = 0; oc < s->OC; oc++)
            output_plane(out + ((int64_t)j * s->OC + oc) * s->HW, M + oc * T + j * s->tps,
                         m_stride(s), bias ? bias[oc] : 0.0f, s, band);
}

/* dM[xi][oc][t] (16, OC, n tps) = A dY A^T of every 2x2 tile dY of dout. */
static void output_grad_transform(float *dM, const float *dout, int n, const wino_shape *s,
                                  float *band) {
    const int64_t T = n * s->tps;
    for (int oc = 0; oc < s->OC; oc++) /* oc outer: see the vector blocks above */
        for (int j = 0; j < n; j++)
            output_grad_plane(dM + oc * T + j * s->tps, m_stride(s),
                              dout + ((int64_t)j * s->OC + oc) * s->HW, s, band);
}

/* ---- forward and backward ------------------------------------------------------------------- */

static void forward_chunk(float *out, const float *inp, const float *U, const float *bias, int n,
                          const wino_shape *s, float *work) {
    const int64_t T = n * s->tps, C = s->C, OC = s->OC;
    float *V = work, *M = work + v_floats(s), *pad = M + m_floats(s);
    input_transform(V, inp, n, s, pad);
    const int64_t vs = v_stride(s), ms = m_stride(s);
    for (int xi = 0; xi < 16; xi++)
        mdiff_gemm(0, 0, OC, T, C, 1.0f, U + xi * OC * C, C, V + xi * vs, T, 0.0f, M + xi * ms, T);
    output_transform(out, M, bias, n, s, pad + pad_floats(s));
}

void mdiff_wino_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int B, int C, int H, int W, int OC, float *work) {
    wino_shape s = wino_setup(B, C, H, W, OC);
    const int64_t tf = thread_floats(&s);
    float *U = work + s.T * tf + s.nslots * slot_floats(&s);
    weight_transform(U, weight, &s);
    const int blas = mdiff_blas_single();
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.T) if (s.T > 1)
    for (int ci = 0; ci < s.nchunks; ci++) {
        const int b0 = ci * s.nb, n = B - b0 < s.nb ? B - b0 : s.nb;
        forward_chunk(out + (int64_t)b0 * OC * s.HW, inp + (int64_t)b0 * C * s.HW, U, bias, n, &s,
                      work + omp_get_thread_num() * tf);
    }
    mdiff_blas_restore(blas);
}

/* One chunk's contribution: dU partial (16, OC, C) +=, dbias partial +=, dinp += (if non-NULL). */
static void backward_chunk(float *dinp, float *dU, float *dbias, const float *dout,
                           const float *inp, const float *U, int n, const wino_shape *s,
                           float *work) {
    const int64_t T = n * s->tps, C = s->C, OC = s->OC;
    float *V = work, *dM = work + v_floats(s), *pad = dM + m_floats(s);
    input_transform(V, inp, n, s, pad);
    output_grad_transform(dM, dout, n, s, pad + pad_floats(s));
    if (dbias)
        for (int64_t oc = 0; oc < OC; oc++)
            for (int j = 0; j < n; j++)
                dbias[oc] += (float)mdiff_sum_lanes(dout + ((int64_t)j * OC + oc) * s->HW, s->HW);
    for (int xi = 0; xi < 16; xi++) {
        float *Vx = V + xi * v_stride(s), *dMx = dM + xi * m_stride(s);
        mdiff_gemm(0, 1, OC, C, T, 1.0f, dMx, T, Vx, T, 1.0f, dU + xi * OC * C, C);
        if (dinp) /* V[xi] is done with: dV[xi] takes its place */
            mdiff_gemm(1, 0, C, T, OC, 1.0f, U + xi * OC * C, C, dMx, T, 0.0f, Vx, T);
    }
    if (dinp) input_grad_transform(dinp, V, n, s, pad);
}

void mdiff_wino_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                         float *work) {
    wino_shape s = wino_setup(B, C, H, W, OC);
    const int64_t tf = thread_floats(&s), sf = slot_floats(&s), nu = 16 * (int64_t)OC * C;
    float *parts = work + s.T * tf, *U = parts + s.nslots * sf;
    if (dinp) weight_transform(U, weight, &s);
    const int blas = mdiff_blas_single();
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.T) if (s.T > 1)
    for (int sl = 0; sl < s.nslots; sl++) {
        float *w = work + omp_get_thread_num() * tf, *pu = parts + sl * sf;
        memset(pu, 0, (size_t)(nu + OC) * sizeof(float));
        const int c0 = (int)((int64_t)sl * s.nchunks / s.nslots);
        const int c1 = (int)((int64_t)(sl + 1) * s.nchunks / s.nslots);
        for (int ci = c0; ci < c1; ci++) {
            const int b0 = ci * s.nb, n = B - b0 < s.nb ? B - b0 : s.nb;
            backward_chunk(dinp ? dinp + (int64_t)b0 * C * s.HW : NULL, pu, dbias ? pu + nu : NULL,
                           dout + (int64_t)b0 * OC * s.HW, inp + (int64_t)b0 * C * s.HW, U, n, &s,
                           w);
        }
    }
    mdiff_blas_restore(blas);
    /* slots summed in slot order into slot 0 (the same bits for every thread count) */
    const int64_t nsum = dbias ? nu + OC : nu;
    const int nsl = s.nslots;
    MDIFF_PAR_FOR(nsum * nsl)
    for (int64_t i = 0; i < nsum; i++) {
        float acc = parts[i];
        for (int sl = 1; sl < nsl; sl++) acc += parts[sl * sf + i];
        parts[i] = acc;
    }
    weight_grad_transform(dweight, parts, &s);
    if (dbias)
        for (int oc = 0; oc < OC; oc++) dbias[oc] += parts[nu + oc];
}
