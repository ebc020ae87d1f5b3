/* common: error paths, checked wrappers, logging, timers, bounded strings, temp-file cleanup, the
 * thread policy. See include/mdiff/common.h for the contract. Uses MPI only to learn rank/size and
 * to abort, OpenBLAS only for its thread count. */
#include "mdiff/common.h"

#include <cblas.h>
#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef MDIFF_GIT_HASH
#define MDIFF_GIT_HASH "unknown"
#endif

const char *mdiff_git_hash(void) { return MDIFF_GIT_HASH; }

static char g_progname[64] = "mdiff";
static void (*g_error_hook)(void) = NULL;

#define MAX_TMPFILES 16
static char g_tmpfiles[MAX_TMPFILES][4096];

void mdiff_set_progname(const char *name) {
    const char *slash = strrchr(name, '/');
    snprintf(g_progname, sizeof g_progname, "%s", slash ? slash + 1 : name);
}

const char *mdiff_progname(void) { return g_progname; }

static int mpi_live(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int mdiff_rank(void) {
    int r = 0;
    if (mpi_live()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int mdiff_world_size(void) {
    int s = 1;
    if (mpi_live()) MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
}

void mdiff_set_error_hook(void (*hook)(void)) { g_error_hook = hook; }

static void remove_tmpfiles(void) {
    for (int i = 0; i < MAX_TMPFILES; i++) {
        if (g_tmpfiles[i][0]) {
            unlink(g_tmpfiles[i]);
            g_tmpfiles[i][0] = '\0';
        }
    }
}

#define MAX_EXIT_FNS 8
static void (*g_exit_fns[MAX_EXIT_FNS])(void);

/* Each function runs at most once: mdiff_exit runs them before a possible MPI_Abort, and the
 * atexit registration would run them again on the exit() that follows. */
static void run_exit_fns(void) {
    for (int i = MAX_EXIT_FNS - 1; i >= 0; i--) {
        void (*fn)(void) = g_exit_fns[i];
        g_exit_fns[i] = NULL;
        if (fn) fn();
    }
}

void mdiff_at_exit(void (*fn)(void)) {
    static int registered = 0;
    if (!registered) registered = atexit(run_exit_fns) == 0;
    for (int i = 0; i < MAX_EXIT_FNS; i++) {
        if (g_exit_fns[i] == fn) return;
        if (!g_exit_fns[i]) {
            g_exit_fns[i] = fn;
            return;
        }
    }
    MDIFF_CHECK(0, "more than %d exit functions registered", MAX_EXIT_FNS);
}

void mdiff_exit(int code, int collective) {
    static int exiting = 0;
    if (!exiting) {
        exiting = 1;
        if (g_error_hook && code != MDIFF_EXIT_OK) g_error_hook();
    }
    run_exit_fns();
    remove_tmpfiles();
    fflush(stdout);
    fflush(stderr);
    if (mpi_live()) {
        if (!collective && code != MDIFF_EXIT_OK && mdiff_world_size() > 1)
            MPI_Abort(MPI_COMM_WORLD, code);
        MPI_Finalize();
    }
    exit(code);
}

/* Formats one message into buf without its trailing newlines (callers add exactly one). */
static void format_line(char *buf, size_t cap, const char *fmt, va_list ap) {
    vsnprintf(buf, cap, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
}

static void vprint_line(FILE *f, const char *prefix, const char *fmt, va_list ap) {
    char buf[4096];
    format_line(buf, sizeof buf, fmt, ap);
    int p = mdiff_world_size();
    if (p > 1)
        fprintf(f, "%s: %s[rank %d] %s\n", g_progname, prefix, mdiff_rank(), buf);
    else
        fprintf(f, "%s: %s%s\n", g_progname, prefix, buf);
    fflush(f);
}

static int g_errors_collective = 0;

int mdiff_set_errors_collective(int on) {
    int old = g_errors_collective;
    g_errors_collective = on;
    return old;
}

static MDIFF_NORETURN void user_error_all_v(const char *fmt, va_list ap);

void mdiff_user_error(const char *fmt, ...) {
    va_list ap;
    if (g_errors_collective) {
        va_start(ap, fmt);
        user_error_all_v(fmt, ap);
    }
    va_start(ap, fmt);
    vprint_line(stderr, "error: ", fmt, ap);
    va_end(ap);
    mdiff_exit(MDIFF_EXIT_USER, 0);
}

void mdiff_user_error_all(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    user_error_all_v(fmt, ap);
}

static void user_error_all_v(const char *fmt, va_list ap) {
    if (mdiff_rank() == 0) {
        char buf[4096];
        format_line(buf, sizeof buf, fmt, ap);
        fprintf(stderr, "%s: error: %s\n", g_progname, buf);
        fflush(stderr);
    }
    /* Every rank is here: a barrier keeps rank 0's line from being lost to an early finalize. */
    if (mpi_live() && mdiff_world_size() > 1) MPI_Barrier(MPI_COMM_WORLD);
    mdiff_exit(MDIFF_EXIT_USER, 1);
}

void mdiff_internal_error(const char *file, int line, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (mdiff_world_size() > 1)
        fprintf(stderr, "%s: internal error: [rank %d] %s (%s:%d)\n", g_progname, mdiff_rank(), buf,
                file, line);
    else
        fprintf(stderr, "%s: internal error: %s (%s:%d)\n", g_progname, buf, file, line);
    mdiff_exit(MDIFF_EXIT_INTERNAL, 0);
}

int64_t mdiff_h5_check(int64_t ret, const char *file, int line, const char *fmt, ...) {
    if (ret >= 0) return ret;
    char buf[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mdiff_internal_error(file, line, "HDF5 call failed: %s", buf);
}

void mdiff_mpi_check(int code, const char *file, int line, const char *what) {
    if (code == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    mdiff_internal_error(file, line, "MPI call failed: %s: %s", what, msg);
}

void mdiff_h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* HDF5 >= 1.10 flock()s every file it opens and fails the open where the file system has no
     * locks (ENOLCK: NFS without lockd, some parallel file systems). mdiff never changes an HDF5
     * file in place (every write goes to a temporary name renamed when complete), so the locks
     * protect nothing here: off unless the user set HDF5_USE_FILE_LOCKING (which HDF5 obeys). */
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
}

static void alloc_failed(size_t bytes, const char *what) {
    mdiff_user_error("cannot allocate %.1f MiB for %s: out of memory (use a smaller --batch or model, "
                     "or more memory per rank)",
                     (double)bytes / (1024.0 * 1024.0), what);
}

void *mdiff_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) alloc_failed(bytes, what);
    return p;
}

void *mdiff_calloc(size_t count, size_t size, const char *what) {
    if (size && count > SIZE_MAX / size) alloc_failed(SIZE_MAX, what);
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) alloc_failed(count * size, what);
    return p;
}

void *mdiff_alloc_aligned(size_t bytes, const char *what) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) alloc_failed(bytes, what);
    memset(p, 0, rounded);
    return p;
}

