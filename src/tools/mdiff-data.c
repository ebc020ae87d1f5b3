/* mdiff-data: makes and inspects mdiff data sets (DESIGN.md §4-5).
 *   mdiff-data fashion-mnist --out FILE|PREFIX [--split train|test] [--shards K] [--src DIR]
 *   mdiff-data toy --kind gaussians8|swissroll|moons --n N [--seed S] --out FILE
 *   mdiff-data info PATH...   (shard files given one by one, e.g. PREFIX-*.h5, count as their set)
 * A thin main over the data module: one function per subcommand, listed in SUBCMDS; adding a
 * subcommand is one function and one table line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"
#include "mdiff/diffusion.h"
#include "mdiff/image.h"
#include "mdiff/rng.h"

#define FM_DEFAULT_SRC "/usr/share/datasets/fashion-mnist"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
    const char *usage;                 /* first line: synopsis; the rest: options */
} subcmd;

static const subcmd *g_cmd; /* the running subcommand, for its --help and error hints */

static void usage_of(const subcmd *c, FILE *f) {
    fprintf(f, "usage: mdiff-data %s\n", c->usage);
}

/* Common per-subcommand options; returns 1 when argv[i] was one of them. */
static int common_opt(const char *a) {
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        usage_of(g_cmd, stdout);
        mdiff_exit(MDIFF_EXIT_OK, 1);
    }
    if (strcmp(a, "--version") == 0) {
        printf("mdiff-data %s (%s)\n", MDIFF_VERSION, mdiff_git_hash());
        mdiff_exit(MDIFF_EXIT_OK, 1);
    }
    return 0;
}

static void unknown_opt(const char *a) {
    mdiff_user_error("unknown option %.*s for 'mdiff-data %s' (see mdiff-data %s --help)",
                     (int)strcspn(a, "="), a, g_cmd->name, g_cmd->name);
}

static void need(const char *v, const char *opt) {
    if (!v) mdiff_user_error("mdiff-data %s needs %s (see mdiff-data %s --help)", g_cmd->name, opt, g_cmd->name);
}

/* Options: argv[*i] split by opt_at into its name and a value joined with '=' (config's
 * mdiff_arg), so "--out x.h5" and "--out=x.h5" are the same; mdiff_arg_value takes either. Returns 0 for
 * a positional argument (no leading '-'); --help and --version print and exit. */
static int opt_at(const char *a, mdiff_arg *o) {
    if (common_opt(a)) return 0;
    return mdiff_arg_split(a, o);
}

static const char *path_opt(const mdiff_arg *o, int argc, char **argv, int *i) {
    const char *v = mdiff_arg_value(o, argc, argv, i);
    if (v[0] == '\0') mdiff_user_error("%s: empty value (give a file name)", o->opt);
    if (strlen(v) >= MDIFF_PATH_MAX - 64) mdiff_user_error("%s: path too long", o->opt);
    return v;
}

static int64_t int_opt(const mdiff_arg *o, int argc, char **argv, int *i, int64_t lo, int64_t hi) {
    return mdiff_parse_i64(o->opt, mdiff_arg_value(o, argc, argv, i), lo, hi);
}

/* ---- fashion-mnist --------------------------------------------------------------------------- */

