/* libFuzzer target: the Fashion-MNIST IDX reader (mdiff_data_load_fashion_mnist). The input is
 * split into an image file and a label file (first byte: where), each gzip-compressed by the
 * harness so the bytes reach the IDX parser (gzip damage is covered by tests/e2e/mdiff_data.sh).
 * Inputs whose image header claims more than 1 MiB are skipped: the reader allocates what a
 * plausible header claims before reading (then fails on the short read), so large claims only
 * cost time and memory per run. */
#include <zlib.h>

#include "fuzz_common.h"
#include "mdiff/data.h"

static void gz_file(const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_scratch(), name);
    gzFile g = gzopen(path, "wb");
    if (!g) abort();
    if (size && gzwrite(g, data, (unsigned)size) != (int)size) abort();
    gzclose(g);
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t cut = 1 + (size_t)data[0] * (size - 1) / 255; /* image part: data[1 .. cut) */
    const uint8_t *img = data + 1, *lab = data + cut;
    size_t ni = cut - 1, nl = size - cut;
    if (ni >= 16 && (uint64_t)be32(img + 4) * be32(img + 8) * be32(img + 12) > (1u << 20)) return 0;
    gz_file("train-images-idx3-ubyte.gz", img, ni);
    gz_file("train-labels-idx1-ubyte.gz", lab, nl);
    uint8_t *images = NULL;
    int32_t *labels = NULL;
    int64_t n;
    int h, w;
    FUZZ_TRY(mdiff_data_load_fashion_mnist(fuzz_scratch(), "train", &images, &labels, &n, &h, &w);
             free(images); free(labels));
    return 0;
}
