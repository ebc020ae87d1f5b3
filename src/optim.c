/* optim: AdamW, warmup, global-norm clipping and EMA on flat float buffers (see optim.h).
 * Plain loops over the flat arrays: memory-bound, run identically on every rank. */
#include "mdiff/optim.h"

#include <math.h>

#include "mdiff/common.h"

void mdiff_optim_cfg_defaults(mdiff_optim_cfg *c) {
    c->lr = 2e-4;
    c->warmup = 500;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->clip = 1.0;
    c->ema = 0.9999;
}

double mdiff_lr_at(double lr, int64_t warmup, int64_t step) {
    if (warmup <= 0) return lr;
    double f = (double)(step + 1) / (double)warmup;
    return f < 1.0 ? lr * f : lr;
}

double mdiff_grad_norm(const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

double mdiff_clip_grad_norm(float *g, int64_t n, double max_norm) {
    double norm = mdiff_grad_norm(g, n);
    if (!isfinite(norm) || max_norm <= 0.0 || norm <= max_norm) return norm;
    float scale = (float)(max_norm / (norm + 1e-6));
    for (int64_t i = 0; i < n; i++) g[i] *= scale;
    return norm;
}

void mdiff_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int64_t k) {
    MDIFF_CHECK(k >= 1, "adamw update count %lld", (long long)k);
    double bc1 = 1.0 - pow(beta1, (double)k), bc2 = 1.0 - pow(beta2, (double)k);
    float decay = (float)(1.0 - lr * weight_decay);
    float b2 = (float)beta2, ob1 = (float)(1.0 - beta1), ob2 = (float)(1.0 - beta2);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), fe = (float)eps;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] + ob1 * (gi - m[i]); /* torch's lerp_(g, 1-β1) */
        float vi = b2 * v[i] + ob2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + fe;
        p[i] = p[i] * decay - step_size * (mi / denom);
    }
}

double mdiff_ema_decay(double D, int64_t u) {
    double w = (1.0 + (double)u) / (10.0 + (double)u);
    return w < D ? w : D;
}

void mdiff_ema_update(float *ema, const float *p, int64_t n, double d) {
    float fd = (float)d, od = (float)(1.0 - d);
    for (int64_t i = 0; i < n; i++) ema[i] = fd * ema[i] + od * p[i];
}

double mdiff_optim_step(float *p, float *m, float *v, float *ema, float *g, int64_t n,
                        const mdiff_optim_cfg *c, int64_t step) {
    double norm = mdiff_clip_grad_norm(g, n, c->clip);
    if (!isfinite(norm)) return norm;
    mdiff_adamw_update(p, m, v, g, n, mdiff_lr_at(c->lr, c->warmup, step), c->beta1, c->beta2,
                       c->eps, c->weight_decay, step + 1);
    mdiff_ema_update(ema, p, n, mdiff_ema_decay(c->ema, step));
    return norm;
}
