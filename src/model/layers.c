/* model layers: the building blocks the U-Net and MLP builders append to the graph. Each
 * creates its parameters (named "<prefix>.weight" / "<prefix>.bias", PyTorch shapes) in the order
 * it uses them, so the flat layout follows the forward order. */
#include <string.h>

#include "internal.h"
#include "mdiff/common.h"

mt_op mt_op_make(op_kind kind, int out, int in0, int in1) {
    mt_op o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.out = out;
    o.in[0] = in0;
    o.in[1] = in1;
    o.aux[0] = o.aux[1] = -1;
    o.pw = o.pb = -1;
    return o;
}

static int param2(mdiff_model *m, const char *prefix, const char *suffix, mt_init_kind kind,
                  int64_t fan_in, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    char name[96];
    mdiff_snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const int64_t shape[4] = {a, b, c, d};
    return mt_param_new(m, name, ndim, shape, kind, fan_in);
}

int mt_linear(mdiff_model *m, const char *name, int in, int C, int OC) {
    mt_op o = mt_op_make(OP_LINEAR, mt_tensor_new(m, OC, 4, 1), in, -1);
    o.pw = param2(m, name, "weight", INIT_UNIFORM, C, 2, OC, C, 0, 0);
    o.pb = param2(m, name, "bias", INIT_UNIFORM, C, 1, OC, 0, 0, 0);
    o.C = C;
    o.OC = OC;
    mt_op_add(m, &o);
    return o.out;
}

int mt_conv(mdiff_model *m, const char *name, int in, int C, int H, int W, int OC, int K,
            int stride) {
    const int pad = K / 2;
    const int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    mt_op o = mt_op_make(OP_CONV, mt_tensor_new(m, (int64_t)OC * OH * OW, 4, 1), in, -1);
    o.pw = param2(m, name, "weight", INIT_UNIFORM, (int64_t)C * K * K, 4, OC, C, K, K);
    o.pb = param2(m, name, "bias", INIT_UNIFORM, (int64_t)C * K * K, 1, OC, 0, 0, 0);
    o.C = C, o.H = H, o.W = W, o.OC = OC, o.K = K, o.stride = stride, o.pad = pad;
    mt_op_add(m, &o);
    return o.out;
}

int mt_groupnorm(mdiff_model *m, const char *name, int in, int C, int HW, int G, int silu) {
    mt_op o = mt_op_make(OP_GN, mt_tensor_new(m, (int64_t)C * HW, 4, 1), in, -1);
    o.aux[0] = mt_tensor_new(m, G, 4, 0);
    o.aux[1] = mt_tensor_new(m, G, 4, 0);
    o.pw = param2(m, name, "weight", INIT_ONE, 0, 1, C, 0, 0, 0);
    o.pb = param2(m, name, "bias", INIT_ZERO, 0, 1, C, 0, 0, 0);
    o.C = C, o.H = 1, o.W = HW, o.G = G, o.silu = silu;
    mt_op_add(m, &o);
    return o.out;
}

int mt_silu(mdiff_model *m, int in, int64_t n) {
    mt_op o = mt_op_make(OP_SILU, mt_tensor_new(m, n, 4, 1), in, -1);
    o.n = n;
    mt_op_add(m, &o);
    return o.out;
}

int mt_add_into(mdiff_model *m, int a, int b, int64_t n) {
    mt_op o = mt_op_make(OP_ADD, b, a, b);
    o.n = n;
    mt_op_add(m, &o);
    return b;
}