static int cmd_fashion_mnist(int argc, char **argv) {
    const char *out = NULL, *split = "train", *src = FM_DEFAULT_SRC;
    int shards = 0;
    for (int i = 1; i < argc; i++) {
        mdiff_arg o;
        if (!opt_at(argv[i], &o)) unknown_opt(argv[i]); /* takes no positional argument */
        if (mdiff_arg_is(&o, "--out")) out = path_opt(&o, argc, argv, &i);
        else if (mdiff_arg_is(&o, "--src")) src = path_opt(&o, argc, argv, &i);
        else if (mdiff_arg_is(&o, "--split")) {
            split = mdiff_arg_value(&o, argc, argv, &i);
            if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
                mdiff_user_error("--split %s: unknown split (choose train or test)", split);
        } else if (mdiff_arg_is(&o, "--shards"))
            shards = (int)int_opt(&o, argc, argv, &i, 1, 99999);
        else unknown_opt(argv[i]);
    }
    need(out, "--out FILE (or a prefix with --shards)");
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISDIR(st.st_mode))
        mdiff_user_error("--src %s: no such directory (install dataset-fashion-mnist, or pass --src DIR "
                         "holding the IDX .gz files)",
                         src);
    double t0 = mdiff_now();
    uint8_t *img;
    int32_t *lab;
    int64_t n;
    int h, w;
    mdiff_data_load_fashion_mnist(src, split, &img, &lab, &n, &h, &w);
    double t1 = mdiff_now();
    mdiff_data_content ct = {.is_images = 1, .n = n, .c = 1, .h = h, .w = w, .data = img,
                             .labels = lab, .kind = "fashion-mnist", .split = split};
    mdiff_data_write(out, shards, &ct);
    double t2 = mdiff_now();
    if (shards)
        mdiff_log("wrote %s-00000-of-%05d.h5 ... (%d shards): %lld images 1x%dx%d, fingerprint %08x "
                  "(read %.2fs, write %.2fs)",
                  out, shards, shards, (long long)n, h, w, mdiff_data_fingerprint(&ct), t1 - t0, t2 - t1);
    else
        mdiff_log("wrote %s: %lld images 1x%dx%d, fingerprint %08x (read %.2fs, write %.2fs)", out,
                  (long long)n, h, w, mdiff_data_fingerprint(&ct), t1 - t0, t2 - t1);
    free(img);
    free(lab);
    return 0;
}

/* ---- toy ------------------------------------------------------------------------------------- */

static int cmd_toy(int argc, char **argv) {
    const char *out = NULL, *kind = NULL;
    int64_t n = -1;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        mdiff_arg o;
        if (!opt_at(argv[i], &o)) unknown_opt(argv[i]); /* takes no positional argument */
        if (mdiff_arg_is(&o, "--out")) out = path_opt(&o, argc, argv, &i);
        else if (mdiff_arg_is(&o, "--kind")) {
            kind = mdiff_arg_value(&o, argc, argv, &i);
            if (!mdiff_data_toy_kind_ok(kind))
                mdiff_user_error("--kind %s: unknown toy set (choose gaussians8, swissroll or moons)", kind);
        } else if (mdiff_arg_is(&o, "--n"))
            n = int_opt(&o, argc, argv, &i, 2, 100000000);
        else if (mdiff_arg_is(&o, "--seed"))
            seed = (uint64_t)int_opt(&o, argc, argv, &i, 0, INT64_MAX);
        else unknown_opt(argv[i]);
    }
    need(kind, "--kind gaussians8|swissroll|moons");
    need(n < 0 ? NULL : "", "--n N");
    need(out, "--out FILE");
    double scale[2];
    float *p = mdiff_data_make_toy(kind, n, seed, scale);
    mdiff_data_content ct = {.is_images = 0, .n = n, .c = 2, .h = 1, .w = 1, .data = p, .kind = kind,
                             .has_seed = 1, .seed = seed, .n_scale = 2, .scale = scale};
    mdiff_data_write(out, 0, &ct);
    mdiff_log("wrote %s: %lld %s points, scale %.6g %.6g, fingerprint %08x", out, (long long)n, kind,
              scale[0], scale[1], mdiff_data_fingerprint(&ct));
    free(p);
    return 0;
}

/* ---- info ------------------------------------------------------------------------------------ */

