/* MPI tests of data parallelism (issue 5), run by tests/run.sh under mpirun -np 2 and -np 3:
 *  - DDP equivalence: the allreduced gradient of one step (model + MSE + dist buckets) equals the
 *    gradient one process computes on the whole global batch (the ranks' inputs gathered to every
 *    rank), for a small U-Net (attention, dropout) and the MLP, overlapping and blocking
 *    allreduce, bucket sizes from a few dozen floats (hundreds of buckets in flight) to one
 *    bucket, and global batches that P does and does not divide;
 *  - after N optimizer steps every rank holds bit-identical parameters, moments and EMA;
 *  - mdiff_train_run on a toy set with --check-every 1 completes (its replica check would stop
 *    the job on any divergence) and writes its final checkpoint.
 * Every rank runs every test. Collectives all happen before any assertion, and assertions test
 * values reduced over all ranks, so a failure fails on every rank alike and nothing hangs; the
 * exit status is non-zero if any rank failed. CK_FORK=no (no fork after MPI_Init). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdiff/ckpt.h"
#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"
#include "mdiff/diffusion.h"
#include "mdiff/dist.h"
#include "mdiff/model.h"
#include "mdiff/ops.h"
#include "mdiff/optim.h"
#include "mdiff/rng.h"
#include "mdiff/train.h"

static mdiff_dist D;

#define PURPOSE_TEST_DATA 1000u  /* test-only Philox purposes (outside the library's) */
#define PURPOSE_TEST_PERTURB 1001u

static mdiff_model_cfg small_unet(void) {
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_model_cfg m = c.model;
    mdiff_strcpy(m.arch, sizeof m.arch, "unet");
    m.in_ch = 1, m.height = m.width = 8;
    m.ch = 8, m.n_levels = 2, m.mult[0] = 1, m.mult[1] = 2, m.nres = 1;
    m.groups = 2, m.n_attn = 1, m.attn_res[0] = 4, m.heads = 2;
    m.dropout = 0.1f; /* masks are keyed by global sample: must not depend on the split */
    return m;
}

static mdiff_model_cfg small_mlp(void) {
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_model_cfg m = c.model;
    mdiff_strcpy(m.arch, sizeof m.arch, "mlp");
    m.in_ch = 2, m.height = m.width = 1;
    m.mlp_width = 32, m.mlp_depth = 2;
    return m;
}

/* Written independently of src/train/: rank r gets B/P samples, one more for r < B%P, in rank order. */
static void split(int64_t B, int P, int r, int *b, int64_t *g0) {
    *b = (int)(B / P + (r < B % P));
    *g0 = 0;
    for (int q = 0; q < r; q++) *g0 += B / P + (q < B % P);
}

/* Parameters: the model's init plus N(0, 0.05) everywhere. The init zeroes every residual
 * branch's last conv and the output conv, which would leave most gradients exactly 0 and the
 * test blind to them; perturbed, every tensor gets a non-zero gradient. */
static void make_params(const mdiff_model *m, float *p, uint64_t seed) {
    int64_t n = mdiff_model_num_params(m);
    mdiff_model_init(m, p, seed);
    float *z = mdiff_malloc((size_t)n * sizeof(float), "perturbation");
    mdiff_rng_fill_normal(z, n, seed, PURPOSE_TEST_PERTURB, 0, 0);
    for (int64_t i = 0; i < n; i++) p[i] += 0.05f * z[i];
    free(z);
}

/* Clean samples for global indices [g0, g0+b): uniform in [-1, 1], a function of (step, g) only. */
static void make_x0(float *x0, int b, int64_t n, uint64_t step, int64_t g0) {
    for (int j = 0; j < b; j++) {
        mdiff_rng_fill_uniform(x0 + (int64_t)j * n, n, 7, PURPOSE_TEST_DATA, step, (uint64_t)(g0 + j));
        for (int64_t i = 0; i < n; i++) x0[(int64_t)j * n + i] = 2.0f * x0[(int64_t)j * n + i] - 1.0f;
    }
}

