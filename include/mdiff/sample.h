/* sample: the sampling driver over a model and a checkpoint's weights — used by mdiff-sample and
 * by mdiff-train's periodic grids.
 *
 * Reproducibility: images are generated in fixed micro-batches of MDIFF_SAMPLE_MB aligned to the
 * global image index (micro-batch k holds images [k MB, (k+1) MB)), and ranks get whole
 * micro-batches. The GEMM shapes of a micro-batch therefore never depend on the number of ranks,
 * and image i depends only on (seed, i). Each micro-batch is evaluated by one thread with ONE
 * OpenBLAS thread (the BLAS thread count changes results bitwise), and a rank's cores run several
 * micro-batches at once (pthreads, each with its own model instance): the output is byte-identical
 * for any number of ranks and threads. */
#ifndef MDIFF_SAMPLE_H
#define MDIFF_SAMPLE_H

#include <stdint.h>

#include "mdiff/diffusion.h"
#include "mdiff/dist.h"
#include "mdiff/model.h"

#define MDIFF_SAMPLE_MB 16

typedef struct {
    mdiff_model *model;          /* created with max_batch >= MDIFF_SAMPLE_MB */
    const float *params;         /* EMA or raw weights */
    const mdiff_schedule *sched; /* the base schedule of the checkpoint */
    int objective;
    int sampler, steps;
    double eta;
    int clip;
    uint64_t seed;
    int n_frames;                /* trajectory frames (0: none) */
    int progress;                /* 1: print progress lines (rank 0) */
    int threads;                 /* worker threads of this rank, each with one BLAS thread and its
                                    own model; 0: OpenBLAS's current thread count */
} mdiff_sample_opts;

/* Images [lo, hi) of the global set (lo a multiple of MDIFF_SAMPLE_MB) into out (hi-lo, dim);
 * traj (n_frames, hi-lo, dim) when n_frames > 0. */
void mdiff_sample_range(const mdiff_sample_opts *o, int64_t lo, int64_t hi, float *out, float *traj);
/* Rank r's share [lo, hi) of n images: whole micro-batches, spread evenly. */
void mdiff_sample_split(int64_t n, int P, int r, int64_t *lo, int64_t *hi);
/* Every rank makes its share; rank 0 receives all n images into out (n, dim) and, when
 * n_frames > 0, the trajectory into traj (n_frames, n, dim). out/traj are only used on rank 0. */
void mdiff_sample_all(const mdiff_dist *d, const mdiff_sample_opts *o, int64_t n, float *out,
                      float *traj);

#endif
