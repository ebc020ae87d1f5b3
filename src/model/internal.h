/* model internals shared by the files of src/model: the network as a flat list of ops over numbered
 * tensors, built once by the U-Net / MLP builders (unet.c, mlp.c), planned into one arena and
 * executed forward and backward by graph.c. */
#ifndef MDIFF_MODEL_INTERNAL_H
#define MDIFF_MODEL_INTERNAL_H

#include <stdint.h>

#include "mdiff/config.h"
#include "mdiff/model.h"

typedef enum {
    OP_TEMB,    /* out (B, C) = sinusoidal(in0 (B)), C = dim; no backward */
    OP_LINEAR,  /* out (B, OC) = in0 (B, C) W^T + b */
    OP_CONV,    /* out (B, OC, OH, OW) = conv(in0 (B, C, H, W)) */
    OP_GN,      /* out (B, C, H*W) = [SiLU] GN(in0); aux0 = mean, aux1 = rstd (B, G) */
    OP_SILU,    /* out (B, n) = SiLU(in0) */
    OP_ADD,     /* out (B, n) = in0 + in1; out may be in1 (in place) */
    OP_ADDCH,   /* out (B, C, H*W) = in0 + in1 (B, C) broadcast; out may be in0 (in place) */
    OP_UP,      /* out (B, C, 2H, 2W) = nearest(in0 (B, C, H, W)) */
    OP_CAT,     /* out (B, C + OC, H*W) = [in0 (B, C, HW), in1 (B, OC, HW)] */
    OP_ATTN,    /* out (B, C, H*W) = attention(in0 = qkv (B, 3C, H*W)); aux0 = att */
    OP_DROPOUT  /* out (B, n) = dropout(in0); aux0 = mask (bytes) */
} op_kind;

typedef struct {
    op_kind kind;
    int out, in[2], aux[2]; /* tensor ids, -1 = none */
    int pw, pb;             /* parameter tensor numbers, -1 = none */
    int C, H, W, OC, K, stride, pad, G, silu, NH, layer;
    int64_t n;              /* elementwise ops: floats per sample */
    float p;                /* dropout probability */
} mt_op;

typedef struct {
    int64_t per_sample; /* elements per sample */
    int esize;          /* bytes per element: 4 (float) or 1 (dropout mask) */
    int needs_grad;     /* 0: the input, t, the sinusoidal embedding, saved statistics */
    int producer;       /* first op writing it (-1: filled from the caller's x / t) */
    int last_use;       /* last op reading or writing it */
    int64_t off;        /* byte offset of the values in the arena */
    int64_t goff;       /* byte offset of the gradient in the arena (-1: none) */
} mt_tensor;

/* How mdiff_model_init fills a parameter tensor. */
typedef enum { INIT_UNIFORM, INIT_ONE, INIT_ZERO } mt_init_kind;
typedef struct {
    mt_init_kind kind;
    int64_t fan_in; /* INIT_UNIFORM: bound 1/sqrt(fan_in) */
} mt_pinit;

struct mdiff_model {
    mdiff_model_cfg cfg;
    int max_batch;
    int is_mlp;
    int64_t sample_numel;
    /* parameters */
    mdiff_param *params;
    mt_pinit *pinit; /* same index as params */
    int n_params, cap_params;
    int64_t total_params;
    /* graph */
    mt_op *ops;
    int n_ops, cap_ops;
    mt_tensor *tensors;
    int n_tensors, cap_tensors;
    int t_x, t_t, t_out; /* the input image/vector, the timesteps, the output */
    int n_dropout;       /* dropout layers numbered 0.. (the rng purpose offset) */
    /* memory: one arena (values, gradients, workspace) */
    unsigned char *arena;
    int64_t arena_bytes, work_off, work_floats;
    /* the ops' workspace, separate from the arena: its size grows with the thread budget
     * (per-thread im2col chunks), so it is sized for work_threads and regrown (once) when a
     * pass runs with a larger mdiff_threads() */
    float *work;
    int work_threads;
    /* state of the last forward */
    int last_B, last_train;
    /* timing */
    int timing;
    int cur_family; /* of the op running, -1 between ops */
    double fam_time[MDIFF_FAM_COUNT];
};

/* building (graph.c) */
int mt_tensor_new(mdiff_model *m, int64_t per_sample, int esize, int needs_grad);
int mt_param_new(mdiff_model *m, const char *name, int ndim, const int64_t *shape,
                 mt_init_kind kind, int64_t fan_in);
/* Marks the parameters of the op appended last for zero initialisation. */
void mt_zero_init_last(mdiff_model *m);
int mt_op_add(mdiff_model *m, const mt_op *op);
/* the arena plan (graph.c): offsets, gradient lifetimes, workspace */
void mt_plan(mdiff_model *m);
/* (re)sizes the ops' workspace for the calling thread's mdiff_threads() */
void mt_ensure_work(mdiff_model *m);
/* execution (graph.c) */
void mt_forward(mdiff_model *m, const float *params, int B, int train, uint64_t seed,
                uint64_t step, int64_t sample0);
void mt_backward(mdiff_model *m, float *grads, const float *params, int B,
                 void (*ready)(void *ctx, int64_t offset, int64_t count), void *ctx);
static inline float *mt_val(const mdiff_model *m, int t) {
    return (float *)(m->arena + m->tensors[t].off);
}
static inline float *mt_grad(const mdiff_model *m, int t) {
    return t >= 0 && m->tensors[t].goff >= 0 ? (float *)(m->arena + m->tensors[t].goff) : NULL;
}

/* builders: validate cfg (user errors) and append params/tensors/ops */
void mt_build_unet(mdiff_model *m);
void mt_build_mlp(mdiff_model *m);

/* An op with no parameters and no aux tensors (fill its size fields, then mt_op_add). */
mt_op mt_op_make(op_kind kind, int out, int in0, int in1);
/* layer helpers shared by the builders (layers.c): each appends its params and ops and returns
 * the output tensor. `name` is the module prefix, e.g. "down.0.res.1". */
int mt_linear(mdiff_model *m, const char *name, int in, int C, int OC);
int mt_conv(mdiff_model *m, const char *name, int in, int C, int H, int W, int OC, int K,
            int stride);
int mt_groupnorm(mdiff_model *m, const char *name, int in, int C, int HW, int G, int silu);
int mt_silu(mdiff_model *m, int in, int64_t n);
/* out = a + b computed in place into b (b must not be needed by anything but this add). */
int mt_add_into(mdiff_model *m, int a, int b, int64_t n);

#endif
