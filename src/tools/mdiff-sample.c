/* mdiff-sample: images (or points) from a checkpoint alone, on one process or many (mpirun splits
 * the images; the output is byte-identical for any number of ranks). See --help. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdiff/ckpt.h"
#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"
#include "mdiff/diffusion.h"
#include "mdiff/dist.h"
#include "mdiff/image.h"
#include "mdiff/model.h"
#include "mdiff/sample.h"

#define TRAJ_FRAMES 10
#define TRAJ_ROWS 8

typedef struct {
    const char *ckpt;
    int64_t n;
    const char *sampler;
    int steps;            /* 0: default */
    double eta;
    uint64_t seed;
    int no_ema, no_clip;
    const char *png, *h5, *traj;
} sample_args;

static void usage(void) {
    printf("usage: [mpirun -np P] mdiff-sample CKPT.h5 [options]\n\n"
           "Generates samples from an mdiff checkpoint (its attributes hold the whole model config).\n\n"
           "options:\n"
           "  -n N               number of samples [64]\n"
           "  --sampler S        ddpm | ddim | dpm++2m [ddim]\n"
           "  --steps S          sampler steps, 1..T [50; ddpm with S < T respaces]\n"
           "  --eta E            DDIM noise, >= 0 [0]\n"
           "  --seed S           sample i depends only on (seed, i) [0]\n"
           "  --no-ema           use the raw weights instead of the EMA weights\n"
           "  --no-clip          do not clip predicted x0 to [-1, 1] (images)\n"
           "  -o FILE.png        grid of the samples (scatter plot for 2-D data) [samples.png]\n"
           "  --h5 FILE.h5       the samples as an mdiff dataset (/images uint8 or /points)\n"
           "  --trajectory F.png rows of samples at %d evenly spaced steps from x_T to x_0\n"
           "  --help, --version\n", TRAJ_FRAMES);
}

/* Every output's directory must exist and be writable before sampling starts, so a bad -o, --h5
 * or --trajectory fails at once and never after another output has been written. */
static void check_out_dir(const char *opt, const char *path) {
    char dir[MDIFF_PATH_MAX];
    if (!path) return;
    if (path[0] == '\0') mdiff_user_error("%s: empty file name", opt);
    if (strlen(path) >= sizeof dir) mdiff_user_error("%s: path too long", opt);
    const char *slash = strrchr(path, '/');
    if (!slash) mdiff_strcpy(dir, sizeof dir, ".");
    else mdiff_snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        mdiff_user_error("%s %s: directory %s does not exist (create it first)", opt, path, dir);
    if (access(dir, W_OK) != 0)
        mdiff_user_error("%s %s: directory %s is not writable", opt, path, dir);
}

static void parse(sample_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->n = 64;
    a->sampler = "ddim";
    a->png = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            if (mdiff_rank() == 0) usage();
            mdiff_exit(0, 1);
        } else if (!strcmp(o, "--version")) {
            if (mdiff_rank() == 0) printf("mdiff-sample %s\n", MDIFF_VERSION);
            mdiff_exit(0, 1);
        } else if (!strcmp(o, "-n")) {
            a->n = mdiff_parse_i64("-n", mdiff_opt_value(argc, argv, &i), 1, 1 << 24);
        } else if (!strcmp(o, "--sampler")) {
            a->sampler = mdiff_opt_value(argc, argv, &i);
            mdiff_sampler_from_name(a->sampler);
        } else if (!strcmp(o, "--steps")) {
            a->steps = (int)mdiff_parse_i64("--steps", mdiff_opt_value(argc, argv, &i), 1, 1000000);
        } else if (!strcmp(o, "--eta")) {
            a->eta = mdiff_parse_f64("--eta", mdiff_opt_value(argc, argv, &i), 0, 1e6);
        } else if (!strcmp(o, "--seed")) {
            a->seed = (uint64_t)mdiff_parse_i64("--seed", mdiff_opt_value(argc, argv, &i), 0,
                                                9007199254740991LL);
        } else if (!strcmp(o, "--no-ema")) {
            a->no_ema = 1;
        } else if (!strcmp(o, "--no-clip")) {
            a->no_clip = 1;
        } else if (!strcmp(o, "-o")) {
            a->png = mdiff_opt_value(argc, argv, &i);
        } else if (!strcmp(o, "--h5")) {
            a->h5 = mdiff_opt_value(argc, argv, &i);
        } else if (!strcmp(o, "--trajectory")) {
            a->traj = mdiff_opt_value(argc, argv, &i);
        } else if (o[0] == '-') {
            mdiff_user_error("unknown option '%s' (see mdiff-sample --help)", o);
        } else if (a->ckpt) {
            mdiff_user_error("more than one checkpoint given ('%s' and '%s')", a->ckpt, o);
        } else {
            a->ckpt = o;
        }
    }
    if (!a->ckpt) mdiff_user_error("no checkpoint given (usage: mdiff-sample CKPT.h5 [options])");
    if (!a->png && !a->h5 && !a->traj) a->png = "samples.png";
    check_out_dir("-o", a->png);
    check_out_dir("--h5", a->h5);
    check_out_dir("--trajectory", a->traj);
}

