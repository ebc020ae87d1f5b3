/* model: the denoiser f_θ(x_t, t) — a DDPM-style U-Net for images and an MLP for vector data —
 * as a fixed list of ops over one flat parameter buffer and one activation arena.
 *
 * Parameters. One flat float buffer; a table gives each tensor its name, PyTorch shape and offset.
 * Gradients, Adam moments and EMA use the same table and layout. The layout is in forward order
 * (the order the ops first use the tensors), so backward finishes parameters from the end of the
 * buffer toward the start. Names are the state_dict keys of the PyTorch twin
 * (tests/reference/unet.py); shapes are PyTorch's: conv (OC, C, K, K), linear (OC, C), GN (C).
 *
 * U-Net names (L = n_levels, level l has channels ch*mult[l] and side H/2^l):
 *   time_embed.0.{weight,bias}      Linear(ch, 4ch)    after sinusoidal(t_net, ch)
 *   time_embed.2.{weight,bias}      Linear(4ch, 4ch)   (time_embed.1 is the SiLU)
 *   input_conv.{weight,bias}        3x3 conv in_ch -> ch
 *   down.<l>.res.<j>.*              ResBlock j of level l (j < nres)
 *   down.<l>.attn.<j>.*             its attention block, when the level's side is in attn_res
 *   down.<l>.downsample.{weight,bias}  3x3 stride-2 conv (levels l < L-1)
 *   mid.res1.*, mid.attn.*, mid.res2.*   (mid.attn whenever attention is on, n_attn > 0)
 *   up.<i>.res.<j>.*, up.<i>.attn.<j>.*  up stage i handles level l = L-1-i (deepest first, as
 *                                   diffusers' up_blocks), j < nres+1, input concat(h, skip)
 *   up.<i>.upsample.{weight,bias}   3x3 conv after nearest 2x upsample (stages with l > 0)
 *   out_norm.{weight,bias}, out_conv.{weight,bias}   GN -> SiLU -> 3x3 conv to in_ch
 * ResBlock(cin -> cout): norm1 (GN cin), conv1 (3x3), temb_proj (Linear 4ch -> cout, applied to
 *   SiLU(temb)), norm2 (GN cout), conv2 (3x3), skip (1x1 conv, only when cin != cout):
 *   h = conv1(SiLU(norm1(x))) + temb_proj(SiLU(temb)); h = conv2(dropout(SiLU(norm2(h))));
 *   out = skip(x) + h.
 * Attention block (C channels, heads NH): norm (GN C), qkv (1x1 conv C -> 3C), proj (1x1 conv):
 *   out = x + proj(attention(qkv(norm(x)))), q/k/v/head layout as mdiff_attention_forward.
 * The attention resolution is matched against the feature map's height H/2^l.
 *
 * MLP (vector data, D = in_ch, W = mlp_width, depth = mlp_depth):
 *   temb = time_embed.2(SiLU(time_embed.0(sinusoidal(t_net, 128))))      (128 -> W -> W)
 *   h = input_proj(x) + temb                                                (D -> W)
 *   h = h + layers.<i>(SiLU(h))   for i < depth    (residual, W -> W)
 *   out = out(SiLU(h))                                                      (W -> D)
 *
 * Initialisation (mdiff_model_init): tensor number i draws from Philox stream
 * (seed, MDIFF_RNG_INIT, step 0, index i). Conv and linear weights and biases: PyTorch's default,
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C*K*K (kaiming_uniform with a = sqrt(5)).
 * GroupNorm gamma 1, beta 0. Zero (weight and bias): each ResBlock's conv2, each attention
 * block's proj (so every residual block starts as the identity/skip, improved-diffusion's
 * choice), the U-Net's out_conv and the MLP's out layer (the network starts by predicting 0). */
#ifndef MDIFF_MODEL_H
#define MDIFF_MODEL_H

#include <stdint.h>

#include "mdiff/config.h"

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    int64_t offset; /* in floats, into the flat buffer */
    int64_t numel;
} mdiff_param;