/* Gathers each rank's (b_r, n) block to every rank, in rank order: (B, n). */
static void allgather_rows(const float *mine, int b, int64_t n, float *all, int64_t B) {
    int P = D.size;
    int *cnt = mdiff_malloc((size_t)P * sizeof(int), "counts"), *disp = mdiff_malloc((size_t)P * sizeof(int), "displs");
    for (int r = 0; r < P; r++) {
        int br;
        int64_t g0;
        split(B, P, r, &br, &g0);
        cnt[r] = (int)(br * n);
        disp[r] = (int)(g0 * n);
    }
    MDIFF_MPI(MPI_Allgatherv(mine, (int)(b * n), MPI_FLOAT, all, cnt, disp, MPI_FLOAT, MPI_COMM_WORLD));
    free(cnt);
    free(disp);
}

static double max_over_ranks(double v) {
    MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return v;
}

/* 1 when the n floats at v are bit-identical on every rank. */
static int identical_on_all_ranks(const float *v, int64_t n) {
    double c = (double)mdiff_crc32(0, v, (size_t)n * sizeof(float));
    double hi = max_over_ranks(c), lo = -max_over_ranks(-c);
    return hi == lo;
}

typedef struct {
    double max_rel_err;    /* max over tensors of max|g - ref| / max|ref| */
    double min_ref_scale;  /* min over tensors of max|ref| (> 0: every tensor is exercised) */
    double loss_rel_err;
    int identical;         /* the allreduced gradient is bit-identical on every rank */
    int inputs_keyed;      /* the ranks' noised inputs equal the whole batch made on one process */
    int nbuckets;
} ddp_result;

/* One step on the rank's share of a global batch B, gradients summed by dist with the given
 * mode and bucket size, against the whole batch computed here on one process. */
