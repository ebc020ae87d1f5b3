/* train: the training loop of DESIGN.md §3 as a library function, for P ranks (P = 1 without
 * mpirun). mdiff-train is a thin main over it; tests call it directly. */
#ifndef MDIFF_TRAIN_H
#define MDIFF_TRAIN_H

#include "mdiff/config.h"
#include "mdiff/dist.h"

/* Set by the signal handlers of mdiff-train (SIGUSR1, SIGTERM, SIGINT); OR-reduced every step. */
extern volatile int mdiff_stop_requested;
/* Installs the handlers: first signal sets the flag; a second SIGINT aborts at once. SIGXFSZ is
 * ignored so a file-size limit makes writes fail with EFBIG instead of killing the process. */
void mdiff_train_install_signals(void);

/* Runs (or resumes) a training run. Returns MDIFF_EXIT_OK when --steps are done, MDIFF_EXIT_SIGNAL
 * when stopped by a signal after writing a checkpoint. Bad input and runs that cannot continue
 * are user errors (exit 1) from inside. Collective: every rank calls it. */
int mdiff_train_run(const mdiff_config *cfg, const mdiff_given *given, mdiff_dist *d,
                    const char *command_line);

#endif
