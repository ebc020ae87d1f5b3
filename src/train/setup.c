/* train/setup: building a run identically on every rank (DESIGN.md §3 before step 1): the run
 * directory and the resume decision, merging a resumed checkpoint's config (model and diffusion
 * come from it), the data and the model it implies, the global batch split, one allocation per
 * role, this rank's thread budget, the start-up report, the state (fresh or from the checkpoint,
 * then broadcast from rank 0), the optimizer and the gradient buckets; and freeing it all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/ckpt.h"
#include "mdiff/sample.h"
#include "train_internal.h"

/* "" when not resuming, else the checkpoint path (decided on rank 0, broadcast). */
static void resolve_resume(run *r, char *path, size_t cap) {
    char p[MDIFF_PATH_MAX + 32] = "";
    if (r->d->rank == 0) {
        if (strcmp(r->cfg.resume, "auto") == 0) {
            if (!mdiff_ckpt_latest(r->cfg.run_dir, p, sizeof p)) p[0] = '\0';
        } else if (r->cfg.resume[0]) {
            mdiff_strcpy(p, sizeof p, r->cfg.resume);
        }
    }
    mdiff_dist_bcast_bytes(r->d, p, sizeof p, 0);
    mdiff_strcpy(path, cap, p);
}

/* Takes model and diffusion from the checkpoint; a flag given that contradicts it is an error. */
static void merge_checkpoint_config(run *r, const mdiff_ckpt *ck, const mdiff_given *given) {
    mdiff_config ckc;
    mdiff_config_defaults(&ckc);
    mdiff_ckpt_read_config(ck, &ckc);
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    for (int i = 0; i < n; i++) {
        if (!f[i].identity || mdiff_field_equal(&f[i], &r->cfg, &ckc)) continue;
        char mine[128], theirs[128];
        mdiff_field_format(&f[i], &r->cfg, mine, sizeof mine);
        mdiff_field_format(&f[i], &ckc, theirs, sizeof theirs);
        if (f[i].opt && mdiff_given_has(given, f[i].attr))
            mdiff_user_error("%s %s conflicts with checkpoint %s (%s = %s): the model and diffusion "
                             "come from the checkpoint; drop the flag or use a new --run-dir",
                             f[i].opt, mine, mdiff_ckpt_path(ck), f[i].attr, theirs);
        if (!f[i].opt && strcmp(r->cfg.model.arch, "auto") != 0)
            mdiff_user_error("data %s has %s = %s but checkpoint %s was trained with %s: resume with "
                             "the same data shape", r->cfg.data, f[i].attr, mine, mdiff_ckpt_path(ck),
                             theirs);
    }
    for (int i = 0; i < n; i++) {
        if (f[i].identity) {
            mdiff_field_copy(&f[i], &r->cfg, &ckc);
        } else if (f[i].opt && !mdiff_given_has(given, f[i].attr) && !mdiff_field_equal(&f[i], &r->cfg, &ckc) &&
                   strcmp(f[i].attr, "resume") != 0) {
            char mine[128], theirs[128];
            mdiff_field_format(&f[i], &r->cfg, mine, sizeof mine);
            mdiff_field_format(&f[i], &ckc, theirs, sizeof theirs);
            mdiff_warn("%s: the checkpoint ran with %s, this run uses %s (not given: default)",
                       f[i].opt, theirs, mine);
        }
    }
}

/* Fills the data-derived model fields and resolves --arch auto. */
static void model_from_data(run *r) {
    mdiff_model_cfg *m = &r->cfg.model;
    int c, h, w;
    mdiff_dataset_shape(r->ds, &c, &h, &w);
    int images = mdiff_dataset_is_images(r->ds);
    if (strcmp(m->arch, "auto") == 0) mdiff_strcpy(m->arch, sizeof m->arch, images ? "unet" : "mlp");
    if (images && strcmp(m->arch, "unet") != 0)
        mdiff_user_error("--arch %s cannot model image data %s: use --arch unet (or auto)", m->arch,
                         r->cfg.data);
    if (!images && strcmp(m->arch, "mlp") != 0)
        mdiff_user_error("--arch %s cannot model point data %s: use --arch mlp (or auto)", m->arch,
                         r->cfg.data);
    m->in_ch = c;
    m->height = h;
    m->width = w;
}

