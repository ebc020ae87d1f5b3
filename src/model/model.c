/* model: the public API of include/mdiff/model.h over the graph of graph.c — creation (validate,
 * build, check the layout invariants, plan the arena), the parameter table, initialisation,
 * forward/backward entry points, flop count and the per-family timers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mdiff/common.h"
#include "mdiff/rng.h"

/* The ready callback's contract rests on two invariants of the builders: the params of each op
 * are consecutive, and ops own ascending, gap-free ranges covering the whole buffer. */
static void check_layout(const mdiff_model *m) {
    int64_t next = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->ops[i];
        const int ps[2] = {o->pw, o->pb};
        for (int s = 0; s < 2; s++) {
            if (ps[s] < 0) continue;
            MDIFF_CHECK(m->params[ps[s]].offset == next, "model: %s out of forward order",
                        m->params[ps[s]].name);
            next += m->params[ps[s]].numel;
        }
    }
    MDIFF_CHECK(next == m->total_params, "model: ops own %lld of %lld parameters",
                (long long)next, (long long)m->total_params);
}

mdiff_model *mdiff_model_create(const mdiff_model_cfg *cfg, int max_batch) {
    if (max_batch < 1) mdiff_user_error_all("model: batch %d must be >= 1", max_batch);
    mdiff_model *m = mdiff_calloc(1, sizeof *m, "model");
    m->cfg = *cfg;
    m->max_batch = max_batch;
    m->cur_family = -1;
    if (strcmp(cfg->arch, "unet") == 0) {
        mt_build_unet(m);
    } else if (strcmp(cfg->arch, "mlp") == 0) {
        m->is_mlp = 1;
        mt_build_mlp(m);
    } else {
        mdiff_user_error_all("model: architecture '%s' is not unet or mlp (auto must be resolved "
                             "from the data first)", cfg->arch);
    }
    check_layout(m);
    mt_plan(m);
    return m;
}

void mdiff_model_free(mdiff_model *m) {
    if (!m) return;
    mdiff_free_aligned(m->arena);
    mdiff_free_aligned(m->work);
    free(m->params);
    free(m->pinit);
    free(m->ops);
    free(m->tensors);
    free(m);
}

const mdiff_model_cfg *mdiff_model_config(const mdiff_model *m) { return &m->cfg; }
int mdiff_model_max_batch(const mdiff_model *m) { return m->max_batch; }
int64_t mdiff_model_sample_numel(const mdiff_model *m) { return m->sample_numel; }
int64_t mdiff_model_num_params(const mdiff_model *m) { return m->total_params; }
int mdiff_model_num_tensors(const mdiff_model *m) { return m->n_params; }

const mdiff_param *mdiff_model_tensor(const mdiff_model *m, int i) {
    MDIFF_CHECK(i >= 0 && i < m->n_params, "model: tensor %d of %d", i, m->n_params);
    return &m->params[i];
}

const mdiff_param *mdiff_model_find(const mdiff_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int64_t mdiff_model_activation_bytes(const mdiff_model *m) {
    return m->arena_bytes + m->work_floats * (int64_t)sizeof(float);
}

double mdiff_model_flops(const mdiff_model *m, int B) {
    double f = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->ops[i];
        if (o->kind == OP_CONV) {
            const double OH = (o->H + 2 * o->pad - o->K) / o->stride + 1;
            const double OW = (o->W + 2 * o->pad - o->K) / o->stride + 1;
            f += 2.0 * B * o->OC * OH * OW * o->C * o->K * o->K;
        } else if (o->kind == OP_LINEAR) {
            f += 2.0 * B * o->C * o->OC;
        } else if (o->kind == OP_ATTN) {
            const double L = (double)o->H * o->W;
            f += 2.0 * 2.0 * B * L * L * o->C; /* q^T k and att v, all heads */
        }
    }
    return f;
}

void mdiff_model_init(const mdiff_model *m, float *params, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        const mdiff_param *p = &m->params[i];
        float *x = params + p->offset;
        switch (m->pinit[i].kind) {
        case INIT_ZERO: memset(x, 0, (size_t)p->numel * sizeof(float)); break;
        case INIT_ONE:
            for (int64_t k = 0; k < p->numel; k++) x[k] = 1.0f;
            break;
        case INIT_UNIFORM: {
            const float bound = (float)(1.0 / sqrt((double)m->pinit[i].fan_in));
            mdiff_rng_fill_uniform(x, p->numel, seed, MDIFF_RNG_INIT, 0, (uint64_t)i);
            for (int64_t k = 0; k < p->numel; k++) x[k] = (2.0f * x[k] - 1.0f) * bound;
            break;
        }
        }
    }
}

void mdiff_model_forward(mdiff_model *m, float *out, const float *params, const float *x,
                         const float *t_net, int B, int train, uint64_t seed, uint64_t step,
                         int64_t sample0) {
    MDIFF_CHECK(B >= 1 && B <= m->max_batch, "model: batch %d outside [1, %d]", B, m->max_batch);
    memcpy(mt_val(m, m->t_x), x, (size_t)(B * m->sample_numel) * sizeof(float));
    memcpy(mt_val(m, m->t_t), t_net, (size_t)B * sizeof(float));
    mt_forward(m, params, B, train, seed, step, sample0);
    memcpy(out, mt_val(m, m->t_out), (size_t)(B * m->sample_numel) * sizeof(float));
    m->last_B = B;
    m->last_train = train;
}

void mdiff_model_backward(mdiff_model *m, float *grads, const float *params, const float *dout,
                          int B, void (*ready)(void *ctx, int64_t offset, int64_t count),
                          void *ctx) {
    MDIFF_CHECK(m->last_train && B == m->last_B,
                "model: backward (B=%d) without a train-mode forward of that batch", B);
    memcpy(mt_grad(m, m->t_out), dout, (size_t)(B * m->sample_numel) * sizeof(float));
    mt_backward(m, grads, params, B, ready, ctx);
}

const char *mdiff_model_family_name(int family) {
    static const char *names[MDIFF_FAM_COUNT] = {"conv", "linear", "norm", "attention",
                                                 "elementwise"};
    return family >= 0 && family < MDIFF_FAM_COUNT ? names[family] : "?";
}

void mdiff_model_set_timing(mdiff_model *m, int on) { m->timing = on; }

void mdiff_model_timing(const mdiff_model *m, double seconds[MDIFF_FAM_COUNT]) {
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) seconds[f] = m->fam_time[f];
}

void mdiff_model_reset_timing(mdiff_model *m) {
    for (int f = 0; f < MDIFF_FAM_COUNT; f++) m->fam_time[f] = 0;
}

int mdiff_model_current_family(const mdiff_model *m) { return m->cur_family; }
