/* mdiff-sample: images (or points) from a checkpoint alone, on one process or many (mpirun splits
 * the images; the output is byte-identical for any number of ranks). See --help. */
#include <stddef.h>
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

/* The options, one row each in SAMPLE_OPTS: parsing and --help read that table (config's
 * mdiff_field rows, as mdiff-train's; a value's help is "METAVAR\ttext"). Outputs are "" when not
 * asked for. */
typedef struct {
    const char *ckpt;     /* the one positional argument */
    int64_t n;
    char sampler[16];
    int steps;            /* 0: default */
    double eta;
    uint64_t seed;
    int no_ema, no_clip;
    char png[MDIFF_PATH_MAX], h5[MDIFF_PATH_MAX], traj[MDIFF_PATH_MAX];
} sample_args;

#define XSTR(x) #x
#define STR(x) XSTR(x)
#define OFF(f) offsetof(sample_args, f)
static const mdiff_field SAMPLE_OPTS[] = {
    {"-n", "n", MDIFF_F_I64, OFF(n), 0, 0, 1, 1 << 24, NULL, 0, "N\tnumber of samples [64]"},
    {"--sampler", "sampler", MDIFF_F_STR, OFF(sampler), 16, 0, 0, 0, "ddpm|ddim|dpm++2m", 0,
     "S\tddpm | ddim | dpm++2m [ddim]"},
    {"--steps", "steps", MDIFF_F_INT, OFF(steps), 0, 0, 1, 1000000, NULL, 0,
     "S\tsampler steps, 1..T [50; ddpm with S < T respaces]"},
    {"--eta", "eta", MDIFF_F_F64, OFF(eta), 0, 0, 0, 1e6, NULL, 0, "E\tDDIM noise, >= 0 [0]"},
    {"--seed", "seed", MDIFF_F_U64, OFF(seed), 0, 0, 0, 9007199254740991.0, NULL, 0,
     "S\tsample i depends only on (seed, i) [0]"},
    {"--no-ema", "no_ema", MDIFF_F_FLAG, OFF(no_ema), 0, 0, 0, 1, NULL, 0,
     "use the raw weights instead of the EMA weights"},
    {"--no-clip", "no_clip", MDIFF_F_FLAG, OFF(no_clip), 0, 0, 0, 1, NULL, 0,
     "do not clip predicted x0 to [-1, 1] (images)"},
    {"-o", "png", MDIFF_F_STR, OFF(png), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "FILE.png\tgrid of the samples (scatter plot for 2-D data) [samples.png]"},
    {"--h5", "h5", MDIFF_F_STR, OFF(h5), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "FILE.h5\tthe samples as an mdiff dataset (/images uint8 or /points)"},
    {"--trajectory", "traj", MDIFF_F_STR, OFF(traj), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "F.png\trows of samples at " STR(TRAJ_FRAMES) " evenly spaced steps from x_T to x_0"},
};
#undef OFF
#define N_OPTS ((int)(sizeof SAMPLE_OPTS / sizeof SAMPLE_OPTS[0]))

static void usage(void) {
    printf("usage: [mpirun -np P] mdiff-sample CKPT.h5 [options]\n\n"
           "Generates samples from an mdiff checkpoint (its attributes hold the whole model config).\n\n"
           "options:\n");
    for (int i = 0; i < N_OPTS; i++) {
        const char *h = SAMPLE_OPTS[i].help, *tab = strchr(h, '\t'); /* "METAVAR\ttext" */
        char left[32];
        if (tab) snprintf(left, sizeof left, "%s %.*s", SAMPLE_OPTS[i].opt, (int)(tab - h), h);
        else snprintf(left, sizeof left, "%s", SAMPLE_OPTS[i].opt);
        printf("  %-18s %s\n", left, tab ? tab + 1 : h);
    }
    printf("  %-18s %s\n\nA value may follow its option or be joined to it with '=': --steps 20, "
           "--steps=20.\n", "--help, --version", "this text; the version");
}

/* Every output's directory must exist and be writable before sampling starts, so a bad -o, --h5
 * or --trajectory fails at once and never after another output has been written. */
static void check_out_dir(const char *opt, const char *path) {
    char dir[MDIFF_PATH_MAX];
    if (path[0] == '\0') return; /* not asked for (an empty value was refused by the parser) */
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
    mdiff_strcpy(a->sampler, sizeof a->sampler, "ddim");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            if (mdiff_rank() == 0) usage();
            mdiff_exit(0, 1);
        } else if (!strcmp(o, "--version")) {
            if (mdiff_rank() == 0) printf("mdiff-sample %s\n", MDIFF_VERSION);
            mdiff_exit(0, 1);
        } else if (o[0] == '-') {
            if (!mdiff_field_parse_arg(SAMPLE_OPTS, N_OPTS, a, argc, argv, &i))
                mdiff_user_error("unknown option '%.*s' (see mdiff-sample --help)", (int)strcspn(o, "="), o);
        } else if (a->ckpt) {
            mdiff_user_error("more than one checkpoint given ('%s' and '%s')", a->ckpt, o);
        } else {
            a->ckpt = o;
        }
    }
    if (!a->ckpt) mdiff_user_error("no checkpoint given (usage: mdiff-sample CKPT.h5 [options])");
    if (!a->png[0] && !a->h5[0] && !a->traj[0]) mdiff_strcpy(a->png, sizeof a->png, "samples.png");
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
    if (a.traj[0] && !images)
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
                           a.traj[0] ? TRAJ_FRAMES : 0, 1, 0 /* threads: the rank's budget, set above */};
    int64_t dim = (int64_t)cfg.model.in_ch * cfg.model.height * cfg.model.width;
    float *out = NULL, *traj = NULL;
    if (d.rank == 0) {
        out = mdiff_malloc((size_t)(a.n * dim) * sizeof(float), "samples");
        if (a.traj[0]) traj = mdiff_malloc((size_t)(a.n * dim) * TRAJ_FRAMES * sizeof(float), "trajectory");
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
        if (a.png[0]) {
            if (images) mdiff_png_grid(a.png, out, (int)a.n, cfg.model.in_ch, cfg.model.height, cfg.model.width, 0);
            else mdiff_png_scatter(a.png, out, a.n, 512, 0.0f);
            mdiff_log("wrote %s", a.png);
        }
        if (a.h5[0]) {
            write_h5(a.h5, out, a.n, &cfg.model, images, a.seed);
            mdiff_log("wrote %s", a.h5);
        }
        if (a.traj[0]) {
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
