/* libFuzzer target: the data-set validator. The input is written as a file and opened as an mdiff
 * data set (schema, dtypes, shapes, finite /points), then verified (fingerprint, value range) and
 * its first rows read as the loader would. Seeds: a tiny toy set and a tiny image set. */
#include "fuzz_common.h"
#include "mdiff/data.h"

static void check(const char *path) {
    mdiff_dataset *ds = mdiff_dataset_open(path);
    mdiff_dataset_stats st;
    mdiff_dataset_verify(ds, &st);
    int64_t rows = mdiff_dataset_rows(ds), k = rows < 4 ? rows : 4;
    int64_t dim = mdiff_dataset_row_floats(ds);
    if (dim <= (1 << 16)) {
        float *x = malloc((size_t)(k * dim) * sizeof(float));
        mdiff_data_read_rows(ds, 0, k, x);
        free(x);
    }
    mdiff_dataset_close(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("data.h5", data, size);
    FUZZ_TRY(check(path));
    return 0;
}