void mdiff_free_aligned(void *p) { free(p); }

void mdiff_log(const char *fmt, ...) {
    if (mdiff_rank() != 0) return;
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    format_line(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%s\n", buf);
    fflush(stdout);
}

void mdiff_log_rank(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    format_line(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (mdiff_world_size() > 1)
        printf("[rank %d] %s\n", mdiff_rank(), buf);
    else
        printf("%s\n", buf);
    fflush(stdout);
}

void mdiff_warn(const char *fmt, ...) {
    if (mdiff_rank() != 0) return;
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    format_line(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: warning: %s\n", g_progname, buf);
    fflush(stderr);
}

void mdiff_warn_rank(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint_line(stderr, "warning: ", fmt, ap);
    va_end(ap);
}

/* ---- threads: the one policy (see common.h) -------------------------------------------------- */

int mdiff_rank_threads(int ranks_on_node, int *from_env) {
    int env = getenv("OPENBLAS_NUM_THREADS") != NULL;
    if (from_env) *from_env = env;
    if (env) return openblas_get_num_threads(); /* the user's choice stands */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    int affinity = (int)online;
    if (sched_getaffinity(0, sizeof set, &set) == 0) affinity = CPU_COUNT(&set);
    int t = (int)(online / (ranks_on_node > 0 ? ranks_on_node : 1));
    if (t > affinity) t = affinity;
    if (t < 1) t = 1;
    openblas_set_num_threads(t);
    return t;
}

int mdiff_blas_threads(void) { return openblas_get_num_threads(); }

int mdiff_blas_single(void) {
    int t = openblas_get_num_threads();
    if (t != 1) openblas_set_num_threads(1);
    return t;
}

void mdiff_blas_restore(int previous) {
    if (previous != 1) openblas_set_num_threads(previous);
}

static _Thread_local int g_threads = 1;

void mdiff_set_threads(int n) { g_threads = n > 0 ? n : 1; }
int mdiff_threads(void) { return g_threads; }

double mdiff_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mdiff_strcpy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) MDIFF_CHECK(0, "string of %zu bytes does not fit %zu: '%.64s...'", n, cap, src);
    memcpy(dst, src, n + 1);
}

void mdiff_snprintf(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        MDIFF_CHECK(0, "formatted string of %d bytes does not fit %zu: '%.64s...'", n, cap, dst);
}

int mdiff_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

void mdiff_tmpfile_register(const char *path) {
    for (int i = 0; i < MAX_TMPFILES; i++) {
        if (!g_tmpfiles[i][0]) {
            mdiff_strcpy(g_tmpfiles[i], sizeof g_tmpfiles[i], path);
            return;
        }
    }
    MDIFF_CHECK(0, "more than %d temporary files registered at once", MAX_TMPFILES);
}

void mdiff_tmpfile_unregister(const char *path) {
    for (int i = 0; i < MAX_TMPFILES; i++)
        if (g_tmpfiles[i][0] && strcmp(g_tmpfiles[i], path) == 0) g_tmpfiles[i][0] = '\0';
}

uint32_t mdiff_crc32(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32((uLong)crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}
