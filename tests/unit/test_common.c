/* Tests of common and of config: CRC-32 known answers, bounded strings, the user-error paths
 * (exit 1) for malformed numbers, every mdiff-train default against DESIGN.md §5, and
 * "--opt=value" parsing like "--opt value". */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/config.h"

START_TEST(crc32_known_answer) {
    /* The standard check value of CRC-32/ISO-HDLC. */
    ck_assert_uint_eq(mdiff_crc32(0, "123456789", 9), 0xCBF43926u);
    /* Incremental equals one-shot. */
    uint32_t c = mdiff_crc32(0, "1234", 4);
    c = mdiff_crc32(c, "56789", 5);
    ck_assert_uint_eq(c, 0xCBF43926u);
}
END_TEST

START_TEST(strings_bounded) {
    char buf[8];
    mdiff_strcpy(buf, sizeof buf, "1234567");
    ck_assert_str_eq(buf, "1234567");
    mdiff_snprintf(buf, sizeof buf, "%d-%d", 12, 34);
    ck_assert_str_eq(buf, "12-34");
    ck_assert_int_eq(mdiff_ends_with("a.h5", ".h5"), 1);
    ck_assert_int_eq(mdiff_ends_with("h5", ".h5"), 0);
}
END_TEST

START_TEST(strcpy_overflow_is_internal_error) {
    char buf[4];
    mdiff_strcpy(buf, sizeof buf, "toolong");
}
END_TEST

START_TEST(parse_numbers) {
    ck_assert_int_eq(mdiff_parse_i64("--n", "42", 1, 100), 42);
    ck_assert_int_eq(mdiff_parse_i64("--n", "-3", -5, 5), -3);
    ck_assert_double_eq_tol(mdiff_parse_f64("--lr", "2e-4", 0, 1), 2e-4, 1e-12);
    int l[4];
    ck_assert_int_eq(mdiff_parse_int_list("--mult", "1,2,2", l, 4, 1, 16), 3);
    ck_assert_int_eq(l[0], 1);
    ck_assert_int_eq(l[2], 2);
}
END_TEST

START_TEST(parse_non_number_exits_1) { mdiff_parse_i64("--n", "12abc", 1, 100); }
END_TEST
START_TEST(parse_out_of_range_exits_1) { mdiff_parse_i64("--n", "0", 1, 100); }
END_TEST
START_TEST(parse_float_nan_exits_1) { mdiff_parse_f64("--lr", "nan", 0, 1); }
END_TEST
START_TEST(parse_list_trailing_comma_exits_1) {
    int l[4];
    mdiff_parse_int_list("--mult", "1,2,", l, 4, 1, 16);
}
END_TEST

START_TEST(aligned_alloc_is_aligned_and_zero) {
    float *p = mdiff_alloc_aligned(1000 * sizeof(float), "test");
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) ck_assert_float_eq(p[i], 0.0f);
    mdiff_free_aligned(p);
}
END_TEST

/* ---- mdiff-train's defaults ----------------------------------------------------------------
 * One row per option of mdiff-train: its default as DESIGN.md §5 ("mdiff-train options and
 * defaults") writes it, and the member of mdiff_config that holds it. Changing a default means
 * changing its row here, so the change is a visible decision in the diff. "" = no default (the
 * required --data and --run-dir, the optional --val-data, --resume's "none"). Options of §5 that
 * mdiff-train does not have yet (no member, so no row): --batch-per-rank, --accum, --data-mem-mb,
 * --lr-schedule, --lr-min, --class-cond, --cond-drop. mdiff-sample's defaults (§5: -n 64,
 * --sampler ddim, --steps 50, --seed 0, EMA weights) live in src/tools/mdiff-sample.c, not in the
 * library, and are not checked here. */
typedef enum { D_I64, D_INT, D_U64, D_F64, D_F32, D_STR, D_FLAG, D_LIST } dkind;

typedef struct {
    const char *opt;
    const char *want; /* as the user reads it in §5 and would type it */
    dkind kind;
    size_t off, size; /* the member of mdiff_config */
    size_t count_off; /* lists: the member holding the count */
} default_row;

