/* config: defaults, number parsing for options, the field table of mdiff-train and the option
 * lookup every program uses ("--opt value" and "--opt=value", see mdiff_arg_split). */
#include "mdiff/config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"

void mdiff_config_defaults(mdiff_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    mdiff_model_cfg *m = &cfg->model;
    mdiff_strcpy(m->arch, sizeof m->arch, "auto");
    m->ch = 32;
    m->n_levels = 3;
    m->mult[0] = 1, m->mult[1] = 2, m->mult[2] = 2;
    m->nres = 2;
    m->n_attn = 1;
    m->attn_res[0] = 7;
    m->heads = 1;
    m->groups = 8;
    m->dropout = 0.0f;
    m->mlp_width = 256;
    m->mlp_depth = 4;
    cfg->diff.timesteps = 1000;
    mdiff_strcpy(cfg->diff.schedule, sizeof cfg->diff.schedule, "linear");
    mdiff_strcpy(cfg->diff.objective, sizeof cfg->diff.objective, "eps");
    cfg->steps = 20000;
    cfg->batch = 64;
    cfg->lr = 2e-4;
    cfg->warmup = 500;
    cfg->weight_decay = 0.0;
    cfg->clip = 1.0;
    cfg->ema = 0.9999;
    cfg->flip = 0;
    cfg->seed = 0;
    cfg->log_every = 50;
    cfg->ckpt_every = 1000;
    cfg->keep = 3;
    cfg->sample_every = 1000;
    mdiff_strcpy(cfg->allreduce, sizeof cfg->allreduce, "overlap");
    cfg->bucket_mb = 4.0;
    cfg->check_every = 1000;
    cfg->max_nonfinite = 10;
}

int64_t mdiff_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi) {
    if (s[0] == '\0') /* "--steps=" or "--steps ''" */
        mdiff_user_error("%s: empty value (give an integer from %lld to %lld)", opt, (long long)lo,
                         (long long)hi);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE)
        mdiff_user_error("%s: '%s' is not a whole number (give an integer from %lld to %lld)", opt, s,
                         (long long)lo, (long long)hi);
    if (v < lo || v > hi)
        mdiff_user_error("%s: %lld is out of range (give an integer from %lld to %lld)", opt, v,
                         (long long)lo, (long long)hi);
    return (int64_t)v;
}

double mdiff_parse_f64(const char *opt, const char *s, double lo, double hi) {
    if (s[0] == '\0') mdiff_user_error("%s: empty value (give a number from %g to %g)", opt, lo, hi);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        mdiff_user_error("%s: '%s' is not a number (give a value from %g to %g)", opt, s, lo, hi);
    if (v < lo || v > hi)
        mdiff_user_error("%s: %g is out of range (give a value from %g to %g)", opt, v, lo, hi);
    return v;
}

int mdiff_parse_int_list(const char *opt, const char *s, int *out, int cap, int lo, int hi) {
    int n = 0;
    const char *p = s;
    if (*p == '\0') mdiff_user_error("%s: empty list (give comma-separated integers, e.g. 1,2,2)", opt);
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            mdiff_user_error("%s: '%s' is not a comma-separated list of integers (e.g. 1,2,2)", opt, s);
        memcpy(item, p, len);
        item[len] = '\0';
        if (n >= cap) mdiff_user_error("%s: more than %d entries in '%s'", opt, cap, s);
        out[n++] = (int)mdiff_parse_i64(opt, item, lo, hi);
        p += len;
        if (*p == ',') {
            p++;
            if (*p == '\0') mdiff_user_error("%s: '%s' ends with a comma", opt, s);
        }
    }
    return n;
}

const char *mdiff_opt_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc || argv[*i + 1] == NULL)
        mdiff_user_error("%s needs a value (see --help)", argv[*i]);
    *i += 1;
    return argv[*i];
}

/* ---- options as typed: "--opt value" and "--opt=value" -------------------------------------- */

/* getopt_long and argparse accept both spellings, and scripts written for either use both, so every
 * program splits "--steps=100" into the option "--steps" and the value "100" before looking it up.
 * Only the first '=' splits: "--data=a=b.h5" is the path "a=b.h5". */
int mdiff_arg_split(const char *a, mdiff_arg *o) {
    memset(o, 0, sizeof *o);
    if (a[0] != '-') return 0;
    const char *eq = strchr(a, '=');
    o->text = a;
    o->name_len = eq ? (size_t)(eq - a) : strlen(a);
    o->value = eq ? eq + 1 : NULL;
    return 1;
}