static ddp_result ddp_step(mdiff_model_cfg cfg, int64_t B, int overlap, double bucket_mb) {
    const uint64_t seed = 11, step = 3;
    int b;
    int64_t g0;
    split(B, D.size, D.rank, &b, &g0);
    mdiff_model *m = mdiff_model_create(&cfg, (int)B);
    int64_t np = mdiff_model_num_params(m), n = mdiff_model_sample_numel(m);
    float *p = mdiff_alloc_aligned((size_t)np * sizeof(float), "params");
    float *g = mdiff_alloc_aligned((size_t)np * sizeof(float), "grads");
    float *gref = mdiff_alloc_aligned((size_t)np * sizeof(float), "reference grads");
    make_params(m, p, seed);
    mdiff_dist_bcast_f32(&D, p, np, 0);
    float *buf = mdiff_alloc_aligned((size_t)(B * n * 9 + 4 * B) * sizeof(float), "batch");
    float *x0 = buf, *x_in = x0 + B * n, *tgt = x_in + B * n, *out = tgt + B * n, *dout = out + B * n;
    float *X = dout + B * n, *T = X + B * n, *O = T + B * n, *DO = O + B * n;
    float *t_net = DO + B * n, *TN = t_net + B, *ps = TN + B, *PS = ps + B;
    int *t_idx = mdiff_calloc((size_t)B, sizeof(int), "t");
    mdiff_schedule sched;
    mdiff_schedule_init(&sched, "linear", 1000);

    /* this rank's share, as train_step makes it */
    make_x0(x0, b, n, step, g0);
    mdiff_diffusion_make_batch(x_in, tgt, t_idx, t_net, x0, b, n, &sched, MDIFF_OBJ_EPS, seed, step,
                               (uint64_t)g0);
    mdiff_model_forward(m, out, p, x_in, t_net, b, 1, seed, step, g0);
    float scale = 1.0f / (float)B;
    double loss = mdiff_mse_forward(ps, out, tgt, b, n, scale);
    memset(dout, 0, (size_t)(b * n) * sizeof(float));
    mdiff_mse_backward(dout, out, tgt, b, n, scale);
    mdiff_dist_setup_buckets(&D, g, np, bucket_mb, overlap);
    mdiff_dist_grad_begin(&D);
    mdiff_model_backward(m, g, p, dout, b, mdiff_dist_grad_ready, &D);
    mdiff_dist_grad_finish(&D);
    MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));

    /* the reference: every rank's inputs gathered, the whole batch in one forward/backward */
    allgather_rows(x_in, b, n, X, B);
    allgather_rows(tgt, b, n, T, B);
    allgather_rows(t_net, b, 1, TN, B);
    /* Noise and timesteps are keyed by (seed, step, global sample), not by rank: the whole batch
     * made here in one call must equal, bit for bit, what the ranks made of their slices. */
    make_x0(x0, (int)B, n, step, 0);
    int *t_all = mdiff_calloc((size_t)B, sizeof(int), "t");
    mdiff_diffusion_make_batch(O, DO, t_all, ps, x0, (int)B, n, &sched, MDIFF_OBJ_EPS, seed, step, 0);
    int keyed = !memcmp(O, X, (size_t)(B * n) * sizeof(float)) &&
                !memcmp(DO, T, (size_t)(B * n) * sizeof(float)) && !memcmp(ps, TN, (size_t)B * sizeof(float));
    free(t_all);
    mdiff_model_forward(m, O, p, X, TN, (int)B, 1, seed, step, 0);
    double loss_ref = mdiff_mse_forward(PS, O, T, (int)B, n, scale);
    memset(DO, 0, (size_t)(B * n) * sizeof(float));
    mdiff_mse_backward(DO, O, T, (int)B, n, scale);
    mdiff_model_backward(m, gref, p, DO, (int)B, NULL, NULL);

    ddp_result res = {.max_rel_err = 0, .min_ref_scale = INFINITY,
                      .loss_rel_err = fabs(loss - loss_ref) / fabs(loss_ref), .nbuckets = D.nbuckets};
    for (int i = 0; i < mdiff_model_num_tensors(m); i++) {
        const mdiff_param *t = mdiff_model_tensor(m, i);
        double emax = 0, rmax = 0;
        for (int64_t k = t->offset; k < t->offset + t->numel; k++) {
            double e = fabs((double)g[k] - gref[k]);
            emax = e > emax || isnan(e) ? e : emax;
            rmax = fabs(gref[k]) > rmax ? fabs(gref[k]) : rmax;
        }
        double rel = rmax > 0 ? emax / rmax : (emax > 0 ? INFINITY : 0);
        if (!(rel <= res.max_rel_err)) res.max_rel_err = rel;
        if (rmax < res.min_ref_scale) res.min_ref_scale = rmax;
    }
    res.identical = identical_on_all_ranks(g, np);
    res.inputs_keyed = -max_over_ranks(-(double)keyed) > 0;
    res.max_rel_err = max_over_ranks(res.max_rel_err);
    res.loss_rel_err = max_over_ranks(res.loss_rel_err);
    res.min_ref_scale = -max_over_ranks(-res.min_ref_scale);
    if (getenv("MDIFF_TEST_VERBOSE") && D.rank == 0)
        printf("ddp %s B=%lld %s bucket %g MB (%d buckets): max rel err %.3g, loss rel err %.3g, "
               "min tensor scale %.3g\n", cfg.arch, (long long)B, overlap ? "overlap" : "blocking",
               bucket_mb, D.nbuckets, res.max_rel_err, res.loss_rel_err, res.min_ref_scale);
    mdiff_schedule_free(&sched);
    free(t_idx);
    mdiff_free_aligned(buf);
    mdiff_free_aligned(gref);
    mdiff_free_aligned(g);
    mdiff_free_aligned(p);
    mdiff_model_free(m);
    return res;
}

/* Tolerance. Each gradient element is a float32 sum over the global batch (and, for convs, over
 * pixels); DDP sums per-rank partial sums and then across ranks, the reference sums in one GEMM
 * of another shape: the same terms rounded in another order. That rounding is of order
 * sqrt(terms) * 2^-24 ~ 1e-6 of the tensor's scale per layer, compounded through the ~20 layers
 * backward passes through; measured max here is 9e-6 (MDIFF_TEST_VERBOSE=1 prints it). 1e-4 of the
 * tensor's largest gradient is far above that and far below any real fault: a sample lost or
 * counted twice, a wrong 1/B on an uneven split, a bucket reduced twice or never, moves a tensor
 * by a sample's share, >= 1/B (here >= 1/11) of its scale. */
