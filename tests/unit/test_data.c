/* Tests of the data module: shard ranges, the writer and reader (single files and shard sets,
 * fingerprints against CRC32 of the test's own arrays), the loader with P ranks simulated in one
 * process (ownership, epochs, determinism, resume, flips, resident and streaming paths), the toy
 * generators against their definitions, a small IDX source, and bad input (exit 1). */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "mdiff/common.h"
#include "mdiff/data.h"
#include "mdiff/rng.h"

static char g_dir[256];

static void path_in(char *dst, size_t cap, const char *name) { snprintf(dst, cap, "%s/%s", g_dir, name); }

/* Deterministic image content: row i, value j. */
static uint8_t *make_pixels(int64_t n, int64_t rb, int salt) {
    uint8_t *p = malloc((size_t)(n * rb));
    for (int64_t i = 0; i < n * rb; i++) p[i] = (uint8_t)((i * 37 + (i / rb) * 11 + salt) & 255);
    return p;
}

static int32_t *make_labels(int64_t n) {
    int32_t *l = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) l[i] = (int32_t)((i * 7) % 10);
    return l;
}

/* Writes n images (c,h,w) with labels as `name` (shards 0: one file; K: prefix). */
static void write_images(const char *name, int shards, int64_t n, int c, int h, int w, int64_t chunk,
                         int salt, uint32_t *fp) {
    char p[512];
    path_in(p, sizeof p, name);
    uint8_t *px = make_pixels(n, (int64_t)c * h * w, salt);
    int32_t *lb = make_labels(n);
    mdiff_data_content ct = {.is_images = 1, .n = n, .c = c, .h = h, .w = w, .data = px, .labels = lb,
                             .kind = "test", .chunk_rows = chunk};
    mdiff_data_write(p, shards, &ct);
    if (fp) *fp = mdiff_data_fingerprint(&ct);
    free(px);
    free(lb);
}

/* ---- shard ranges ---------------------------------------------------------------------------- */

START_TEST(shard_range_partitions) {
    const int64_t ns[] = {1, 7, 10, 53, 100, 1001};
    for (int p = 1; p <= 7; p++) {
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            int64_t n = ns[t];
            if (n < p) continue;
            int *owner = calloc((size_t)n, sizeof(int));
            int64_t prev_hi = 0;
            for (int r = 0; r < p; r++) {
                int64_t lo, hi;
                mdiff_shard_range(n, p, r, &lo, &hi);
                ck_assert_int_eq(lo, prev_hi);            /* contiguous, in rank order */
                ck_assert_int_le(hi - lo, n / p + 1);     /* spread evenly */
                ck_assert_int_ge(hi - lo, n / p);
                for (int64_t g = lo; g < hi; g++) owner[g]++;
                prev_hi = hi;
            }
            ck_assert_int_eq(prev_hi, n);
            for (int64_t g = 0; g < n; g++) ck_assert_int_eq(owner[g], 1);
            free(owner);
        }
    }
    /* 64-bit: r*N overflows int64 for such N; compare with 128-bit arithmetic */
    int64_t n = INT64_MAX - 5;
    for (int p = 2; p <= 7; p++)
        for (int r = 0; r < p; r++) {
            int64_t lo, hi;
            mdiff_shard_range(n, p, r, &lo, &hi);
            ck_assert_int_eq(lo, (int64_t)(((__int128)r * n) / p));
            ck_assert_int_eq(hi, (int64_t)(((__int128)(r + 1) * n) / p));
        }
}
END_TEST

/* ---- write / read ---------------------------------------------------------------------------- */

START_TEST(single_file_round_trip) {
    const int64_t n = 37;
    const int c = 1, h = 3, w = 5, rb = 15;
    uint32_t fp;
    write_images("single.h5", 0, n, c, h, w, 0, 3, &fp);
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); /* the writer closed its file */
    uint8_t *px = make_pixels(n, rb, 3);
    int32_t *lb = make_labels(n);
    /* the fingerprint is the CRC32 of the pixels then the labels, independently of the writer */
    uint32_t want = (uint32_t)crc32(crc32(0, px, (uInt)(n * rb)), (const Bytef *)lb, (uInt)(n * 4));
    ck_assert_uint_eq(fp, want);
    char p[512];
    path_in(p, sizeof p, "single.h5");
    mdiff_dataset *ds = mdiff_dataset_open(p);
    ck_assert_int_eq(mdiff_dataset_rows(ds), n);
    ck_assert_int_eq(mdiff_dataset_is_images(ds), 1);
    ck_assert_int_eq(mdiff_dataset_has_labels(ds), 1);
    ck_assert_int_eq(mdiff_dataset_row_floats(ds), rb);
    int cc, hh, ww;
    mdiff_dataset_shape(ds, &cc, &hh, &ww);
    ck_assert(cc == c && hh == h && ww == w);
    ck_assert_uint_eq(mdiff_dataset_fingerprint(ds), want);
    ck_assert_str_eq(mdiff_dataset_kind(ds), "test");
    float *f = malloc(n * rb * sizeof(float));
    mdiff_data_read_rows(ds, 0, n, f);
    /* x/127.5 - 1 in float: one rounding of the quotient and one of the difference, so within
     * 2 ulp(1) = 2.4e-7 of the exact value */
    for (int64_t i = 0; i < n * rb; i++) ck_assert_double_eq_tol(f[i], px[i] / 127.5 - 1.0, 2.4e-7);
    int32_t got[37];
    mdiff_data_read_labels(ds, 0, n, got);
    for (int i = 0; i < n; i++) ck_assert_int_eq(got[i], lb[i]);
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
    double mn = 255, mx = 0;
    for (int64_t i = 0; i < n * rb; i++) {
        if (px[i] < mn) mn = px[i];
        if (px[i] > mx) mx = px[i];
    }
    ck_assert(st.vmin == mn && st.vmax == mx && st.lmin == 0 && st.lmax == 9);
    ck_assert_int_gt(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); /* one file kept open */
    mdiff_dataset_close(ds);
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); /* close closes everything */
    free(f);
    free(px);
    free(lb);
}
END_TEST