/* Samples as an mdiff dataset: images mapped back to uint8 exactly as the loader maps them in. */
static void write_h5(const char *path, const float *x, int64_t n, const mdiff_model_cfg *m, int images,
                     uint64_t seed) {
    int64_t dim = (int64_t)m->in_ch * m->height * m->width;
    mdiff_data_content ct = {0};
    ct.is_images = images;
    ct.n = n;
    ct.c = m->in_ch, ct.h = m->height, ct.w = m->width;
    ct.kind = "mdiff-sample";
    ct.has_seed = 1;
    ct.seed = seed;
    uint8_t *u8 = NULL;
    if (images) {
        u8 = mdiff_malloc((size_t)(n * dim), "uint8 samples");
        for (int64_t i = 0; i < n * dim; i++) u8[i] = mdiff_to_u8(x[i]);
        ct.data = u8;
    } else {
        ct.data = x;
    }
    mdiff_data_write(path, 0, &ct);
    free(u8);
}

/* Trajectory PNG: TRAJ_ROWS samples, one row each, TRAJ_FRAMES columns from x_T to x_0. */
static void write_traj(const char *path, const float *traj, int64_t n, const mdiff_model_cfg *m) {
    int64_t dim = (int64_t)m->in_ch * m->height * m->width;
    int rows = n < TRAJ_ROWS ? (int)n : TRAJ_ROWS;
    float *tiles = mdiff_malloc((size_t)rows * TRAJ_FRAMES * dim * sizeof(float), "trajectory tiles");
    for (int r = 0; r < rows; r++)
        for (int f = 0; f < TRAJ_FRAMES; f++)
            memcpy(tiles + ((int64_t)r * TRAJ_FRAMES + f) * dim, traj + ((int64_t)f * n + r) * dim,
                   (size_t)dim * sizeof(float));
    mdiff_png_grid(path, tiles, rows * TRAJ_FRAMES, m->in_ch, m->height, m->width, TRAJ_FRAMES);
    free(tiles);
}

int main(int argc, char **argv) {
    mdiff_set_progname("mdiff-sample");
    mdiff_h5_quiet();
    mdiff_dist d;
    mdiff_dist_init(&d, &argc, &argv);
    mdiff_set_errors_collective(1); /* every rank reads the same arguments and checkpoint */
    sample_args a;
    parse(&a, argc, argv);
    mdiff_ckpt *ck = mdiff_ckpt_open(a.ckpt);
    mdiff_config cfg;
    mdiff_config_defaults(&cfg);
    mdiff_ckpt_read_config(ck, &cfg);
    int T = cfg.diff.timesteps;
    int sampler = mdiff_sampler_from_name(a.sampler);
    int steps = a.steps ? a.steps : (T < 50 ? T : 50);
    mdiff_sampler_validate(sampler, steps, a.eta, T);
    int images = strcmp(cfg.model.arch, "unet") == 0;
    if (a.traj && !images)
        mdiff_user_error("--trajectory draws images; %s is a model of 2-D points (use -o)", a.ckpt);
    mdiff_model *model = mdiff_model_create(&cfg.model, MDIFF_SAMPLE_MB);
    int64_t np = mdiff_model_num_params(model);
    float *params = mdiff_alloc_aligned((size_t)np * sizeof(float), "parameters");
    mdiff_ckpt_read_tensors(ck, model, a.no_ema ? "params" : "ema", params);
    mdiff_ckpt_close(ck);
    mdiff_set_errors_collective(0);
    /* Worker threads of this rank (one BLAS thread each): the rank's budget (OPENBLAS_NUM_THREADS
     * when set, else cores per rank on this node). The output does not depend on it. */
    mdiff_rank_threads(d.local_size, NULL);
    mdiff_schedule sched;
    mdiff_schedule_init(&sched, cfg.diff.schedule, T);
    mdiff_sample_opts o = {model, params, &sched, mdiff_objective_from_name(cfg.diff.objective),
                           sampler, steps, a.eta, images && !a.no_clip, a.seed,
                           a.traj ? TRAJ_FRAMES : 0, 1, 0 /* threads: the rank's budget, set above */};
    int64_t dim = (int64_t)cfg.model.in_ch * cfg.model.height * cfg.model.width;
    float *out = NULL, *traj = NULL;
    if (d.rank == 0) {
        out = mdiff_malloc((size_t)(a.n * dim) * sizeof(float), "samples");
        if (a.traj) traj = mdiff_malloc((size_t)(a.n * dim) * TRAJ_FRAMES * sizeof(float), "trajectory");
    }
    mdiff_log("sampling %lld %s with %s, %d steps%s, seed %llu, %s weights, %d rank(s)",
              (long long)a.n, images ? "images" : "points", a.sampler, steps,
              sampler == MDIFF_SAMPLER_DDIM ? "" : "", (unsigned long long)a.seed,
              a.no_ema ? "raw" : "EMA", d.size);
    double t0 = mdiff_now();
    mdiff_sample_all(&d, &o, a.n, out, traj);
    if (d.rank == 0) {
        mdiff_log("sampled %lld in %.1fs (%.2f samples/s)", (long long)a.n, mdiff_now() - t0,
                  (double)a.n / (mdiff_now() - t0));
        if (a.png) {
            if (images) mdiff_png_grid(a.png, out, (int)a.n, cfg.model.in_ch, cfg.model.height, cfg.model.width, 0);
            else mdiff_png_scatter(a.png, out, a.n, 512, 0.0f);
            mdiff_log("wrote %s", a.png);
        }
        if (a.h5) {
            write_h5(a.h5, out, a.n, &cfg.model, images, a.seed);
            mdiff_log("wrote %s", a.h5);
        }
        if (a.traj) {
            write_traj(a.traj, traj, a.n, &cfg.model);
            mdiff_log("wrote %s", a.traj);
        }
    }
    free(out);
    free(traj);
    mdiff_free_aligned(params);
    mdiff_schedule_free(&sched);
    mdiff_model_free(model);
    mdiff_dist_finalize(&d);
    return 0;
}
