/* par: the OpenMP loop pragma every memory-bound op uses. The thread count is the caller's budget
 * (mdiff_threads(), thread-local, default 1), never OpenMP's default, so ops never oversubscribe:
 * the training loop sets it equal to the OpenBLAS thread count, and BLAS calls and these regions
 * alternate, they never nest. Ops run OpenBLAS single-threaded (mdiff_blas_single, the thread
 * policy in common.h: their parallelism is their own, over independent chunks), so a result never
 * depends on the BLAS thread count and the two pools never compete for cores. schedule(static)
 * makes the split a pure function of the loop size and the thread count. Forward ops only split
 * independent outputs (no reduction crosses a thread boundary), so their results are bit-identical
 * for every thread count. The `if` clause keeps tiny loops (7x7 planes, the MLP) serial, where
 * waking threads costs more than it saves. */
#ifndef MDIFF_OPS_PAR_H
#define MDIFF_OPS_PAR_H

#include <stdint.h>

#include "mdiff/common.h"

#define MDIFF_PRAGMA_(x) _Pragma(#x)
/* Parallel for over a loop whose total work is about `work` floats. */
#define MDIFF_PAR_FOR(work)                                                                   \
    MDIFF_PRAGMA_(omp parallel for schedule(static) num_threads(mdiff_threads())              \
                      if ((work) >= MDIFF_PAR_MIN && mdiff_threads() > 1))
#define MDIFF_PAR_FOR2(work)                                                                  \
    MDIFF_PRAGMA_(omp parallel for collapse(2) schedule(static) num_threads(mdiff_threads())  \
                      if ((work) >= MDIFF_PAR_MIN && mdiff_threads() > 1))
/* Below ~32k floats (128 KB, an L2's worth) a pass takes a few microseconds: not worth a fork. */
#define MDIFF_PAR_MIN 32768

/* The streaming kernels (GroupNorm, SiLU) are compute-bound on the vectorised exp: compiled twice,
 * SSE2 (the portable default build) and AVX2, and picked at load time by the CPU (an ifunc), so a
 * portable binary runs 8-wide where it can. Both clones evaluate the same IEEE operations in the
 * same order (C11 mode keeps -ffp-contract=off: no FMA contraction; no reassociation), so their
 * results are bit-identical. Put it on a noinline worker called from inside the OpenMP loop:
 * the outlined OpenMP body itself is not cloned. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__)
#define MDIFF_SIMD_CLONES __attribute__((target_clones("avx2", "default"), noinline))
#else
#define MDIFF_SIMD_CLONES __attribute__((noinline))
#endif

/* Sum of x[0..n) in 8 float lanes (vectorisable), promoted to double at the end: the fixed
 * summation order the convs' dbias uses (im2col and Winograd alike). */
static inline double mdiff_sum_lanes(const float *restrict x, int64_t n) {
    float p[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) p[l] += x[i + l];
    double t = 0;
    for (; i < n; i++) t += x[i];
    for (int l = 0; l < 8; l++) t += p[l];
    return t;
}

#endif
