/* Tests of rng: Philox4x32-10 known answers (Random123's kat_vectors), the counter layout of rng.h,
 * random access and bulk = sequential bit for bit, and statistics of the derived variates.
 *
 * Every statistical bound is 5 standard errors of the statistic under the null hypothesis (or a
 * chi-square quantile at the same level, via Wilson-Hilferty), so a correct generator fails with
 * probability below 1e-6 per check; the streams are fixed, so the outcome is deterministic. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/rng.h"

/* ---------- known answers ---------- */

typedef struct {
    uint32_t ctr[4], key[2], out[4];
} kat;

/* The three philox4x32 10 lines of Random123's examples/kat_vectors, as cut-and-pasted into
 * DEShawResearch/Random123-Boost libs/random/test/test_philox.cpp (commit 916db91a), then three
 * lines of the longer kat_vectors in girving/random123-manual examples/kat_vectors (61e84792).
 * Columns: CTR (4 words), KEY (2 words), EXPECTED (4 words). */
static const kat KATS[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    {{0x00000001, 0x00000000, 0x00000000, 0x00000000}, {0x00000001, 0x00000000},
     {0xac08141b, 0xdfc5ccbe, 0x79c07a47, 0xa7f66093}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0x00000000, 0x80000000},
     {0x63675d2c, 0x422d7c4d, 0x3145d30d, 0x3bce33a4}},
    {{0x00000000, 0x00000000, 0x00000000, 0x80000000}, {0x00000000, 0xffffffff},
     {0x2a460458, 0x0a2709e5, 0x47bc9115, 0x0f96d8af}},
};

START_TEST(philox_known_answers) {
    for (size_t i = 0; i < sizeof KATS / sizeof KATS[0]; i++) {
        uint32_t out[4];
        mdiff_philox4x32_10(KATS[i].ctr, KATS[i].key, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == KATS[i].out[j], "kat %zu word %d: got %08x want %08x", i, j,
                          out[j], KATS[i].out[j]);
    }
}
END_TEST

/* ---------- layout and random access ---------- */

START_TEST(counter_layout) {
    uint64_t seed = 0x0123456789abcdefull, step = 0x123456789abcull, index = 0xfedcba98ull;
    mdiff_rng r;
    mdiff_rng_init(&r, seed, 7, step, index);
    ck_assert_uint_eq(r.key[0], 0x89abcdefu);
    ck_assert_uint_eq(r.key[1], 0x01234567u);
    ck_assert_uint_eq(r.ctr[0], 0);
    ck_assert_uint_eq(r.ctr[1], 0xfedcba98u);
    ck_assert_uint_eq(r.ctr[2], 0x56789abcu);
    ck_assert_uint_eq(r.ctr[3], 0x1234u | (7u << 16));
    ck_assert_int_eq(r.pos, 4);
    /* Draws 4b..4b+3 are Philox of (b, index, step lo, step hi | purpose << 16) under the seed. */
    uint32_t key[2] = {0x89abcdefu, 0x01234567u};
    for (uint32_t b = 0; b < 3; b++) {
        uint32_t ctr[4] = {b, 0xfedcba98u, 0x56789abcu, 0x1234u | (7u << 16)}, out[4];
        mdiff_philox4x32_10(ctr, key, out);
        for (int j = 0; j < 4; j++) ck_assert_uint_eq(mdiff_rng_u32(&r), out[j]);
    }
    /* Largest legal coordinates are accepted and land in the documented bits. */
    mdiff_rng_init(&r, UINT64_MAX, 0xFFFF, ((uint64_t)1 << 48) - 1, UINT32_MAX);
    ck_assert_uint_eq(r.ctr[1], 0xffffffffu);
    ck_assert_uint_eq(r.ctr[2], 0xffffffffu);
    ck_assert_uint_eq(r.ctr[3], 0xffffffffu);
}
END_TEST

