/* libFuzzer target: mdiff-train's command-line parser and validation (mdiff_config_parse_train,
 * mdiff_config_validate) and the number parsers behind every program's options. The input is the
 * argument vector, arguments separated by NUL bytes. */
#include "fuzz_common.h"
#include "mdiff/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[66];
    int argc = 0;
    argv[argc++] = "mdiff-train";
    for (size_t i = 0; i <= size && argc < 65;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    mdiff_config cfg;
    mdiff_given given;
    int list[8];
    FUZZ_TRY(mdiff_config_parse_train(&cfg, &given, argc, argv); mdiff_config_validate(&cfg));
    FUZZ_TRY(mdiff_parse_int_list("--mult", argv[argc - 1], list, 8, 1, 64));
    FUZZ_TRY(mdiff_parse_f64("--lr", argv[argc - 1], 0, 10));
    mdiff_set_errors_collective(0);
    free(buf);
    return 0;
}
