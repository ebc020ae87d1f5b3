/* rng: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), counter-based.
 * Every random number in mdiff is a pure function of (seed, purpose, step, index, draw):
 *   key     = seed (64 bits)
 *   counter = (draw block [32 bits], index [32 bits], step low 32 bits,
 *              step high 16 bits | purpose << 16)
 * so any sample's noise can be computed without generating anything before it, on any rank.
 * Each Philox call yields 4 x 32-bit words; draw block k holds draws 4k..4k+3. */
#ifndef MDIFF_RNG_H
#define MDIFF_RNG_H

#include <stdint.h>

/* Purposes: independent streams for independent uses of randomness. Keep values stable:
 * they are part of the reproducibility contract (checkpoints resume bit-exactly). */
enum {
    MDIFF_RNG_INIT = 1,      /* parameter initialisation: index = parameter tensor number */
    MDIFF_RNG_TIMESTEP = 2,  /* training timestep: step, index = global sample */
    MDIFF_RNG_NOISE = 3,     /* training noise eps: step, index = global sample */
    MDIFF_RNG_NOISE2 = 4,    /* second noise (xprev objective's one-step eps_t) */
    MDIFF_RNG_SHUFFLE = 5,   /* data shuffle: step = epoch, index = rank's first global row */
    MDIFF_RNG_FLIP = 6,      /* horizontal flip: step, index = global sample */
    MDIFF_RNG_SAMPLE = 7,    /* sampling: step = sampler step (0 = x_T), index = image number */
    MDIFF_RNG_VAL = 8,       /* validation batch noise/timesteps: index = validation sample */
    MDIFF_RNG_TOY = 9,       /* toy data set generation */
    MDIFF_RNG_DROPOUT = 256  /* dropout: purpose = MDIFF_RNG_DROPOUT + layer (layer < 256) */
};

/* The raw bijection: out = Philox4x32-10(ctr, key). */
void mdiff_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A sequential stream over draws 0, 1, 2, ... of one (seed, purpose, step, index). */
typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];     /* ctr[0] is the next draw block */
    uint32_t buf[4];
    int pos;             /* next unused word of buf; 4 = empty */
} mdiff_rng;

void mdiff_rng_init(mdiff_rng *r, uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index);
uint32_t mdiff_rng_u32(mdiff_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable floats). */
float mdiff_rng_uniform(mdiff_rng *r);
/* Unbiased integer in [0, n), n >= 1 (rejection sampling). */
uint64_t mdiff_rng_below(mdiff_rng *r, uint64_t n);
/* Standard normal (Box-Muller on two uniforms; the second value of each pair is the next
 * call's value, so a stream of normals uses exactly one word per value). The value at word
 * position p uses the aligned pair (p & ~1, p | 1), cos at even p, sin at odd p. */
float mdiff_rng_normal(mdiff_rng *r);

/* Bulk fills of n values from draw 0 of (seed, purpose, step, index): identical to n calls of the
 * sequential functions on a fresh stream. */
void mdiff_rng_fill_uniform(float *out, int64_t n, uint64_t seed, uint32_t purpose, uint64_t step,
                            uint64_t index);
void mdiff_rng_fill_normal(float *out, int64_t n, uint64_t seed, uint32_t purpose, uint64_t step,
                           uint64_t index);

/* In-place Fisher-Yates shuffle of n int64 values with the given stream. */
void mdiff_rng_shuffle_i64(int64_t *v, int64_t n, mdiff_rng *r);

/* Random access (draw < 2^34). Seek: the next word of r is word `draw` of its stream.
 * u32_at: word `draw` of (seed, purpose, step, index).
 * normal_at: the value a fresh stream's `draw`-th mdiff_rng_normal call returns (normal k uses the
 * words 2*(k/2) and 2*(k/2)+1: cos for even k, sin for odd k), equal to fill_normal's out[draw]. */
void mdiff_rng_seek(mdiff_rng *r, uint64_t draw);
uint32_t mdiff_rng_u32_at(uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index,
                          uint64_t draw);
float mdiff_rng_normal_at(uint64_t seed, uint32_t purpose, uint64_t step, uint64_t index,
                          uint64_t draw);

#endif