#define MEMBER(f) offsetof(mdiff_config, f), sizeof(((mdiff_config *)0)->f)
#define I64(f) D_I64, MEMBER(f), 0
#define INT(f) D_INT, MEMBER(f), 0
#define U64(f) D_U64, MEMBER(f), 0
#define F64(f) D_F64, MEMBER(f), 0
#define F32(f) D_F32, MEMBER(f), 0
#define STR(f) D_STR, MEMBER(f), 0
#define FLAG(f) D_FLAG, MEMBER(f), 0
#define LIST(f, count) D_LIST, MEMBER(f), offsetof(mdiff_config, count)

static const default_row DEFAULTS[] = {
    /* option           §5 default  member of mdiff_config */
    {"--data",          "",         STR(data)},
    {"--val-data",      "",         STR(val_data)},
    {"--run-dir",       "",         STR(run_dir)},
    {"--resume",        "",         STR(resume)},
    {"--steps",         "20000",    I64(steps)},
    {"--batch",         "64",       I64(batch)},
    {"--lr",            "2e-4",     F64(lr)},
    {"--warmup",        "500",      I64(warmup)},
    {"--weight-decay",  "0",        F64(weight_decay)},
    {"--clip",          "1.0",      F64(clip)},
    {"--ema",           "0.9999",   F64(ema)},
    {"--arch",          "auto",     STR(model.arch)},
    {"--ch",            "32",       INT(model.ch)},
    {"--mult",          "1,2,2",    LIST(model.mult, model.n_levels)},
    {"--res-blocks",    "2",        INT(model.nres)},
    {"--attn",          "7",        LIST(model.attn_res, model.n_attn)},
    {"--heads",         "1",        INT(model.heads)},
    {"--groups",        "8",        INT(model.groups)},
    {"--dropout",       "0",        F32(model.dropout)},
    {"--mlp-width",     "256",      INT(model.mlp_width)},
    {"--mlp-depth",     "4",        INT(model.mlp_depth)},
    {"--timesteps",     "1000",     INT(diff.timesteps)},
    {"--schedule",      "linear",   STR(diff.schedule)},
    {"--objective",     "eps",      STR(diff.objective)},
    {"--flip",          "off",      FLAG(flip)},
    {"--log-every",     "50",       I64(log_every)},
    {"--ckpt-every",    "1000",     I64(ckpt_every)},
    {"--keep",          "3",        I64(keep)},
    {"--sample-every",  "1000",     I64(sample_every)},
    {"--seed",          "0",        U64(seed)},
    {"--allreduce",     "overlap",  STR(allreduce)},
    {"--bucket-mb",     "4",        F64(bucket_mb)},
    {"--check-every",   "1000",     I64(check_every)},
    {"--max-nonfinite", "10",       I64(max_nonfinite)},
};
enum { N_DEFAULTS = sizeof DEFAULTS / sizeof DEFAULTS[0] };

/* The shortest %g text that reads back as v (in double, or in float when is_float). */
static void shortest_g(char *buf, size_t cap, double v, int is_float) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

/* The row's member of cfg as text, read by the test itself (not through config's field table):
 * integers in decimal, reals in the shortest exact %g, lists "a,b,c" ("none" when empty), flags
 * on/off. */
static void render(const default_row *r, const mdiff_config *cfg, char *buf, size_t cap) {
    const char *p = (const char *)cfg + r->off;
    switch (r->kind) {
    case D_I64: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)p); break;
    case D_INT: snprintf(buf, cap, "%d", *(const int *)p); break;
    case D_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case D_F64: shortest_g(buf, cap, *(const double *)p, 0); break;
    case D_F32: shortest_g(buf, cap, (double)*(const float *)p, 1); break;
    case D_STR: snprintf(buf, cap, "%s", p); break;
    case D_FLAG: snprintf(buf, cap, "%s", *(const int *)p ? "on" : "off"); break;
    case D_LIST: {
        int n = *(const int *)((const char *)cfg + r->count_off);
        size_t used = 0;
        snprintf(buf, cap, "none");
        for (int i = 0; i < n && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, i ? ",%d" : "%d", ((const int *)p)[i]);
        break;
    }
    }
}

