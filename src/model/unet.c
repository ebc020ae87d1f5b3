/* model/unet: validation of the U-Net configuration and the U-Net graph (issue 3; names and
 * structure documented in include/mdiff/model.h, mirrored by tests/reference/unet.py). */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "mdiff/common.h"

/* Feature-map sides of every level as text, for error messages. */
static void sides_text(const mdiff_model_cfg *c, char *buf, size_t cap) {
    buf[0] = 0;
    for (int l = 0; l < c->n_levels; l++) {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s%d", l ? ", " : "", c->height >> l);
    }
}

static int attn_level(const mdiff_model_cfg *c, int l) {
    for (int a = 0; a < c->n_attn; a++)
        if (c->attn_res[a] == (c->height >> l)) return 1;
    return 0;
}

static void validate(const mdiff_model_cfg *c) {
    if (c->in_ch < 1 || c->height < 1 || c->width < 1)
        mdiff_user_error_all("model: image shape %d x %d x %d is empty (channels x height x width)",
                             c->in_ch, c->height, c->width);
    if (c->n_levels < 1 || c->n_levels > MDIFF_MAX_LEVELS)
        mdiff_user_error_all("model: --mult needs 1 to %d levels, got %d", MDIFF_MAX_LEVELS,
                             c->n_levels);
    for (int l = 0; l < c->n_levels; l++)
        if (c->mult[l] < 1)
            mdiff_user_error_all("model: --mult entry %d is %d: multipliers must be >= 1", l,
                                 c->mult[l]);
    if (c->ch < 2 || c->ch % 2)
        mdiff_user_error_all("model: --ch %d must be even and >= 2 (it is the sinusoidal timestep "
                             "embedding's dimension)", c->ch);
    if (c->nres < 1 || c->nres > 64)
        mdiff_user_error_all("model: --res-blocks %d must be in [1, 64]", c->nres);
    const int f = 1 << (c->n_levels - 1);
    if (c->height % f || c->width % f)
        mdiff_user_error_all("model: image %d x %d is not divisible by 2^(levels-1) = %d for the "
                             "%d levels of --mult: use fewer levels or pad the images",
                             c->height, c->width, f, c->n_levels);
    if (c->groups < 1) mdiff_user_error_all("model: --groups %d must be >= 1", c->groups);
    if (c->ch % c->groups)
        mdiff_user_error_all("model: --groups %d does not divide --ch %d: choose groups dividing "
                             "every level's channels", c->groups, c->ch);
    for (int l = 0; l < c->n_levels; l++)
        if ((c->ch * c->mult[l]) % c->groups)
            mdiff_user_error_all("model: --groups %d does not divide the %d channels of level %d "
                                 "(--ch %d x --mult %d): choose groups dividing every level's "
                                 "channels", c->groups, c->ch * c->mult[l], l, c->ch, c->mult[l]);
    if (c->n_attn < 0 || c->n_attn > MDIFF_MAX_ATTN)
        mdiff_user_error_all("model: --attn has %d entries, at most %d", c->n_attn, MDIFF_MAX_ATTN);
    if (c->n_attn > 0 && c->heads < 1)
        mdiff_user_error_all("model: --heads %d must be >= 1", c->heads);
    char sides[128];
    sides_text(c, sides, sizeof sides);
    for (int a = 0; a < c->n_attn; a++) {
        int found = 0;
        for (int l = 0; l < c->n_levels; l++) found |= c->attn_res[a] == (c->height >> l);
        if (!found)
            mdiff_user_error_all("model: --attn %d is not a feature-map side of this U-Net "
                                 "(sides: %s): list sides from those, or --attn none",
                                 c->attn_res[a], sides);
    }
    for (int l = 0; l < c->n_levels; l++) {
        const int C = c->ch * c->mult[l];
        const int mid = l == c->n_levels - 1 && c->n_attn > 0;
        if ((attn_level(c, l) || mid) && C % c->heads)
            mdiff_user_error_all("model: --heads %d does not divide the %d channels of the "
                                 "attention at side %d: choose heads dividing them",
                                 c->heads, C, c->height >> l);
    }
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        mdiff_user_error_all("model: --dropout %g must be in [0, 1)", (double)c->dropout);
    const int blocks = c->n_levels * (2 * c->nres + 1) + 2;
    if (c->dropout > 0.0f && blocks > 256)
        mdiff_user_error_all("model: %d res blocks with dropout exceed the 256 dropout streams: "
                             "use fewer --res-blocks or levels, or --dropout 0", blocks);
}