START_TEST(index_too_large_exits_2) {
    mdiff_rng r;
    mdiff_rng_init(&r, 1, MDIFF_RNG_NOISE, 0, (uint64_t)1 << 32);
}
END_TEST
START_TEST(step_too_large_exits_2) {
    mdiff_rng r;
    mdiff_rng_init(&r, 1, MDIFF_RNG_NOISE, (uint64_t)1 << 48, 0);
}
END_TEST
START_TEST(purpose_too_large_exits_2) {
    mdiff_rng r;
    mdiff_rng_init(&r, 1, 1u << 16, 0, 0);
}
END_TEST
START_TEST(below_zero_exits_2) {
    mdiff_rng r;
    mdiff_rng_init(&r, 1, MDIFF_RNG_NOISE, 0, 0);
    mdiff_rng_below(&r, 0);
}
END_TEST

START_TEST(random_access_equals_sequential) {
    enum { N = 1003 };
    static uint32_t w[N];
    mdiff_rng r;
    mdiff_rng_init(&r, 42, MDIFF_RNG_NOISE, 9, 5);
    for (int k = 0; k < N; k++) w[k] = mdiff_rng_u32(&r);
    for (int k = 0; k < N; k++) ck_assert_uint_eq(mdiff_rng_u32_at(42, MDIFF_RNG_NOISE, 9, 5, k), w[k]);
    /* Seeking to any offset (inside a block or at its start) continues the same sequence. */
    for (int k = 0; k < 40; k++) {
        mdiff_rng_init(&r, 42, MDIFF_RNG_NOISE, 9, 5);
        mdiff_rng_seek(&r, (uint64_t)k * 23);
        for (int j = k * 23; j < k * 23 + 9 && j < N; j++) ck_assert_uint_eq(mdiff_rng_u32(&r), w[j]);
    }
    /* Normals: the k-th sequential normal equals normal_at(k) (bit for bit). */
    static float z[N];
    mdiff_rng_init(&r, 42, MDIFF_RNG_NOISE, 9, 5);
    for (int k = 0; k < N; k++) z[k] = mdiff_rng_normal(&r);
    for (int k = 0; k < N; k++) {
        float a = mdiff_rng_normal_at(42, MDIFF_RNG_NOISE, 9, 5, k);
        ck_assert_msg(memcmp(&a, &z[k], sizeof a) == 0, "normal %d: %a vs %a", k, a, z[k]);
    }
}
END_TEST

/* Independent Box-Muller from the raw words: normal k = f(words 2*(k/2), 2*(k/2)+1), cos at even k,
 * sin at odd k, u1 = (w0 + 1) / 2^32, u2 = w1 / 2^32. Tolerance 1e-6: the library rounds a double
 * result to float (|z| <= 6.67, where half a float ulp is 2.4e-7); a swapped pair, cos/sin or
 * u1/u2 changes values by O(1). */
START_TEST(normal_is_box_muller_of_word_pairs) {
    enum { N = 4001 };
    static float z[N];
    mdiff_rng_fill_normal(z, N, 7, MDIFF_RNG_SAMPLE, 3, 11);
    double maxabs = 0;
    for (int k = 0; k < N; k++) {
        uint32_t w0 = mdiff_rng_u32_at(7, MDIFF_RNG_SAMPLE, 3, 11, (uint64_t)(2 * (k / 2)));
        uint32_t w1 = mdiff_rng_u32_at(7, MDIFF_RNG_SAMPLE, 3, 11, (uint64_t)(2 * (k / 2) + 1));
        double u1 = ((double)w0 + 1.0) / 4294967296.0, u2 = (double)w1 / 4294967296.0;
        double rad = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        double ref = (k % 2 == 0) ? rad * cos(a) : rad * sin(a);
        ck_assert_msg(fabs(z[k] - ref) <= 1e-6, "normal %d: %.9g vs %.9g", k, z[k], ref);
        if (fabs(z[k]) > maxabs) maxabs = fabs(z[k]);
    }
    /* The extreme values are finite and bounded by sqrt(-2 log 2^-32) = 6.66. */
    ck_assert_double_le(maxabs, 6.67);
    /* A normal after one u32 is the sin half of pair (0, 1): word position, not call count. */
    mdiff_rng r;
    mdiff_rng_init(&r, 7, MDIFF_RNG_SAMPLE, 3, 11);
    (void)mdiff_rng_u32(&r);
    float s = mdiff_rng_normal(&r);
    ck_assert(memcmp(&s, &z[1], sizeof s) == 0);
}
END_TEST