static void check_same_rows(mdiff_dataset *a, mdiff_dataset *b, int64_t lo, int64_t cnt) {
    int64_t rf = mdiff_dataset_row_floats(a);
    float *x = malloc(cnt * rf * sizeof(float)), *y = malloc(cnt * rf * sizeof(float));
    mdiff_data_read_rows(a, lo, cnt, x);
    mdiff_data_read_rows(b, lo, cnt, y);
    ck_assert_int_eq(memcmp(x, y, cnt * rf * sizeof(float)), 0);
    free(x);
    free(y);
}

START_TEST(shard_sets_concatenate) {
    const int64_t n = 37;
    uint32_t fp1;
    write_images("whole.h5", 0, n, 1, 2, 3, 4, 5, &fp1);
    char whole[512];
    path_in(whole, sizeof whole, "whole.h5");
    mdiff_dataset *ref = mdiff_dataset_open(whole);
    for (int K = 1; K <= 5; K++) {
        char sub[512], name[64], prefix[512];
        snprintf(name, sizeof name, "dir%d", K);
        path_in(sub, sizeof sub, name);
        mkdir(sub, 0755);
        snprintf(name, sizeof name, "dir%d/set", K);
        uint32_t fpk;
        write_images(name, K, n, 1, 2, 3, 4, 5, &fpk);
        ck_assert_uint_eq(fpk, fp1);
        path_in(prefix, sizeof prefix, name);
        /* the same set as a prefix, a directory and a comma-separated list */
        char list[4096] = "";
        for (int k = 0; k < K; k++) {
            char f[512];
            mdiff_data_shard_name(f, sizeof f, prefix, k, K);
            if (k) strcat(list, ",");
            strcat(list, f);
        }
        const char *specs[3] = {prefix, sub, list};
        for (int s = 0; s < 3; s++) {
            mdiff_dataset *ds = mdiff_dataset_open(specs[s]);
            ck_assert_int_eq(mdiff_dataset_rows(ds), n);
            ck_assert_int_eq(mdiff_dataset_nfiles(ds), K);
            ck_assert_uint_eq(mdiff_dataset_fingerprint(ds), fp1);
            for (int k = 0; k < K; k++) {
                mdiff_dataset_file_info fi;
                mdiff_dataset_file(ds, k, &fi);
                int64_t lo, hi;
                mdiff_shard_range(n, K, k, &lo, &hi);
                ck_assert(fi.row_offset == lo && fi.rows == hi - lo && fi.shard_index == k &&
                          fi.shard_count == K && fi.chunk_rows == 4);
            }
            check_same_rows(ref, ds, 0, n);
            /* spans that start and end inside shards, crossing boundaries */
            check_same_rows(ref, ds, 5, 27);
            check_same_rows(ref, ds, 36, 1);
            int32_t la[37], lb[37];
            mdiff_data_read_labels(ref, 3, 30, la);
            mdiff_data_read_labels(ds, 3, 30, lb);
            ck_assert_int_eq(memcmp(la, lb, sizeof(int32_t) * 30), 0);
            mdiff_dataset_stats st;
            mdiff_dataset_verify(ds, &st);
            ck_assert_uint_eq(st.fingerprint, fp1);
            mdiff_dataset_close(ds);
        }
    }
    mdiff_dataset_close(ref);
}
END_TEST

START_TEST(independent_files_form_one_set) {
    uint32_t fa, fb;
    write_images("ind_a.h5", 0, 10, 1, 2, 2, 0, 1, &fa);
    write_images("ind_b.h5", 0, 6, 1, 2, 2, 0, 2, &fb);
    char a[512], b[512], spec[1100];
    path_in(a, sizeof a, "ind_a.h5");
    path_in(b, sizeof b, "ind_b.h5");
    snprintf(spec, sizeof spec, "%s,%s", a, b);
    mdiff_dataset *ds = mdiff_dataset_open(spec);
    ck_assert_int_eq(mdiff_dataset_rows(ds), 16);
    uint8_t le[8] = {(uint8_t)fa, (uint8_t)(fa >> 8), (uint8_t)(fa >> 16), (uint8_t)(fa >> 24),
                     (uint8_t)fb, (uint8_t)(fb >> 8), (uint8_t)(fb >> 16), (uint8_t)(fb >> 24)};
    ck_assert_uint_eq(mdiff_dataset_fingerprint(ds), (uint32_t)crc32(0, le, 8));
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
    float row[4];
    mdiff_data_read_rows(ds, 12, 1, row); /* row 2 of b */
    uint8_t *pb = make_pixels(6, 4, 2);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(row[i], pb[8 + i] / 127.5 - 1.0, 2.4e-7);
    free(pb);
    mdiff_dataset_close(ds);
}
END_TEST

/* Separate arguments (a shell glob PREFIX-*.h5 in any order) grouped into data set specs: shard
 * files of one set become one spec in shard order, at the place of the first of them; everything
 * else stays as given. Names only: no file needs to exist for a complete set. */
