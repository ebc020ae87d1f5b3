/* config: the one configuration struct of mdiff-train / mdiff-sample, its defaults (DESIGN.md §5),
 * command-line parsing and validation with one clear line per mistake, and the number parsers
 * every program uses for its options. */
#ifndef MDIFF_CONFIG_H
#define MDIFF_CONFIG_H

#include <stdint.h>

#define MDIFF_MAX_LEVELS 8
#define MDIFF_MAX_ATTN 8
#define MDIFF_PATH_MAX 4096

/* The denoiser's shape. Filled from flags (train) or from a checkpoint's attributes (sample). */
typedef struct {
    char arch[8];                  /* "unet" | "mlp" | "auto" (resolved from the data) */
    int in_ch, height, width;      /* images: C, H, W; mlp: in_ch = D, height = width = 1 */
    int ch;                        /* base channels */
    int n_levels;                  /* number of entries in mult */
    int mult[MDIFF_MAX_LEVELS];    /* channel multiplier per level */
    int nres;                      /* res blocks per level (down path) */
    int n_attn;                    /* number of entries in attn_res (0: no attention) */
    int attn_res[MDIFF_MAX_ATTN];  /* resolutions (feature-map side) that get attention */
    int heads;                     /* attention heads */
    int groups;                    /* GroupNorm groups */
    float dropout;                 /* dropout probability in ResBlocks */
    int mlp_width, mlp_depth;      /* MLP hidden width and number of hidden layers */
} mdiff_model_cfg;

/* The diffusion process. */
typedef struct {
    int timesteps;                 /* T */
    char schedule[16];             /* "linear" | "cosine" */
    char objective[16];            /* "eps" | "x0" | "v" | "xprev" */
} mdiff_diff_cfg;

typedef struct {
    /* data and run */
    char data[MDIFF_PATH_MAX];     /* --data: file, list (comma separated), directory or shard prefix */
    char val_data[MDIFF_PATH_MAX]; /* --val-data (empty: none) */
    char run_dir[MDIFF_PATH_MAX];
    char resume[MDIFF_PATH_MAX];   /* "" | "auto" | FILE */
    mdiff_model_cfg model;
    mdiff_diff_cfg diff;
    /* optimisation */
    int64_t steps;
    int64_t batch;                 /* global batch */
    double lr, weight_decay, clip, ema;
    int64_t warmup;
    int flip;
    uint64_t seed;
    /* intervals */
    int64_t log_every, ckpt_every, sample_every, keep;
    /* data parallel */
    char allreduce[16];            /* "overlap" | "blocking" */
    double bucket_mb;
    int64_t check_every;
    int64_t max_nonfinite;
} mdiff_config;

/* Fill with the defaults of DESIGN.md §5. */
void mdiff_config_defaults(mdiff_config *cfg);

/* Number parsing for options: the whole string must be a number in [lo, hi]; otherwise a user
 * error naming the option, the value and the accepted range. */
int64_t mdiff_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi);
double mdiff_parse_f64(const char *opt, const char *s, double lo, double hi);
/* Comma-separated list of positive ints ("1,2,2"); returns the count (<= cap). */
int mdiff_parse_int_list(const char *opt, const char *s, int *out, int cap, int lo, int hi);
/* The value after an option at argv[*i]: missing value is a user error; advances *i. */
const char *mdiff_opt_value(int argc, char **argv, int *i);

#endif