START_TEST(bulk_equals_sequential) {
    static const int64_t ns[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1001, 4096};
    static float bulk[4100];
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        mdiff_rng r;
        bulk[n] = 12345.0f; /* sentinel: a fill must not write past n */
        mdiff_rng_fill_uniform(bulk, n, 99, MDIFF_RNG_VAL, 17, 3);
        ck_assert_float_eq(bulk[n], 12345.0f);
        mdiff_rng_init(&r, 99, MDIFF_RNG_VAL, 17, 3);
        for (int64_t i = 0; i < n; i++) {
            float u = mdiff_rng_uniform(&r);
            ck_assert_msg(memcmp(&u, &bulk[i], sizeof u) == 0, "uniform n=%lld i=%lld", (long long)n,
                          (long long)i);
        }
        bulk[n] = 12345.0f;
        mdiff_rng_fill_normal(bulk, n, 99, MDIFF_RNG_VAL, 17, 3);
        ck_assert_float_eq(bulk[n], 12345.0f);
        mdiff_rng_init(&r, 99, MDIFF_RNG_VAL, 17, 3);
        for (int64_t i = 0; i < n; i++) {
            float z = mdiff_rng_normal(&r);
            ck_assert_msg(memcmp(&z, &bulk[i], sizeof z) == 0, "normal n=%lld i=%lld", (long long)n,
                          (long long)i);
        }
    }
}
END_TEST

/* ---------- statistics ---------- */

/* Upper chi-square quantile with df degrees of freedom at the normal deviate z (Wilson-Hilferty,
 * accurate to a few percent for df >= 2, which is ample for a 5-sigma bound). */
static double chi2_bound(int df, double z) {
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + z * sqrt(a);
    return df * c * c * c;
}

static double chi2_stat(const int64_t *count, int bins, int64_t total) {
    double e = (double)total / bins, s = 0;
    for (int b = 0; b < bins; b++) s += ((double)count[b] - e) * ((double)count[b] - e) / e;
    return s;
}

START_TEST(uniform_statistics) {
    const int64_t n = 1 << 20;
    float *u = mdiff_malloc((size_t)n * sizeof(float), "test uniforms");
    mdiff_rng_fill_uniform(u, n, 2024, MDIFF_RNG_TOY, 0, 0);
    /* Hot loops count violations and assert once: each ck_assert is a write to Check's pipe. */
    int64_t count[64] = {0}, bad = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        /* In [0, 1) and 24 bits: every value is k / 2^24 exactly. */
        float k = u[i] * 16777216.0f;
        if (!(u[i] >= 0.0f && u[i] < 1.0f) || k != floorf(k)) {
            bad++;
            continue;
        }
        sum += u[i];
        count[(int)(u[i] * 64.0f)]++;
    }
    ck_assert_int_eq(bad, 0);
    /* Mean: standard error sqrt(1/12 / n). */
    double mean = sum / (double)n;
    ck_assert_double_le(fabs(mean - 0.5), 5.0 * sqrt(1.0 / 12.0 / (double)n));
    /* 64 equal bins: chi-square with 63 degrees of freedom. */
    double c2 = chi2_stat(count, 64, n);
    ck_assert_msg(c2 < chi2_bound(63, 5.0), "uniform chi2 %.1f >= %.1f", c2, chi2_bound(63, 5.0));
    free(u);
}
END_TEST