START_TEST(group_args_forms_sets) {
    char *args[] = {"x/a-00002-of-00003.h5", "one.h5", "x/a-00000-of-00003.h5", "p.h5,q.h5",
                    "x/a-00001-of-00003.h5", "x/b-00000-of-00001.h5", "y/a-00001-of-00002.h5",
                    "y/a-00000-of-00002.h5", "x/a-0000-of-00003.h5", "x/a-00003-of-00003.h5", "pre"};
    const char *want[] = {"x/a-00000-of-00003.h5,x/a-00001-of-00003.h5,x/a-00002-of-00003.h5",
                          "one.h5", "p.h5,q.h5", "x/b-00000-of-00001.h5",
                          "y/a-00000-of-00002.h5,y/a-00001-of-00002.h5",
                          "x/a-0000-of-00003.h5",  /* not a shard name: 4 digits */
                          "x/a-00003-of-00003.h5", /* not a shard name: index >= count */
                          "pre"};
    char **specs;
    int n = mdiff_data_group_args((int)(sizeof args / sizeof args[0]), args, &specs);
    ck_assert_int_eq(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(specs[i], want[i]);
        free(specs[i]);
    }
    free(specs);
}
END_TEST

/* A real set given file by file in reverse order opens as the set (same rows, one fingerprint). */
START_TEST(group_args_reverse_order_opens_as_set) {
    const int64_t n = 23;
    uint32_t fp;
    write_images("rev", 4, n, 1, 2, 3, 4, 7, &fp);
    char prefix[512], f[4][600];
    path_in(prefix, sizeof prefix, "rev");
    char *args[4];
    for (int k = 0; k < 4; k++) {
        mdiff_data_shard_name(f[k], sizeof f[k], prefix, 3 - k, 4);
        args[k] = f[k];
    }
    char **specs;
    ck_assert_int_eq(mdiff_data_group_args(4, args, &specs), 1);
    mdiff_dataset *ds = mdiff_dataset_open(specs[0]);
    mdiff_dataset *ref = mdiff_dataset_open(prefix);
    ck_assert_int_eq(mdiff_dataset_nfiles(ds), 4);
    ck_assert_int_eq(mdiff_dataset_rows(ds), n);
    ck_assert_uint_eq(mdiff_dataset_fingerprint(ds), fp);
    check_same_rows(ref, ds, 0, n);
    mdiff_dataset_close(ref);
    mdiff_dataset_close(ds);
    free(specs[0]);
    free(specs);
}
END_TEST

START_TEST(bad_group_args_incomplete) { /* 3 of 4 shards: exit 1 */
    char *args[] = {"x/s-00000-of-00004.h5", "x/s-00001-of-00004.h5", "x/s-00003-of-00004.h5"};
    char **specs;
    mdiff_data_group_args(3, args, &specs);
}
END_TEST
START_TEST(bad_group_args_twice) {
    char *args[] = {"s-00000-of-00002.h5", "s-00001-of-00002.h5", "s-00000-of-00002.h5"};
    char **specs;
    mdiff_data_group_args(3, args, &specs);
}
END_TEST

/* ---- loader ---------------------------------------------------------------------------------- */

#define LN 53 /* rows of the loader's test set: not divisible by 2..7 */

static mdiff_dataset *loader_set(void) {
    char p[512];
    path_in(p, sizeof p, "ld/set");
    struct stat st;
    if (stat(p, &st) != 0) {
        char d[512];
        path_in(d, sizeof d, "ld");
        mkdir(d, 0755);
        write_images("ld/set", 3, LN, 1, 2, 3, 4, 9, NULL);
    }
    return mdiff_dataset_open(p);
}

/* Distinct (file, chunk) pairs holding rows [lo, hi): the blocks one streaming epoch must read. */
static int64_t count_blocks(mdiff_dataset *ds, int64_t lo, int64_t hi) {
    int64_t cnt = 0, last_f = -1, last_c = -1;
    for (int64_t g = lo; g < hi; g++) {
        for (int i = 0; i < mdiff_dataset_nfiles(ds); i++) {
            mdiff_dataset_file_info fi;
            mdiff_dataset_file(ds, i, &fi);
            if (g < fi.row_offset || g >= fi.row_offset + fi.rows) continue;
            int64_t c = (g - fi.row_offset) / fi.chunk_rows;
            if (i != last_f || c != last_c) cnt++;
            last_f = i;
            last_c = c;
        }
    }
    return cnt;
}

/* Budgets: 0 (default, resident) and 30 bytes: 5 rows of 6 bytes, below the 24-byte block
 * times two, so one block per window (streaming). */
static const int64_t BUDGETS[2] = {0, 30};

START_TEST(loader_owns_and_visits_each_row_once) {
    mdiff_dataset *ds = loader_set();
    float *ref = malloc(LN * 6 * sizeof(float));
    mdiff_data_read_rows(ds, 0, LN, ref);
    for (int mode = 0; mode < 2; mode++) {
        for (int P = 1; P <= 7; P++) {
            int owner[LN] = {0};
            for (int r = 0; r < P; r++) {
                mdiff_loader *L = mdiff_loader_create(ds, r, P, 1234, 0, BUDGETS[mode]);
                ck_assert_int_eq(mdiff_loader_is_resident(L), mode == 0);
                int64_t lo, hi, reads, rows;
                mdiff_loader_range(L, &lo, &hi);
                int64_t elo, ehi;
                mdiff_shard_range(LN, P, r, &elo, &ehi);
                ck_assert(lo == elo && hi == ehi);
                for (int64_t g = lo; g < hi; g++) owner[g]++;
                int64_t m = hi - lo, total = 3 * m;
                int64_t *rows_seen = malloc(total * sizeof(int64_t));
                float *x = malloc(total * 6 * sizeof(float));
                /* batches of 5 rows: they straddle epoch ends (m is not a multiple of 5) */
                int64_t got = 0;
                while (got < total) {
                    int b = total - got < 5 ? (int)(total - got) : 5;
                    mdiff_loader_next(L, x + got * 6, rows_seen + got, b, 0, 0);
                    got += b;
                    if (mode == 1 && got == m) { /* streaming: each block read once per epoch */
                        mdiff_loader_io(L, &reads, &rows);
                        ck_assert_int_eq(rows, m);
                        ck_assert_int_eq(reads, count_blocks(ds, lo, hi));
                    }
                }
                for (int e = 0; e < 3; e++) {
                    int *seen = calloc(m, sizeof(int));
                    for (int64_t j = e * m; j < (e + 1) * m; j++) {
                        int64_t g = rows_seen[j];
                        ck_assert(g >= lo && g < hi);
                        seen[g - lo]++;
                        ck_assert_int_eq(memcmp(x + j * 6, ref + g * 6, 6 * sizeof(float)), 0);
                    }
                    for (int64_t i = 0; i < m; i++) ck_assert_int_eq(seen[i], 1);
                    free(seen);
                }
                /* a new epoch is a new order (m >= 8 here has 8! orders) */
                if (m >= 8) ck_assert(memcmp(rows_seen, rows_seen + m, m * sizeof(int64_t)) != 0);
                int64_t ep, cur;
                mdiff_loader_get_state(L, &ep, &cur);
                ck_assert(ep == 2 && cur == m);
                free(rows_seen);
                free(x);
                mdiff_loader_free(L);
            }
            for (int g = 0; g < LN; g++) ck_assert_int_eq(owner[g], 1);
        }
    }
    free(ref);
    mdiff_dataset_close(ds);
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}
END_TEST

