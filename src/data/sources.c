/* data/sources: what mdiff-data converts. Fashion-MNIST from the gzip IDX files of Debian's
 * dataset-fashion-mnist (gzip integrity, IDX magic, dimensions and exact sizes validated), and the
 * 2-D toy sets (gaussians8, swissroll, moons), generated from Philox and scaled to unit std. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"
#include "mdiff/rng.h"

#define FM_HINT "install dataset-fashion-mnist or pass --src DIR holding the four IDX .gz files"

/* ---- gzip IDX -------------------------------------------------------------------------------- */

static gzFile gz_open(const char *path) {
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g) mdiff_user_error("cannot open %s: %s (%s)", path, errno ? strerror(errno) : "gzopen failed", FM_HINT);
    return g;
}

/* Reads exactly n bytes; a short read is a truncated file, a zlib error a corrupt one. */
static void gz_read_exact(gzFile g, const char *path, void *dst, int64_t n, const char *what) {
    char *p = dst;
    while (n > 0) {
        unsigned chunk = n > (1 << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(g, p, chunk);
        if (got < 0) {
            int err = 0;
            const char *msg = gzerror(g, &err);
            mdiff_user_error("corrupt gzip data in %s (%s): reinstall dataset-fashion-mnist or replace the file",
                             path, msg);
        }
        if (got == 0) {
            int err = 0;
            gzerror(g, &err);
            mdiff_user_error("%s is truncated: it ends before the %s (%s)", path, what, FM_HINT);
        }
        p += got;
        n -= got;
    }
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* After the payload: no trailing bytes, and the gzip stream must end cleanly (CRC checked). */
static void gz_finish(gzFile g, const char *path) {
    char extra;
    int got = gzread(g, &extra, 1);
    if (got < 0) {
        int err = 0;
        mdiff_user_error("corrupt gzip data in %s (%s): reinstall dataset-fashion-mnist or replace the file",
                         path, gzerror(g, &err));
    }
    if (got > 0) mdiff_user_error("%s has bytes after the IDX data: not a valid IDX file (%s)", path, FM_HINT);
    int rc = gzclose_r(g);
    if (rc == Z_BUF_ERROR) mdiff_user_error("%s is truncated: the gzip stream ends early (%s)", path, FM_HINT);
    if (rc != Z_OK) mdiff_user_error("corrupt gzip data in %s (error %d) (%s)", path, rc, FM_HINT);
}

static gzFile idx_open(const char *path, uint32_t magic, uint8_t *hdr, int hdr_len) {
    gzFile g = gz_open(path);
    gz_read_exact(g, path, hdr, hdr_len, "IDX header");
    if (gzdirect(g)) mdiff_user_error("%s is not a gzip file (%s)", path, FM_HINT);
    if (be32(hdr) != magic)
        mdiff_user_error("%s has IDX magic %u, expected %u (%s file): wrong or damaged file (%s)", path,
                         be32(hdr), magic, magic == 2051 ? "images" : "labels", FM_HINT);
    return g;
}

void mdiff_data_load_fashion_mnist(const char *dir, const char *split, uint8_t **images,
                                   int32_t **labels, int64_t *n, int *h, int *w) {
    const char *pre = strcmp(split, "train") == 0 ? "train" : strcmp(split, "test") == 0 ? "t10k" : NULL;
    if (!pre) mdiff_user_error("--split %s: unknown split (choose train or test)", split);
    char ip[MDIFF_PATH_MAX], lp[MDIFF_PATH_MAX];
    mdiff_snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    mdiff_snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, pre);

    uint8_t hdr[16];
    gzFile g = idx_open(ip, 2051, hdr, 16);
    uint32_t ni = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
    if (ni == 0 || ni > 100000000u || rows == 0 || rows > 4096 || cols == 0 || cols > 4096)
        mdiff_user_error("%s has implausible dimensions %u x %u x %u (%s)", ip, ni, rows, cols, FM_HINT);
    int64_t bytes = (int64_t)ni * rows * cols;
    uint8_t *img = mdiff_malloc((size_t)bytes, "Fashion-MNIST images");
    gz_read_exact(g, ip, img, bytes, "end of the image data");
    gz_finish(g, ip);

    g = idx_open(lp, 2049, hdr, 8);
    uint32_t nl = be32(hdr + 4);
    if (nl != ni)
        mdiff_user_error("%s has %u labels but %s has %u images: the files do not belong together (%s)",
                         lp, nl, ip, ni, FM_HINT);
    uint8_t *lb = mdiff_malloc(nl, "Fashion-MNIST labels");
    gz_read_exact(g, lp, lb, nl, "end of the label data");
    gz_finish(g, lp);

    int32_t *lab = mdiff_malloc((size_t)nl * sizeof(int32_t), "labels");
    for (uint32_t i = 0; i < nl; i++) {
        if (lb[i] > 9)
            mdiff_user_error("%s: label %u at index %u is not a Fashion-MNIST class (0-9) (%s)", lp, lb[i], i,
                             FM_HINT);
        lab[i] = lb[i];
    }
    free(lb);
    *images = img;
    *labels = lab;
    *n = ni;
    *h = (int)rows;
    *w = (int)cols;
}

/* ---- toy sets -------------------------------------------------------------------------------- */

static const char *const TOY_KINDS[] = {"gaussians8", "swissroll", "moons"};

static int toy_kind(const char *kind) {
    for (int k = 0; k < 3; k++)
        if (strcmp(kind, TOY_KINDS[k]) == 0) return k;
    return -1;
}

int mdiff_data_toy_kind_ok(const char *kind) { return toy_kind(kind) >= 0; }

/* Point i, raw (before scaling). Randomness of point i depends on (seed, kind, i) only. */
static void toy_point(int kind, int64_t i, int64_t n, uint64_t seed, float *p) {
    mdiff_rng r;
    mdiff_rng_init(&r, seed, MDIFF_RNG_TOY, (uint64_t)kind, (uint64_t)i);
    const double pi = 3.14159265358979323846;
    double x, y, sd;
    if (kind == 0) { /* 8 modes on a circle of radius 2, std 0.1; mode i mod 8: equal counts */
        double a = 2.0 * pi * (double)(i % 8) / 8.0;
        x = 2.0 * cos(a);
        y = 2.0 * sin(a);
        sd = 0.1;
    } else if (kind == 1) { /* (t cos t, t sin t), t ~ U[1.5 pi, 4.5 pi], noise 0.25 */
        double t = 1.5 * pi + 3.0 * pi * (double)mdiff_rng_uniform(&r);
        x = t * cos(t);
        y = t * sin(t);
        sd = 0.25;
    } else { /* scikit-learn make_moons: first n/2 on the outer arc, the rest inner, noise 0.05 */
        int64_t nout = n / 2, nin = n - nout;
        if (i < nout) {
            double a = nout > 1 ? pi * (double)i / (double)(nout - 1) : 0.0;
            x = cos(a);
            y = sin(a);
        } else {
            int64_t j = i - nout;
            double a = nin > 1 ? pi * (double)j / (double)(nin - 1) : 0.0;
            x = 1.0 - cos(a);
            y = 1.0 - sin(a) - 0.5;
        }
        sd = 0.05;
    }
    p[0] = (float)(x + sd * (double)mdiff_rng_normal(&r));
    p[1] = (float)(y + sd * (double)mdiff_rng_normal(&r));
}

float *mdiff_data_make_toy(const char *kind, int64_t n, uint64_t seed, double scale[2]) {
    int k = toy_kind(kind);
    if (k < 0) mdiff_user_error("--kind %s: unknown toy set (choose gaussians8, swissroll or moons)", kind);
    if (n < 2) mdiff_user_error("--n %lld: a toy set needs at least 2 points", (long long)n);
    float *p = mdiff_malloc((size_t)n * 2 * sizeof(float), "toy points");
    for (int64_t i = 0; i < n; i++) toy_point(k, i, n, seed, p + 2 * i);
    for (int a = 0; a < 2; a++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) s += p[2 * i + a];
        double mean = s / (double)n;
        for (int64_t i = 0; i < n; i++) s2 += (p[2 * i + a] - mean) * (p[2 * i + a] - mean);
        double sd = sqrt(s2 / (double)n);
        scale[a] = sd > 0 ? 1.0 / sd : 1.0;
        for (int64_t i = 0; i < n; i++) p[2 * i + a] = (float)(p[2 * i + a] * scale[a]);
    }
    return p;
}
