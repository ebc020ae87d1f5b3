/* libFuzzer target: the checkpoint validator. The input is written as a file and opened as a
 * checkpoint (format, attributes, config with ranges); when the config describes a small model,
 * the model is built and the EMA and parameter tensors are read (names, count, shapes, Fletcher32).
 * Seed: a real small checkpoint (tests/fuzz/run.sh makes one). */
#include "fuzz_common.h"
#include "mdiff/ckpt.h"
#include "mdiff/model.h"

static int small_model(const mdiff_model_cfg *m) {
    if (strcmp(m->arch, "mlp") == 0) return m->mlp_width <= 64 && m->mlp_depth <= 4 && m->in_ch <= 8;
    return m->ch <= 16 && m->n_levels <= 3 && m->nres <= 2 && m->in_ch <= 3 && m->height <= 16 &&
           m->width <= 16;
}

static void check(const char *path) {
    mdiff_ckpt *ck = mdiff_ckpt_open(path);
    mdiff_config cfg;
    mdiff_config_defaults(&cfg);
    mdiff_ckpt_read_config(ck, &cfg);
    if (small_model(&cfg.model)) {
        mdiff_model *model = mdiff_model_create(&cfg.model, 1);
        float *p = mdiff_alloc_aligned((size_t)mdiff_model_num_params(model) * sizeof(float), "params");
        mdiff_ckpt_read_tensors(ck, model, "ema", p);
        mdiff_ckpt_read_tensors(ck, model, "params", p);
        mdiff_free_aligned(p);
        mdiff_model_free(model);
    }
    mdiff_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("ckpt.h5", data, size);
    FUZZ_TRY(check(path));
    return 0;
}