static void draw_rows(mdiff_loader *L, int64_t *rows, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 7) {
        int b = n - i < 7 ? (int)(n - i) : 7;
        mdiff_loader_next(L, x + i * 6, rows + i, b, 0, 0);
    }
}

START_TEST(loader_determinism_and_resume) {
    mdiff_dataset *ds = loader_set();
    for (int mode = 0; mode < 2; mode++) {
        const int64_t n = 3 * LN;
        int64_t *a = malloc(n * sizeof(int64_t)), *b = malloc(n * sizeof(int64_t));
        float *xa = malloc(n * 6 * sizeof(float)), *xb = malloc(n * 6 * sizeof(float));
        mdiff_loader *A = mdiff_loader_create(ds, 0, 1, 77, 0, BUDGETS[mode]);
        mdiff_loader *B = mdiff_loader_create(ds, 0, 1, 77, 0, BUDGETS[mode]);
        draw_rows(A, a, xa, n);
        draw_rows(B, b, xb, n);
        ck_assert_int_eq(memcmp(a, b, n * sizeof(int64_t)), 0); /* same seed, same order */
        mdiff_loader *C = mdiff_loader_create(ds, 0, 1, 78, 0, BUDGETS[mode]);
        draw_rows(C, b, xb, n);
        ck_assert(memcmp(a, b, LN * sizeof(int64_t)) != 0); /* another seed, another order */
        mdiff_loader_free(B);
        mdiff_loader_free(C);
        /* resume from states inside windows, at a window end and at an epoch end */
        const int64_t cuts[] = {0, 1, 4, 13, LN - 1, LN, LN + 20, 2 * LN};
        for (size_t t = 0; t < sizeof cuts / sizeof cuts[0]; t++) {
            mdiff_loader *R = mdiff_loader_create(ds, 0, 1, 77, 0, BUDGETS[mode]);
            int64_t ep = cuts[t] / LN, cur = cuts[t] % LN;
            if (cuts[t] == LN || cuts[t] == 2 * LN) { /* as get_state reports an epoch end */
                ep--;
                cur = LN;
            }
            mdiff_loader_set_state(R, ep, cur);
            int64_t m = n - cuts[t];
            draw_rows(R, b, xb, m);
            ck_assert_int_eq(memcmp(a + cuts[t], b, m * sizeof(int64_t)), 0);
            ck_assert_int_eq(memcmp(xa + cuts[t] * 6, xb, m * 6 * sizeof(float)), 0);
            mdiff_loader_free(R);
        }
        mdiff_loader_free(A);
        free(a);
        free(b);
        free(xa);
        free(xb);
    }
    mdiff_dataset_close(ds);
}
END_TEST

START_TEST(loader_streaming_shuffles_blocks) {
    /* streaming with one block per window: the block visited first must vary across epochs
     * (15 blocks, 20 epochs: a shuffled block order gives ~11 distinct first blocks; a fixed
     * block order gives 1) */
    mdiff_dataset *ds = loader_set();
    mdiff_loader *L = mdiff_loader_create(ds, 0, 1, 11, 0, BUDGETS[1]);
    ck_assert_int_eq(count_blocks(ds, 0, LN), 15); /* shards of 17, 18, 18 rows, chunks of 4 */
    int firsts[16] = {0}, distinct = 0;
    float x[LN * 6];
    int64_t rows[LN];
    for (int e = 0; e < 20; e++) {
        mdiff_loader_next(L, x, rows, LN, 0, 0);
        int blk = -1; /* the block of rows[0]: count blocks of [0, row] */
        blk = (int)count_blocks(ds, 0, rows[0] + 1) - 1;
        if (!firsts[blk]++) distinct++;
    }
    ck_assert_int_ge(distinct, 5);
    mdiff_loader_free(L);
    mdiff_dataset_close(ds);
}
END_TEST