typedef struct {
    mdiff_model *m;
    int ta;   /* SiLU(temb) (B, tdim), input of every ResBlock's temb_proj */
    int tdim, G;
    float dropout;
} unet_ctx;

static int resblock(unet_ctx *u, const char *pre, int x, int cin, int cout, int H, int W) {
    mdiff_model *m = u->m;
    char n[96];
    const int HW = H * W;
    mdiff_snprintf(n, sizeof n, "%s.norm1", pre);
    int a = mt_groupnorm(m, n, x, cin, HW, u->G, 1);
    mdiff_snprintf(n, sizeof n, "%s.conv1", pre);
    int h = mt_conv(m, n, a, cin, H, W, cout, 3, 1);
    mdiff_snprintf(n, sizeof n, "%s.temb_proj", pre);
    int e = mt_linear(m, n, u->ta, u->tdim, cout);
    mt_op add = mt_op_make(OP_ADDCH, h, h, e);
    add.C = cout, add.H = H, add.W = W;
    mt_op_add(m, &add);
    mdiff_snprintf(n, sizeof n, "%s.norm2", pre);
    a = mt_groupnorm(m, n, h, cout, HW, u->G, 1);
    if (u->dropout > 0.0f) {
        mt_op d = mt_op_make(OP_DROPOUT, mt_tensor_new(m, (int64_t)cout * HW, 4, 1), a, -1);
        d.aux[0] = mt_tensor_new(m, (int64_t)cout * HW, 1, 0);
        d.n = (int64_t)cout * HW;
        d.p = u->dropout;
        d.layer = m->n_dropout++;
        mt_op_add(m, &d);
        a = d.out;
    }
    mdiff_snprintf(n, sizeof n, "%s.conv2", pre);
    h = mt_conv(m, n, a, cout, H, W, cout, 3, 1);
    mt_zero_init_last(m);
    int s = x;
    if (cin != cout) {
        mdiff_snprintf(n, sizeof n, "%s.skip", pre);
        s = mt_conv(m, n, x, cin, H, W, cout, 1, 1);
    }
    return mt_add_into(m, s, h, (int64_t)cout * HW);
}

static int attnblock(unet_ctx *u, const char *pre, int x, int C, int H, int W) {
    mdiff_model *m = u->m;
    char n[96];
    const int HW = H * W, NH = m->cfg.heads;
    mdiff_snprintf(n, sizeof n, "%s.norm", pre);
    int a = mt_groupnorm(m, n, x, C, HW, u->G, 0);
    mdiff_snprintf(n, sizeof n, "%s.qkv", pre);
    int qkv = mt_conv(m, n, a, C, H, W, 3 * C, 1, 1);
    mt_op at = mt_op_make(OP_ATTN, mt_tensor_new(m, (int64_t)C * HW, 4, 1), qkv, -1);
    at.aux[0] = mt_tensor_new(m, (int64_t)NH * HW * HW, 4, 0);
    at.C = C, at.H = H, at.W = W, at.NH = NH;
    mt_op_add(m, &at);
    mdiff_snprintf(n, sizeof n, "%s.proj", pre);
    int p = mt_conv(m, n, at.out, C, H, W, C, 1, 1);
    mt_zero_init_last(m);
    return mt_add_into(m, x, p, (int64_t)C * HW);
}

typedef struct {
    int t, C;
} skip_t;

