/* rng: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11) exactly as Random123's philox4x32_R(10),
 * the counter layout of rng.h, and the derived variates: uniform floats, Box-Muller normals,
 * unbiased integers (Lemire's multiply-and-reject) and Fisher-Yates shuffles.
 *
 * Word positions define every variate, so a stream needs no state beyond (key, counter, buffer):
 * - uniform / u32 use one word each;
 * - a normal at word position p uses the aligned pair (p & ~1, p | 1): u1 = (w0 + 1) / 2^32 in
 *   (0, 1] (log finite), u2 = w1 / 2^32, and is r cos(2 pi u2) at an even p, r sin(2 pi u2) at an
 *   odd p. Pairs never straddle a 4-word block, so the odd value is recomputed from the buffer
 *   instead of being cached (the struct has no slot for it); results are the same either way.
 * Bulk fills and the sequential calls share one Box-Muller function, so they agree bit for bit. */
#include "mdiff/rng.h"

#include <math.h>

#include "mdiff/common.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* A stream holds 2^32 blocks of 4 words; longer requests are a bug (no image is that large). */
#define RNG_MAX_WORDS ((int64_t)1 << 34)

static inline void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void mdiff_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    /* Random123 order: round with the key, then bump the key before each later round. */
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

/* Counter words 1..3 and the key from the stream coordinates; out-of-range values would alias
 * another stream, so they are internal errors (callers pass indices and steps they own). */
static void rng_coords(uint32_t key[2], uint32_t ctr[4], uint64_t seed, uint32_t purpose,
                       uint64_t step, uint64_t index) {
    MDIFF_CHECK(index < ((uint64_t)1 << 32), "rng index %llu >= 2^32", (unsigned long long)index);
    MDIFF_CHECK(step < ((uint64_t)1 << 48), "rng step %llu >= 2^48", (unsigned long long)step);
    MDIFF_CHECK(purpose < (1u << 16), "rng purpose %u >= 2^16", purpose);
    key[0] = (uint32_t)seed;
    key[1] = (uint32_t)(seed >> 32);
    ctr[0] = 0;
    ctr[1] = (uint32_t)index;
    ctr[2] = (uint32_t)step;
    ctr[3] = (uint32_t)((step >> 32) & 0xFFFFu) | (purpose << 16);
}

void mdiff_rng_init(mdiff_rng *r, uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index) {
    rng_coords(r->key, r->ctr, seed, purpose, step, index);
    r->buf[0] = r->buf[1] = r->buf[2] = r->buf[3] = 0;
    r->pos = 4;
}

void mdiff_rng_seek(mdiff_rng *r, uint64_t draw) {
    MDIFF_CHECK(draw < (uint64_t)RNG_MAX_WORDS, "rng draw %llu >= 2^34", (unsigned long long)draw);
    r->ctr[0] = (uint32_t)(draw >> 2);
    r->pos = 4;
    if (draw & 3) { /* load the block now so pos can point into it */
        mdiff_philox4x32_10(r->ctr, r->key, r->buf);
        r->ctr[0]++;
        r->pos = (int)(draw & 3);
    }
}

static inline void rng_refill(mdiff_rng *r) {
    mdiff_philox4x32_10(r->ctr, r->key, r->buf);
    r->ctr[0]++;
    r->pos = 0;
}

uint32_t mdiff_rng_u32(mdiff_rng *r) {
    if (r->pos >= 4) rng_refill(r);
    return r->buf[r->pos++];
}

