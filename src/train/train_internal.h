/* train_internal: the state of one training run and the functions the files of src/train/ share
 * (not public API). loop.c drives the run (DESIGN.md §3); setup.c builds and frees it; run_dir.c
 * writes the run directory (train.log, checkpoints); run_lock.c keeps one job per run directory; metrics.c reduces, prints and records the
 * metrics; evaluate.c runs validation, sample grids and the replica check; faults.c owns signals
 * and the test fault hooks. Every file keeps loop.c's rule: control flow identical on every rank,
 * no collective inside a rank-0-only branch. */
#ifndef MDIFF_TRAIN_INTERNAL_H
#define MDIFF_TRAIN_INTERNAL_H

#include <stdint.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"
#include "mdiff/diffusion.h"
#include "mdiff/dist.h"
#include "mdiff/model.h"
#include "mdiff/optim.h"
#include "mdiff/train.h"

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
    int threads;                    /* this rank's thread budget (mdiff_rank_threads) */
    int threads_from_env;           /* 1: OPENBLAS_NUM_THREADS decided it */
} run;

/* setup.c: opens the data, merges a resumed checkpoint's config, builds model, buffers and state
 * identical on every rank, prepares the run directory and its logs. Collective. */
void train_setup(run *r, const mdiff_given *given);
/* Frees what train_setup made, and r. */
void train_free(run *r);

/* run_dir.c */
/* Rank 0 creates the run directory, locks it for this job and proves it writable; every rank
 * learns the outcome (a refusal is one line and exit 1 on every rank). Collective. */
void train_prepare_run_dir(run *r);
/* Rank 0 appends this start's provenance and configuration to RUN_DIR/train.log. */
void train_write_train_log(run *r, const char *resumed_from);
/* Every rank gathers the loader states; rank 0 writes; every rank learns whether it worked
 * (0 or -1). Collective. */
int train_write_checkpoint(run *r);

/* run_lock.c (rank 0 only, no MPI) */
/* Takes RUN_DIR/.lock for this process and writes its holder record: 0; or -1 with one line in
 * msg naming the holder and the fix. Released by train_unlock_run_dir or by any exit. */
int train_lock_run_dir(const char *dir, char *msg, size_t cap);
/* Removes the lock file and drops the lock (no-op when not held). */
void train_unlock_run_dir(void);

/* metrics.c */
/* metrics.csv on rank 0: created with a header, or trimmed to the rows up to the start step. */
void train_prepare_metrics(run *r);
/* Reduces the interval's metrics over ranks, prints the log line, appends to metrics.csv and
 * starts a new interval. val_loss: NAN when not measured. Collective. */
void train_log_metrics(run *r, double val_loss);

/* evaluate.c (all collective) */
/* Loss on a fixed held-out set with fixed t and noise (purpose VAL); NAN without --val-data. */
double train_validation_loss(run *r);
/* Samples the fixed-seed grid with the EMA weights; rank 0 writes RUN_DIR/samples-STEP.png. */
void train_write_grid(run *r);
/* Parameters must be bit-identical on every rank: a user error naming the ranks if not. */
void train_check_replicas(run *r);

/* faults.c: test fault hooks from environment variables (0 when unset) */
/* MDIFF_FAULT_NONFINITE="from[:to]": 1 when this step's gradients are to be made NaN. */
int train_fault_nonfinite(int64_t step);
/* MDIFF_FAULT_DIVERGE="step:rank": 1 when this rank perturbs its parameters at this step. */
int train_fault_diverge(int64_t step, int rank);

#endif
