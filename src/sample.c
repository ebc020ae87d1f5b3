/* sample: fixed micro-batch sampling driver, parallel over micro-batches within a rank (pthreads,
 * one BLAS thread each) and distributed over ranks (see sample.h). */
#include "mdiff/sample.h"

#include <pthread.h>
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

/* Progress over all workers of one mdiff_sample_range: images of finished micro-batches plus the
 * iteration each worker is at in its current one. */
typedef struct {
    pthread_mutex_t lock;
    int64_t done_images, total;
    int *cur_k;               /* per worker: iterations done in its current micro-batch */
    int *cur_b;               /* per worker: images in its current micro-batch */
    int S;
    double t0, last;
} progress_state;

typedef struct {
    progress_state *ps;
    int worker;
} progress_ctx;

static void on_progress(void *ctx, int k, int S) {
    progress_ctx *pc = ctx;
    progress_state *p = pc->ps;
    pthread_mutex_lock(&p->lock);
    p->cur_k[pc->worker] = k;
    double now = mdiff_now();
    if (now - p->last >= 5.0) {
        p->last = now;
        double it = (double)p->done_images * S;
        for (int w = 0; p->cur_k[w] >= 0; w++) it += (double)p->cur_k[w] * p->cur_b[w];
        double frac = it / ((double)p->total * S);
        if (frac > 1) frac = 1;
        double el = now - p->t0;
        mdiff_log("sampling: %5.1f%%  elapsed %.0fs  eta %.0fs", 100.0 * frac, el,
                  frac > 0 ? el * (1 - frac) / frac : 0.0);
    }
    pthread_mutex_unlock(&p->lock);
}

/* One worker: its own model (a model owns its activation arena), workspace and trajectory buffer;
 * it takes the next unclaimed micro-batch until none is left. */
typedef struct {
    const mdiff_sample_opts *o;
    mdiff_model *model;
    float *work, *mtraj;
    int64_t lo, hi, dim;
    float *out, *traj;
    int64_t *next_mb;            /* shared: the next unclaimed micro-batch (under ps->lock) */
    progress_state *ps;
    int worker;
} sample_worker;

static void *sample_worker_run(void *arg) {
    sample_worker *w = arg;
    const mdiff_sample_opts *o = w->o;
    mdiff_set_threads(1); /* parallelism is across micro-batches: one thread per micro-batch */
    const int mb = MDIFF_SAMPLE_MB;
    const int64_t count = w->hi - w->lo, dim = w->dim;
    denoise_ctx dc = {w->model, o->params};
    progress_ctx pc = {w->ps, w->worker};
    for (;;) {
        pthread_mutex_lock(&w->ps->lock);
        int64_t i = w->lo + (*w->next_mb)++ * mb;
        int b = i < w->hi ? (int)(w->hi - i < mb ? w->hi - i : mb) : 0;
        w->ps->cur_k[w->worker] = 0;
        w->ps->cur_b[w->worker] = b;
        pthread_mutex_unlock(&w->ps->lock);
        if (b == 0) break;
        mdiff_sample_extras ex = {w->mtraj, o->n_frames, o->progress ? on_progress : NULL, &pc};
        mdiff_sample_batch(w->out + (i - w->lo) * dim, b, dim, i, o->sampler, o->steps, o->eta,
                           o->clip, o->seed, o->sched, o->objective, denoise, &dc,
                           (o->n_frames > 0 || o->progress) ? &ex : NULL, w->work);
        if (w->mtraj)
            for (int f = 0; f < o->n_frames; f++)
                memcpy(w->traj + ((int64_t)f * count + (i - w->lo)) * dim,
                       w->mtraj + (int64_t)f * b * dim, (size_t)b * dim * sizeof(float));
        pthread_mutex_lock(&w->ps->lock);
        w->ps->done_images += b;
        w->ps->cur_k[w->worker] = 0;
        pthread_mutex_unlock(&w->ps->lock);
    }
    return NULL;
}

/* Bit-exactness across rank and thread counts: every micro-batch is evaluated by one thread with
 * ONE BLAS thread (OpenBLAS results change with its thread count), at a GEMM size fixed by the
 * micro-batch; cores are used by running micro-batches in parallel instead. */
void mdiff_sample_range(const mdiff_sample_opts *o, int64_t lo, int64_t hi, float *out, float *traj) {
    MDIFF_CHECK(lo % MDIFF_SAMPLE_MB == 0 && hi >= lo, "sample range [%lld, %lld) not aligned",
                (long long)lo, (long long)hi);
    int64_t dim = mdiff_model_sample_numel(o->model);
    int64_t count = hi - lo;
    if (count == 0) return;
    const int mb = MDIFF_SAMPLE_MB;
    int64_t nmb = (count + mb - 1) / mb;
    int W = o->threads > 0 ? o->threads : mdiff_blas_threads(); /* 0: the rank's budget */
    if (W < 1) W = 1;
    if (W > nmb) W = (int)nmb;
    sample_worker *ws = mdiff_calloc((size_t)W, sizeof *ws, "sampling workers");
    progress_state ps = {.total = count, .S = o->steps, .t0 = mdiff_now(), .last = mdiff_now()};
    MDIFF_CHECK(pthread_mutex_init(&ps.lock, NULL) == 0, "pthread_mutex_init failed");
    /* cur_k ends with a -1 sentinel */
    ps.cur_k = mdiff_calloc((size_t)W + 1, sizeof(int), "progress");
    ps.cur_b = mdiff_calloc((size_t)W + 1, sizeof(int), "progress");
    ps.cur_k[W] = -1;
    int64_t next_mb = 0;
    for (int k = 0; k < W; k++) {
        sample_worker *w = &ws[k];
        *w = (sample_worker){o, NULL, NULL, NULL, lo, hi, dim, out, traj, &next_mb, &ps, k};
        /* the caller's model serves worker 0; others get their own (arena per model) */
        w->model = k == 0 ? o->model : mdiff_model_create(mdiff_model_config(o->model), mb);
        w->work = mdiff_alloc_aligned((size_t)mdiff_sample_work_floats(mb, dim, o->steps) *
                                      sizeof(float), "sampler workspace");
        if (o->n_frames > 0)
            w->mtraj = mdiff_alloc_aligned((size_t)o->n_frames * mb * dim * sizeof(float),
                                           "trajectory");
    }
    int threads_before = mdiff_threads();
    int blas_before = mdiff_blas_single(); /* every worker computes with ONE BLAS thread */
    pthread_t *tid = mdiff_calloc((size_t)W, sizeof(pthread_t), "sampling threads");
    for (int k = 1; k < W; k++)
        MDIFF_CHECK(pthread_create(&tid[k], NULL, sample_worker_run, &ws[k]) == 0,
                    "cannot start sampling thread %d of %d", k, W);
    sample_worker_run(&ws[0]);
    for (int k = 1; k < W; k++) MDIFF_CHECK(pthread_join(tid[k], NULL) == 0, "pthread_join failed");
    mdiff_blas_restore(blas_before);
    mdiff_set_threads(threads_before);
    for (int k = 0; k < W; k++) {
        if (k > 0) mdiff_model_free(ws[k].model);
        mdiff_free_aligned(ws[k].work);
        mdiff_free_aligned(ws[k].mtraj);
    }
    pthread_mutex_destroy(&ps.lock);
    free(ps.cur_k);
    free(ps.cur_b);
    free(tid);
    free(ws);
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
