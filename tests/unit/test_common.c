/* Tests of common and of config's option parsers: CRC-32 known answers, bounded strings,
 * and the user-error paths (exit 1) for malformed numbers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/config.h"

START_TEST(crc32_known_answer) {
    /* The standard check value of CRC-32/ISO-HDLC. */
    ck_assert_uint_eq(mdiff_crc32(0, "123456789", 9), 0xCBF43926u);
    /* Incremental equals one-shot. */
    uint32_t c = mdiff_crc32(0, "1234", 4);
    c = mdiff_crc32(c, "56789", 5);
    ck_assert_uint_eq(c, 0xCBF43926u);
}
END_TEST

START_TEST(strings_bounded) {
    char buf[8];
    mdiff_strcpy(buf, sizeof buf, "1234567");
    ck_assert_str_eq(buf, "1234567");
    mdiff_snprintf(buf, sizeof buf, "%d-%d", 12, 34);
    ck_assert_str_eq(buf, "12-34");
    ck_assert_int_eq(mdiff_ends_with("a.h5", ".h5"), 1);
    ck_assert_int_eq(mdiff_ends_with("h5", ".h5"), 0);
}
END_TEST

START_TEST(strcpy_overflow_is_internal_error) {
    char buf[4];
    mdiff_strcpy(buf, sizeof buf, "toolong");
}
END_TEST

START_TEST(parse_numbers) {
    ck_assert_int_eq(mdiff_parse_i64("--n", "42", 1, 100), 42);
    ck_assert_int_eq(mdiff_parse_i64("--n", "-3", -5, 5), -3);
    ck_assert_double_eq_tol(mdiff_parse_f64("--lr", "2e-4", 0, 1), 2e-4, 1e-12);
    int l[4];
    ck_assert_int_eq(mdiff_parse_int_list("--mult", "1,2,2", l, 4, 1, 16), 3);
    ck_assert_int_eq(l[0], 1);
    ck_assert_int_eq(l[2], 2);
}
END_TEST

START_TEST(parse_non_number_exits_1) { mdiff_parse_i64("--n", "12abc", 1, 100); }
END_TEST
START_TEST(parse_out_of_range_exits_1) { mdiff_parse_i64("--n", "0", 1, 100); }
END_TEST
START_TEST(parse_float_nan_exits_1) { mdiff_parse_f64("--lr", "nan", 0, 1); }
END_TEST
START_TEST(parse_list_trailing_comma_exits_1) {
    int l[4];
    mdiff_parse_int_list("--mult", "1,2,", l, 4, 1, 16);
}
END_TEST

START_TEST(aligned_alloc_is_aligned_and_zero) {
    float *p = mdiff_alloc_aligned(1000 * sizeof(float), "test");
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) ck_assert_float_eq(p[i], 0.0f);
    mdiff_free_aligned(p);
}
END_TEST

START_TEST(config_defaults_match_design) {
    mdiff_config c;
    mdiff_config_defaults(&c);
    ck_assert_int_eq(c.steps, 20000);
    ck_assert_int_eq(c.batch, 64);
    ck_assert_int_eq(c.model.ch, 32);
    ck_assert_int_eq(c.model.n_levels, 3);
    ck_assert_int_eq(c.diff.timesteps, 1000);
    ck_assert_str_eq(c.diff.objective, "eps");
}
END_TEST

int main(void) {
    mdiff_h5_quiet();
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, crc32_known_answer);
    tcase_add_test(tc, strings_bounded);
    tcase_add_exit_test(tc, strcpy_overflow_is_internal_error, 2);
    tcase_add_test(tc, parse_numbers);
    tcase_add_exit_test(tc, parse_non_number_exits_1, 1);
    tcase_add_exit_test(tc, parse_out_of_range_exits_1, 1);
    tcase_add_exit_test(tc, parse_float_nan_exits_1, 1);
    tcase_add_exit_test(tc, parse_list_trailing_comma_exits_1, 1);
    tcase_add_test(tc, aligned_alloc_is_aligned_and_zero);
    tcase_add_test(tc, config_defaults_match_design);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