#define GRAD_REL_TOL 1e-4

static void check_ddp(mdiff_model_cfg cfg, int64_t B, int overlap, double bucket_mb, int min_buckets) {
    ddp_result r = ddp_step(cfg, B, overlap, bucket_mb);
    ck_assert_msg(r.max_rel_err <= GRAD_REL_TOL,
                  "%s B=%lld %s bucket %g MB: allreduced gradient differs from the single-process "
                  "one by %.3g of a tensor's scale (tolerance %g)", cfg.arch, (long long)B,
                  overlap ? "overlap" : "blocking", bucket_mb, r.max_rel_err, GRAD_REL_TOL);
    ck_assert_msg(r.min_ref_scale > 0, "a tensor has an all-zero reference gradient: test is blind to it");
    /* the loss is a sum of B per-sample means: same rounding argument, a few ulp of a double sum
     * of float terms */
    ck_assert_msg(r.loss_rel_err <= 1e-5, "summed loss differs from the global-batch loss by %.3g",
                  r.loss_rel_err);
    ck_assert_msg(r.identical, "the allreduced gradient is not bit-identical on every rank");
    ck_assert_msg(r.inputs_keyed, "noised inputs depend on the split: a rank's slice differs from the "
                                  "same samples made in one batch");
    ck_assert_msg(!overlap || r.nbuckets >= min_buckets, "expected >= %d buckets, got %d", min_buckets,
                  r.nbuckets);
}

/* Global batches: 11 is divisible by neither 2 nor 3 (uneven splits), 12 by both. */
START_TEST(ddp_unet_overlap_tiny_buckets) {
    /* 1e-4 MB = 26 floats: hundreds of buckets in flight during one backward */
    check_ddp(small_unet(), 11, 1, 1e-4, 200);
}
END_TEST
START_TEST(ddp_unet_overlap_small_buckets) { check_ddp(small_unet(), 12, 1, 0.01, 3); }
END_TEST
START_TEST(ddp_unet_overlap_one_bucket) { check_ddp(small_unet(), 11, 1, 4.0, 1); }
END_TEST
START_TEST(ddp_unet_blocking) { check_ddp(small_unet(), 11, 0, 4.0, 0); }
END_TEST
START_TEST(ddp_unet_batch_equal_ranks) { check_ddp(small_unet(), D.size, 1, 0.003, 2); }
END_TEST
START_TEST(ddp_mlp_overlap) { check_ddp(small_mlp(), 11, 1, 0.001, 3); }
END_TEST
START_TEST(ddp_mlp_blocking) { check_ddp(small_mlp(), 12, 0, 4.0, 0); }
END_TEST

/* N optimizer steps made of the library's pieces (as train_step): every rank must end with
 * bit-identical parameters, AdamW moments and EMA. */
