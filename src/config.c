/* config: defaults, number parsing for options. Full flag parsing of mdiff-train lands with #4. */
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