static void alloc_buffers(run *r) {
    int64_t n = r->nparams, bd = (int64_t)r->B_local * r->dim;
    r->params = mdiff_alloc_aligned((size_t)n * sizeof(float), "parameters");
    r->grads = mdiff_alloc_aligned((size_t)n * sizeof(float), "gradients");
    r->adam_m = mdiff_alloc_aligned((size_t)n * sizeof(float), "AdamW first moments");
    r->adam_v = mdiff_alloc_aligned((size_t)n * sizeof(float), "AdamW second moments");
    r->ema = mdiff_alloc_aligned((size_t)n * sizeof(float), "EMA weights");
    /* batch buffers: x0, x_in, target, out, dout */
    float *batch = mdiff_alloc_aligned((size_t)(5 * bd + 2 * r->B_local) * sizeof(float), "batch buffers");
    r->x0 = batch, r->x_in = batch + bd, r->target = batch + 2 * bd, r->out = batch + 3 * bd;
    r->dout = batch + 4 * bd, r->per_sample = batch + 5 * bd, r->t_net = r->per_sample + r->B_local;
    r->t_idx = mdiff_calloc((size_t)r->B_local, sizeof(int), "timesteps");
}

static void print_startup(run *r) {
    const mdiff_config *c = &r->cfg;
    double mib = 1024.0 * 1024.0;
    double pbytes = (double)r->nparams * 4;
    char threads[48];
    if (!r->threads_from_env) snprintf(threads, sizeof threads, "%d", r->threads);
    else snprintf(threads, sizeof threads, "%s (OPENBLAS_NUM_THREADS)", getenv("OPENBLAS_NUM_THREADS"));
    mdiff_log("mdiff-train %s (git %s) | %d rank%s x %s BLAS thread(s) each", MDIFF_VERSION,
              mdiff_git_hash(), r->d->size, r->d->size > 1 ? "s" : "", threads);
    if (r->d->rank == 0) {
        printf("configuration:\n");
        mdiff_config_print(c, stdout);
    }
    mdiff_log("data: %s | %lld rows of %lld values | fingerprint %08x", c->data,
              (long long)mdiff_dataset_rows(r->ds), (long long)r->dim,
              (unsigned)mdiff_dataset_fingerprint(r->ds));
    mdiff_log("model: %s | %lld parameters (%.2fM)", c->model.arch, (long long)r->nparams,
              (double)r->nparams / 1e6);
    mdiff_log("memory per rank: parameters %.1f MiB, gradients %.1f MiB, optimizer (AdamW m, v, EMA) "
              "%.1f MiB, activations+workspace %.1f MiB (batch %d), batch buffers %.1f MiB",
              pbytes / mib, pbytes / mib, 3 * pbytes / mib,
              (double)mdiff_model_activation_bytes(r->model) / mib, r->B_local,
              (double)(5 * (int64_t)r->B_local * r->dim) * 4 / mib);
}