/* Does the member hold the value §5 writes? Numbers compare by value ("2e-4" = 0.0002, "1.0" = 1),
 * in the member's own type; text, lists and flags by their text. */
static int matches(const default_row *r, const mdiff_config *cfg) {
    const char *p = (const char *)cfg + r->off;
    char got[MDIFF_PATH_MAX + 64];
    switch (r->kind) {
    case D_I64: return *(const int64_t *)p == strtoll(r->want, NULL, 10);
    case D_INT: return *(const int *)p == (int)strtol(r->want, NULL, 10);
    case D_U64: return *(const uint64_t *)p == strtoull(r->want, NULL, 10);
    case D_F64: return *(const double *)p == strtod(r->want, NULL);
    case D_F32: return *(const float *)p == strtof(r->want, NULL);
    default: render(r, cfg, got, sizeof got); return strcmp(got, r->want) == 0;
    }
}

/* The table itself: each row's member has the size its kind says, and numbers parse whole. */
static void check_row(const default_row *r) {
    static const size_t sizes[] = {sizeof(int64_t), sizeof(int), sizeof(uint64_t), sizeof(double),
                                   sizeof(float), 0, sizeof(int), 0};
    if (sizes[r->kind])
        ck_assert_msg(r->size == sizes[r->kind], "%s: member size %zu", r->opt, r->size);
    if (r->kind <= D_F32) {
        char *end;
        strtod(r->want, &end);
        ck_assert_msg(r->want[0] && *end == '\0', "%s: '%s' is not a number", r->opt, r->want);
    }
}

START_TEST(train_defaults_match_design) {
    mdiff_config c;
    memset(&c, 0xA5, sizeof c); /* whatever the caller's memory held */
    mdiff_config_defaults(&c);
    char msg[4096] = "";
    int bad = 0;
    for (int i = 0; i < N_DEFAULTS; i++) {
        const default_row *r = &DEFAULTS[i];
        check_row(r);
        if (matches(r, &c)) continue;
        char got[MDIFF_PATH_MAX + 64];
        render(r, &c, got, sizeof got);
        size_t used = strlen(msg);
        if (used < sizeof msg)
            snprintf(msg + used, sizeof msg - used, "\n  %s: mdiff_config_defaults gives '%.64s', "
                     "DESIGN.md section 5 says '%s'", r->opt, got, r->want);
        bad++;
    }
    ck_assert_msg(bad == 0, "%d default(s) differ from the design (change the row of DEFAULTS in "
                  "tests/unit/test_common.c only as a deliberate decision, with DESIGN.md):%s", bad,
                  msg);
}
END_TEST

/* Every option of config's field table (what mdiff-train parses, --help prints and checkpoints
 * record) has exactly one row, for the same member: a new option needs its default decided here. */
START_TEST(train_defaults_table_is_complete) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    int seen[N_DEFAULTS] = {0};
    for (int k = 0; k < n; k++) {
        if (!f[k].opt) continue;
        int row = -1;
        for (int i = 0; i < N_DEFAULTS; i++)
            if (strcmp(DEFAULTS[i].opt, f[k].opt) == 0) row = i;
        ck_assert_msg(row >= 0, "option %s has no row in DEFAULTS (tests/unit/test_common.c): add "
                      "it with its default from DESIGN.md section 5", f[k].opt);
        ck_assert_msg(DEFAULTS[row].off == f[k].off, "%s: the field table and DEFAULTS name "
                      "different members", f[k].opt);
        if (DEFAULTS[row].kind == D_LIST)
            ck_assert_msg(DEFAULTS[row].count_off == f[k].count_off, "%s: count member", f[k].opt);
        seen[row]++;
    }
    for (int i = 0; i < N_DEFAULTS; i++)
        ck_assert_msg(seen[i] == 1, "DEFAULTS row %s is not an option of mdiff-train",
                      DEFAULTS[i].opt);
}
END_TEST