int mdiff_arg_is(mdiff_arg *o, const char *opt) {
    if (!o->text || strlen(opt) != o->name_len || strncmp(o->text, opt, o->name_len) != 0) return 0;
    o->opt = opt;
    return 1;
}

const char *mdiff_arg_value(const mdiff_arg *o, int argc, char **argv, int *i) {
    if (o->value) return o->value; /* may be "": the caller's parser names the option and the fix */
    return mdiff_opt_value(argc, argv, i);
}

void mdiff_arg_flag(const mdiff_arg *o) {
    if (o->value)
        mdiff_user_error("%.*s takes no value (give %.*s alone, not '%s')", (int)o->name_len, o->text,
                         (int)o->name_len, o->text, o->text);
}

/* ---- the field table ------------------------------------------------------------------------ */

#include <stddef.h>

#define OFF(f) offsetof(mdiff_config, f)
#define BIG 1e18
static const mdiff_field g_fields[] = {
    {"--data", "data", MDIFF_F_STR, OFF(data), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "training data: HDF5 file, comma-separated files, directory or shard prefix (required)"},
    {"--val-data", "val_data", MDIFF_F_STR, OFF(val_data), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "held-out data: loss on a fixed batch set with fixed noise at each checkpoint"},
    {"--run-dir", "run_dir", MDIFF_F_STR, OFF(run_dir), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "directory for checkpoints, samples, metrics.csv, train.log (required)"},
    {"--resume", "resume", MDIFF_F_STR, OFF(resume), MDIFF_PATH_MAX, 0, 0, 0, NULL, 0,
     "auto (latest.h5 of the run dir, if any) or a checkpoint file"},
    {"--steps", "steps", MDIFF_F_I64, OFF(steps), 0, 0, 1, BIG, NULL, 0,
     "total optimizer steps (a resumed run continues to this total)"},
    {"--batch", "batch", MDIFF_F_I64, OFF(batch), 0, 0, 1, 1 << 24, NULL, 0,
     "global batch, split across ranks"},
    {"--lr", "lr", MDIFF_F_F64, OFF(lr), 0, 0, 0, 10, NULL, 0, "peak learning rate (AdamW)"},
    {"--warmup", "warmup", MDIFF_F_I64, OFF(warmup), 0, 0, 0, BIG, NULL, 0,
     "linear learning-rate warmup steps"},
    {"--weight-decay", "weight_decay", MDIFF_F_F64, OFF(weight_decay), 0, 0, 0, 10, NULL, 0,
     "AdamW decoupled weight decay"},
    {"--clip", "clip", MDIFF_F_F64, OFF(clip), 0, 0, 0, 1e9, NULL, 0,
     "global gradient-norm clip (0: off)"},
    {"--ema", "ema", MDIFF_F_F64, OFF(ema), 0, 0, 0, 1, NULL, 0,
     "EMA decay D; update n uses min(D, (1+n)/(10+n))"},
    {"--arch", "arch", MDIFF_F_STR, OFF(model.arch), 8, 0, 0, 0, "unet|mlp|auto", 1,
     "denoiser: unet for /images, mlp for /points, auto picks by the data"},
    {NULL, "in_ch", MDIFF_F_INT, OFF(model.in_ch), 0, 0, 0, 0, NULL, 1, "data channels (or D)"},
    {NULL, "height", MDIFF_F_INT, OFF(model.height), 0, 0, 0, 0, NULL, 1, "data height"},
    {NULL, "width", MDIFF_F_INT, OFF(model.width), 0, 0, 0, 0, NULL, 1, "data width"},
    {"--ch", "ch", MDIFF_F_INT, OFF(model.ch), 0, 0, 1, 4096, NULL, 1, "U-Net base channels"},
    {"--mult", "mult", MDIFF_F_INTLIST, OFF(model.mult), MDIFF_MAX_LEVELS, OFF(model.n_levels), 1,
     64, NULL, 1, "U-Net channel multiplier per level, e.g. 1,2,2"},
    {"--res-blocks", "nres", MDIFF_F_INT, OFF(model.nres), 0, 0, 1, 64, NULL, 1,
     "U-Net res blocks per level"},
    {"--attn", "attn_res", MDIFF_F_INTLIST, OFF(model.attn_res), MDIFF_MAX_ATTN,
     OFF(model.n_attn), 1, 65536, "none", 1,
     "feature-map sides with self-attention, e.g. 7 or 14,7; none disables"},
    {"--heads", "heads", MDIFF_F_INT, OFF(model.heads), 0, 0, 1, 256, NULL, 1, "attention heads"},
    {"--groups", "groups", MDIFF_F_INT, OFF(model.groups), 0, 0, 1, 4096, NULL, 1,
     "GroupNorm groups"},
    {"--dropout", "dropout", MDIFF_F_F32, OFF(model.dropout), 0, 0, 0, 0.99, NULL, 0,
     "dropout probability in ResBlocks"},
    {"--mlp-width", "mlp_width", MDIFF_F_INT, OFF(model.mlp_width), 0, 0, 1, 65536, NULL, 1,
     "MLP hidden width"},
    {"--mlp-depth", "mlp_depth", MDIFF_F_INT, OFF(model.mlp_depth), 0, 0, 1, 64, NULL, 1,
     "MLP hidden layers"},
    {"--timesteps", "timesteps", MDIFF_F_INT, OFF(diff.timesteps), 0, 0, 2, 100000, NULL, 1,
     "diffusion steps T"},
    {"--schedule", "schedule", MDIFF_F_STR, OFF(diff.schedule), 16, 0, 0, 0, "linear|cosine", 1,
     "noise schedule"},
    {"--objective", "objective", MDIFF_F_STR, OFF(diff.objective), 16, 0, 0, 0, "eps|x0|v|xprev",
     1, "what the network predicts"},
    {"--flip", "flip", MDIFF_F_FLAG, OFF(flip), 0, 0, 0, 1, NULL, 0, "random horizontal flips"},
    {"--log-every", "log_every", MDIFF_F_I64, OFF(log_every), 0, 0, 1, BIG, NULL, 0,
     "steps between log lines"},
    {"--ckpt-every", "ckpt_every", MDIFF_F_I64, OFF(ckpt_every), 0, 0, 1, BIG, NULL, 0,
     "steps between checkpoints (one is always written at the last step)"},
    {"--keep", "keep", MDIFF_F_I64, OFF(keep), 0, 0, 1, 1000000, NULL, 0,
     "checkpoints kept in the run dir"},
    {"--sample-every", "sample_every", MDIFF_F_I64, OFF(sample_every), 0, 0, 0, BIG, NULL, 0,
     "steps between sample grids (0: none)"},
    {"--seed", "seed", MDIFF_F_U64, OFF(seed), 0, 0, 0, 9007199254740991.0, NULL, 0,
     "seed of everything random"},
    {"--allreduce", "allreduce", MDIFF_F_STR, OFF(allreduce), 16, 0, 0, 0, "overlap|blocking", 0,
     "gradient allreduce: bucketed overlap with backward, or one blocking call"},
    {"--bucket-mb", "bucket_mb", MDIFF_F_F64, OFF(bucket_mb), 0, 0, 0.001, 4096, NULL, 0,
     "allreduce bucket size in MiB"},
    {"--check-every", "check_every", MDIFF_F_I64, OFF(check_every), 0, 0, 0, BIG, NULL, 0,
     "steps between cross-rank parameter checksums (0: never)"},
    {"--max-nonfinite", "max_nonfinite", MDIFF_F_I64, OFF(max_nonfinite), 0, 0, 1, 1000000, NULL,
     0, "consecutive skipped non-finite steps before stopping"},
};
#undef OFF

