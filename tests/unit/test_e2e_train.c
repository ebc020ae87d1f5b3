/* End-to-end tests of mdiff-train and mdiff-sample (issue 4), run as the user runs them:
 *  - each objective learns gaussians8 with the MLP (≥ 90% of samples within 3 standard deviations
 *    of a mode, every mode holding 6–20%), xprev sampled with ddpm, the others with ddim, eps also
 *    with dpm++2m; swissroll with ddpm (≥ 90% within 0.1 of the curve, in the scaled units);
 *  - determinism (same seed: bit-identical checkpoints) and resume (N straight = N/2 + resume);
 *  - checkpoint config round trip, mdiff-sample's PNG grid, trajectory and HDF5 outputs, and
 *    mdiff-data forward's strip;
 *  - --val-data logs a held-out loss at checkpoints.
 * The programs come from $BUILD/bin (default build/bin); tests/run.sh sets one BLAS thread, so
 * every run is deterministic and the learning thresholds are not a matter of luck between runs. */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mdiff/ckpt.h"
#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/data.h"

static char g_dir[256], g_bin[512];

/* Runs a shell command (output to DIR/log), returns its exit status. */
static int sh(const char *fmt, ...) {
    char cmd[4096], full[4600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && (%s) >>log 2>&1", g_dir, cmd);
    int rc = system(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static float *read_all(const char *file, int64_t *n, int64_t *dim, double scale[2]) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    mdiff_dataset *ds = mdiff_dataset_open(path);
    *n = mdiff_dataset_rows(ds);
    *dim = mdiff_dataset_row_floats(ds);
    float *x = malloc((size_t)(*n * *dim) * sizeof(float));
    mdiff_data_read_rows(ds, 0, *n, x);
    if (scale) ck_assert_int_eq(mdiff_dataset_scale(ds, scale, 2), 2);
    mdiff_dataset_close(ds);
    return x;
}

/* Common toy training: small MLP, T = 200, a budget of about 15 s on one core. */
#define TOY_TRAIN "--steps 2000 --batch 512 --lr 1e-2 --warmup 100 --ema 0.998 --mlp-width 128 " \
                  "--mlp-depth 3 --timesteps 200 --log-every 500 --ckpt-every 100000 --sample-every 0"

static void check_gaussians8(const char *objective, const char *sampler, int train) {
    if (train)
        ck_assert_int_eq(sh("%s/mdiff-train --data g8.h5 --run-dir g8-%s --objective %s " TOY_TRAIN,
                            g_bin, objective, objective), 0);
    ck_assert_int_eq(sh("%s/mdiff-sample g8-%s/latest.h5 -n 2000 --sampler %s --steps %s "
                        "--h5 g8-%s-%s.h5 -o g8-%s-%s.png", g_bin, objective, sampler,
                        strcmp(sampler, "ddpm") == 0 ? "200" : strcmp(sampler, "ddim") == 0 ? "50" : "25",
                        objective, sampler, objective, sampler), 0);
    char f[64];
    snprintf(f, sizeof f, "g8-%s-%s.h5", objective, sampler);
    int64_t n, dim;
    double scale[2];
    float *p = read_all(f, &n, &dim, NULL);
    free(read_all("g8.h5", &(int64_t){0}, &(int64_t){0}, scale));
    ck_assert_int_eq(n, 2000);
    ck_assert_int_eq(dim, 2);
    int64_t near = 0, per_mode[8] = {0};
    for (int64_t i = 0; i < n; i++) {
        /* back to the raw units: modes at radius 2, standard deviation 0.1 */
        double x = p[2 * i] / scale[0], y = p[2 * i + 1] / scale[1];
        int best = 0;
        double bd = 1e300;
        for (int k = 0; k < 8; k++) {
            double a = 2 * M_PI * k / 8, d = hypot(x - 2 * cos(a), y - 2 * sin(a));
            if (d < bd) bd = d, best = k;
        }
        if (bd < 0.3) near++, per_mode[best]++;
    }
    free(p);
    double frac = (double)near / n;
    printf("gaussians8 %s/%s: %.3f within 3 sd; modes", objective, sampler, frac);
    for (int k = 0; k < 8; k++) printf(" %.3f", (double)per_mode[k] / n);
    printf("\n");
    ck_assert_msg(frac >= 0.90, "%s: only %.3f of samples within 3 sd of a mode", objective, frac);
    for (int k = 0; k < 8; k++)
        ck_assert_msg(per_mode[k] >= 0.06 * n && per_mode[k] <= 0.20 * n,
                      "%s: mode %d holds %.3f of the samples", objective, k, (double)per_mode[k] / n);
}

/* eps is sampled twice from one training: ddim (50 steps) and dpm++2m (25 steps) */
START_TEST(gaussians8_eps_ddim_dpmpp) {
    check_gaussians8("eps", "ddim", 1);
    check_gaussians8("eps", "dpm++2m", 0);
}
END_TEST
START_TEST(gaussians8_x0_ddim) { check_gaussians8("x0", "ddim", 1); }
END_TEST
START_TEST(gaussians8_v_ddim) { check_gaussians8("v", "ddim", 1); }
END_TEST
START_TEST(gaussians8_xprev_ddpm) { check_gaussians8("xprev", "ddpm", 1); }
END_TEST

/* The roll is thinner than the 8 modes are apart: a longer, gentler training (lr 1e-2 spikes
 * here after ~3000 steps) and the stochastic sampler. */
START_TEST(swissroll_eps_ddpm) {
    ck_assert_int_eq(sh("%s/mdiff-train --data sr.h5 --run-dir sr " TOY_TRAIN " --steps 3000 --lr 4e-3",
                        g_bin), 0);
    ck_assert_int_eq(sh("%s/mdiff-sample sr/latest.h5 -n 2000 --sampler ddpm --steps 200 "
                        "--h5 sr-s.h5 -o sr-s.png", g_bin), 0);
    int64_t n, dim;
    double scale[2];
    float *p = read_all("sr-s.h5", &n, &dim, NULL);
    free(read_all("sr.h5", &(int64_t){0}, &(int64_t){0}, scale));
    /* the curve (t cos t, t sin t), t in [1.5π, 4.5π], in the scaled units, finely sampled */
    enum { NC = 20000 };
    static float cx[NC], cy[NC];
    for (int i = 0; i < NC; i++) {
        double t = 1.5 * M_PI + 3.0 * M_PI * i / (NC - 1);
        cx[i] = (float)(t * cos(t) * scale[0]);
        cy[i] = (float)(t * sin(t) * scale[1]);
    }
    int64_t near = 0;
    for (int64_t i = 0; i < n; i++) {
        double bd = 1e300;
        for (int k = 0; k < NC; k++) {
            double dx = p[2 * i] - cx[k], dy = p[2 * i + 1] - cy[k], d = dx * dx + dy * dy;
            if (d < bd) bd = d;
        }
        near += sqrt(bd) < 0.1;
    }
    free(p);
    printf("swissroll eps/ddpm: %.3f within 0.1 of the curve\n", (double)near / n);
    ck_assert_msg(near >= 0.9 * n, "only %.3f of samples within 0.1 of the curve", (double)near / n);
}
END_TEST

/* A tiny U-Net on Fashion-MNIST's test split: every piece of the image path in seconds. */
#define TINY_UNET "--data fm.h5 --batch 8 --ch 8 --mult 1,2 --res-blocks 1 --attn 14 --groups 4 " \
                  "--dropout 0.1 --flip --timesteps 100 --warmup 2 --log-every 5 --sample-every 0"

START_TEST(determinism_same_seed_same_bits) {
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 6 --run-dir det-a --seed 3", g_bin), 0);
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 6 --run-dir det-b --seed 3", g_bin), 0);
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 6 --run-dir det-c --seed 4", g_bin), 0);
    /* h5diff compares exactly when no tolerance is given; exit 0 = equal, 1 = differences */
    for (int g = 0; g < 4; g++) {
        const char *grp[] = {"/params", "/ema", "/adam/m", "/adam/v"};
        ck_assert_int_eq(sh("h5diff -q det-a/ckpt-00000006.h5 det-b/ckpt-00000006.h5 %s %s", grp[g], grp[g]), 0);
    }
    ck_assert_int_eq(sh("h5diff -q det-a/ckpt-00000006.h5 det-c/ckpt-00000006.h5 /params /params"), 1);
}
END_TEST

START_TEST(resume_is_bit_exact) {
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 12 --ckpt-every 100 --run-dir straight", g_bin), 0);
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 6 --ckpt-every 100 --run-dir halves", g_bin), 0);
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 12 --ckpt-every 100 --run-dir halves "
                        "--resume auto", g_bin), 0);
    const char *grp[] = {"/params", "/ema", "/adam/m", "/adam/v", "/state"};
    for (int g = 0; g < 5; g++)
        ck_assert_msg(sh("h5diff -q straight/ckpt-00000012.h5 halves/ckpt-00000012.h5 %s %s", grp[g],
                         grp[g]) == 0, "%s differs after resume", grp[g]);
    /* resuming a finished run rewrites nothing and exits 0 */
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 12 --run-dir halves --resume auto", g_bin), 0);
    /* metrics.csv kept one row per logged step (no duplicates from the resume) */
    ck_assert_int_eq(sh("test $(grep -c '^10,' halves/metrics.csv) -eq 1"), 0);
}
END_TEST