START_TEST(loader_flip) {
    mdiff_dataset *ds = loader_set();
    float *ref = malloc(LN * 6 * sizeof(float));
    mdiff_data_read_rows(ds, 0, LN, ref);
    mdiff_loader *L = mdiff_loader_create(ds, 0, 1, 5, 1, 0);
    const int b = 200;
    float *x = malloc(b * 6 * sizeof(float));
    int64_t rows[200];
    const uint64_t step = 42;
    const int64_t g0 = 1000;
    mdiff_loader_next(L, x, rows, b, step, g0);
    int flipped = 0;
    for (int j = 0; j < b; j++) {
        mdiff_rng r;
        mdiff_rng_init(&r, 5, MDIFF_RNG_FLIP, step, g0 + j);
        int fl = mdiff_rng_uniform(&r) < 0.5f;
        flipped += fl;
        const float *s = ref + rows[j] * 6;
        for (int y = 0; y < 2; y++)
            for (int xx = 0; xx < 3; xx++)
                ck_assert_float_eq(x[j * 6 + y * 3 + xx], s[y * 3 + (fl ? 2 - xx : xx)]);
    }
    /* binomial(200, 1/2): sd 7.1, so [60, 140] is a 5.6-sigma band */
    ck_assert(flipped > 60 && flipped < 140);
    free(x);
    free(ref);
    mdiff_loader_free(L);
    mdiff_dataset_close(ds);
}
END_TEST

START_TEST(points_round_trip) {
    const int64_t n = 20;
    float pts[40];
    for (int i = 0; i < 40; i++) pts[i] = (float)(i * 0.37 - 3.1);
    char p[512];
    path_in(p, sizeof p, "pts.h5");
    double sc[2] = {0.5, 2.0};
    mdiff_data_content ct = {.is_images = 0, .n = n, .c = 2, .h = 1, .w = 1, .data = pts, .kind = "moons",
                             .n_scale = 2, .scale = sc};
    mdiff_data_write(p, 0, &ct);
    mdiff_dataset *ds = mdiff_dataset_open(p);
    ck_assert_int_eq(mdiff_dataset_is_images(ds), 0);
    ck_assert_int_eq(mdiff_dataset_row_floats(ds), 2);
    double got_sc[2];
    ck_assert_int_eq(mdiff_dataset_scale(ds, got_sc, 2), 2);
    ck_assert(got_sc[0] == 0.5 && got_sc[1] == 2.0);
    mdiff_loader *L = mdiff_loader_create(ds, 1, 3, 0, 0, 0);
    float x[2 * 7];
    int64_t rows[7];
    mdiff_loader_next(L, x, rows, 7, 0, 0);
    for (int j = 0; j < 7; j++) {
        ck_assert(rows[j] >= 6 && rows[j] < 13);
        ck_assert(x[2 * j] == pts[2 * rows[j]] && x[2 * j + 1] == pts[2 * rows[j] + 1]);
    }
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
    ck_assert_double_eq_tol(st.vmin, -3.1, 1e-6);
    mdiff_loader_free(L);
    mdiff_dataset_close(ds);
}
END_TEST

/* ---- toy sets -------------------------------------------------------------------------------- */

static void check_unit_std(const float *p, int64_t n) {
    for (int a = 0; a < 2; a++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) s += p[2 * i + a];
        for (int64_t i = 0; i < n; i++) s2 += (p[2 * i + a] - s / n) * (p[2 * i + a] - s / n);
        /* scaled in double, stored in float: relative error ~1e-7 per value */
        ck_assert_double_eq_tol(sqrt(s2 / n), 1.0, 1e-5);
    }
}

START_TEST(toy_gaussians8) {
    const int64_t n = 8000;
    double sc[2];
    float *p = mdiff_data_make_toy("gaussians8", n, 3, sc);
    check_unit_std(p, n);
    double s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = 2 * M_PI * (i % 8) / 8.0;
        double dx = p[2 * i] / sc[0] - 2 * cos(a), dy = p[2 * i + 1] / sc[1] - 2 * sin(a);
        s2 += dx * dx + dy * dy;
    }
    /* residual std per coordinate must be 0.1: estimate from 16000 values has relative sd
     * 1/sqrt(2*16000) = 0.56%, so +-3% is over 5 sigma */
    ck_assert_double_eq_tol(sqrt(s2 / (2 * n)), 0.1, 0.003);
    free(p);
}
END_TEST

START_TEST(toy_swissroll) {
    const int64_t n = 4000;
    double sc[2];
    float *p = mdiff_data_make_toy("swissroll", n, 3, sc);
    check_unit_std(p, n);
    double s2 = 0, tmin = 1e9, tmax = -1e9;
    for (int64_t i = 0; i < n; i++) {
        double x = p[2 * i] / sc[0], y = p[2 * i + 1] / sc[1];
        double r = sqrt(x * x + y * y), th = atan2(y, x);
        /* t = th + 2 pi k closest to the radius: the spiral has r = t */
        double k = round((r - th) / (2 * M_PI)), t = th + 2 * M_PI * k;
        s2 += (r - t) * (r - t);
        if (t < tmin) tmin = t;
        if (t > tmax) tmax = t;
    }
    /* r - t = n_r - n_tangential / t: variance 0.25^2 (1 + 1/t^2), rms 0.25..0.257 over
     * t in [1.5 pi, 4.5 pi]; sd of the rms estimate 0.25/sqrt(8000) = 0.003, so +-0.02 */
    ck_assert_double_eq_tol(sqrt(s2 / n), 0.253, 0.02);
    /* t covers [1.5 pi, 4.5 pi], blurred by the noise (0.25, at most ~5 sd = 1.25) */
    ck_assert(tmin > 1.5 * M_PI - 1.25 && tmin < 1.5 * M_PI + 0.1);
    ck_assert(tmax < 4.5 * M_PI + 1.25 && tmax > 4.5 * M_PI - 0.1);
    free(p);
}
END_TEST

