/* mdiff-train: thin main over the training loop (src/train/). See --help and DESIGN.md §5. */
#include <stdio.h>
#include <string.h>

#include "mdiff/common.h"
#include "mdiff/config.h"
#include "mdiff/dist.h"
#include "mdiff/train.h"

int main(int argc, char **argv) {
    mdiff_set_progname("mdiff-train");
    mdiff_h5_quiet();
    mdiff_dist d;
    mdiff_dist_init(&d, &argc, &argv);
    mdiff_train_install_signals();
    mdiff_config cfg;
    mdiff_given given;
    mdiff_config_parse_train(&cfg, &given, argc, argv);
    char cmdline[8192] = "";
    size_t used = 0;
    for (int i = 0; i < argc && used < sizeof cmdline - 1; i++)
        used += (size_t)snprintf(cmdline + used, sizeof cmdline - used, i ? " %s" : "%s", argv[i]);
    int code = mdiff_train_run(&cfg, &given, &d, cmdline);
    mdiff_dist_finalize(&d);
    return code;
}