/* Typing every default on the command line, as §5 writes it, changes nothing: each value is
 * accepted (within its option's range and choices) and parses to the default's bits. */
START_TEST(train_defaults_typed_change_nothing) {
    char *argv[2 * N_DEFAULTS + 8];
    int argc = 0;
    argv[argc++] = "mdiff-train";
    argv[argc++] = "--data";
    argv[argc++] = "d.h5";
    argv[argc++] = "--run-dir";
    argv[argc++] = "run";
    for (int i = 0; i < N_DEFAULTS; i++) {
        const default_row *r = &DEFAULTS[i];
        if (!r->want[0] || r->kind == D_FLAG) continue; /* nothing to type: none, or a flag off */
        argv[argc++] = (char *)r->opt;
        argv[argc++] = (char *)r->want;
    }
    argv[argc] = NULL;
    mdiff_config def, typed;
    mdiff_given given;
    mdiff_config_defaults(&def);
    mdiff_config_parse_train(&typed, &given, argc, argv);
    for (int i = 0; i < N_DEFAULTS; i++) {
        const default_row *r = &DEFAULTS[i];
        if (strcmp(r->opt, "--data") == 0 || strcmp(r->opt, "--run-dir") == 0) continue;
        char a[MDIFF_PATH_MAX + 64], b[MDIFF_PATH_MAX + 64];
        render(r, &def, a, sizeof a);
        render(r, &typed, b, sizeof b);
        ck_assert_msg(strcmp(a, b) == 0, "%s %s parses to %s, the default is %s", r->opt, r->want,
                      b, a);
    }
}
END_TEST

/* --opt=value (issue 16): the joined form parses to the same config as the separate one, for
 * options of every kind: int64, int, float, double, string with choices, path, list, "none" list,
 * and a flag (which takes no joined value). Only the first '=' splits: a path may hold '='. */
START_TEST(train_opt_equals_value) {
    char *sep[] = {"mdiff-train", "--data", "a=b.h5", "--run-dir", "run", "--steps", "123",
                   "--ch", "16", "--dropout", "0.25", "--lr", "1e-3", "--schedule", "cosine",
                   "--mult", "1,2,2,4", "--attn", "none", "--seed", "7", "--flip", NULL};
    char *eq[] = {"mdiff-train", "--data=a=b.h5", "--run-dir=run", "--steps=123", "--ch=16",
                  "--dropout=0.25", "--lr=1e-3", "--schedule=cosine", "--mult=1,2,2,4",
                  "--attn=none", "--seed=7", "--flip", NULL};
    mdiff_config a, b, def;
    mdiff_given ga, gb;
    mdiff_config_defaults(&def);
    mdiff_config_parse_train(&a, &ga, (int)(sizeof sep / sizeof sep[0]) - 1, sep);
    mdiff_config_parse_train(&b, &gb, (int)(sizeof eq / sizeof eq[0]) - 1, eq);
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    for (int i = 0; i < n; i++) {
        char va[MDIFF_PATH_MAX + 64], vb[MDIFF_PATH_MAX + 64];
        mdiff_field_format(&f[i], &a, va, sizeof va);
        mdiff_field_format(&f[i], &b, vb, sizeof vb);
        ck_assert_msg(mdiff_field_equal(&f[i], &a, &b), "%s: '%s' separate, '%s' joined", f[i].attr,
                      va, vb);
    }
    /* and the values are the typed ones, not the defaults both forms might have kept */
    ck_assert_str_eq(b.data, "a=b.h5");
    ck_assert_int_eq(b.steps, 123);
    ck_assert_int_eq(b.model.ch, 16);
    ck_assert(b.model.dropout == 0.25f && b.lr == 1e-3);
    ck_assert_str_eq(b.diff.schedule, "cosine");
    ck_assert_int_eq(b.model.n_levels, 4);
    ck_assert_int_eq(b.model.mult[3], 4);
    ck_assert_int_eq(b.model.n_attn, 0);
    ck_assert_int_eq(b.seed, 7);
    ck_assert_int_eq(b.flip, 1);
    ck_assert_int_eq(def.flip, 0);
    /* the given-flag lists agree, so resume tells the user's choices from defaults the same way */
    ck_assert_int_eq(ga.n, gb.n);
    for (int i = 0; i < ga.n; i++) ck_assert(mdiff_given_has(&gb, ga.attr[i]));
}
END_TEST

