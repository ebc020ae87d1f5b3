/* Tests of image: PNG grids read back with libpng pixel by pixel, the float -> uint8 mapping,
 * scatter plots, and that an unwritable path is a user error (exit 1) leaving no file. */
#include <check.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdiff/common.h"
#include "mdiff/image.h"

/* Reads a PNG into a newly allocated buffer (independent of the writer: libpng's simplified API). */
static uint8_t *read_png(const char *path, int *w, int *h, int gray) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "cannot read %s", path);
    img.format = gray ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    ck_assert(png_image_finish_read(&img, NULL, buf, 0, NULL));
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}

START_TEST(to_u8_mapping) {
    ck_assert_uint_eq(mdiff_to_u8(-1.0f), 0);
    ck_assert_uint_eq(mdiff_to_u8(1.0f), 255);
    ck_assert_uint_eq(mdiff_to_u8(-5.0f), 0);
    ck_assert_uint_eq(mdiff_to_u8(5.0f), 255);
    /* the loader maps u to u/127.5 - 1: the round trip is exact for every byte */
    for (int u = 0; u < 256; u++) ck_assert_uint_eq(mdiff_to_u8((float)u / 127.5f - 1.0f), u);
}
END_TEST

START_TEST(grid_round_trip) {
    const int n = 5, C = 1, H = 3, W = 4;
    float imgs[5 * 3 * 4];
    for (int i = 0; i < n * H * W; i++) imgs[i] = (float)(i % 256) / 127.5f - 1.0f;
    char path[] = "/tmp/mdiff-test-grid-XXXXXX.png";
    int fd = mkstemps(path, 4);
    close(fd);
    mdiff_png_grid(path, imgs, n, C, H, W, 3);
    int w, h;
    uint8_t *pix = read_png(path, &w, &h, 1);
    ck_assert_int_eq(w, 3 * W + 4 * 2);
    ck_assert_int_eq(h, 2 * H + 3 * 2);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int gx = 2 + (i % 3) * (W + 2) + x, gy = 2 + (i / 3) * (H + 2) + y;
                ck_assert_uint_eq(pix[gy * w + gx], (i * H * W + y * W + x) % 256);
            }
    ck_assert_uint_eq(pix[0], 0); /* gap is black */
    free(pix);
    unlink(path);
}
END_TEST

START_TEST(scatter_marks_points) {
    float pts[4] = {0.5f, 0.5f, -0.5f, -0.5f};
    char path[] = "/tmp/mdiff-test-scatter-XXXXXX.png";
    int fd = mkstemps(path, 4);
    close(fd);
    mdiff_png_scatter(path, pts, 2, 101, 1.0f);
    int w, h;
    uint8_t *pix = read_png(path, &w, &h, 0);
    ck_assert_int_eq(w, 101);
    /* (0.5, 0.5) lands at x = 75, y = 25; a blank corner stays white */
    ck_assert_uint_lt(pix[(25 * 101 + 75) * 3 + 0], 100);
    ck_assert_uint_eq(pix[(5 * 101 + 5) * 3 + 0], 255);
    free(pix);
    unlink(path);
}
END_TEST

START_TEST(unwritable_path_exits_1) {
    float img[4] = {0};
    mdiff_png_grid("/nonexistent-dir/x.png", img, 1, 1, 2, 2, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("png");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, to_u8_mapping);
    tcase_add_test(tc, grid_round_trip);
    tcase_add_test(tc, scatter_marks_points);
    tcase_add_exit_test(tc, unwritable_path_exits_1, 1);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
