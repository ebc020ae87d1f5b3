/* train/faults: what stops or perturbs a run from outside. The signal handlers and the global stop
 * flag (OR-reduced every step by the loop), and the test fault hooks read from environment
 * variables: a non-finite gradient (MDIFF_FAULT_NONFINITE) and a diverged replica
 * (MDIFF_FAULT_DIVERGE). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train_internal.h"

volatile int mdiff_stop_requested = 0;

static void on_signal(int sig) {
    if (sig == SIGINT && mdiff_stop_requested) {
        static const char msg[] = "mdiff-train: second SIGINT: aborting now without a checkpoint\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    mdiff_stop_requested = 1;
}

void mdiff_train_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
}

int train_fault_nonfinite(int64_t step) {
    /* Fault injection for tests: MDIFF_FAULT_NONFINITE="from[:to]" makes those steps' gradients
     * NaN (rank 0 injects; the allreduce spreads it, as a real overflow would). */
    const char *s = getenv("MDIFF_FAULT_NONFINITE");
    if (!s) return 0;
    long long a = -1, b = -1;
    int n = sscanf(s, "%lld:%lld", &a, &b);
    if (n == 1) b = a;
    return n >= 1 && step >= a && step <= b;
}

int train_fault_diverge(int64_t step, int rank) {
    /* Fault injection for tests: MDIFF_FAULT_DIVERGE="step:rank" perturbs that rank's parameters
     * just before the replica check at that step. */
    const char *fault = getenv("MDIFF_FAULT_DIVERGE");
    long long fs = -1, fr = -1;
    return fault && sscanf(fault, "%lld:%lld", &fs, &fr) == 2 && fs == step && fr == rank;
}
