/* train: the training loop (DESIGN.md §3) for P ranks — set-up and resume, one step, metrics,
 * checkpoints, sample grids, validation, signals and non-finite steps.
 *
 * Control flow is identical on every rank: every decision that could differ (a signal, a failed
 * checkpoint write on rank 0) is reduced or broadcast before anyone acts on it, and no collective
 * is ever called inside a rank-0-only branch. */
#include "mdiff/train.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdiff/ckpt.h"
#include "mdiff/common.h"
#include "mdiff/data.h"
#include "mdiff/diffusion.h"
#include "mdiff/image.h"
#include "mdiff/model.h"
#include "mdiff/ops.h"
#include "mdiff/optim.h"
#include "mdiff/sample.h"

#define GRID_IMAGES 64
#define GRID_POINTS 1024
#define GRID_STEPS 50
#define VAL_MAX_ROWS 512

volatile int mdiff_stop_requested = 0;

static void on_signal(int sig) {
    if (sig == SIGINT && mdiff_stop_requested) {
        static const char msg[] = "mdiff-train: second SIGINT: aborting now without a checkpoint\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    mdiff_stop_requested = 1;
}

void mdiff_train_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
}

typedef struct {
    mdiff_config cfg;
    mdiff_dist *d;
    const char *command_line;
    mdiff_dataset *ds, *val;
    mdiff_loader *loader;
    mdiff_model *model;
    int64_t nparams, dim;
    /* one allocation per role */
    float *params, *grads, *adam_m, *adam_v, *ema;
    float *x0, *x_in, *target, *out, *dout, *per_sample, *t_net;
    int *t_idx;
    int B_local;
    int64_t g0;
    mdiff_schedule sched;
    int objective;
    mdiff_optim_cfg ocfg;
    int64_t step, updates, nonfinite_total, nonfinite_run, last_ckpt_step;
    char last_ckpt[MDIFF_PATH_MAX + 32];
    /* metrics of the current log interval (local sums) */
    double m_loss, m_q[4], m_qn[4], m_gnorm;
    int64_t m_steps;
    double m_t0, t_start;
    double wait_total, comm_total;  /* allreduce time over the run (seconds, this rank) */
    int64_t step_start;
    int threads;
} run;

/* ---- set-up ----------------------------------------------------------------------------------- */

static int blas_threads(const mdiff_dist *d) {
    if (getenv("OPENBLAS_NUM_THREADS")) return -1; /* the user's choice stands */
    return mdiff_dist_default_threads(d);
}

