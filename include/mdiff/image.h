/* image: PNG output through libpng — grids of images, denoising trajectories, scatter plots of
 * 2-D samples. Every writer writes to a temporary name and renames, so a failure never leaves a
 * partial PNG; failures are user errors naming the path. */
#ifndef MDIFF_IMAGE_H
#define MDIFF_IMAGE_H

#include <stdint.h>

/* Writes an 8-bit PNG (gray when channels == 1, RGB when 3) of width x height from `pix`
 * (interleaved, row-major). */
void mdiff_png_write(const char *path, const uint8_t *pix, int width, int height, int channels);

/* Float in [-1, 1] -> uint8 (round to nearest, clamped), the inverse of the loader's x/127.5 - 1. */
uint8_t mdiff_to_u8(float v);

/* Grid of n images (n, C, H, W) in [-1, 1], `cols` per row (0: about sqrt(n)), 2-pixel gaps. */
void mdiff_png_grid(const char *path, const float *images, int n, int C, int H, int W, int cols);

/* Scatter plot of n 2-D points (n, 2) on a size x size canvas; the view spans [-lim, lim] on both
 * axes (lim 0: fitted to the data). */
void mdiff_png_scatter(const char *path, const float *points, int64_t n, int size, float lim);

#endif