void mt_build_unet(mdiff_model *m) {
    const mdiff_model_cfg *c = &m->cfg;
    validate(c);
    const int L = c->n_levels, ch = c->ch, tdim = 4 * ch;
    unet_ctx u = {m, -1, tdim, c->groups, c->dropout};
    m->sample_numel = (int64_t)c->in_ch * c->height * c->width;
    m->t_x = mt_tensor_new(m, m->sample_numel, 4, 0);
    m->t_t = mt_tensor_new(m, 1, 4, 0);

    mt_op te = mt_op_make(OP_TEMB, mt_tensor_new(m, ch, 4, 0), m->t_t, -1);
    te.C = ch;
    mt_op_add(m, &te);
    int h = mt_linear(m, "time_embed.0", te.out, ch, tdim);
    h = mt_silu(m, h, tdim);
    h = mt_linear(m, "time_embed.2", h, tdim, tdim);
    u.ta = mt_silu(m, h, tdim);

    int H = c->height, W = c->width, C = ch;
    char n[96];
    skip_t skips[MDIFF_MAX_LEVELS * (64 + 1) + 1]; /* 1 + L nres + (L - 1), nres <= 64 */
    int ns = 0;
    h = mt_conv(m, "input_conv", m->t_x, c->in_ch, H, W, ch, 3, 1);
    skips[ns++] = (skip_t){h, C};
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < c->nres; j++) {
            mdiff_snprintf(n, sizeof n, "down.%d.res.%d", l, j);
            h = resblock(&u, n, h, C, ch * c->mult[l], H, W);
            C = ch * c->mult[l];
            if (attn_level(c, l)) {
                mdiff_snprintf(n, sizeof n, "down.%d.attn.%d", l, j);
                h = attnblock(&u, n, h, C, H, W);
            }
            skips[ns++] = (skip_t){h, C};
        }
        if (l < L - 1) {
            mdiff_snprintf(n, sizeof n, "down.%d.downsample", l);
            h = mt_conv(m, n, h, C, H, W, C, 3, 2);
            H /= 2, W /= 2;
            skips[ns++] = (skip_t){h, C};
        }
    }
    h = resblock(&u, "mid.res1", h, C, C, H, W);
    if (c->n_attn > 0) h = attnblock(&u, "mid.attn", h, C, H, W);
    h = resblock(&u, "mid.res2", h, C, C, H, W);
    for (int i = 0; i < L; i++) {
        const int l = L - 1 - i;
        for (int j = 0; j <= c->nres; j++) {
            skip_t s = skips[--ns];
            mt_op cat = mt_op_make(OP_CAT, mt_tensor_new(m, (int64_t)(C + s.C) * H * W, 4, 1), h,
                                   s.t);
            cat.C = C, cat.OC = s.C, cat.H = H, cat.W = W;
            mt_op_add(m, &cat);
            mdiff_snprintf(n, sizeof n, "up.%d.res.%d", i, j);
            h = resblock(&u, n, cat.out, C + s.C, ch * c->mult[l], H, W);
            C = ch * c->mult[l];
            if (attn_level(c, l)) {
                mdiff_snprintf(n, sizeof n, "up.%d.attn.%d", i, j);
                h = attnblock(&u, n, h, C, H, W);
            }
        }
        if (l > 0) {
            mt_op up = mt_op_make(OP_UP, mt_tensor_new(m, (int64_t)C * 4 * H * W, 4, 1), h, -1);
            up.C = C, up.H = H, up.W = W;
            mt_op_add(m, &up);
            H *= 2, W *= 2;
            mdiff_snprintf(n, sizeof n, "up.%d.upsample", i);
            h = mt_conv(m, n, up.out, C, H, W, C, 3, 1);
        }
    }
    MDIFF_CHECK(ns == 0, "unet: %d skips left over", ns);
    h = mt_groupnorm(m, "out_norm", h, C, H * W, c->groups, 1);
    m->t_out = mt_conv(m, "out_conv", h, C, H, W, c->in_ch, 3, 1);
    mt_zero_init_last(m);
}