START_TEST(toy_moons) {
    const int64_t n = 4001, nout = n / 2, nin = n - nout;
    double sc[2];
    float *p = mdiff_data_make_toy("moons", n, 3, sc);
    check_unit_std(p, n);
    double s2 = 0;
    for (int64_t i = 0; i < n; i++) { /* scikit-learn's make_moons before noise */
        double cx, cy;
        if (i < nout) {
            double a = M_PI * i / (nout - 1);
            cx = cos(a);
            cy = sin(a);
        } else {
            double a = M_PI * (i - nout) / (nin - 1);
            cx = 1 - cos(a);
            cy = 1 - sin(a) - 0.5;
        }
        double dx = p[2 * i] / sc[0] - cx, dy = p[2 * i + 1] / sc[1] - cy;
        s2 += dx * dx + dy * dy;
    }
    /* noise 0.05 per coordinate; 8002 values: relative sd 0.8%, +-4% is 5 sigma */
    ck_assert_double_eq_tol(sqrt(s2 / (2 * n)), 0.05, 0.002);
    float *q = mdiff_data_make_toy("moons", n, 3, sc);
    ck_assert_int_eq(memcmp(p, q, n * 2 * sizeof(float)), 0); /* same seed, same set */
    free(q);
    q = mdiff_data_make_toy("moons", n, 4, sc);
    ck_assert(memcmp(p, q, n * 2 * sizeof(float)) != 0);
    free(q);
    free(p);
}
END_TEST

/* ---- IDX source ------------------------------------------------------------------------------ */

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* A small IDX pair in dir (split "train"): n images h x w; knobs to break it. */
static void write_idx(const char *dir, uint32_t n, uint32_t nlab, uint32_t magic, int64_t cut) {
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    uint8_t hdr[16];
    put_be32(hdr, magic);
    put_be32(hdr + 4, n);
    put_be32(hdr + 8, 4);
    put_be32(hdr + 12, 3);
    gzFile g = gzopen(p, "wb");
    gzwrite(g, hdr, 16);
    for (uint32_t i = 0; i < n * 12 - (uint32_t)cut; i++) {
        uint8_t v = (uint8_t)(i * 5);
        gzwrite(g, &v, 1);
    }
    gzclose(g);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    put_be32(hdr, 2049);
    put_be32(hdr + 4, nlab);
    g = gzopen(p, "wb");
    gzwrite(g, hdr, 8);
    for (uint32_t i = 0; i < nlab; i++) {
        uint8_t v = (uint8_t)(i % 10);
        gzwrite(g, &v, 1);
    }
    gzclose(g);
}

static void idx_dir(char *d, size_t cap, const char *name) {
    path_in(d, cap, name);
    mkdir(d, 0755);
}

START_TEST(idx_reads_small_set) {
    char d[512];
    idx_dir(d, sizeof d, "idx_ok");
    write_idx(d, 5, 5, 2051, 0);
    uint8_t *im;
    int32_t *lb;
    int64_t n;
    int h, w;
    mdiff_data_load_fashion_mnist(d, "train", &im, &lb, &n, &h, &w);
    ck_assert(n == 5 && h == 4 && w == 3);
    for (int i = 0; i < 60; i++) ck_assert_int_eq(im[i], (uint8_t)(i * 5));
    for (int i = 0; i < 5; i++) ck_assert_int_eq(lb[i], i);
    free(im);
    free(lb);
}
END_TEST

static void load_idx(const char *name, uint32_t n, uint32_t nlab, uint32_t magic, int64_t cut) {
    char d[512];
    idx_dir(d, sizeof d, name);
    write_idx(d, n, nlab, magic, cut);
    uint8_t *im;
    int32_t *lb;
    int64_t nn;
    int h, w;
    mdiff_data_load_fashion_mnist(d, "train", &im, &lb, &nn, &h, &w);
}

START_TEST(idx_wrong_magic) { load_idx("idx_magic", 5, 5, 2049, 0); }
END_TEST
START_TEST(idx_truncated) { load_idx("idx_trunc", 5, 5, 2051, 7); }
END_TEST
START_TEST(idx_count_mismatch) { load_idx("idx_count", 5, 4, 2051, 0); }
END_TEST
START_TEST(idx_missing_dir) {
    uint8_t *im;
    int32_t *lb;
    int64_t n;
    int h, w;
    mdiff_data_load_fashion_mnist("/nonexistent/mdiff", "train", &im, &lb, &n, &h, &w);
}
END_TEST
START_TEST(idx_corrupt_gzip) {
    char d[512], p[600];
    idx_dir(d, sizeof d, "idx_corrupt");
    write_idx(d, 50, 50, 2051, 0);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", d);
    FILE *f = fopen(p, "r+b"); /* damage the deflate stream past the gzip header */
    fseek(f, 30, SEEK_SET);
    const char junk[16] = "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0";
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    uint8_t *im;
    int32_t *lb;
    int64_t n;
    int h, w;
    mdiff_data_load_fashion_mnist(d, "train", &im, &lb, &n, &h, &w);
}
END_TEST

/* ---- bad data set files ---------------------------------------------------------------------- */

/* A raw HDF5 file: one dataset `name` of type `t` with `rank` dims (data may be NULL: zeros),
 * attributes mdiff_format (a variable-length UTF-8 string, the way h5py writes str) and fingerprint
 * unless `bare`. */
static void raw_file(const char *fname, const char *name, hid_t t, int rank, const hsize_t *dims,
                     const void *data, int bare) {
    char p[512];
    path_in(p, sizeof p, fname);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    if (name) {
        hid_t sp = H5Screate_simple(rank, dims, NULL);
        hid_t d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert(d >= 0);
        if (data) ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
        H5Dclose(d);
        H5Sclose(sp);
    }
    if (!bare) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "mdiff_format", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        const char *v = MDIFF_DATA_FORMAT;
        H5Awrite(a, st, &v);
        H5Aclose(a);
        uint32_t fp = 0;
        a = H5Acreate2(f, "fingerprint", H5T_STD_U32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_UINT32, &fp);
        H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(st);
    }
    H5Fclose(f);
}