static void run_steps(mdiff_model_cfg cfg, int64_t B, int overlap, double bucket_mb, int nsteps) {
    const uint64_t seed = 5;
    int b;
    int64_t g0;
    split(B, D.size, D.rank, &b, &g0);
    mdiff_model *m = mdiff_model_create(&cfg, b);
    int64_t np = mdiff_model_num_params(m), n = mdiff_model_sample_numel(m);
    float *st = mdiff_alloc_aligned((size_t)np * 5 * sizeof(float), "state");
    float *p = st, *g = st + np, *mm = st + 2 * np, *vv = st + 3 * np, *ema = st + 4 * np;
    make_params(m, p, seed);
    mdiff_dist_bcast_f32(&D, p, np, 0);
    memcpy(ema, p, (size_t)np * sizeof(float));
    float *buf = mdiff_alloc_aligned((size_t)(b * n * 5 + 2 * b) * sizeof(float), "batch");
    float *x0 = buf, *x_in = x0 + b * n, *tgt = x_in + b * n, *out = tgt + b * n, *dout = out + b * n;
    float *t_net = dout + b * n, *ps = t_net + b;
    int *t_idx = mdiff_calloc((size_t)b, sizeof(int), "t");
    mdiff_schedule sched;
    mdiff_schedule_init(&sched, "cosine", 100);
    mdiff_optim_cfg oc;
    mdiff_optim_cfg_defaults(&oc);
    oc.lr = 1e-2, oc.warmup = 2, oc.ema = 0.9;
    mdiff_dist_setup_buckets(&D, g, np, bucket_mb, overlap);
    double gn_first = 0;
    for (int s = 0; s < nsteps; s++) {
        make_x0(x0, b, n, (uint64_t)s, g0);
        mdiff_diffusion_make_batch(x_in, tgt, t_idx, t_net, x0, b, n, &sched, MDIFF_OBJ_EPS, seed,
                                   (uint64_t)s, (uint64_t)g0);
        mdiff_model_forward(m, out, p, x_in, t_net, b, 1, seed, (uint64_t)s, g0);
        mdiff_mse_forward(ps, out, tgt, b, n, 1.0f / (float)B);
        memset(g, 0, (size_t)np * sizeof(float));
        memset(dout, 0, (size_t)(b * n) * sizeof(float));
        mdiff_mse_backward(dout, out, tgt, b, n, 1.0f / (float)B);
        mdiff_dist_grad_begin(&D);
        mdiff_model_backward(m, g, p, dout, b, mdiff_dist_grad_ready, &D);
        mdiff_dist_grad_finish(&D);
        double gn = mdiff_optim_step(p, mm, vv, ema, g, np, &oc, s);
        if (s == 0) gn_first = gn;
    }
    int same_p = identical_on_all_ranks(p, np), same_m = identical_on_all_ranks(mm, np);
    int same_v = identical_on_all_ranks(vv, np), same_e = identical_on_all_ranks(ema, np);
    /* the run must have moved the parameters (else "identical" would prove nothing) */
    float *p0 = mdiff_alloc_aligned((size_t)np * sizeof(float), "initial params");
    make_params(m, p0, seed);
    double moved = 0;
    for (int64_t i = 0; i < np; i++) moved = fmax(moved, fabs((double)p[i] - p0[i]));
    mdiff_free_aligned(p0);
    ck_assert_msg(same_p && same_m && same_v && same_e,
                  "after %d steps (%s, bucket %g MB) ranks differ: params %s, adam m %s, adam v %s, "
                  "ema %s", nsteps, overlap ? "overlap" : "blocking", bucket_mb,
                  same_p ? "same" : "DIFFER", same_m ? "same" : "DIFFER", same_v ? "same" : "DIFFER",
                  same_e ? "same" : "DIFFER");
    ck_assert_msg(isfinite(gn_first) && gn_first > 0, "first gradient norm %g", gn_first);
    ck_assert_msg(moved > 1e-3, "parameters barely moved (max change %g)", moved);
    mdiff_schedule_free(&sched);
    free(t_idx);
    mdiff_free_aligned(buf);
    mdiff_free_aligned(st);
    mdiff_model_free(m);
}

START_TEST(steps_identical_unet_overlap) { run_steps(small_unet(), 11, 1, 1e-3, 6); }
END_TEST
START_TEST(steps_identical_unet_blocking) { run_steps(small_unet(), 11, 0, 4.0, 6); }
END_TEST
START_TEST(steps_identical_mlp_overlap) { run_steps(small_mlp(), 7, 1, 1e-3, 10); }
END_TEST

/* mdiff_train_run itself on a toy point set, with the replica checksum every step (a divergence
 * stops the job with exit 1, failing this suite), an uneven batch and tiny buckets. */