typedef struct mdiff_model mdiff_model;

/* Validates cfg (user error, exit 1, with one line naming the field and the fix) and plans the
 * activation arena for batches up to max_batch; allocates the arena and workspace once. */
mdiff_model *mdiff_model_create(const mdiff_model_cfg *cfg, int max_batch);
void mdiff_model_free(mdiff_model *m);

const mdiff_model_cfg *mdiff_model_config(const mdiff_model *m);
int mdiff_model_max_batch(const mdiff_model *m);
/* Floats per sample of the input/output (C*H*W, or D for the MLP). */
int64_t mdiff_model_sample_numel(const mdiff_model *m);
int64_t mdiff_model_num_params(const mdiff_model *m);
int mdiff_model_num_tensors(const mdiff_model *m);
/* Tensor i (0 <= i < num_tensors) in the flat layout order. */
const mdiff_param *mdiff_model_tensor(const mdiff_model *m, int i);
/* The tensor with this name, or NULL. */
const mdiff_param *mdiff_model_find(const mdiff_model *m, const char *name);
/* Arena + workspace bytes (for the memory report). */
int64_t mdiff_model_activation_bytes(const mdiff_model *m);
/* Forward GEMM flops at batch B (2*M*N*K summed over convs, linears and attention products);
 * a backward costs about twice this. */
double mdiff_model_flops(const mdiff_model *m, int B);

/* Fills params (num_params floats) as described in the header comment. */
void mdiff_model_init(const mdiff_model *m, float *params, uint64_t seed);

/* out (B, C, H, W) (mlp: (B, D)) = f(x (same shape), t_net (B)), 1 <= B <= max_batch.
 * train = 1 keeps what backward needs and applies dropout with masks keyed by
 * (seed, step, global sample sample0 + b), so a sample's mask does not depend on its batch or
 * rank. train = 0: dropout is the identity (seed, step, sample0 unused). */
void mdiff_model_forward(mdiff_model *m, float *out, const float *params, const float *x,
                         const float *t_net, int B, int train, uint64_t seed, uint64_t step,
                         int64_t sample0);

/* Backward of the last forward (which must have had train = 1 and the same B and params):
 * grads += dL/dθ (flat, same layout) given dout = dL/dout (B, ...). Each time a contiguous range
 * of parameters has its final gradient, calls ready(ctx, offset, count) (floats, into the flat
 * buffer); the ranges come in strictly descending order and cover every parameter exactly once.
 * ready may be NULL. */
void mdiff_model_backward(mdiff_model *m, float *grads, const float *params, const float *dout,
                          int B, void (*ready)(void *ctx, int64_t offset, int64_t count),
                          void *ctx);

/* Per-op-family timing for the benchmark: seconds accumulated over forward and backward while
 * enabled (off by default; the cost is two clock reads per op). */
enum {
    MDIFF_FAM_CONV,        /* conv2d forward/backward: im2col/col2im + GEMM */
    MDIFF_FAM_LINEAR,      /* linear layers (time embedding, temb projections, MLP) */
    MDIFF_FAM_NORM,        /* group norm (+ fused SiLU) */
    MDIFF_FAM_ATTENTION,   /* attention products and softmax (not its 1x1 convs) */
    MDIFF_FAM_ELEMENTWISE, /* SiLU, adds, concat, upsample, dropout, embedding, copies, zeroing */
    MDIFF_FAM_COUNT
};
const char *mdiff_model_family_name(int family);
void mdiff_model_set_timing(mdiff_model *m, int on);
void mdiff_model_timing(const mdiff_model *m, double seconds[MDIFF_FAM_COUNT]);
void mdiff_model_reset_timing(mdiff_model *m);
/* The family of the op being executed (-1 between ops): lets a profiler that intercepts BLAS
 * (bench/bench_model.c) split a family's time into GEMM and the rest (im2col/col2im). */
int mdiff_model_current_family(const mdiff_model *m);

#endif
