/* train/loop: the training loop of DESIGN.md §3 — one step (data, noise and targets, forward,
 * backward with the overlapped allreduce, optimizer), then at their intervals the metrics,
 * the replica check, sample grids and checkpoints, and the stop on a signal or divergence.
 *
 * Control flow is identical on every rank: every decision that could differ (a signal, a failed
 * checkpoint write on rank 0) is reduced or broadcast before anyone acts on it, and no collective
 * is ever called inside a rank-0-only branch. */
#include <math.h>
#include <string.h>

#include "mdiff/ops.h"
#include "train_internal.h"

static void train_step(run *r) {
    const int B = r->B_local;
    const int64_t n = r->dim;
    uint64_t seed = r->cfg.seed;
    /* §3.1-2: this rank's rows of global batch `step`; t and noise keyed by the global index */
    mdiff_loader_next(r->loader, r->x0, NULL, B, (uint64_t)r->step, r->g0);
    mdiff_diffusion_make_batch(r->x_in, r->target, r->t_idx, r->t_net, r->x0, B, n, &r->sched,
                               r->objective, seed, (uint64_t)r->step, (uint64_t)r->g0);
    /* §3.3: forward; the loss is a mean over the global batch, hence 1 / global batch */
    mdiff_model_forward(r->model, r->out, r->params, r->x_in, r->t_net, B, 1, seed,
                        (uint64_t)r->step, r->g0);
    float scale = 1.0f / (float)r->cfg.batch;
    double loss = mdiff_mse_forward(r->per_sample, r->out, r->target, B, n, scale);
    memset(r->grads, 0, (size_t)r->nparams * sizeof(float));
    memset(r->dout, 0, (size_t)B * n * sizeof(float));
    mdiff_mse_backward(r->dout, r->out, r->target, B, n, scale);
    /* injected into the output gradient, so backward carries it into the gradients like a real
     * overflow (writing grads after backward would race with the overlapped allreduce buckets) */
    if (r->d->rank == 0 && train_fault_nonfinite(r->step)) r->dout[0] = NAN;
    /* §3.4: backward; each finished bucket's allreduce starts while backward goes on */
    mdiff_dist_grad_begin(r->d);
    mdiff_model_backward(r->model, r->grads, r->params, r->dout, B, mdiff_dist_grad_ready, r->d);
    mdiff_dist_grad_finish(r->d);
    /* §3.5: clip, AdamW, EMA. After the allreduce every rank holds the same gradient, hence the
     * same norm and the same decision below: no extra reduction is needed to agree on skipping. */
    double gnorm = mdiff_optim_step(r->params, r->adam_m, r->adam_v, r->ema, r->grads, r->nparams,
                                    &r->ocfg, r->updates);
    if (isfinite(gnorm)) {
        r->updates++;
        r->nonfinite_run = 0;
        r->m_gnorm += gnorm;
    } else {
        r->nonfinite_run++;
        r->nonfinite_total++;
        mdiff_warn("step %lld: non-finite gradient (norm %g), step skipped on every rank "
                   "(%lld in a row, %lld in total)", (long long)r->step + 1, gnorm,
                   (long long)r->nonfinite_run, (long long)r->nonfinite_total);
    }
    /* §3.6: this interval's local sums, reduced by train_log_metrics */
    r->m_loss += loss;
    for (int b = 0; b < B; b++) {
        int q = (int)((int64_t)(r->t_idx[b] - 1) * 4 / r->cfg.diff.timesteps);
        r->m_q[q] += r->per_sample[b];
        r->m_qn[q] += 1;
    }
    r->m_steps++;
    r->step++;
}

int mdiff_train_run(const mdiff_config *cfg, const mdiff_given *given, mdiff_dist *d,
                    const char *command_line) {
    run *r = mdiff_calloc(1, sizeof *r, "run state");
    r->cfg = *cfg;
    r->d = d;
    r->command_line = command_line;
    r->last_ckpt_step = -1;
    train_setup(r, given);
    r->t_start = r->m_t0 = mdiff_now();
    r->step_start = r->step;
    d->wait_seconds = d->comm_seconds = 0; /* allreduce time of this run only */
    int code = MDIFF_EXIT_OK;
    while (r->step < r->cfg.steps) {
        train_step(r);
        if (r->nonfinite_run >= r->cfg.max_nonfinite)
            mdiff_user_error_all("training diverged: %lld consecutive non-finite steps ending at step "
                                 "%lld; stopping without a checkpoint (the last good one, %s, is "
                                 "untouched): lower --lr or --clip",
                                 (long long)r->nonfinite_run, (long long)r->step,
                                 r->last_ckpt[0] ? r->last_ckpt : "none yet");
        /* a signal on any rank stops every rank, after a checkpoint (§3.6-8 at their intervals) */
        int stop = mdiff_dist_or(d, mdiff_stop_requested);
        int last = r->step == r->cfg.steps;
        int ckpt_due = last || stop || r->step % r->cfg.ckpt_every == 0;
        double val = NAN;
        if (ckpt_due && r->val) val = train_validation_loss(r);
        if (r->step % r->cfg.log_every == 0 || last || stop) train_log_metrics(r, val);
        if (r->cfg.check_every > 0 && r->step % r->cfg.check_every == 0) train_check_replicas(r);
        if (r->cfg.sample_every > 0 && r->step % r->cfg.sample_every == 0) train_write_grid(r);
        if (ckpt_due && train_write_checkpoint(r) != 0 && (last || stop))
            mdiff_user_error_all("the checkpoint at step %lld could not be written (see the warning "
                                 "above); the previous one is intact: %s", (long long)r->step,
                                 r->last_ckpt[0] ? r->last_ckpt : "none");
        if (stop) {
            mdiff_log("stopped by a signal at step %lld after writing %s (exit 3: requeue and "
                      "--resume auto to continue)", (long long)r->step, r->last_ckpt);
            code = MDIFF_EXIT_SIGNAL;
            break;
        }
    }
    if (code == MDIFF_EXIT_OK) {
        /* a checkpoint at the last step; a run resumed at its end has nothing to write */
        if (r->last_ckpt_step != r->step) train_write_checkpoint(r);
        mdiff_log("done: %lld steps, %lld skipped as non-finite, %.1fs", (long long)r->step,
                  (long long)r->nonfinite_total, mdiff_now() - r->t_start);
        /* collective: every rank reaches this line */
        double c[2] = {r->wait_total + r->d->wait_seconds, r->comm_total + r->d->comm_seconds};
        mdiff_dist_sum_f64(r->d, c, 2);
        double wall = mdiff_now() - r->t_start;
        if (r->d->size > 1)
            mdiff_log("allreduce (%s, %g MB buckets): waiting %.2fs of %.2fs per rank (%.1f%%), "
                      "inside MPI %.2fs (%.1f%%), means over %d ranks", r->cfg.allreduce,
                      r->cfg.bucket_mb, c[0] / r->d->size, wall, 100.0 * c[0] / r->d->size / wall,
                      c[1] / r->d->size, 100.0 * c[1] / r->d->size / wall, r->d->size);
    }
    train_free(r);
    return code;
}