START_TEST(normal_statistics) {
    const int64_t n = 1 << 20;
    float *z = mdiff_malloc((size_t)n * sizeof(float), "test normals");
    mdiff_rng_fill_normal(z, n, 2024, MDIFF_RNG_NOISE, 1, 0);
    double s1 = 0, s2 = 0, s4 = 0, pair = 0;
    int64_t tail = 0, nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = z[i];
        nonfinite += !isfinite(x);
        s1 += x;
        s2 += x * x;
        s4 += x * x * x * x;
        if (fabs(x) > 3.0) tail++;
        if (i % 2 == 1) pair += (double)z[i - 1] * x;
    }
    ck_assert_int_eq(nonfinite, 0);
    double dn = (double)n, mean = s1 / dn, var = s2 / dn - mean * mean, m4 = s4 / dn;
    /* Standard errors under N(0,1): mean 1/sqrt(n); sample variance sqrt(2/n);
     * fourth moment sqrt((E z^8 - (E z^4)^2)/n) = sqrt((105 - 9)/n). */
    ck_assert_msg(fabs(mean) < 5.0 / sqrt(dn), "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0) < 5.0 * sqrt(2.0 / dn), "var %g", var);
    ck_assert_msg(fabs(m4 - 3.0) < 5.0 * sqrt(96.0 / dn), "m4 %g", m4);
    /* P(|z| > 3) = erfc(3/sqrt 2) = 0.0026998; binomial standard error sqrt(p(1-p)/n). */
    double p3 = erfc(3.0 / sqrt(2.0)), frac = (double)tail / dn;
    ck_assert_msg(fabs(frac - p3) < 5.0 * sqrt(p3 * (1 - p3) / dn), "tail %g vs %g", frac, p3);
    /* The cos and sin halves of each pair are independent: E[z0 z1] = 0, standard error
     * 1/sqrt(n/2). */
    ck_assert_msg(fabs(pair / (dn / 2)) < 5.0 / sqrt(dn / 2), "pair correlation %g", pair / (dn / 2));
    free(z);
}
END_TEST

static double pearson(const float *a, const float *b, int64_t n) {
    double ma = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        double da = a[i] - ma, db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    return sab / sqrt(saa * sbb);
}

/* Streams differing in exactly one coordinate (including the high words of seed and step) are
 * uncorrelated: under independence r has standard error 1/sqrt(n). Both normals and uniforms. */
START_TEST(streams_uncorrelated) {
    typedef struct {
        uint64_t seed;
        uint32_t purpose;
        uint64_t step, index;
    } coord;
    static const coord pairs[][2] = {
        {{1, 3, 5, 0}, {2, 3, 5, 0}},                               /* seed */
        {{1, 3, 5, 0}, {1 + ((uint64_t)1 << 32), 3, 5, 0}},         /* seed, high word */
        {{1, 3, 5, 0}, {1, 4, 5, 0}},                               /* purpose */
        {{1, 3, 5, 0}, {1, 3, 6, 0}},                               /* step */
        {{1, 3, 5, 0}, {1, 3, 5 + ((uint64_t)1 << 32), 0}},         /* step, high bits */
        {{1, 3, 5, 0}, {1, 3, 5, 1}},                               /* index */
        {{0, MDIFF_RNG_DROPOUT, 0, 0}, {0, MDIFF_RNG_DROPOUT + 1, 0, 0}}, /* dropout layers */
    };
    const int64_t n = 1 << 17;
    float *a = mdiff_malloc((size_t)n * sizeof(float), "test stream a");
    float *b = mdiff_malloc((size_t)n * sizeof(float), "test stream b");
    const double bound = 5.0 / sqrt((double)n);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const coord *x = &pairs[p][0], *y = &pairs[p][1];
        mdiff_rng_fill_normal(a, n, x->seed, x->purpose, x->step, x->index);
        mdiff_rng_fill_normal(b, n, y->seed, y->purpose, y->step, y->index);
        ck_assert_msg(memcmp(a, b, 64) != 0, "pair %zu: identical streams", p);
        double r = pearson(a, b, n);
        ck_assert_msg(fabs(r) < bound, "pair %zu normals: r = %g (bound %g)", p, r, bound);
        /* Lag-1 within a stream too (a block-structure bug would show here). */
        double r1 = pearson(a, a + 1, n - 1);
        ck_assert_msg(fabs(r1) < 5.0 / sqrt((double)(n - 1)), "pair %zu lag-1: r = %g", p, r1);
        mdiff_rng_fill_uniform(a, n, x->seed, x->purpose, x->step, x->index);
        mdiff_rng_fill_uniform(b, n, y->seed, y->purpose, y->step, y->index);
        r = pearson(a, b, n);
        ck_assert_msg(fabs(r) < bound, "pair %zu uniforms: r = %g (bound %g)", p, r, bound);
    }
    free(a);
    free(b);
}
END_TEST

