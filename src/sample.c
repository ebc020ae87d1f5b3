/* sample: fixed micro-batch sampling driver and its distribution over ranks (see sample.h). */
#include "mdiff/sample.h"

#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"

typedef struct {
    mdiff_model *model;
    const float *params;
} denoise_ctx;

static void denoise(void *ctx, float *out, const float *x, const float *t_net, int B) {
    denoise_ctx *c = ctx;
    mdiff_model_forward(c->model, out, c->params, x, t_net, B, 0, 0, 0, 0);
}

typedef struct {
    int64_t done_before, total;
    int S;
    double t0, last;
} progress_state;

static void on_progress(void *ctx, int k, int S) {
    progress_state *p = ctx;
    double now = mdiff_now();
    if (now - p->last < 5.0 && k != S) return;
    p->last = now;
    double frac = ((double)p->done_before * S + (double)k * MDIFF_SAMPLE_MB) / ((double)p->total * S);
    if (frac > 1) frac = 1;
    double el = now - p->t0;
    mdiff_log("sampling: %5.1f%%  elapsed %.0fs  eta %.0fs", 100.0 * frac, el,
              frac > 0 ? el * (1 - frac) / frac : 0.0);
}

void mdiff_sample_range(const mdiff_sample_opts *o, int64_t lo, int64_t hi, float *out, float *traj) {
    MDIFF_CHECK(lo % MDIFF_SAMPLE_MB == 0 && hi >= lo, "sample range [%lld, %lld) not aligned",
                (long long)lo, (long long)hi);
    int64_t dim = mdiff_model_sample_numel(o->model);
    int64_t count = hi - lo;
    if (count == 0) return;
    int mb = MDIFF_SAMPLE_MB;
    float *work = mdiff_alloc_aligned((size_t)mdiff_sample_work_floats(mb, dim, o->steps) * sizeof(float),
                                      "sampler workspace");
    float *mtraj = o->n_frames > 0
        ? mdiff_alloc_aligned((size_t)o->n_frames * mb * dim * sizeof(float), "trajectory")
        : NULL;
    denoise_ctx dc = {o->model, o->params};
    progress_state ps = {0, count, o->steps, mdiff_now(), mdiff_now()};
    for (int64_t i = lo; i < hi; i += mb) {
        int b = (int)(hi - i < mb ? hi - i : mb);
        mdiff_sample_extras ex = {mtraj, o->n_frames, o->progress ? on_progress : NULL, &ps};
        mdiff_sample_batch(out + (i - lo) * dim, b, dim, i, o->sampler, o->steps, o->eta, o->clip,
                           o->seed, o->sched, o->objective, denoise, &dc,
                           (o->n_frames > 0 || o->progress) ? &ex : NULL, work);
        if (mtraj)
            for (int f = 0; f < o->n_frames; f++)
                memcpy(traj + ((int64_t)f * count + (i - lo)) * dim, mtraj + (int64_t)f * b * dim,
                       (size_t)b * dim * sizeof(float));
        ps.done_before += b;
    }
    mdiff_free_aligned(mtraj);
    mdiff_free_aligned(work);
}

void mdiff_sample_split(int64_t n, int P, int r, int64_t *lo, int64_t *hi) {
    int64_t nmb = (n + MDIFF_SAMPLE_MB - 1) / MDIFF_SAMPLE_MB;
    int64_t a = nmb * r / P, b = nmb * (r + 1) / P;
    *lo = a * MDIFF_SAMPLE_MB;
    *hi = b * MDIFF_SAMPLE_MB < n ? b * MDIFF_SAMPLE_MB : n;
    if (*lo > n) *lo = n;
}

void mdiff_sample_all(const mdiff_dist *d, const mdiff_sample_opts *o, int64_t n, float *out,
                      float *traj) {
    int64_t dim = mdiff_model_sample_numel(o->model);
    int64_t lo, hi;
    mdiff_sample_split(n, d->size, d->rank, &lo, &hi);
    int64_t mine = hi - lo;
    float *buf = mdiff_malloc((size_t)(mine ? mine : 1) * dim * sizeof(float), "samples");
    float *tbuf = o->n_frames > 0
        ? mdiff_malloc((size_t)(mine ? mine : 1) * o->n_frames * dim * sizeof(float), "trajectory")
        : NULL;
    mdiff_sample_range(o, lo, hi, buf, tbuf);
    int64_t *counts = mdiff_malloc((size_t)d->size * sizeof(int64_t), "counts");
    for (int r = 0; r < d->size; r++) {
        int64_t a, b;
        mdiff_sample_split(n, d->size, r, &a, &b);
        counts[r] = (b - a) * dim;
    }
    mdiff_dist_gatherv_f32(d, buf, mine * dim, out, counts, 0);
    /* trajectory frames: gather frame by frame so rank 0 gets (n_frames, n, dim) */
    for (int f = 0; f < o->n_frames; f++)
        mdiff_dist_gatherv_f32(d, tbuf + (int64_t)f * mine * dim, mine * dim,
                               d->rank == 0 ? traj + (int64_t)f * n * dim : NULL, counts, 0);
    free(counts);
    free(tbuf);
    free(buf);
}
