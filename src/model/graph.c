/* model graph: the network as a list of ops over numbered tensors, the arena plan and the
 * forward/backward executor shared by the U-Net and the MLP.
 *
 * Memory plan (mt_plan), all in one arena allocated once for max_batch:
 *  - every forward value has its own region (backward needs nearly all of them);
 *  - gradients of activations share space by lifetime: in backward time a gradient is live from
 *    the backward of its last consumer (where it is zeroed, then accumulated into) to the
 *    backward of its producer (its last reader). First-fit on those intervals roughly halves the
 *    gradient memory compared to one buffer per activation;
 *  - one workspace sized for the largest conv (im2col) or attention scratch.
 * In-place ops (the temb add into conv1's output, residual adds into the last conv's output) keep
 * the tensor id: their gradient passes through unchanged, so their backward only adds to the
 * other operand. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mdiff/common.h"
#include "mdiff/ops.h"

#define ALIGN 64

static void *grow(void *p, int *cap, int need, size_t elem, const char *what) {
    if (need <= *cap) return p;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(p, (size_t)nc * elem);
    if (!q) mdiff_user_error("out of memory growing the model's %s table", what);
    *cap = nc;
    return q;
}

int mt_tensor_new(mdiff_model *m, int64_t per_sample, int esize, int needs_grad) {
    m->tensors = grow(m->tensors, &m->cap_tensors, m->n_tensors + 1, sizeof *m->tensors, "tensor");
    mt_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->per_sample = per_sample;
    t->esize = esize;
    t->needs_grad = needs_grad;
    t->producer = -1;
    t->last_use = -1;
    t->goff = -1;
    return m->n_tensors++;
}

int mt_param_new(mdiff_model *m, const char *name, int ndim, const int64_t *shape,
                 mt_init_kind kind, int64_t fan_in) {
    int cap = m->cap_params;
    m->params = grow(m->params, &m->cap_params, m->n_params + 1, sizeof *m->params, "parameter");
    m->pinit = grow(m->pinit, &cap, m->n_params + 1, sizeof *m->pinit, "parameter");
    m->pinit[m->n_params] = (mt_pinit){kind, fan_in};
    mdiff_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    mdiff_strcpy(p->name, sizeof p->name, name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= shape[d];
    }
    p->offset = m->total_params;
    m->total_params += p->numel;
    return m->n_params++;
}

void mt_zero_init_last(mdiff_model *m) {
    MDIFF_CHECK(m->n_ops > 0, "model: no op to zero-init");
    const mt_op *o = &m->ops[m->n_ops - 1];
    if (o->pw >= 0) m->pinit[o->pw].kind = INIT_ZERO;
    if (o->pb >= 0) m->pinit[o->pb].kind = INIT_ZERO;
}

int mt_op_add(mdiff_model *m, const mt_op *op) {
    m->ops = grow(m->ops, &m->cap_ops, m->n_ops + 1, sizeof *m->ops, "op");
    m->ops[m->n_ops] = *op;
    return m->n_ops++;
}

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static int64_t tensor_bytes(const mdiff_model *m, int t) {
    return align_up((int64_t)m->max_batch * m->tensors[t].per_sample * m->tensors[t].esize);
}

static void note_use(mdiff_model *m, int t, int i) {
    if (t < 0) return;
    if (m->tensors[t].last_use < i) m->tensors[t].last_use = i;
}

/* Lifetimes: producer = first op writing the tensor, last_use = last op touching it. */
static void compute_lifetimes(mdiff_model *m) {
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->ops[i];
        if (m->tensors[o->out].producer < 0) m->tensors[o->out].producer = i;
        note_use(m, o->out, i);
        for (int s = 0; s < 2; s++) {
            note_use(m, o->in[s], i);
            if (o->aux[s] >= 0 && m->tensors[o->aux[s]].producer < 0)
                m->tensors[o->aux[s]].producer = i;
            note_use(m, o->aux[s], i);
        }
    }
}