static void info_one(const char *spec) {
    mdiff_dataset *ds = mdiff_dataset_open(spec);
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
    int c, h, w;
    mdiff_dataset_shape(ds, &c, &h, &w);
    int64_t n = mdiff_dataset_rows(ds);
    int img = mdiff_dataset_is_images(ds);
    printf("%s\n", spec);
    if (img)
        printf("  data         /images uint8 (%lld, %d, %d, %d)\n", (long long)n, c, h, w);
    else
        printf("  data         /points float32 (%lld, %d)\n", (long long)n, c);
    printf("  rows         %lld\n", (long long)n);
    printf("  values       min %g, max %g%s\n", st.vmin, st.vmax, img ? " (read as x/127.5 - 1)" : "");
    if (mdiff_dataset_has_labels(ds))
        printf("  labels       /labels int32 (%lld), min %lld, max %lld\n", (long long)n,
               (long long)st.lmin, (long long)st.lmax);
    else
        printf("  labels       none\n");
    if (mdiff_dataset_kind(ds)[0]) printf("  kind         %s\n", mdiff_dataset_kind(ds));
    double sc[8];
    int ns = mdiff_dataset_scale(ds, sc, 8);
    if (ns > 0) {
        printf("  scale        ");
        for (int i = 0; i < ns; i++) printf("%s%.9g", i ? " " : "", sc[i]);
        printf(" (stored = raw * scale)\n");
    }
    int nf = mdiff_dataset_nfiles(ds);
    printf("  files        %d\n", nf);
    for (int i = 0; i < nf; i++) {
        mdiff_dataset_file_info fi;
        mdiff_dataset_file(ds, i, &fi);
        printf("    %-40s rows [%lld, %lld)  shard %d of %d  chunk %lld rows\n", fi.path,
               (long long)fi.row_offset, (long long)(fi.row_offset + fi.rows), fi.shard_index,
               fi.shard_count, (long long)fi.chunk_rows);
    }
    printf("  fingerprint  %08x (verified)\n", st.fingerprint);
    mdiff_dataset_close(ds);
}

/* Each argument is a data set, except that shard files given one by one (the shell's expansion of
 * PREFIX-*.h5) are grouped into their set first: see mdiff_data_group_args. */
static int cmd_info(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (common_opt(argv[i])) continue;
        if (argv[i][0] == '-' && argv[i][1] == '-') unknown_opt(argv[i]);
    }
    need(argc > 1 ? "" : NULL, "at least one PATH");
    char **specs;
    int ns = mdiff_data_group_args(argc - 1, argv + 1, &specs);
    for (int i = 0; i < ns; i++) {
        info_one(specs[i]);
        free(specs[i]);
    }
    free(specs);
    return 0;
}

/* ---- forward -------------------------------------------------------------------------------- */

#define FWD_ROWS 8
#define FWD_COLS 11

/* The seed's picture of the forward process: FWD_ROWS images, each noised by the closed form
 * x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε at FWD_COLS evenly spaced t from 0 to T (one ε per image,
 * so a row shows the same noise growing). */