static void open_in(const char *fname) {
    char p[512];
    path_in(p, sizeof p, fname);
    mdiff_dataset_open(p);
}

START_TEST(raw_h5py_style_file_opens) {
    /* contiguous layout and a variable-length format string, as a user's h5py script makes */
    hsize_t dims[2] = {4, 3};
    float v[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    raw_file("raw_ok.h5", "points", H5T_NATIVE_FLOAT, 2, dims, v, 0);
    char p[512];
    path_in(p, sizeof p, "raw_ok.h5");
    mdiff_dataset *ds = mdiff_dataset_open(p);
    ck_assert_int_eq(mdiff_dataset_rows(ds), 4);
    float x[12];
    mdiff_data_read_rows(ds, 0, 4, x);
    ck_assert_int_eq(memcmp(x, v, sizeof v), 0);
    mdiff_dataset_close(ds);
}
END_TEST

START_TEST(bad_no_data) {
    hsize_t d[1] = {5};
    raw_file("bad_nodata.h5", "labels", H5T_NATIVE_INT32, 1, d, NULL, 0);
    open_in("bad_nodata.h5");
}
END_TEST
START_TEST(bad_wrong_rank) {
    hsize_t d[3] = {5, 4, 4};
    raw_file("bad_rank.h5", "images", H5T_NATIVE_UINT8, 3, d, NULL, 0);
    open_in("bad_rank.h5");
}
END_TEST
START_TEST(bad_images_dtype) {
    hsize_t d[4] = {5, 1, 2, 2};
    raw_file("bad_dtype.h5", "images", H5T_NATIVE_FLOAT, 4, d, NULL, 0);
    open_in("bad_dtype.h5");
}
END_TEST
START_TEST(bad_points_dtype) {
    hsize_t d[2] = {5, 2};
    raw_file("bad_pdtype.h5", "points", H5T_NATIVE_DOUBLE, 2, d, NULL, 0);
    open_in("bad_pdtype.h5");
}
END_TEST
START_TEST(bad_zero_rows) {
    hsize_t d[4] = {0, 1, 2, 2};
    raw_file("bad_zero.h5", "images", H5T_NATIVE_UINT8, 4, d, NULL, 0);
    open_in("bad_zero.h5");
}
END_TEST
START_TEST(bad_no_format) {
    hsize_t d[4] = {5, 1, 2, 2};
    raw_file("bad_fmt.h5", "images", H5T_NATIVE_UINT8, 4, d, NULL, 1);
    open_in("bad_fmt.h5");
}
END_TEST
static void points_with(const char *fname, float bad) {
    hsize_t d[2] = {3, 2};
    float v[6] = {0, 1, 2, 3, 4, 5};
    v[3] = bad;
    raw_file(fname, "points", H5T_NATIVE_FLOAT, 2, d, v, 0);
    open_in(fname);
}
START_TEST(bad_nan_points) { points_with("bad_nan.h5", NAN); }
END_TEST
START_TEST(bad_inf_points) { points_with("bad_inf.h5", -INFINITY); }
END_TEST
START_TEST(bad_fewer_rows_than_ranks) {
    write_images("few.h5", 0, 3, 1, 2, 2, 0, 0, NULL);
    char p[512];
    path_in(p, sizeof p, "few.h5");
    mdiff_dataset *ds = mdiff_dataset_open(p);
    mdiff_loader_create(ds, 0, 4, 0, 0, 0);
}
END_TEST
START_TEST(bad_mismatched_shapes) {
    write_images("shape_a.h5", 0, 5, 1, 2, 2, 0, 0, NULL);
    write_images("shape_b.h5", 0, 5, 1, 2, 3, 0, 0, NULL);
    char a[512], b[512], spec[1100];
    path_in(a, sizeof a, "shape_a.h5");
    path_in(b, sizeof b, "shape_b.h5");
    snprintf(spec, sizeof spec, "%s,%s", a, b);
    mdiff_dataset_open(spec);
}
END_TEST
START_TEST(bad_mismatched_shard_shapes) {
    write_images("mm_a", 2, 10, 1, 2, 2, 0, 0, NULL);
    write_images("mm_b", 2, 10, 1, 3, 2, 0, 0, NULL);
    char a[512], b[512], spec[1100];
    path_in(a, sizeof a, "mm_a-00000-of-00002.h5");
    path_in(b, sizeof b, "mm_b-00001-of-00002.h5");
    snprintf(spec, sizeof spec, "%s,%s", a, b);
    mdiff_dataset_open(spec);
}
END_TEST
START_TEST(bad_mixed_shard_sets) { /* same shapes, different sets */
    write_images("mx_a", 2, 10, 1, 2, 2, 0, 1, NULL);
    write_images("mx_b", 2, 10, 1, 2, 2, 0, 2, NULL);
    char a[512], b[512], spec[1100];
    path_in(a, sizeof a, "mx_a-00000-of-00002.h5");
    path_in(b, sizeof b, "mx_b-00001-of-00002.h5");
    snprintf(spec, sizeof spec, "%s,%s", a, b);
    mdiff_dataset_open(spec);
}
END_TEST
START_TEST(bad_shards_out_of_order) {
    write_images("ord", 2, 10, 1, 2, 2, 0, 1, NULL);
    char a[512], b[512], spec[1100];
    path_in(a, sizeof a, "ord-00000-of-00002.h5");
    path_in(b, sizeof b, "ord-00001-of-00002.h5");
    snprintf(spec, sizeof spec, "%s,%s", b, a);
    mdiff_dataset_open(spec);
}
END_TEST
START_TEST(bad_missing_shard) {
    write_images("miss", 3, 10, 1, 2, 2, 0, 1, NULL);
    char a[512];
    path_in(a, sizeof a, "miss-00001-of-00003.h5");
    unlink(a);
    open_in("miss");
}
END_TEST
START_TEST(bad_no_such_spec) { open_in("does-not-exist"); }
END_TEST
START_TEST(bad_not_hdf5) {
    char p[512];
    path_in(p, sizeof p, "text.h5");
    FILE *f = fopen(p, "w");
    fputs("not an HDF5 file\n", f);
    fclose(f);
    open_in("text.h5");
}
END_TEST
START_TEST(bad_fingerprint_mismatch) {
    /* a valid file whose content was changed after writing: verify must notice */
    write_images("tamper.h5", 0, 9, 1, 2, 2, 0, 0, NULL);
    char p[512];
    path_in(p, sizeof p, "tamper.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t start[4] = {4, 0, 1, 1}, cnt[4] = {1, 1, 1, 1};
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL);
    hid_t ms = H5Screate_simple(4, cnt, NULL);
    uint8_t v = 0xAB;
    ck_assert(H5Dwrite(d, H5T_NATIVE_UINT8, ms, sp, H5P_DEFAULT, &v) >= 0);
    H5Sclose(ms);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    mdiff_dataset *ds = mdiff_dataset_open(p);
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
}
END_TEST
START_TEST(bad_more_shards_than_rows) { write_images("toomany", 6, 5, 1, 2, 2, 0, 0, NULL); }
END_TEST
START_TEST(bad_out_dir_missing) { write_images("no/such/dir/x.h5", 0, 5, 1, 2, 2, 0, 0, NULL); }
END_TEST
START_TEST(bad_toy_n) {
    double sc[2];
    mdiff_data_make_toy("moons", 1, 0, sc);
}
END_TEST

static void flip_points_exit(void) {
    char p[512];
    path_in(p, sizeof p, "flip_pts.h5");
    mdiff_dataset *ds = mdiff_dataset_open(p);
    mdiff_loader_create(ds, 0, 1, 0, 1, 0);
}
START_TEST(bad_flip_points_loader) {
    points_with("flip_pts.h5", 1.0f);
    flip_points_exit();
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    snprintf(g_dir, sizeof g_dir, "/tmp/mdiff_test_data.XXXXXX");
    if (!mkdtemp(g_dir)) return EXIT_FAILURE;
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("io");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, shard_range_partitions);
    tcase_add_test(tc, single_file_round_trip);
    tcase_add_test(tc, shard_sets_concatenate);
    tcase_add_test(tc, independent_files_form_one_set);
    tcase_add_test(tc, group_args_forms_sets);
    tcase_add_test(tc, group_args_reverse_order_opens_as_set);
    tcase_add_test(tc, points_round_trip);
    tcase_add_test(tc, raw_h5py_style_file_opens);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("loader");
    tcase_set_timeout(tl, 30);
    tcase_add_test(tl, loader_owns_and_visits_each_row_once);
    tcase_add_test(tl, loader_determinism_and_resume);
    tcase_add_test(tl, loader_flip);
    tcase_add_test(tl, loader_streaming_shuffles_blocks);
    suite_add_tcase(s, tl);
    TCase *tt = tcase_create("sources");
    tcase_set_timeout(tt, 30);
    tcase_add_test(tt, toy_gaussians8);
    tcase_add_test(tt, toy_swissroll);
    tcase_add_test(tt, toy_moons);
    tcase_add_test(tt, idx_reads_small_set);
    tcase_add_exit_test(tt, idx_wrong_magic, 1);
    tcase_add_exit_test(tt, idx_truncated, 1);
    tcase_add_exit_test(tt, idx_count_mismatch, 1);
    tcase_add_exit_test(tt, idx_missing_dir, 1);
    tcase_add_exit_test(tt, idx_corrupt_gzip, 1);
    tcase_add_exit_test(tt, bad_toy_n, 1);
    suite_add_tcase(s, tt);
    TCase *tb = tcase_create("bad_input");
    tcase_set_timeout(tb, 30);
    tcase_add_exit_test(tb, bad_no_data, 1);
    tcase_add_exit_test(tb, bad_wrong_rank, 1);
    tcase_add_exit_test(tb, bad_images_dtype, 1);
    tcase_add_exit_test(tb, bad_points_dtype, 1);
    tcase_add_exit_test(tb, bad_zero_rows, 1);
    tcase_add_exit_test(tb, bad_no_format, 1);
    tcase_add_exit_test(tb, bad_nan_points, 1);
    tcase_add_exit_test(tb, bad_inf_points, 1);
    tcase_add_exit_test(tb, bad_fewer_rows_than_ranks, 1);
    tcase_add_exit_test(tb, bad_flip_points_loader, 1);
    tcase_add_exit_test(tb, bad_mismatched_shapes, 1);
    tcase_add_exit_test(tb, bad_mismatched_shard_shapes, 1);
    tcase_add_exit_test(tb, bad_mixed_shard_sets, 1);
    tcase_add_exit_test(tb, bad_shards_out_of_order, 1);
    tcase_add_exit_test(tb, bad_missing_shard, 1);
    tcase_add_exit_test(tb, bad_group_args_incomplete, 1);
    tcase_add_exit_test(tb, bad_group_args_twice, 1);
    tcase_add_exit_test(tb, bad_no_such_spec, 1);
    tcase_add_exit_test(tb, bad_not_hdf5, 1);
    tcase_add_exit_test(tb, bad_fingerprint_mismatch, 1);
    tcase_add_exit_test(tb, bad_more_shards_than_rows, 1);
    tcase_add_exit_test(tb, bad_out_dir_missing, 1);
    suite_add_tcase(s, tb);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
