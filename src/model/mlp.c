/* model/mlp: the denoiser for vector data (toy 2-D sets). Design (include/mdiff/model.h):
 * a 128-dim sinusoidal embedding of t through Linear -> SiLU -> Linear to the width W is added to
 * a linear projection of x; mlp_depth residual layers h += Linear(SiLU(h)) keep the gradient path
 * short at any depth; the output Linear(SiLU(h)) to D is zero-initialised. */
#include "internal.h"
#include "mdiff/common.h"

#define MLP_TEMB_DIM 128

static void validate(const mdiff_model_cfg *c) {
    if (c->in_ch < 1)
        mdiff_user_error_all("model: the MLP needs vectors of dimension >= 1, got %d", c->in_ch);
    if (c->mlp_width < 1)
        mdiff_user_error_all("model: --mlp-width %d must be >= 1", c->mlp_width);
    if (c->mlp_depth < 0)
        mdiff_user_error_all("model: --mlp-depth %d must be >= 0", c->mlp_depth);
}

void mt_build_mlp(mdiff_model *m) {
    const mdiff_model_cfg *c = &m->cfg;
    validate(c);
    const int D = c->in_ch, Wd = c->mlp_width;
    m->sample_numel = D;
    m->t_x = mt_tensor_new(m, D, 4, 0);
    m->t_t = mt_tensor_new(m, 1, 4, 0);
    mt_op te = mt_op_make(OP_TEMB, mt_tensor_new(m, MLP_TEMB_DIM, 4, 0), m->t_t, -1);
    te.C = MLP_TEMB_DIM;
    mt_op_add(m, &te);
    int e = mt_linear(m, "time_embed.0", te.out, MLP_TEMB_DIM, Wd);
    e = mt_silu(m, e, Wd);
    e = mt_linear(m, "time_embed.2", e, Wd, Wd);
    int h = mt_linear(m, "input_proj", m->t_x, D, Wd);
    h = mt_add_into(m, e, h, Wd);
    char n[96];
    for (int i = 0; i < c->mlp_depth; i++) {
        int a = mt_silu(m, h, Wd);
        mdiff_snprintf(n, sizeof n, "layers.%d", i);
        int y = mt_linear(m, n, a, Wd, Wd);
        h = mt_add_into(m, h, y, Wd);
    }
    h = mt_silu(m, h, Wd);
    m->t_out = mt_linear(m, "out", h, Wd, D);
    mt_zero_init_last(m);
}