static int cmd_forward(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *schedule = "linear";
    int T = 1000;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        mdiff_arg o;
        if (!opt_at(a, &o)) {
            if (data) mdiff_user_error("forward takes one DATA path ('%s' and '%s' given)", data, a);
            data = a;
        } else if (mdiff_arg_is(&o, "-o") || mdiff_arg_is(&o, "--out")) out = path_opt(&o, argc, argv, &i);
        else if (mdiff_arg_is(&o, "--schedule")) schedule = mdiff_arg_value(&o, argc, argv, &i);
        else if (mdiff_arg_is(&o, "--timesteps")) T = (int)int_opt(&o, argc, argv, &i, 2, 100000);
        else if (mdiff_arg_is(&o, "--seed")) seed = (uint64_t)int_opt(&o, argc, argv, &i, 0, INT64_MAX);
        else unknown_opt(a);
    }
    need(data, "DATA (an image data set)");
    need(out, "-o FILE.png");
    mdiff_schedule s;
    mdiff_schedule_init(&s, schedule, T);
    mdiff_dataset *ds = mdiff_dataset_open(data);
    if (!mdiff_dataset_is_images(ds))
        mdiff_user_error("%s holds /points: forward draws images (use an image data set)", data);
    int c, h, w;
    mdiff_dataset_shape(ds, &c, &h, &w);
    if (c != 1 && c != 3) mdiff_user_error("%s has %d channels: PNG output needs 1 or 3", data, c);
    int64_t rows = mdiff_dataset_rows(ds) < FWD_ROWS ? mdiff_dataset_rows(ds) : FWD_ROWS;
    int64_t dim = mdiff_dataset_row_floats(ds);
    float *x0 = mdiff_malloc((size_t)(rows * dim) * sizeof(float), "images");
    float *eps = mdiff_malloc((size_t)dim * sizeof(float), "noise");
    float *tiles = mdiff_malloc((size_t)(rows * FWD_COLS * dim) * sizeof(float), "forward strip");
    mdiff_data_read_rows(ds, 0, rows, x0);
    for (int64_t r = 0; r < rows; r++) {
        mdiff_rng_fill_normal(eps, dim, seed, MDIFF_RNG_SAMPLE, 0, (uint64_t)r);
        for (int k = 0; k < FWD_COLS; k++) {
            int t = (int)((int64_t)k * T / (FWD_COLS - 1));
            mdiff_diffusion_q_sample(tiles + (r * FWD_COLS + k) * dim, x0 + r * dim, eps, dim, t, &s);
        }
    }
    mdiff_png_grid(out, tiles, (int)(rows * FWD_COLS), c, h, w, FWD_COLS);
    printf("wrote %s: %lld images x %d steps t = 0, %d, ..., %d (%s schedule)\n", out,
           (long long)rows, FWD_COLS, T / (FWD_COLS - 1), T, schedule);
    free(tiles);
    free(eps);
    free(x0);
    mdiff_dataset_close(ds);
    mdiff_schedule_free(&s);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const subcmd SUBCMDS[] = {
    {"fashion-mnist", cmd_fashion_mnist,
     "fashion-mnist --out FILE|PREFIX [--split train|test] [--shards K] [--src DIR]\n"
     "  Converts Debian's dataset-fashion-mnist to /images uint8 (N,1,28,28) + /labels int32.\n"
     "  --out FILE       output file; with --shards, a prefix: PREFIX-00000-of-0000K.h5 ...\n"
     "  --split S        train (60000 images, default) or test (10000)\n"
     "  --shards K       write K shard files whose concatenation is the data set\n"
     "  --src DIR        directory of the IDX .gz files (default " FM_DEFAULT_SRC ")"},
    {"toy", cmd_toy,
     "toy --kind gaussians8|swissroll|moons --n N [--seed S] --out FILE\n"
     "  A 2-D toy set: /points float32 (N,2) scaled to unit std per axis (attribute scale).\n"
     "  --kind K         gaussians8 (8 modes, radius 2, std 0.1), swissroll (noise 0.25),\n"
     "                   moons (scikit-learn make_moons, noise 0.05)\n"
     "  --n N            number of points (2 .. 100000000)\n"
     "  --seed S         Philox seed (default 0)\n"
     "  --out FILE       output file"},
    {"info", cmd_info,
     "info PATH...\n"
     "  Validates each data set (a file, comma-separated files, a directory or a shard prefix),\n"
     "  recomputes its fingerprint and prints rows, shape, dtype, value range and shard layout.\n"
     "  Shard files given one by one (e.g. the glob PREFIX-*.h5) count as their set, in any order;\n"
     "  a set with a shard missing from the arguments is an error."},
    {"forward", cmd_forward,
     "forward DATA -o FILE.png [--schedule linear|cosine] [--timesteps T] [--seed S]\n"
     "  Draws the forward (noising) process on the first 8 images of DATA: each row one image,\n"
     "  columns x_t at t = 0, T/10, ..., T from the closed form with one fixed noise per image."},
};
#define NSUB ((int)(sizeof SUBCMDS / sizeof SUBCMDS[0]))

static void usage(FILE *f) {
    fprintf(f, "mdiff-data: make and inspect mdiff HDF5 data sets (schema: datasets/README.md)\n");
    for (int i = 0; i < NSUB; i++) {
        fprintf(f, "\n");
        usage_of(&SUBCMDS[i], f);
    }
    fprintf(f, "\nA value may follow its option or be joined to it with '=': --out x.h5, --out=x.h5.\n");
}

int main(int argc, char **argv) {
    mdiff_set_progname("mdiff-data");
    mdiff_h5_quiet();
    if (argc < 2) {
        char names[256] = "";
        for (int i = 0; i < NSUB; i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", SUBCMDS[i].name);
        }
        mdiff_user_error("give a subcommand: %s (see mdiff-data --help)", names);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mdiff-data %s (%s)\n", MDIFF_VERSION, mdiff_git_hash());
        return 0;
    }
    for (int i = 0; i < NSUB; i++) {
        if (strcmp(argv[1], SUBCMDS[i].name) == 0) {
            g_cmd = &SUBCMDS[i];
            return SUBCMDS[i].run(argc - 1, argv + 1);
        }
    }
    mdiff_user_error("unknown subcommand '%s' (see mdiff-data --help)", argv[1]);
}
