/* misc ops: sinusoidal timestep embedding, dropout with Philox masks, and the MSE loss.
 * The embedding follows improved-diffusion's float32 arithmetic step by step so the PyTorch twin
 * sees the same values; dropout masks are a pure function of (seed, layer, step, global sample),
 * hence independent of batch composition and rank count. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/ops.h"
#include "par.h"
#include "mdiff/rng.h"

void mdiff_timestep_embedding(float *restrict out, const float *restrict t, int B, int dim) {
    MDIFF_CHECK(B >= 1 && dim >= 2 && dim % 2 == 0, "timestep embedding: bad B=%d dim=%d", B, dim);
    const int half = dim / 2;
    /* torch: exp(-math.log(10000) * arange(half, float32) / half), all in float32 */
    const float nl = (float)-log(10000.0);
    for (int b = 0; b < B; b++) {
        float *o = out + (int64_t)b * dim;
        for (int i = 0; i < half; i++) {
            float f = expf(nl * (float)i / (float)half);
            float arg = t[b] * f;
            o[i] = cosf(arg);
            o[half + i] = sinf(arg);
        }
    }
}

void mdiff_dropout_forward(float *out, uint8_t *restrict mask, const float *inp,
                           int B, int64_t n, float p, uint64_t seed, uint64_t step,
                           int64_t sample0, int layer) {
    MDIFF_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p=%g outside [0, 1]", (double)p);
    MDIFF_CHECK(layer >= 0 && layer < 256, "dropout: layer %d outside [0, 256)", layer);
    MDIFF_CHECK(sample0 >= 0, "dropout: negative sample0 %lld", (long long)sample0);
    const int64_t total = (int64_t)B * n;
    if (p == 0.0f) {
        if (out != inp) memcpy(out, inp, (size_t)total * sizeof(float));
        memset(mask, 1, (size_t)total);
        return;
    }
    /* p = 1 drops everything (u >= 1 never holds) and must not produce 0 * inf. */
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    MDIFF_PAR_FOR(total) /* each sample has its own stream: any split gives the same bits */
    for (int b = 0; b < B; b++) {
        mdiff_rng r;
        mdiff_rng_init(&r, seed, MDIFF_RNG_DROPOUT + (uint32_t)layer, step,
                       (uint64_t)(sample0 + b));
        const float *x = inp + (int64_t)b * n;
        float *y = out + (int64_t)b * n;
        uint8_t *mk = mask + (int64_t)b * n;
        for (int64_t i = 0; i < n; i++) {
            uint8_t keep = mdiff_rng_uniform(&r) >= p;
            mk[i] = keep;
            y[i] = keep ? x[i] * keep_scale : 0.0f;
        }
    }
}

void mdiff_dropout_backward(float *restrict dinp, const float *restrict dout,
                            const uint8_t *restrict mask, int B, int64_t n, float p) {
    if (!dinp) return;
    const int64_t total = (int64_t)B * n;
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    if (p == 0.0f) {
        MDIFF_PAR_FOR(total)
        for (int64_t i = 0; i < total; i++) dinp[i] += dout[i];
        return;
    }
    MDIFF_PAR_FOR(total)
    for (int64_t i = 0; i < total; i++) dinp[i] += mask[i] ? dout[i] * keep_scale : 0.0f;
}

float mdiff_mse_forward(float *restrict per_sample, const float *restrict pred,
                        const float *restrict target, int B, int64_t n, float scale) {
    MDIFF_CHECK(B >= 1 && n >= 1, "mse: bad sizes B=%d n=%lld", B, (long long)n);
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *x = pred + (int64_t)b * n, *y = target + (int64_t)b * n;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)x[i] - (double)y[i];
            s += e * e;
        }
        float ps = (float)(s / (double)n);
        if (per_sample) per_sample[b] = ps;
        total += (double)ps * scale;
    }
    return (float)total;
}

void mdiff_mse_backward(float *restrict dpred, const float *restrict pred,
                        const float *restrict target, int B, int64_t n, float scale) {
    if (!dpred) return;
    const int64_t total = (int64_t)B * n;
    const float k = 2.0f * scale / (float)n;
    for (int64_t i = 0; i < total; i++) dpred[i] += k * (pred[i] - target[i]);
}