START_TEST(train_run_check_every_step) {
    char dir[256] = "";
    if (D.rank == 0) {
        mdiff_strcpy(dir, sizeof dir, "/tmp/mdiff_mpi_ddp.XXXXXX");
        if (!mkdtemp(dir)) dir[0] = '\0';
    }
    MDIFF_MPI(MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD));
    ck_assert_msg(dir[0], "mkdtemp failed");
    char data[300], run_dir[300];
    snprintf(data, sizeof data, "%s/moons.h5", dir);
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    if (D.rank == 0) {
        double scale[2];
        float *pts = mdiff_data_make_toy("moons", 500, 3, scale);
        mdiff_data_content ct = {0};
        ct.is_images = 0, ct.n = 500, ct.c = 2, ct.h = ct.w = 1, ct.data = pts, ct.kind = "moons";
        mdiff_data_write(data, 0, &ct);
        free(pts);
    }
    mdiff_dist_barrier(&D);
    mdiff_config cfg;
    mdiff_config_defaults(&cfg);
    mdiff_strcpy(cfg.data, sizeof cfg.data, data);
    mdiff_strcpy(cfg.run_dir, sizeof cfg.run_dir, run_dir);
    cfg.model.mlp_width = 32, cfg.model.mlp_depth = 2;
    cfg.diff.timesteps = 100;
    cfg.steps = 12, cfg.batch = 11, cfg.warmup = 0, cfg.lr = 1e-3;
    cfg.log_every = 4, cfg.ckpt_every = 6, cfg.sample_every = 0, cfg.check_every = 1;
    cfg.bucket_mb = 1e-3;
    mdiff_given given = {0};
    int code = mdiff_train_run(&cfg, &given, &D, "test_ddp");
    int64_t step = -1;
    int world = -1;
    if (D.rank == 0) {
        char latest[600];
        if (mdiff_ckpt_latest(run_dir, latest, sizeof latest)) {
            mdiff_ckpt *ck = mdiff_ckpt_open(latest);
            step = mdiff_ckpt_step(ck);
            world = mdiff_ckpt_world_size(ck);
            mdiff_ckpt_close(ck);
        }
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    MDIFF_MPI(MPI_Bcast(&step, 1, MPI_INT64_T, 0, MPI_COMM_WORLD));
    MDIFF_MPI(MPI_Bcast(&world, 1, MPI_INT, 0, MPI_COMM_WORLD));
    ck_assert_int_eq(code, MDIFF_EXIT_OK);
    ck_assert_int_eq(step, 12);
    ck_assert_int_eq(world, D.size);
}
END_TEST

static Suite *ddp_suite(void) {
    Suite *s = suite_create("ddp");
    TCase *eq = tcase_create("equivalence");
    tcase_set_timeout(eq, 60);
    tcase_add_test(eq, ddp_unet_overlap_tiny_buckets);
    tcase_add_test(eq, ddp_unet_overlap_small_buckets);
    tcase_add_test(eq, ddp_unet_overlap_one_bucket);
    tcase_add_test(eq, ddp_unet_blocking);
    tcase_add_test(eq, ddp_unet_batch_equal_ranks);
    tcase_add_test(eq, ddp_mlp_overlap);
    tcase_add_test(eq, ddp_mlp_blocking);
    suite_add_tcase(s, eq);
    TCase *st = tcase_create("replicas");
    tcase_set_timeout(st, 60);
    tcase_add_test(st, steps_identical_unet_overlap);
    tcase_add_test(st, steps_identical_unet_blocking);
    tcase_add_test(st, steps_identical_mlp_overlap);
    tcase_add_test(st, train_run_check_every_step);
    suite_add_tcase(s, st);
    return s;
}

int main(int argc, char **argv) {
    mdiff_set_progname("test_ddp");
    mdiff_h5_quiet();
    mdiff_dist_init(&D, &argc, &argv);
    /* No fork means Check's timeouts cannot fire: a hung collective must still end the job. */
    alarm(120);
    SRunner *sr = srunner_create(ddp_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, D.rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    if (failed && D.rank != 0) {
        TestResult **tr = srunner_failures(sr);
        for (int i = 0; i < failed; i++)
            fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", D.rank, tr_lfile(tr[i]), tr_lno(tr[i]),
                    tr_tcname(tr[i]), tr_msg(tr[i]));
        free(tr);
    }
    srunner_free(sr);
    MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    mdiff_dist_finalize(&D);
    return failed ? 1 : 0;
}