/* Draw `draws` values below n and bin them by bin_of; return the chi-square statistic. */
static double below_chi2(uint64_t n, int bins, int (*bin_of)(uint64_t), int64_t draws,
                         uint64_t seed) {
    int64_t count[16] = {0}, out_of_range = 0;
    mdiff_rng r;
    mdiff_rng_init(&r, seed, MDIFF_RNG_TOY, 0, 0);
    for (int64_t i = 0; i < draws; i++) {
        uint64_t v = mdiff_rng_below(&r, n);
        if (v >= n) {
            out_of_range++;
            continue;
        }
        count[bin_of(v)]++;
    }
    ck_assert_msg(out_of_range == 0, "below(%llu): %lld values out of range",
                  (unsigned long long)n, (long long)out_of_range);
    return chi2_stat(count, bins, draws);
}
static int bin_mod3(uint64_t v) { return (int)(v % 3); }
static int bin_top_of_3x2p30(uint64_t v) { return (int)(v >> 30); }
static int bin_top_of_3x2p62(uint64_t v) { return (int)(v >> 62); }
static int bin_top_of_2p32(uint64_t v) { return (int)(v >> 30); }
static int bin_mod10(uint64_t v) { return (int)(v % 10); }

/* n = 3 * 2^30 (and 3 * 2^62) is the worst case for biased reductions: modulo gives the lowest third
 * twice the probability, multiply-shift without rejection gives one residue mod 3 twice the
 * probability; both make the 2-dof chi-square ~ 0.1 * draws, far above the bound. */
START_TEST(below_unbiased) {
    const int64_t draws = 300000;
    double bound2 = chi2_bound(2, 5.0), bound3 = chi2_bound(3, 5.0), bound9 = chi2_bound(9, 5.0);
    double c;
    c = below_chi2(3ull << 30, 3, bin_top_of_3x2p30, draws, 1);
    ck_assert_msg(c < bound2, "3*2^30 top: chi2 %.1f", c);
    c = below_chi2(3ull << 30, 3, bin_mod3, draws, 2);
    ck_assert_msg(c < bound2, "3*2^30 mod 3: chi2 %.1f", c);
    c = below_chi2(3ull << 62, 3, bin_top_of_3x2p62, draws, 3);
    ck_assert_msg(c < bound2, "3*2^62 top: chi2 %.1f", c);
    c = below_chi2(3ull << 62, 3, bin_mod3, draws, 4);
    ck_assert_msg(c < bound2, "3*2^62 mod 3: chi2 %.1f", c);
    c = below_chi2(1ull << 32, 4, bin_top_of_2p32, draws, 5);
    ck_assert_msg(c < bound3, "2^32: chi2 %.1f", c);
    c = below_chi2(10, 10, bin_mod10, draws, 6);
    ck_assert_msg(c < bound9, "10: chi2 %.1f", c);
    /* Small ranges are covered completely, and n = 1 always gives 0. */
    mdiff_rng r;
    mdiff_rng_init(&r, 8, MDIFF_RNG_TOY, 0, 0);
    int seen[7] = {0};
    for (int i = 0; i < 1000; i++) seen[mdiff_rng_below(&r, 7)] = 1;
    for (int v = 0; v < 7; v++) ck_assert_int_eq(seen[v], 1);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(mdiff_rng_below(&r, 1), 0);
    /* Just above 2^32 (the two-word path) stays in range and reaches the top part. */
    uint64_t big = (1ull << 32) + 1, maxv = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = mdiff_rng_below(&r, big);
        ck_assert(v < big);
        if (v > maxv) maxv = v;
    }
    ck_assert_uint_ge(maxv, 1ull << 31);
}
END_TEST