START_TEST(checkpoint_round_trip_and_sample_outputs) {
    ck_assert_int_eq(sh("%s/mdiff-train " TINY_UNET " --steps 4 --run-dir rt --val-data fm.h5 --ckpt-every 2",
                        g_bin), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/rt/latest.h5", g_dir);
    mdiff_ckpt *ck = mdiff_ckpt_open(path);
    mdiff_config c;
    mdiff_config_defaults(&c);
    mdiff_ckpt_read_config(ck, &c);
    ck_assert_int_eq(mdiff_ckpt_step(ck), 4);
    ck_assert_str_eq(c.model.arch, "unet");
    ck_assert_int_eq(c.model.ch, 8);
    ck_assert_int_eq(c.model.n_levels, 2);
    ck_assert_int_eq(c.model.mult[1], 2);
    ck_assert_int_eq(c.model.n_attn, 1);
    ck_assert_int_eq(c.model.attn_res[0], 14);
    ck_assert_int_eq(c.model.in_ch, 1);
    ck_assert_int_eq(c.model.height, 28);
    ck_assert_int_eq(c.diff.timesteps, 100);
    ck_assert_int_eq(c.flip, 1);
    ck_assert_float_eq(c.model.dropout, 0.1f);
    mdiff_ckpt_close(ck);
    /* the last --keep 3 checkpoints are kept: steps 2 and 4 here */
    ck_assert_int_eq(sh("test -f rt/ckpt-00000002.h5 && test -f rt/ckpt-00000004.h5"), 0);
    /* validation loss logged at checkpoint rows: the last column of metrics.csv is not empty */
    ck_assert_int_eq(sh("tail -n 1 rt/metrics.csv | grep -Eq ',[0-9.e+-]+$'"), 0);
    ck_assert_int_eq(sh("%s/mdiff-sample rt/latest.h5 -n 20 --steps 5 -o rt.png --h5 rt.h5 "
                        "--trajectory rt-traj.png", g_bin), 0);
    int64_t n, dim;
    float *x = read_all("rt.h5", &n, &dim, NULL);
    ck_assert_int_eq(n, 20);
    ck_assert_int_eq(dim, 28 * 28);
    for (int64_t i = 0; i < n * dim; i++) ck_assert(x[i] >= -1.0f && x[i] <= 1.0f);
    free(x);
    /* the seed's forward-process strip: 8 images x 11 noise levels */
    ck_assert_int_eq(sh("%s/mdiff-data forward fm.h5 -o fwd.png --schedule cosine", g_bin), 0);
    const char *pngs[] = {"rt.png", "rt-traj.png", "fwd.png"};
    const int want_w[] = {5 * 28 + 6 * 2, 10 * 28 + 11 * 2, 11 * 28 + 12 * 2};
    const int want_h[] = {4 * 28 + 5 * 2, 8 * 28 + 9 * 2, 8 * 28 + 9 * 2};
    for (int i = 0; i < 3; i++) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        snprintf(path, sizeof path, "%s/%s", g_dir, pngs[i]);
        ck_assert_msg(png_image_begin_read_from_file(&img, path), "%s is not a PNG", pngs[i]);
        ck_assert_int_eq((int)img.width, want_w[i]);
        ck_assert_int_eq((int)img.height, want_h[i]);
        png_image_free(&img);
    }
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd)) return EXIT_FAILURE;
    snprintf(g_bin, sizeof g_bin, "%s/%s/bin", build[0] == '/' ? "" : cwd, build);
    snprintf(g_dir, sizeof g_dir, "/tmp/mdiff-e2e-XXXXXX");
    if (!mkdtemp(g_dir)) return EXIT_FAILURE;
    if (sh("%s/mdiff-data toy --kind gaussians8 --n 8000 --out g8.h5 && "
           "%s/mdiff-data toy --kind swissroll --n 8000 --out sr.h5 && "
           "%s/mdiff-data fashion-mnist --split test --out fm.h5", g_bin, g_bin, g_bin) != 0) {
        fprintf(stderr, "cannot make the test data sets (see %s/log)\n", g_dir);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("e2e_train");
    TCase *toy = tcase_create("toy");
    tcase_set_timeout(toy, 240);
    tcase_add_test(toy, gaussians8_eps_ddim_dpmpp);
    tcase_add_test(toy, gaussians8_x0_ddim);
    tcase_add_test(toy, gaussians8_v_ddim);
    tcase_add_test(toy, gaussians8_xprev_ddpm);
    tcase_add_test(toy, swissroll_eps_ddpm);
    suite_add_tcase(s, toy);
    TCase *img = tcase_create("images");
    tcase_set_timeout(img, 240);
    tcase_add_test(img, determinism_same_seed_same_bits);
    tcase_add_test(img, resume_is_bit_exact);
    tcase_add_test(img, checkpoint_round_trip_and_sample_outputs);
    suite_add_tcase(s, img);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!failed) sh("cd / && rm -rf %s", g_dir);
    else fprintf(stderr, "kept %s for inspection\n", g_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
