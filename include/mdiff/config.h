/* config: the one configuration struct of mdiff-train / mdiff-sample, its defaults (DESIGN.md §5),
 * command-line parsing and validation with one clear line per mistake, and the number parsers
 * every program uses for its options. */
#ifndef MDIFF_CONFIG_H
#define MDIFF_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* The table of configuration fields: one row per option/attribute. mdiff-train's parser, --help,
 * validation, the startup print-out and the checkpoint's attributes (ckpt) all read this one table,
 * so a new option is one row. */
typedef enum {
    MDIFF_F_I64,      /* int64_t */
    MDIFF_F_INT,      /* int */
    MDIFF_F_U64,      /* uint64_t */
    MDIFF_F_F64,      /* double */
    MDIFF_F_F32,      /* float */
    MDIFF_F_STR,      /* char[size] */
    MDIFF_F_FLAG,     /* int 0/1, option takes no value */
    MDIFF_F_INTLIST   /* int[MDIFF_MAX_*] with its count at count_off; "none" = empty */
} mdiff_field_type;

typedef struct {
    const char *opt;        /* "--steps" (NULL: not an option, e.g. in_ch from the data) */
    const char *attr;       /* checkpoint attribute name */
    mdiff_field_type type;
    size_t off;             /* offset in mdiff_config */
    size_t size;            /* bytes (strings), capacity (lists) */
    size_t count_off;       /* INTLIST: offset of its int count */
    double lo, hi;          /* numeric range */
    const char *choices;    /* STR: "a|b|c" (NULL: free text); INTLIST: the word that gives the
                               empty list ("none"), or NULL */
    int identity;           /* 1: fixed by a checkpoint (model or diffusion): a conflicting flag on
                               resume is an error; 0: may change on resume */
    const char *help;
} mdiff_field;

const mdiff_field *mdiff_config_fields(int *count);
const mdiff_field *mdiff_config_field(const char *attr);

/* Flags given on the command line (by attribute name), so resume can tell a user's choice from a
 * default. */
typedef struct {
    int n;
    const char *attr[64];
} mdiff_given;
int mdiff_given_has(const mdiff_given *g, const char *attr);

/* Parses mdiff-train's command line into cfg (defaults first); --help/--version print and exit 0.
 * Unknown options, missing values, bad numbers and bad choices are user errors (exit 1). */
void mdiff_config_parse_train(mdiff_config *cfg, mdiff_given *given, int argc, char **argv);
/* Cross-field validation (e.g. groups divide ch, batch >= 1); user error on failure. */
void mdiff_config_validate(const mdiff_config *cfg);
/* Writes "name = value" lines of every field, for the startup print-out and train.log. */
void mdiff_config_print(const mdiff_config *cfg, FILE *f);
/* A field's value as text (for messages); buf of at least 64 bytes. */
void mdiff_field_format(const mdiff_field *fd, const mdiff_config *cfg, char *buf, size_t cap);
/* 1 when the field's value is equal in a and b. */
int mdiff_field_equal(const mdiff_field *fd, const mdiff_config *a, const mdiff_config *b);
/* Copies one field's value (and a list's count) from src to dst. */
void mdiff_field_copy(const mdiff_field *fd, mdiff_config *dst, const mdiff_config *src);
/* 1 when v is one of a STR field's choices (or the field has none). */
int mdiff_field_choice_ok(const mdiff_field *fd, const char *v);

/* Number parsing for options: the whole string must be a number in [lo, hi]; otherwise a user
 * error naming the option, the value and the accepted range. */
int64_t mdiff_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi);
double mdiff_parse_f64(const char *opt, const char *s, double lo, double hi);
/* Comma-separated list of positive ints ("1,2,2"); returns the count (<= cap). */
int mdiff_parse_int_list(const char *opt, const char *s, int *out, int cap, int lo, int hi);
/* The value after an option at argv[*i]: missing value is a user error; advances *i. */
const char *mdiff_opt_value(int argc, char **argv, int *i);

/* Options as typed. Every program accepts "--opt value" and "--opt=value" (getopt_long's and
 * argparse's convention; "-n=8" too, as argparse does): an argument is split at its first '=' into
 * the option's name and an inline value before it is looked up. */
typedef struct {
    const char *text;   /* the argument as typed */
    size_t name_len;    /* its option name is text[0 .. name_len) */
    const char *value;  /* the text after the first '=' (may be ""), or NULL */
    const char *opt;    /* set by mdiff_arg_is on a match: the option's name, for messages */
} mdiff_arg;
/* Splits argv text a; returns 0 (and leaves *o empty) when a does not start with '-'. */
int mdiff_arg_split(const char *a, mdiff_arg *o);
/* 1 when the argument names option opt (exactly, whether or not a value is joined to it). */
int mdiff_arg_is(mdiff_arg *o, const char *opt);
/* The option's value: the joined one, else the next argument (advancing *i; missing: user error). */
const char *mdiff_arg_value(const mdiff_arg *o, int argc, char **argv, int *i);
/* For options without a value: a joined value ("--flip=1") is a user error. */
void mdiff_arg_flag(const mdiff_arg *o);

/* Sets one field of the struct at base (whose members the table's offsets name) from an option's
 * text; a bad value is a user error naming the option and what to give. */
void mdiff_field_set(const mdiff_field *fd, void *base, const char *v);
/* Looks argv[*i] up in a table of n fields ("--opt V", "--opt=V", or a flag) and sets its field in
 * base; returns the row, advancing *i past a separate value, or NULL when argv[*i] is no option of
 * the table (the caller reports it, or takes it as a positional argument). */
const mdiff_field *mdiff_field_parse_arg(const mdiff_field *tab, int n, void *base, int argc,
                                         char **argv, int *i);

#endif