typedef struct {
    int t;
    int start, end; /* backward time, inclusive */
} interval;

static int by_start(const void *a, const void *b) {
    const interval *x = a, *y = b;
    return x->start != y->start ? x->start - y->start : x->t - y->t;
}

/* First-fit placement of gradient buffers whose backward lifetimes overlap; returns the bytes
 * used, offsets relative to base. */
static int64_t place_gradients(mdiff_model *m, int64_t base) {
    interval *iv = mdiff_malloc(sizeof *iv * (size_t)m->n_tensors, "gradient plan");
    int64_t *off = mdiff_malloc(sizeof *off * (size_t)m->n_tensors, "gradient plan");
    int n = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const mt_tensor *x = &m->tensors[t];
        if (!x->needs_grad) continue;
        MDIFF_CHECK(x->producer >= 0 && x->last_use >= x->producer, "model: tensor %d unplanned", t);
        iv[n++] = (interval){t, m->n_ops - 1 - x->last_use, m->n_ops - 1 - x->producer};
    }
    qsort(iv, (size_t)n, sizeof *iv, by_start);
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        int64_t size = tensor_bytes(m, iv[i].t), o = 0;
        /* Raise o past every overlapping live block until it fits (blocks are few). */
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                if (iv[j].start > iv[i].end || iv[i].start > iv[j].end) continue;
                int64_t jo = off[j], je = jo + tensor_bytes(m, iv[j].t);
                if (o < je && jo < o + size) {
                    o = je;
                    moved = 1;
                }
            }
        }
        off[i] = o;
        if (o + size > top) top = o + size;
        m->tensors[iv[i].t].goff = base + o;
    }
    free(iv);
    free(off);
    return top;
}

void mt_plan(mdiff_model *m) {
    compute_lifetimes(m);
    int64_t pos = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        m->tensors[t].off = pos;
        pos += tensor_bytes(m, t);
    }
    pos += place_gradients(m, pos);
    m->arena_bytes = pos;
    m->arena = mdiff_alloc_aligned((size_t)(pos > 0 ? pos : ALIGN),
                                   "model activation arena (use a smaller --batch or model)");
    mt_ensure_work(m);
}

/* Sizes the workspace for the largest conv (im2col chunks) or attention scratch at max_batch and
 * the calling thread's mdiff_threads(); reallocates only when that budget changed and needs more. */
void mt_ensure_work(mdiff_model *m) {
    if (m->work && m->work_threads == mdiff_threads()) return;
    int64_t work = 0, B = m->max_batch;
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->ops[i];
        int64_t w = 0;
        if (o->kind == OP_CONV)
            w = mdiff_conv2d_work_floats((int)B, o->C, o->H, o->W, o->OC, o->K, o->stride, o->pad);
        else if (o->kind == OP_ATTN)
            w = mdiff_attention_work_floats((int)B, o->C, o->H * o->W, o->NH);
        if (w > work) work = w;
    }
    m->work_threads = mdiff_threads();
    if (m->work && work <= m->work_floats) return;
    mdiff_free_aligned(m->work);
    m->work_floats = work;
    m->work = mdiff_alloc_aligned((size_t)align_up((work > 0 ? work : 1) * (int64_t)sizeof(float)),
                                  "model workspace (use a smaller --batch or model)");
}

static int op_family(op_kind k) {
    switch (k) {
    case OP_CONV: return MDIFF_FAM_CONV;
    case OP_LINEAR: return MDIFF_FAM_LINEAR;
    case OP_GN: return MDIFF_FAM_NORM;
    case OP_ATTN: return MDIFF_FAM_ATTENTION;
    default: return MDIFF_FAM_ELEMENTWISE;
    }
}

static const float *pp(const float *params, const mdiff_model *m, int p) {
    return p >= 0 ? params + m->params[p].offset : NULL;
}
static float *gp(float *grads, const mdiff_model *m, int p) {
    return p >= 0 ? grads + m->params[p].offset : NULL;
}