const mdiff_field *mdiff_config_fields(int *count) {
    *count = (int)(sizeof g_fields / sizeof g_fields[0]);
    return g_fields;
}

const mdiff_field *mdiff_config_field(const char *attr) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].attr, attr) == 0) return &f[i];
    return NULL;
}

int mdiff_given_has(const mdiff_given *g, const char *attr) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->attr[i], attr) == 0) return 1;
    return 0;
}

int mdiff_field_choice_ok(const mdiff_field *fd, const char *v) {
    if (!fd->choices) return 1;
    size_t n = strlen(v);
    const char *p = fd->choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Sets one field of the struct at base (mdiff_config for mdiff-train's table) from its option's
 * text value; a bad value is a user error naming the option and what to give. */
void mdiff_field_set(const mdiff_field *fd, void *base_struct, const char *v) {
    char *base = (char *)base_struct + fd->off;
    switch (fd->type) {
    case MDIFF_F_I64: *(int64_t *)base = mdiff_parse_i64(fd->opt, v, (int64_t)fd->lo, (int64_t)fd->hi); break;
    case MDIFF_F_INT: *(int *)base = (int)mdiff_parse_i64(fd->opt, v, (int64_t)fd->lo, (int64_t)fd->hi); break;
    case MDIFF_F_U64: *(uint64_t *)base = (uint64_t)mdiff_parse_i64(fd->opt, v, (int64_t)fd->lo, (int64_t)fd->hi); break;
    case MDIFF_F_F64: *(double *)base = mdiff_parse_f64(fd->opt, v, fd->lo, fd->hi); break;
    case MDIFF_F_F32: *(float *)base = (float)mdiff_parse_f64(fd->opt, v, fd->lo, fd->hi); break;
    case MDIFF_F_FLAG: *(int *)base = 1; break;
    case MDIFF_F_STR:
        if (v[0] == '\0') {
            if (fd->choices) mdiff_user_error("%s: empty value (choose one of %s)", fd->opt, fd->choices);
            mdiff_user_error("%s: empty value (give a file or directory name)", fd->opt);
        }
        if (!mdiff_field_choice_ok(fd, v))
            mdiff_user_error("%s: unknown value '%s' (choose one of %s)", fd->opt, v, fd->choices);
        if (strlen(v) >= fd->size)
            mdiff_user_error("%s: value of %zu characters is too long (at most %zu)", fd->opt,
                             strlen(v), fd->size - 1);
        mdiff_strcpy(base, fd->size, v);
        break;
    case MDIFF_F_INTLIST: {
        int *count = (int *)((char *)base_struct + fd->count_off);
        if (fd->choices && strcmp(v, fd->choices) == 0) { /* --attn none: the empty list */
            *count = 0;
            break;
        }
        *count = mdiff_parse_int_list(fd->opt, v, (int *)base, (int)fd->size, (int)fd->lo, (int)fd->hi);
        break;
    }
    }
}

const mdiff_field *mdiff_field_parse_arg(const mdiff_field *tab, int n, void *base, int argc,
                                         char **argv, int *i) {
    mdiff_arg o;
    if (!mdiff_arg_split(argv[*i], &o)) return NULL;
    const mdiff_field *fd = NULL;
    for (int k = 0; k < n && !fd; k++)
        if (tab[k].opt && mdiff_arg_is(&o, tab[k].opt)) fd = &tab[k];
    if (!fd) return NULL;
    if (fd->type == MDIFF_F_FLAG) {
        mdiff_arg_flag(&o);
        mdiff_field_set(fd, base, "1");
    } else {
        mdiff_field_set(fd, base, mdiff_arg_value(&o, argc, argv, i));
    }
    return fd;
}

static void print_train_help(void) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    mdiff_config d;
    mdiff_config_defaults(&d);
    printf("usage: [mpirun -np P] mdiff-train --data PATH --run-dir DIR [options]\n\n"
           "Trains a denoising diffusion model data-parallel (DESIGN.md; README.md).\n\noptions:\n");
    for (int i = 0; i < n; i++) {
        if (!f[i].opt) continue;
        char def[128];
        mdiff_field_format(&f[i], &d, def, sizeof def);
        char left[64];
        snprintf(left, sizeof left, "%s%s", f[i].opt, f[i].type == MDIFF_F_FLAG ? "" : " V");
        printf("  %-20s %s", left, f[i].help);
        if (def[0] && f[i].type != MDIFF_F_FLAG) printf(" [%s]", def);
        printf("\n");
    }
    printf("  %-20s %s\n  %-20s %s\n", "--help", "this text", "--version", "version and libraries");
    printf("\nA value may follow its option or be joined to it with '=': --steps 100, --steps=100.\n");
    printf("\nexit status: 0 done, 1 bad input or a run that cannot continue, 2 internal error,\n"
           "3 stopped by a signal after writing a checkpoint (requeue and --resume auto).\n");
}

void mdiff_config_parse_train(mdiff_config *cfg, mdiff_given *given, int argc, char **argv) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    mdiff_config_defaults(cfg);
    given->n = 0;
    int was_collective = mdiff_set_errors_collective(1); /* every rank parses the same argv */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (mdiff_rank() == 0) print_train_help();
            mdiff_exit(0, 1);
        }
        if (strcmp(a, "--version") == 0) {
            if (mdiff_rank() == 0) printf("mdiff-train %s\n", MDIFF_VERSION);
            mdiff_exit(0, 1);
        }
        const mdiff_field *fd = mdiff_field_parse_arg(f, n, cfg, argc, argv, &i);
        if (!fd)
            mdiff_user_error_all("unknown option '%.*s' (see mdiff-train --help)",
                                 (int)strcspn(a, "="), a);
        if (!mdiff_given_has(given, fd->attr) && given->n < 64) given->attr[given->n++] = fd->attr;
    }
    if (!cfg->data[0]) mdiff_user_error_all("--data is required (an HDF5 dataset made by mdiff-data)");
    if (!cfg->run_dir[0]) mdiff_user_error_all("--run-dir is required (where checkpoints go)");
    mdiff_set_errors_collective(was_collective);
}