void train_setup(run *r, const mdiff_given *given) {
    mdiff_dist *d = r->d;
    int was = mdiff_set_errors_collective(1); /* every rank sees the same inputs here */
    train_prepare_run_dir(r);
    char resume[MDIFF_PATH_MAX + 32];
    resolve_resume(r, resume, sizeof resume);
    r->ds = mdiff_dataset_open(r->cfg.data);
    if (mdiff_dataset_rows(r->ds) < d->size)
        mdiff_user_error("data %s has %lld rows, fewer than the %d ranks: use fewer ranks",
                         r->cfg.data, (long long)mdiff_dataset_rows(r->ds), d->size);
    if (r->cfg.batch < d->size)
        mdiff_user_error("--batch %lld is smaller than the %d ranks: every rank needs a sample",
                         (long long)r->cfg.batch, d->size);
    model_from_data(r);
    mdiff_ckpt *ck = resume[0] ? mdiff_ckpt_open(resume) : NULL;
    if (ck) merge_checkpoint_config(r, ck, given);
    mdiff_config_validate(&r->cfg);
    if (ck && mdiff_ckpt_step(ck) > r->cfg.steps)
        mdiff_user_error("checkpoint %s is at step %lld, beyond --steps %lld: raise --steps to continue",
                         resume, (long long)mdiff_ckpt_step(ck), (long long)r->cfg.steps);
    if (r->cfg.val_data[0]) {
        r->val = mdiff_dataset_open(r->cfg.val_data);
        int c1, h1, w1, c2, h2, w2;
        mdiff_dataset_shape(r->ds, &c1, &h1, &w1);
        mdiff_dataset_shape(r->val, &c2, &h2, &w2);
        if (c1 != c2 || h1 != h2 || w1 != w2 || mdiff_dataset_is_images(r->ds) != mdiff_dataset_is_images(r->val))
            mdiff_user_error("--val-data %s has shape (%d,%d,%d), the training data (%d,%d,%d)",
                             r->cfg.val_data, c2, h2, w2, c1, h1, w1);
    }
    mdiff_schedule_init(&r->sched, r->cfg.diff.schedule, r->cfg.diff.timesteps);
    r->objective = mdiff_objective_from_name(r->cfg.diff.objective);
    /* the global batch split: a remainder goes to the first ranks */
    int64_t B = r->cfg.batch, P = d->size;
    r->B_local = (int)(B / P + (d->rank < B % P));
    r->g0 = d->rank * (B / P) + (d->rank < B % P ? d->rank : B % P);
    r->dim = mdiff_dataset_row_floats(r->ds);
    int max_batch = r->B_local > MDIFF_SAMPLE_MB ? r->B_local : MDIFF_SAMPLE_MB;
    r->model = mdiff_model_create(&r->cfg.model, max_batch);
    r->nparams = mdiff_model_num_params(r->model);
    alloc_buffers(r);
    r->threads = mdiff_rank_threads(d->local_size, &r->threads_from_env);
    mdiff_set_threads(mdiff_blas_threads()); /* ops' OpenMP budget = the BLAS budget */
    print_startup(r);
    if (ck) {
        mdiff_ckpt_read_tensors(ck, r->model, "params", r->params);
        mdiff_ckpt_read_tensors(ck, r->model, "ema", r->ema);
        mdiff_ckpt_read_tensors(ck, r->model, "adam/m", r->adam_m);
        mdiff_ckpt_read_tensors(ck, r->model, "adam/v", r->adam_v);
        r->step = r->last_ckpt_step = mdiff_ckpt_step(ck);
        r->updates = mdiff_ckpt_ema_updates(ck);
        r->nonfinite_total = mdiff_ckpt_nonfinite(ck);
        if (mdiff_ckpt_fingerprint(ck) != mdiff_dataset_fingerprint(r->ds))
            mdiff_warn("data fingerprint %08x differs from the checkpoint's %08x: training continues "
                       "on different data", (unsigned)mdiff_dataset_fingerprint(r->ds),
                       (unsigned)mdiff_ckpt_fingerprint(ck));
    } else if (d->rank == 0) {
        mdiff_model_init(r->model, r->params, r->cfg.seed);
        memcpy(r->ema, r->params, (size_t)r->nparams * sizeof(float));
    }
    /* rank 0's state is the truth: every rank starts from identical bits */
    mdiff_dist_bcast_f32(d, r->params, r->nparams, 0);
    mdiff_dist_bcast_f32(d, r->ema, r->nparams, 0);
    mdiff_dist_bcast_f32(d, r->adam_m, r->nparams, 0);
    mdiff_dist_bcast_f32(d, r->adam_v, r->nparams, 0);
    r->loader = mdiff_loader_create(r->ds, d->rank, d->size, r->cfg.seed, r->cfg.flip, 0);
    if (ck) {
        if (mdiff_ckpt_world_size(ck) == d->size) {
            int64_t *ep = mdiff_malloc((size_t)d->size * 2 * sizeof(int64_t), "loader states");
            mdiff_ckpt_read_loader(ck, ep, ep + d->size);
            mdiff_loader_set_state(r->loader, ep[d->rank], ep[d->size + d->rank]);
            free(ep);
        } else {
            int64_t lo, hi;
            mdiff_loader_range(r->loader, &lo, &hi);
            int64_t seen = r->step * r->B_local, rows = hi - lo;
            mdiff_loader_set_state(r->loader, seen / rows, seen % rows);
            mdiff_warn("resuming a %d-rank checkpoint on %d ranks: model, EMA, optimizer and step are "
                       "exact; the data order is re-derived from the new sharding",
                       mdiff_ckpt_world_size(ck), d->size);
        }
        mdiff_log("resumed from %s at step %lld", resume, (long long)r->step);
        /* the last good checkpoint, named by failure messages until this run writes one */
        mdiff_strcpy(r->last_ckpt, sizeof r->last_ckpt, resume);
    }
    mdiff_ckpt_close(ck);
    mdiff_set_errors_collective(was);
    mdiff_optim_cfg_defaults(&r->ocfg);
    r->ocfg.lr = r->cfg.lr;
    r->ocfg.warmup = r->cfg.warmup;
    r->ocfg.weight_decay = r->cfg.weight_decay;
    r->ocfg.clip = r->cfg.clip;
    r->ocfg.ema = r->cfg.ema;
    mdiff_dist_setup_buckets(d, r->grads, r->nparams, r->cfg.bucket_mb,
                             strcmp(r->cfg.allreduce, "overlap") == 0);
    train_write_train_log(r, resume);
    train_prepare_metrics(r);
}

void train_free(run *r) {
    if (r->d->rank == 0) train_unlock_run_dir();
    mdiff_loader_free(r->loader);
    mdiff_dataset_close(r->ds);
    if (r->val) mdiff_dataset_close(r->val);
    mdiff_model_free(r->model);
    mdiff_schedule_free(&r->sched);
    mdiff_free_aligned(r->params);
    mdiff_free_aligned(r->grads);
    mdiff_free_aligned(r->adam_m);
    mdiff_free_aligned(r->adam_v);
    mdiff_free_aligned(r->ema);
    mdiff_free_aligned(r->x0);
    free(r->t_idx);
    free(r);
}