static void op_forward(mdiff_model *m, const mt_op *o, const float *params, int B, int train,
                       uint64_t seed, uint64_t step, int64_t sample0) {
    float *out = mt_val(m, o->out), *work = m->work;
    const float *a = mt_val(m, o->in[0]);
    const float *b = o->in[1] >= 0 ? mt_val(m, o->in[1]) : NULL;
    const float *w = pp(params, m, o->pw), *bias = pp(params, m, o->pb);
    const int HW = o->H * o->W;
    switch (o->kind) {
    case OP_TEMB: mdiff_timestep_embedding(out, a, B, o->C); break;
    case OP_LINEAR: mdiff_linear_forward(out, a, w, bias, B, o->C, o->OC); break;
    case OP_CONV:
        mdiff_conv2d_forward(out, a, w, bias, B, o->C, o->H, o->W, o->OC, o->K, o->stride, o->pad,
                             work);
        break;
    case OP_GN:
        mdiff_groupnorm_forward(out, mt_val(m, o->aux[0]), mt_val(m, o->aux[1]), a, w, bias, B,
                                o->C, HW, o->G, o->silu);
        break;
    case OP_SILU: mdiff_silu_forward(out, a, B * o->n); break;
    case OP_ADD: mdiff_add_forward(out, a, b, B * o->n); break;
    case OP_ADDCH: mdiff_add_channel_forward(out, a, b, B, o->C, HW); break;
    case OP_UP: mdiff_upsample2x_forward(out, a, B, o->C, o->H, o->W); break;
    case OP_CAT: mdiff_concat_forward(out, a, b, B, o->C, o->OC, HW); break;
    case OP_ATTN: mdiff_attention_forward(out, mt_val(m, o->aux[0]), a, B, o->C, HW, o->NH); break;
    case OP_DROPOUT:
        if (train)
            mdiff_dropout_forward(out, (uint8_t *)mt_val(m, o->aux[0]), a, B, o->n, o->p, seed,
                                  step, sample0, o->layer);
        else
            memcpy(out, a, (size_t)(B * o->n) * sizeof(float));
        break;
    }
}

static void op_backward(mdiff_model *m, const mt_op *o, float *grads, const float *params, int B) {
    const float *dout = mt_grad(m, o->out);
    float *work = m->work;
    const float *a = mt_val(m, o->in[0]);
    /* An in-place op's output is its operand: the gradient is already there. */
    float *da = o->in[0] == o->out ? NULL : mt_grad(m, o->in[0]);
    float *db = o->in[1] == o->out ? NULL : mt_grad(m, o->in[1]);
    const float *w = pp(params, m, o->pw), *bias = pp(params, m, o->pb);
    float *dw = gp(grads, m, o->pw), *dbias = gp(grads, m, o->pb);
    const int HW = o->H * o->W;
    switch (o->kind) {
    case OP_TEMB: break;
    case OP_LINEAR: mdiff_linear_backward(da, dw, dbias, dout, a, w, B, o->C, o->OC); break;
    case OP_CONV:
        mdiff_conv2d_backward(da, dw, dbias, dout, a, w, B, o->C, o->H, o->W, o->OC, o->K,
                              o->stride, o->pad, work);
        break;
    case OP_GN:
        mdiff_groupnorm_backward(da, dw, dbias, dout, a, mt_val(m, o->aux[0]),
                                 mt_val(m, o->aux[1]), w, bias, B, o->C, HW, o->G, o->silu);
        break;
    case OP_SILU:
        if (da) mdiff_silu_backward(da, dout, a, B * o->n);
        break;
    case OP_ADD: mdiff_add_backward(da, db, dout, B * o->n); break;
    case OP_ADDCH: mdiff_add_channel_backward(da, db, dout, B, o->C, HW); break;
    case OP_UP:
        if (da) mdiff_upsample2x_backward(da, dout, B, o->C, o->H, o->W);
        break;
    case OP_CAT: mdiff_concat_backward(da, db, dout, B, o->C, o->OC, HW); break;
    case OP_ATTN:
        mdiff_attention_backward(da, dout, a, mt_val(m, o->aux[0]), B, o->C, HW, o->NH, work);
        break;
    case OP_DROPOUT:
        mdiff_dropout_backward(da, dout, (const uint8_t *)mt_val(m, o->aux[0]), B, o->n, o->p);
        break;
    }
}

