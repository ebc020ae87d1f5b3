/* train/evaluate: looking at the model during a run, collectively: the loss on the held-out
 * --val-data set (at checkpoints), the fixed-seed sample grid with the EMA weights
 * (--sample-every) and the cross-rank replica check (--check-every). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mdiff/image.h"
#include "mdiff/ops.h"
#include "mdiff/sample.h"
#include "train_internal.h"

#define GRID_IMAGES 64
#define GRID_POINTS 1024
#define GRID_STEPS 50
#define VAL_MAX_ROWS 512

/* Loss on a fixed held-out set with fixed t and noise (purpose VAL), mean over its rows. */
double train_validation_loss(run *r) {
    if (!r->val) return NAN;
    int64_t rows = mdiff_dataset_rows(r->val);
    int64_t V = rows < VAL_MAX_ROWS ? rows : VAL_MAX_ROWS;
    int64_t lo, hi;
    mdiff_shard_range(V, r->d->size, r->d->rank, &lo, &hi);
    double sum = 0;
    for (int64_t i = lo; i < hi; i += r->B_local) {
        int b = (int)(hi - i < r->B_local ? hi - i : r->B_local);
        mdiff_data_read_rows(r->val, i, b, r->x0);
        mdiff_diffusion_make_val_batch(r->x_in, r->target, r->t_idx, r->t_net, r->x0, b, r->dim,
                                       &r->sched, r->objective, r->cfg.seed, (uint64_t)i);
        mdiff_model_forward(r->model, r->out, r->ema, r->x_in, r->t_net, b, 0, 0, 0, 0);
        sum += mdiff_mse_forward(r->per_sample, r->out, r->target, b, r->dim, 1.0f);
    }
    mdiff_dist_sum_f64(r->d, &sum, 1);
    return sum / (double)V;
}

/* The fixed-seed grid (DDIM, GRID_STEPS) every rank samples its slice of; rank 0 writes the PNG. */
void train_write_grid(run *r) {
    int images = mdiff_dataset_is_images(r->ds);
    int64_t n = images ? GRID_IMAGES : GRID_POINTS;
    mdiff_sample_opts o = {r->model, r->ema, &r->sched, r->objective, MDIFF_SAMPLER_DDIM,
                           GRID_STEPS < r->cfg.diff.timesteps ? GRID_STEPS : r->cfg.diff.timesteps,
                           0.0, images, r->cfg.seed, 0, 0, 0 /* threads: the rank's budget */};
    float *all = r->d->rank == 0 ? mdiff_malloc((size_t)n * r->dim * sizeof(float), "sample grid") : NULL;
    double t0 = mdiff_now();
    mdiff_sample_all(r->d, &o, n, all, NULL);
    if (r->d->rank == 0) {
        char path[MDIFF_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/samples-%08lld.png", r->cfg.run_dir, (long long)r->step);
        const mdiff_model_cfg *m = &r->cfg.model;
        if (images) mdiff_png_grid(path, all, (int)n, m->in_ch, m->height, m->width, 8);
        else mdiff_png_scatter(path, all, n, 512, 0.0f);
        mdiff_log("samples %s (%.1fs)", path, mdiff_now() - t0);
        free(all);
    }
}

void train_check_replicas(run *r) {
    /* Parameters must be bit-identical on every rank: compare a checksum of their bytes with
     * rank 0's. A test fault (faults.c) perturbs one rank's parameters just before the check. */
    if (train_fault_diverge(r->step, r->d->rank)) r->params[0] += 1.0f;
    double c = (double)mdiff_crc32(0, r->params, (size_t)r->nparams * sizeof(float)), c0 = c;
    mdiff_dist_bcast_bytes(r->d, &c0, sizeof c0, 0);
    if (!mdiff_dist_or(r->d, c != c0)) return;
    /* how many ranks differ from rank 0, and the lowest of them */
    double v[2] = {c != c0, c != c0 ? -(double)r->d->rank : -(double)r->d->size};
    mdiff_dist_sum_f64(r->d, v, 1);
    mdiff_dist_max_f64(r->d, v + 1, 1);
    mdiff_user_error_all("parameters differ across ranks at step %lld: %d rank(s) differ from rank "
                         "0, the first is rank %d; a rank computed something else: check that every "
                         "node runs the same mdiff build and libraries", (long long)r->step,
                         (int)v[0], (int)-v[1]);
}