/* Rank 0 creates the run directory and proves it writable; every rank learns the outcome. */
static void prepare_run_dir(run *r) {
    char msg[MDIFF_PATH_MAX + 512] = "";
    if (r->d->rank == 0) {
        char path[MDIFF_PATH_MAX];
        mdiff_strcpy(path, sizeof path, r->cfg.run_dir);
        for (char *p = path + 1; *p && !msg[0]; p++) {
            if (*p != '/') continue;
            *p = '\0';
            if (mkdir(path, 0775) != 0 && errno != EEXIST)
                snprintf(msg, sizeof msg, "cannot create %s: %s", path, strerror(errno));
            *p = '/';
        }
        if (!msg[0] && mkdir(path, 0775) != 0 && errno != EEXIST)
            snprintf(msg, sizeof msg, "cannot create run dir %s: %s", path, strerror(errno));
        if (!msg[0]) {
            char probe[MDIFF_PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s/.write-test.%ld", path, (long)getpid());
            FILE *f = fopen(probe, "w");
            if (!f || fclose(f) != 0)
                snprintf(msg, sizeof msg, "run dir %s is not writable: %s", path, strerror(errno));
            unlink(probe);
        }
    }
    mdiff_dist_bcast_bytes(r->d, msg, sizeof msg, 0);
    if (msg[0]) mdiff_user_error_all("%s (choose a writable --run-dir)", msg);
    if (r->d->rank == 0) mdiff_ckpt_clean_tmp(r->cfg.run_dir);
}

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
    if (r->threads > 0) snprintf(threads, sizeof threads, "%d", r->threads);
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

static void write_train_log(run *r, const char *resumed_from) {
    if (r->d->rank != 0) return;
    char path[MDIFF_PATH_MAX + 32], libs[1024];
    snprintf(path, sizeof path, "%s/train.log", r->cfg.run_dir);
    FILE *f = fopen(path, "a");
    if (!f) {
        mdiff_warn("cannot append to %s: %s", path, strerror(errno));
        return;
    }
    mdiff_library_versions(libs, sizeof libs);
    fprintf(f, "=== mdiff-train %s, git %s\ncommand: %s\nworld size: %d\nlibraries: %s\n",
            MDIFF_VERSION, mdiff_git_hash(), r->command_line, r->d->size, libs);
    fprintf(f, "resumed from: %s\nstart step: %lld\nparameters: %lld\nconfiguration:\n",
            resumed_from[0] ? resumed_from : "(fresh start)", (long long)r->step,
            (long long)r->nparams);
    mdiff_config_print(&r->cfg, f);
    fclose(f);
}

/* metrics.csv: created with a header; on resume rows after the checkpoint's step are dropped
 * (they belong to the part of the run that the checkpoint does not contain). */
static void prepare_metrics(run *r) {
    if (r->d->rank != 0) return;
    char path[MDIFF_PATH_MAX + 32], tmp[MDIFF_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.csv", r->cfg.run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    static const char header[] =
        "step,epoch,loss,loss_q1,loss_q2,loss_q3,loss_q4,lr,grad_norm,images_per_s,elapsed_s,val_loss\n";
    FILE *in = fopen(path, "r");
    FILE *out = fopen(tmp, "w");
    if (!out) {
        if (in) fclose(in);
        mdiff_warn("cannot write %s: %s", path, strerror(errno));
        return;
    }
    fputs(header, out);
    if (in) {
        char line[1024];
        while (fgets(line, sizeof line, in)) {
            long long s;
            if (sscanf(line, "%lld,", &s) == 1 && s <= r->step) fputs(line, out);
        }
        fclose(in);
    }
    fclose(out);
    if (rename(tmp, path) != 0) unlink(tmp);
}

static void append_metrics(run *r, const char *row) {
    if (r->d->rank != 0) return;
    char path[MDIFF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.csv", r->cfg.run_dir);
    FILE *f = fopen(path, "a");
    if (!f) return;
    fputs(row, f);
    fclose(f);
}

/* ---- one step --------------------------------------------------------------------------------- */

static int inject_nonfinite(int64_t step) {
    /* Fault injection for tests: MDIFF_FAULT_NONFINITE="from[:to]" makes those steps' gradients
     * NaN (rank 0 injects; the allreduce spreads it, as a real overflow would). */
    const char *s = getenv("MDIFF_FAULT_NONFINITE");
    if (!s) return 0;
    long long a = -1, b = -1;
    int n = sscanf(s, "%lld:%lld", &a, &b);
    if (n == 1) b = a;
    return n >= 1 && step >= a && step <= b;
}

static void train_step(run *r) {
    const int B = r->B_local;
    const int64_t n = r->dim;
    uint64_t seed = r->cfg.seed;
    mdiff_loader_next(r->loader, r->x0, NULL, B, (uint64_t)r->step, r->g0);
    mdiff_diffusion_make_batch(r->x_in, r->target, r->t_idx, r->t_net, r->x0, B, n, &r->sched,
                               r->objective, seed, (uint64_t)r->step, (uint64_t)r->g0);
    mdiff_model_forward(r->model, r->out, r->params, r->x_in, r->t_net, B, 1, seed,
                        (uint64_t)r->step, r->g0);
    float scale = 1.0f / (float)r->cfg.batch;
    double loss = mdiff_mse_forward(r->per_sample, r->out, r->target, B, n, scale);
    memset(r->grads, 0, (size_t)r->nparams * sizeof(float));
    memset(r->dout, 0, (size_t)B * n * sizeof(float));
    mdiff_mse_backward(r->dout, r->out, r->target, B, n, scale);
    /* injected into the output gradient, so backward carries it into the gradients like a real
     * overflow (writing grads after backward would race with the overlapped allreduce buckets) */
    if (r->d->rank == 0 && inject_nonfinite(r->step)) r->dout[0] = NAN;
    mdiff_dist_grad_begin(r->d);
    mdiff_model_backward(r->model, r->grads, r->params, r->dout, B, mdiff_dist_grad_ready, r->d);
    mdiff_dist_grad_finish(r->d);
    /* After the allreduce every rank holds the same gradient, hence the same norm and the same
     * decision below: no extra reduction is needed to agree on skipping. */
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
    r->m_loss += loss;
    for (int b = 0; b < B; b++) {
        int q = (int)((int64_t)(r->t_idx[b] - 1) * 4 / r->cfg.diff.timesteps);
        r->m_q[q] += r->per_sample[b];
        r->m_qn[q] += 1;
    }
    r->m_steps++;
    r->step++;
}

static void fmt_duration(char *buf, size_t cap, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

static void log_metrics(run *r, double val_loss) {
    /* loss sum, quartile sums and counts, from every rank */
    /* plus the time blocked waiting for gradient allreduces, and inside MPI for them */
    double v[11] = {r->m_loss, r->m_q[0], r->m_q[1], r->m_q[2], r->m_q[3],
                    r->m_qn[0], r->m_qn[1], r->m_qn[2], r->m_qn[3],
                    r->d->wait_seconds, r->d->comm_seconds};
    r->wait_total += r->d->wait_seconds;
    r->comm_total += r->d->comm_seconds;
    r->d->wait_seconds = r->d->comm_seconds = 0;
    mdiff_dist_sum_f64(r->d, v, 11);
    double now = mdiff_now();
    int64_t steps = r->m_steps > 0 ? r->m_steps : 1;
    double loss = v[0] / (double)steps;
    double q[4];
    for (int i = 0; i < 4; i++) q[i] = v[5 + i] > 0 ? v[1 + i] / v[5 + i] : NAN;
    double ips = (double)r->m_steps * (double)r->cfg.batch / (now - r->m_t0);
    double gn = r->m_gnorm / (double)steps;
    double lr = mdiff_lr_at(r->cfg.lr, r->cfg.warmup, r->updates > 0 ? r->updates - 1 : 0);
    int64_t epoch = r->step * r->cfg.batch / mdiff_dataset_rows(r->ds);
    double elapsed = now - r->t_start;
    double rate = (double)(r->step - r->step_start) / elapsed;
    char el[32], eta[32];
    fmt_duration(el, sizeof el, elapsed);
    fmt_duration(eta, sizeof eta, rate > 0 ? (double)(r->cfg.steps - r->step) / rate : 0);
    char valtxt[48] = "", commtxt[64] = "";
    if (!isnan(val_loss)) snprintf(valtxt, sizeof valtxt, " | val %.5f", val_loss);
    /* share of wall time blocked on the gradient allreduce (mean over ranks) */
    if (r->d->size > 1)
        snprintf(commtxt, sizeof commtxt, " | allreduce wait %.1f%%",
                 100.0 * v[9] / r->d->size / (now - r->m_t0));
    mdiff_log("step %lld/%lld | epoch %lld | loss %.5f | by t-quartile %.4f %.4f %.4f %.4f | lr %.2e | "
              "gnorm %.3f | %.1f img/s%s | %s elapsed | eta %s%s",
              (long long)r->step, (long long)r->cfg.steps, (long long)epoch, loss, q[0], q[1], q[2],
              q[3], lr, gn, ips, commtxt, el, eta, valtxt);
    char row[512];
    char valcol[32] = "";
    if (!isnan(val_loss)) snprintf(valcol, sizeof valcol, "%.6g", val_loss);
    snprintf(row, sizeof row, "%lld,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4g,%.2f,%s\n",
             (long long)r->step, (long long)epoch, loss, q[0], q[1], q[2], q[3], lr, gn, ips,
             elapsed, valcol);
    append_metrics(r, row);
    r->m_loss = r->m_gnorm = 0;
    memset(r->m_q, 0, sizeof r->m_q);
    memset(r->m_qn, 0, sizeof r->m_qn);
    r->m_steps = 0;
    r->m_t0 = now;
}

/* ---- checkpoints, validation, grids ------------------------------------------------------------ */

/* Every rank gathers the loader states; rank 0 writes; every rank learns whether it worked. */
static int write_checkpoint(run *r) {
    int P = r->d->size;
    int64_t *ep = mdiff_malloc((size_t)P * 2 * sizeof(int64_t), "loader states");
    int64_t *cur = ep + P, my_ep, my_cur;
    mdiff_loader_get_state(r->loader, &my_ep, &my_cur);
    mdiff_dist_allgather_i64(r->d, my_ep, ep);
    mdiff_dist_allgather_i64(r->d, my_cur, cur);
    int rc = 0;
    if (r->d->rank == 0) {
        mdiff_ckpt_save s = {&r->cfg, r->step, P, mdiff_dataset_fingerprint(r->ds), r->command_line,
                             r->model, r->params, r->ema, r->adam_m, r->adam_v, ep, cur,
                             r->nonfinite_total, r->updates};
        double t0 = mdiff_now();
        rc = mdiff_ckpt_write(r->cfg.run_dir, &s, r->cfg.keep, r->last_ckpt, sizeof r->last_ckpt);
        if (rc == 0) mdiff_log("checkpoint %s (%.1fs)", r->last_ckpt, mdiff_now() - t0);
    }
    free(ep);
    int failed = mdiff_dist_or(r->d, rc != 0);
    if (!failed) r->last_ckpt_step = r->step;
    return failed ? -1 : 0;
}

/* Loss on a fixed held-out set with fixed t and noise (purpose VAL), mean over its rows. */
static double validation_loss(run *r) {
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

static void write_grid(run *r) {
    int images = mdiff_dataset_is_images(r->ds);
    int64_t n = images ? GRID_IMAGES : GRID_POINTS;
    mdiff_sample_opts o = {r->model, r->ema, &r->sched, r->objective, MDIFF_SAMPLER_DDIM,
                           GRID_STEPS < r->cfg.diff.timesteps ? GRID_STEPS : r->cfg.diff.timesteps,
                           0.0, images, r->cfg.seed, 0, 0, 0 /* threads: this rank's BLAS count */};
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

/* ---- the run ---------------------------------------------------------------------------------- */

static void setup(run *r, const mdiff_given *given) {
    mdiff_dist *d = r->d;
    int was = mdiff_set_errors_collective(1); /* every rank sees the same inputs here */
    prepare_run_dir(r);
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
    r->threads = blas_threads(d);
    if (r->threads > 0) openblas_set_num_threads(r->threads);
    mdiff_set_threads(openblas_get_num_threads()); /* ops' OpenMP budget = the BLAS budget */
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
    write_train_log(r, resume);
    prepare_metrics(r);
}

static void check_replicas(run *r) {
    /* Parameters must be bit-identical on every rank: compare a checksum of their bytes with
     * rank 0's. Fault injection for tests: MDIFF_FAULT_DIVERGE="step:rank" perturbs that rank's
     * parameters just before the check at that step. */
    const char *fault = getenv("MDIFF_FAULT_DIVERGE");
    long long fs = -1, fr = -1;
    if (fault && sscanf(fault, "%lld:%lld", &fs, &fr) == 2 && fs == r->step && fr == r->d->rank)
        r->params[0] += 1.0f;
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

int mdiff_train_run(const mdiff_config *cfg, const mdiff_given *given, mdiff_dist *d,
                    const char *command_line) {
    run *r = mdiff_calloc(1, sizeof *r, "run state");
    r->cfg = *cfg;
    r->d = d;
    r->command_line = command_line;
    r->last_ckpt_step = -1;
    setup(r, given);
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
        int stop = mdiff_dist_or(d, mdiff_stop_requested);
        int last = r->step == r->cfg.steps;
        int ckpt_due = last || stop || r->step % r->cfg.ckpt_every == 0;
        double val = NAN;
        if (ckpt_due && r->val) val = validation_loss(r);
        if (r->step % r->cfg.log_every == 0 || last || stop) log_metrics(r, val);
        if (r->cfg.check_every > 0 && r->step % r->cfg.check_every == 0) check_replicas(r);
        if (r->cfg.sample_every > 0 && r->step % r->cfg.sample_every == 0) write_grid(r);
        if (ckpt_due && write_checkpoint(r) != 0 && (last || stop))
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
        if (r->last_ckpt_step != r->step) write_checkpoint(r); /* resumed at the end: nothing to do */
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
    return code;
}