void mdiff_config_validate(const mdiff_config *cfg) {
    const mdiff_model_cfg *m = &cfg->model;
    if (strcmp(m->arch, "unet") == 0) {
        for (int l = 0; l < m->n_levels; l++)
            if ((m->ch * m->mult[l]) % m->groups != 0)
                mdiff_user_error_all("--groups %d does not divide the channels %d of level %d "
                                     "(--ch %d x --mult %d): choose groups dividing every level's channels",
                                     m->groups, m->ch * m->mult[l], l, m->ch, m->mult[l]);
        if (m->ch % m->groups != 0)
            mdiff_user_error_all("--groups %d does not divide --ch %d", m->groups, m->ch);
    }
    if (cfg->warmup < 0 || cfg->batch < 1) mdiff_user_error_all("--batch must be at least 1");
}

void mdiff_field_format(const mdiff_field *fd, const mdiff_config *cfg, char *buf, size_t cap) {
    const char *base = (const char *)cfg + fd->off;
    switch (fd->type) {
    case MDIFF_F_I64: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)base); break;
    case MDIFF_F_INT:
    case MDIFF_F_FLAG: snprintf(buf, cap, "%d", *(const int *)base); break;
    case MDIFF_F_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)base); break;
    case MDIFF_F_F64: snprintf(buf, cap, "%g", *(const double *)base); break;
    case MDIFF_F_F32: snprintf(buf, cap, "%g", (double)*(const float *)base); break;
    case MDIFF_F_STR: snprintf(buf, cap, "%s", base); break;
    case MDIFF_F_INTLIST: {
        int count = *(const int *)((const char *)cfg + fd->count_off);
        const int *v = (const int *)base;
        size_t used = 0;
        buf[0] = '\0';
        if (count == 0) snprintf(buf, cap, "none");
        for (int i = 0; i < count && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, i ? ",%d" : "%d", v[i]);
        break;
    }
    }
}

