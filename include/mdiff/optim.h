/* optim: the update of the flat parameter buffer, identical on every rank (DESIGN.md §3 step 5).
 *  - learning rate with linear warmup: lr_k = lr min(1, (k+1)/warmup) at optimizer step k (from 0);
 *    warmup 0 = none;
 *  - global-norm clipping as PyTorch's clip_grad_norm_: the L2 norm of all gradients (accumulated
 *    in double) is returned; when it exceeds `clip` > 0 every gradient is scaled by
 *    clip / (norm + 1e-6). A non-finite norm is returned without touching the gradients (the
 *    caller skips that step);
 *  - AdamW as torch.optim.AdamW: p -= lr wd p (decoupled), m = β1 m + (1-β1) g,
 *    v = β2 v + (1-β2) g², p -= lr/(1-β1^k) · m / (sqrt(v)/sqrt(1-β2^k) + eps), k = 1, 2, ...;
 *    per-element arithmetic in float like PyTorch's, scalars in double;
 *  - EMA of the weights: ema = d ema + (1-d) p with d = min(D, (1+u)/(10+u)) at EMA update u
 *    (from 0), so short runs still get useful averages.
 * The state lives in the caller's flat buffers (params, grads, m, v, ema: n floats each). */
#ifndef MDIFF_OPTIM_H
#define MDIFF_OPTIM_H

#include <stdint.h>

typedef struct {
    double lr;            /* peak learning rate */
    int64_t warmup;       /* warmup steps (0: none) */
    double beta1, beta2, eps;
    double weight_decay;  /* decoupled, AdamW */
    double clip;          /* max global gradient norm (<= 0: no clipping) */
    double ema;           /* EMA decay D */
} mdiff_optim_cfg;

/* lr 2e-4, warmup 500, β 0.9/0.999, eps 1e-8, wd 0, clip 1, EMA 0.9999 (DESIGN.md §5). */
void mdiff_optim_cfg_defaults(mdiff_optim_cfg *c);

/* Learning rate at optimizer step `step` (from 0). */
double mdiff_lr_at(double lr, int64_t warmup, int64_t step);
/* L2 norm of g (n), accumulated in double. */
double mdiff_grad_norm(const float *g, int64_t n);
/* Scales g in place when its norm exceeds max_norm > 0 (see top); returns the pre-clip norm. */
double mdiff_clip_grad_norm(float *g, int64_t n, double max_norm);
/* One AdamW update of p (n) with gradient g and moments m, v; k = 1-based update count. */
void mdiff_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int64_t k);
/* EMA decay at update u (from 0): min(D, (1+u)/(10+u)). */
double mdiff_ema_decay(double D, int64_t u);
/* ema (n) = d ema + (1-d) p. */
void mdiff_ema_update(float *ema, const float *p, int64_t n, double d);

/* The whole step `step` (from 0; = number of updates applied before it): clip g in place, AdamW
 * with lr at `step` and k = step+1, then EMA update with u = step. Returns the pre-clip norm; if it
 * is not finite nothing is changed (the caller counts a skipped step and does not advance). */
double mdiff_optim_step(float *p, float *m, float *v, float *ema, float *g, int64_t n,
                        const mdiff_optim_cfg *c, int64_t step);

#endif
