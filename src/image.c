/* image: PNG writing (libpng) for sample grids, trajectories and 2-D scatter plots.
 * All output goes to "<path>.tmp.<pid>" first and is renamed only when complete. */
#include "mdiff/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdiff/common.h"
#include "mdiff/config.h"

uint8_t mdiff_to_u8(float v) {
    float s = (v + 1.0f) * 127.5f;
    if (!(s > 0.0f)) return 0; /* also maps NaN to 0 */
    if (s >= 255.0f) return 255;
    return (uint8_t)lrintf(s);
}

/* libpng reports errors by longjmp; keep all state the handler needs outside the jmp scope. */
static int write_png_file(FILE *f, const uint8_t *pix, int width, int height, int channels) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (!png) return -1;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * (size_t)width * (size_t)channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

void mdiff_png_write(const char *path, const uint8_t *pix, int width, int height, int channels) {
    MDIFF_CHECK(channels == 1 || channels == 3, "PNG with %d channels", channels);
    MDIFF_CHECK(width > 0 && height > 0, "PNG of %dx%d", width, height);
    char tmp[MDIFF_PATH_MAX + 32];
    mdiff_snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        mdiff_user_error("cannot write %s: %s (check that the directory exists and is writable)", path,
                         strerror(errno));
    mdiff_tmpfile_register(tmp);
    int rc = write_png_file(f, pix, width, height, channels);
    int close_rc = fclose(f);
    if (rc != 0 || close_rc != 0)
        mdiff_user_error("cannot write %s: %s (disk full or quota?)", path,
                         close_rc ? strerror(errno) : "libpng write failed");
    if (rename(tmp, path) != 0)
        mdiff_user_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    mdiff_tmpfile_unregister(tmp);
}

void mdiff_png_grid(const char *path, const float *images, int n, int C, int H, int W, int cols) {
    MDIFF_CHECK(n > 0 && (C == 1 || C == 3), "grid of %d images with %d channels", n, C);
    if (cols <= 0) cols = (int)ceil(sqrt((double)n));
    int rows = (n + cols - 1) / cols;
    const int gap = 2;
    int gw = cols * W + (cols + 1) * gap, gh = rows * H + (rows + 1) * gap;
    size_t bytes = (size_t)gw * (size_t)gh * (size_t)C;
    uint8_t *pix = mdiff_malloc(bytes, "PNG grid");
    memset(pix, 0, bytes);
    for (int i = 0; i < n; i++) {
        int gx = gap + (i % cols) * (W + gap), gy = gap + (i / cols) * (H + gap);
        const float *img = images + (size_t)i * C * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    pix[((size_t)(gy + y) * gw + (gx + x)) * C + c] =
                        mdiff_to_u8(img[((size_t)c * H + y) * W + x]);
    }
    mdiff_png_write(path, pix, gw, gh, C);
    free(pix);
}

static void plot_dot(uint8_t *pix, int size, int cx, int cy, const uint8_t rgb[3]) {
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int x = cx + dx, y = cy + dy;
            if (x < 0 || y < 0 || x >= size || y >= size) continue;
            memcpy(pix + ((size_t)y * size + x) * 3, rgb, 3);
        }
}

void mdiff_png_scatter(const char *path, const float *points, int64_t n, int size, float lim) {
    MDIFF_CHECK(size > 16, "scatter of size %d", size);
    if (lim <= 0.0f) {
        for (int64_t i = 0; i < 2 * n; i++)
            if (isfinite(points[i]) && fabsf(points[i]) > lim) lim = fabsf(points[i]);
        lim = lim > 0.0f ? lim * 1.05f : 1.0f;
    }
    size_t bytes = (size_t)size * size * 3;
    uint8_t *pix = mdiff_malloc(bytes, "PNG scatter");
    memset(pix, 255, bytes);
    const uint8_t axis[3] = {200, 200, 200}, dot[3] = {30, 80, 200};
    for (int i = 0; i < size; i++) {
        memcpy(pix + ((size_t)(size / 2) * size + i) * 3, axis, 3);
        memcpy(pix + ((size_t)i * size + size / 2) * 3, axis, 3);
    }
    for (int64_t i = 0; i < n; i++) {
        float px = points[2 * i], py = points[2 * i + 1];
        if (!isfinite(px) || !isfinite(py)) continue;
        int x = (int)lrintf((px / lim + 1.0f) * 0.5f * (size - 1));
        int y = (int)lrintf((1.0f - py / lim) * 0.5f * (size - 1));
        plot_dot(pix, size, x, y, dot);
    }
    mdiff_png_write(path, pix, size, size, 3);
    free(pix);
}
