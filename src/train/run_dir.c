/* train/run_dir: the run directory and what the run writes into it (metrics.csv aside, see
 * metrics.c): creating, locking (run_lock.c) and probing the directory, clearing temporaries a
 * killed run left behind,
 * train.log (provenance and configuration of every start) and the checkpoints. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdiff/ckpt.h"
#include "train_internal.h"

void train_prepare_run_dir(run *r) {
    char msg[MDIFF_PATH_MAX + 512] = "";
    if (r->d->rank == 0) {
        char path[MDIFF_PATH_MAX];
        mdiff_strcpy(path, sizeof path, r->cfg.run_dir);
        for (char *p = path + 1; *p && !msg[0]; p++) {
            if (*p != '/') continue;
            *p = '\0';
            if (mkdir(path, 0775) != 0 && errno != EEXIST)
                snprintf(msg, sizeof msg, "cannot create %s: %s (choose a writable --run-dir)", path,
                         strerror(errno));
            *p = '/';
        }
        if (!msg[0] && mkdir(path, 0775) != 0 && errno != EEXIST)
            snprintf(msg, sizeof msg, "cannot create run dir %s: %s (choose a writable --run-dir)",
                     path, strerror(errno));
        /* before anything is written or cleaned here: the temporaries may be another job's */
        if (!msg[0]) train_lock_run_dir(path, msg, sizeof msg);
        if (!msg[0]) {
            char probe[MDIFF_PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s/.write-test.%ld", path, (long)getpid());
            FILE *f = fopen(probe, "w");
            if (!f || fclose(f) != 0)
                snprintf(msg, sizeof msg, "run dir %s is not writable: %s (choose a writable "
                         "--run-dir)", path, strerror(errno));
            unlink(probe);
        }
    }
    mdiff_dist_bcast_bytes(r->d, msg, sizeof msg, 0);
    if (msg[0]) mdiff_user_error_all("%s", msg);
    if (r->d->rank == 0) mdiff_ckpt_clean_tmp(r->cfg.run_dir);
}

void train_write_train_log(run *r, const char *resumed_from) {
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

int train_write_checkpoint(run *r) {
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