static int perm3_code(const int64_t *v) { return (int)(v[0] * 3 + v[1]); } /* distinct per perm */

START_TEST(shuffle_permutation_and_uniform) {
    enum { N = 1000 };
    static int64_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++) a[i] = b[i] = c[i] = i;
    mdiff_rng r;
    mdiff_rng_init(&r, 5, MDIFF_RNG_SHUFFLE, 0, 0);
    mdiff_rng_shuffle_i64(a, N, &r);
    mdiff_rng_init(&r, 5, MDIFF_RNG_SHUFFLE, 0, 0);
    mdiff_rng_shuffle_i64(b, N, &r);
    mdiff_rng_init(&r, 5, MDIFF_RNG_SHUFFLE, 1, 0); /* next epoch */
    mdiff_rng_shuffle_i64(c, N, &r);
    /* A permutation: every value once. */
    static int seen[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        ck_assert(a[i] >= 0 && a[i] < N);
        seen[a[i]]++;
    }
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
    /* Same stream, same order; another stream, another order; and not the identity. */
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    ck_assert_int_lt(fixed, 10); /* expected 1 fixed point (Poisson(1)); P(>= 10) ~ 1e-7 */
    /* n = 0 and 1 are no-ops. */
    int64_t one = 77;
    mdiff_rng_shuffle_i64(&one, 1, &r);
    mdiff_rng_shuffle_i64(NULL, 0, &r);
    ck_assert_int_eq(one, 77);
    /* All 6 permutations of 3 equally likely (Sattolo's or an off-by-one bias fails this). */
    int64_t count[9] = {0};
    const int64_t trials = 60000;
    for (int64_t t = 0; t < trials; t++) {
        int64_t v[3] = {0, 1, 2};
        mdiff_rng_init(&r, 5, MDIFF_RNG_SHUFFLE, 2, (uint64_t)t);
        mdiff_rng_shuffle_i64(v, 3, &r);
        count[perm3_code(v)]++;
    }
    int64_t perm[6], k = 0;
    for (int i = 0; i < 9; i++)
        if (i / 3 != i % 3) perm[k++] = count[i];
    for (int i = 0; i < 9; i++)
        if (i / 3 == i % 3) ck_assert_int_eq(count[i], 0);
    double c2 = chi2_stat(perm, 6, trials);
    ck_assert_msg(c2 < chi2_bound(5, 5.0), "shuffle chi2 %.1f", c2);
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, counter_layout);
    tcase_add_exit_test(tc, index_too_large_exits_2, 2);
    tcase_add_exit_test(tc, step_too_large_exits_2, 2);
    tcase_add_exit_test(tc, purpose_too_large_exits_2, 2);
    tcase_add_exit_test(tc, below_zero_exits_2, 2);
    tcase_add_test(tc, random_access_equals_sequential);
    tcase_add_test(tc, normal_is_box_muller_of_word_pairs);
    tcase_add_test(tc, bulk_equals_sequential);
    suite_add_tcase(s, tc);
    TCase *st = tcase_create("statistics");
    tcase_set_timeout(st, 30);
    tcase_add_test(st, uniform_statistics);
    tcase_add_test(st, normal_statistics);
    tcase_add_test(st, streams_uncorrelated);
    tcase_add_test(st, below_unbiased);
    tcase_add_test(st, shuffle_permutation_and_uniform);
    suite_add_tcase(s, st);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