/* The splitter itself: name and joined value, a short option, no value, an empty value. */
START_TEST(arg_split) {
    mdiff_arg o;
    ck_assert_int_eq(mdiff_arg_split("--steps=100", &o), 1);
    ck_assert(mdiff_arg_is(&o, "--steps") && !mdiff_arg_is(&o, "--step"));
    ck_assert_str_eq(o.value, "100");
    ck_assert_str_eq(o.opt, "--steps");
    ck_assert_int_eq(mdiff_arg_split("-n=8", &o), 1);
    ck_assert(mdiff_arg_is(&o, "-n"));
    ck_assert_str_eq(o.value, "8");
    ck_assert_int_eq(mdiff_arg_split("--flip", &o), 1);
    ck_assert(mdiff_arg_is(&o, "--flip") && o.value == NULL);
    ck_assert_int_eq(mdiff_arg_split("--steps=", &o), 1);
    ck_assert(mdiff_arg_is(&o, "--steps"));
    ck_assert_str_eq(o.value, "");
    ck_assert_int_eq(mdiff_arg_split("ckpt.h5", &o), 0);
    ck_assert(!mdiff_arg_is(&o, "ckpt.h5"));
}
END_TEST

static void parse_train_args(char **argv) {
    int argc = 0;
    while (argv[argc]) argc++;
    mdiff_config c;
    mdiff_given g;
    mdiff_config_parse_train(&c, &g, argc, argv);
}

START_TEST(flag_with_value_exits_1) {
    char *argv[] = {"mdiff-train", "--data", "d.h5", "--run-dir", "r", "--flip=1", NULL};
    parse_train_args(argv);
}
END_TEST

START_TEST(empty_joined_value_exits_1) {
    char *argv[] = {"mdiff-train", "--data", "d.h5", "--run-dir", "r", "--steps=", NULL};
    parse_train_args(argv);
}
END_TEST

START_TEST(bad_joined_value_exits_1) {
    char *argv[] = {"mdiff-train", "--data", "d.h5", "--run-dir", "r", "--mult=1,,2", NULL};
    parse_train_args(argv);
}
END_TEST

/* (--resume, not --data: an accepted empty --data would exit 1 anyway, as "--data is required") */
START_TEST(empty_joined_path_exits_1) {
    char *argv[] = {"mdiff-train", "--data", "d.h5", "--run-dir", "r", "--resume=", NULL};
    parse_train_args(argv);
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, crc32_known_answer);
    tcase_add_test(tc, strings_bounded);
    tcase_add_exit_test(tc, strcpy_overflow_is_internal_error, 2);
    tcase_add_test(tc, parse_numbers);
    tcase_add_exit_test(tc, parse_non_number_exits_1, 1);
    tcase_add_exit_test(tc, parse_out_of_range_exits_1, 1);
    tcase_add_exit_test(tc, parse_float_nan_exits_1, 1);
    tcase_add_exit_test(tc, parse_list_trailing_comma_exits_1, 1);
    tcase_add_test(tc, aligned_alloc_is_aligned_and_zero);
    tcase_add_test(tc, train_defaults_match_design);
    tcase_add_test(tc, train_defaults_table_is_complete);
    tcase_add_test(tc, train_defaults_typed_change_nothing);
    tcase_add_test(tc, train_opt_equals_value);
    tcase_add_test(tc, arg_split);
    tcase_add_exit_test(tc, flag_with_value_exits_1, 1);
    tcase_add_exit_test(tc, empty_joined_value_exits_1, 1);
    tcase_add_exit_test(tc, bad_joined_value_exits_1, 1);
    tcase_add_exit_test(tc, empty_joined_path_exits_1, 1);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