int mdiff_field_equal(const mdiff_field *fd, const mdiff_config *a, const mdiff_config *b) {
    if (fd->type == MDIFF_F_F64) return *(const double *)((const char *)a + fd->off) ==
                                        *(const double *)((const char *)b + fd->off);
    if (fd->type == MDIFF_F_F32) return *(const float *)((const char *)a + fd->off) ==
                                        *(const float *)((const char *)b + fd->off);
    char va[MDIFF_PATH_MAX + 64], vb[MDIFF_PATH_MAX + 64];
    mdiff_field_format(fd, a, va, sizeof va);
    mdiff_field_format(fd, b, vb, sizeof vb);
    return strcmp(va, vb) == 0;
}

/* Bytes a field occupies in mdiff_config (lists: the whole array; their count is separate). */
static size_t field_bytes(const mdiff_field *fd) {
    switch (fd->type) {
    case MDIFF_F_STR: return fd->size;
    case MDIFF_F_INTLIST: return fd->size * sizeof(int);
    case MDIFF_F_I64: return sizeof(int64_t);
    case MDIFF_F_U64: return sizeof(uint64_t);
    case MDIFF_F_F64: return sizeof(double);
    case MDIFF_F_F32: return sizeof(float);
    default: return sizeof(int); /* INT, FLAG */
    }
}

void mdiff_field_copy(const mdiff_field *fd, mdiff_config *dst, const mdiff_config *src) {
    memcpy((char *)dst + fd->off, (const char *)src + fd->off, field_bytes(fd));
    if (fd->type == MDIFF_F_INTLIST)
        memcpy((char *)dst + fd->count_off, (const char *)src + fd->count_off, sizeof(int));
}

void mdiff_config_print(const mdiff_config *cfg, FILE *f) {
    int n;
    const mdiff_field *fd = mdiff_config_fields(&n);
    for (int i = 0; i < n; i++) {
        char v[MDIFF_PATH_MAX + 64];
        mdiff_field_format(&fd[i], cfg, v, sizeof v);
        fprintf(f, "  %-14s = %s\n", fd[i].attr, v);
    }
}