static void add_time(mdiff_model *m, int fam, double t0) {
    m->fam_time[fam] += mdiff_now() - t0;
}

void mt_forward(mdiff_model *m, const float *params, int B, int train, uint64_t seed,
                uint64_t step, int64_t sample0) {
    mt_ensure_work(m);
    /* Every BLAS call of a pass (the linears too) runs single-threaded (common.h's thread policy):
     * set once per pass, so the ops' own switches find 1 already. */
    const int blas = mdiff_blas_single();
    for (int i = 0; i < m->n_ops; i++) {
        double t0 = m->timing ? mdiff_now() : 0;
        m->cur_family = op_family(m->ops[i].kind);
        op_forward(m, &m->ops[i], params, B, train, seed, step, sample0);
        if (m->timing) add_time(m, m->cur_family, t0);
    }
    m->cur_family = -1;
    mdiff_blas_restore(blas);
}

/* memset split over mdiff_threads() in 64 KB blocks (the gradients are up to tens of MB) */
static void zero_bytes(unsigned char *p, int64_t n) {
    const int64_t blk = 65536, nblk = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) num_threads(mdiff_threads()) \
    if (nblk > 2 && mdiff_threads() > 1)
    for (int64_t k = 0; k < nblk; k++)
        memset(p + k * blk, 0, (size_t)(k == nblk - 1 ? n - k * blk : blk));
}

/* Zeroes the gradients first touched by op i's backward (their last consumer is op i). */
static void zero_grads_of(mdiff_model *m, int i, int B) {
    for (int t = 0; t < m->n_tensors; t++) {
        const mt_tensor *x = &m->tensors[t];
        if (x->last_use != i || x->goff < 0 || t == m->t_out) continue;
        zero_bytes(m->arena + x->goff, (int64_t)B * x->per_sample * x->esize);
    }
}

/* The parameter range [lo, hi) an op owns (its tensors are consecutive in the layout). */
static int op_param_range(const mdiff_model *m, const mt_op *o, int64_t *lo, int64_t *hi) {
    if (o->pw < 0 && o->pb < 0) return 0;
    *lo = INT64_MAX;
    *hi = -1;
    const int ps[2] = {o->pw, o->pb};
    for (int s = 0; s < 2; s++) {
        if (ps[s] < 0) continue;
        const mdiff_param *p = &m->params[ps[s]];
        if (p->offset < *lo) *lo = p->offset;
        if (p->offset + p->numel > *hi) *hi = p->offset + p->numel;
    }
    return 1;
}

void mt_backward(mdiff_model *m, float *grads, const float *params, int B,
                 void (*ready)(void *ctx, int64_t offset, int64_t count), void *ctx) {
    mt_ensure_work(m);
    const int blas = mdiff_blas_single(); /* one BLAS thread, as in mt_forward */
    for (int i = m->n_ops - 1; i >= 0; i--) {
        const mt_op *o = &m->ops[i];
        double t0 = m->timing ? mdiff_now() : 0;
        m->cur_family = MDIFF_FAM_ELEMENTWISE;
        zero_grads_of(m, i, B);
        if (m->timing) add_time(m, MDIFF_FAM_ELEMENTWISE, t0);
        t0 = m->timing ? mdiff_now() : 0;
        m->cur_family = op_family(o->kind);
        op_backward(m, o, grads, params, B);
        if (m->timing) add_time(m, m->cur_family, t0);
        m->cur_family = -1;
        int64_t lo, hi;
        if (ready && op_param_range(m, o, &lo, &hi)) ready(ctx, lo, hi - lo);
    }
    mdiff_blas_restore(blas);
}