/* Top 24 bits: every value k / 2^24 is an exact float, and the largest is 1 - 2^-24 < 1. */
static inline float u32_to_uniform(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

float mdiff_rng_uniform(mdiff_rng *r) { return u32_to_uniform(mdiff_rng_u32(r)); }

/* Box-Muller in double on one pair of words; z[0] = r cos, z[1] = r sin. */
static void box_muller(uint32_t w0, uint32_t w1, float z[2]) {
    const double two_m32 = 1.0 / 4294967296.0;
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = ((double)w0 + 1.0) * two_m32; /* (0, 1]: log(u1) is finite, |z| <= 6.67 */
    double u2 = (double)w1 * two_m32;         /* [0, 1) */
    double rad = sqrt(-2.0 * log(u1));
    double a = two_pi * u2;
    z[0] = (float)(rad * cos(a));
    z[1] = (float)(rad * sin(a));
}

float mdiff_rng_normal(mdiff_rng *r) {
    if (r->pos >= 4) rng_refill(r);
    int p = r->pos++;
    int even = p & ~1;
    float z[2];
    box_muller(r->buf[even], r->buf[even + 1], z);
    return z[p & 1];
}

/* Lemire (2019), "Fast random integer generation in an interval": x * n / 2^w with rejection of
 * the low part below 2^w mod n, which makes every result exactly equally likely. */
uint64_t mdiff_rng_below(mdiff_rng *r, uint64_t n) {
    MDIFF_CHECK(n >= 1, "mdiff_rng_below: n = 0");
    if (n <= 0xFFFFFFFFu) {
        uint32_t n32 = (uint32_t)n;
        uint64_t m = (uint64_t)mdiff_rng_u32(r) * n32;
        uint32_t lo = (uint32_t)m;
        if (lo < n32) {
            uint32_t t = (uint32_t)(-n32) % n32; /* 2^32 mod n */
            while (lo < t) {
                m = (uint64_t)mdiff_rng_u32(r) * n32;
                lo = (uint32_t)m;
            }
        }
        return m >> 32;
    }
    /* n > 2^32: 64-bit words made of two draws, low word first. */
    for (;;) {
        uint64_t x = mdiff_rng_u32(r);
        x |= (uint64_t)mdiff_rng_u32(r) << 32;
        unsigned __int128 m = (unsigned __int128)x * n;
        uint64_t lo = (uint64_t)m;
        if (lo >= n || lo >= (uint64_t)(-n) % n) return (uint64_t)(m >> 64);
    }
}

uint32_t mdiff_rng_u32_at(uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index,
                          uint64_t draw) {
    MDIFF_CHECK(draw < (uint64_t)RNG_MAX_WORDS, "rng draw %llu >= 2^34", (unsigned long long)draw);
    uint32_t key[2], ctr[4], out[4];
    rng_coords(key, ctr, seed, purpose, step, index);
    ctr[0] = (uint32_t)(draw >> 2);
    mdiff_philox4x32_10(ctr, key, out);
    return out[draw & 3];
}

float mdiff_rng_normal_at(uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index,
                          uint64_t draw) {
    MDIFF_CHECK(draw < (uint64_t)RNG_MAX_WORDS, "rng draw %llu >= 2^34", (unsigned long long)draw);
    uint32_t key[2], ctr[4], out[4];
    rng_coords(key, ctr, seed, purpose, step, index);
    ctr[0] = (uint32_t)(draw >> 2);
    mdiff_philox4x32_10(ctr, key, out);
    int p = (int)(draw & 3), even = p & ~1;
    float z[2];
    box_muller(out[even], out[even + 1], z);
    return z[p & 1];
}

/* out[n]: block by block from draw 0; the last block may be partial. */
void mdiff_rng_fill_uniform(float *out, int64_t n, uint64_t seed, uint32_t purpose, uint64_t step,
                            uint64_t index) {
    MDIFF_CHECK(n >= 0 && n <= RNG_MAX_WORDS, "rng fill of %lld values", (long long)n);
    uint32_t key[2], ctr[4], w[4];
    rng_coords(key, ctr, seed, purpose, step, index);
    for (int64_t i = 0; i < n; i += 4) {
        ctr[0] = (uint32_t)(i >> 2);
        mdiff_philox4x32_10(ctr, key, w);
        int64_t m = n - i < 4 ? n - i : 4;
        for (int64_t j = 0; j < m; j++) out[i + j] = u32_to_uniform(w[j]);
    }
}

void mdiff_rng_fill_normal(float *out, int64_t n, uint64_t seed, uint32_t purpose, uint64_t step,
                           uint64_t index) {
    MDIFF_CHECK(n >= 0 && n <= RNG_MAX_WORDS, "rng fill of %lld values", (long long)n);
    uint32_t key[2], ctr[4], w[4];
    rng_coords(key, ctr, seed, purpose, step, index);
    for (int64_t i = 0; i < n; i += 4) {
        ctr[0] = (uint32_t)(i >> 2);
        mdiff_philox4x32_10(ctr, key, w);
        for (int64_t j = 0; j < 4 && i + j < n; j += 2) {
            float z[2];
            box_muller(w[j], w[j + 1], z);
            out[i + j] = z[0];
            if (i + j + 1 < n) out[i + j + 1] = z[1];
        }
    }
}

/* Fisher-Yates from the top: v[i] swaps with a uniform position in [0, i]. */
void mdiff_rng_shuffle_i64(int64_t *v, int64_t n, mdiff_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mdiff_rng_below(r, (uint64_t)i + 1);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}
