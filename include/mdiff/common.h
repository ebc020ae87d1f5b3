/* common: the ground every module stands on.
 * - error paths: a user error (one line on stderr, exit 1) and an internal error (file:line, exit 2);
 *   under MPI with more than one rank a rank-local error aborts the job (MPI_Abort) so no rank hangs;
 *   an error every rank detects together exits cleanly with one line from rank 0.
 * - checked wrappers for allocation, HDF5 (negative hid_t/herr_t) and MPI return codes;
 * - rank-aware logging (rank 0 to stdout; [rank N] prefix for per-rank lines), timers;
 * - the thread policy: how many BLAS and OpenMP threads compute, decided in one place;
 * - bounded string helpers and a registry of temporary files removed on any error exit,
 *   so a failure never leaves a partial output file behind. */
#ifndef MDIFF_COMMON_H
#define MDIFF_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

#define MDIFF_VERSION "0.1.0"

/* The git commit the build came from ("unknown" outside a checkout). */
const char *mdiff_git_hash(void);

enum {
    MDIFF_EXIT_OK = 0,
    MDIFF_EXIT_USER = 1,     /* bad input, or a run that cannot continue */
    MDIFF_EXIT_INTERNAL = 2, /* a bug or an environment failure we did not foresee */
    MDIFF_EXIT_SIGNAL = 3    /* stopped by a signal after writing a checkpoint */
};

#if defined(__GNUC__)
#define MDIFF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MDIFF_NORETURN __attribute__((noreturn))
#else
#define MDIFF_PRINTF(a, b)
#define MDIFF_NORETURN
#endif

/* Program name used as the prefix of every error line ("mdiff-train: error: ..."). */
void mdiff_set_progname(const char *name);
const char *mdiff_progname(void);

/* Rank and world size: queried from MPI when it is initialised, else 0 and 1. */
int mdiff_rank(void);
int mdiff_world_size(void);

/* User error detected by this rank alone: one line, exit 1 (MPI_Abort when P > 1). */
MDIFF_NORETURN void mdiff_user_error(const char *fmt, ...) MDIFF_PRINTF(1, 2);
/* User error that every rank detects at the same point: rank 0 prints, all finalise and exit 1.
 * Only call it where every rank takes the same branch (e.g. after a reduction or on shared input). */
MDIFF_NORETURN void mdiff_user_error_all(const char *fmt, ...) MDIFF_PRINTF(1, 2);
/* While set, mdiff_user_error behaves as mdiff_user_error_all: for phases every rank runs on the
 * same input (parsing the command line, validating a shared file), so a bad option prints one line
 * and exits 1 cleanly instead of aborting the job from every rank. Returns the previous value. */
int mdiff_set_errors_collective(int on);
/* Internal error with location: exit 2 (MPI_Abort when P > 1). */
MDIFF_NORETURN void mdiff_internal_error(const char *file, int line, const char *fmt, ...)
    MDIFF_PRINTF(3, 4);
/* Exit with a given code (after removing registered temporaries; MPI_Abort when P > 1 and
 * code != 0 unless `collective`). */
MDIFF_NORETURN void mdiff_exit(int code, int collective);

/* Optional hook run before an error exit (e.g. close HDF5 files); one slot, last set wins. */
void mdiff_set_error_hook(void (*hook)(void));
/* Runs fn once on every way out that mdiff controls: return from main or exit() (atexit), and
 * mdiff_exit's error exits, also those that end in MPI_Abort, which skips atexit. For releases
 * that must happen whatever the outcome (the run-dir lock's holder record). At most 8. */
void mdiff_at_exit(void (*fn)(void));

#define MDIFF_CHECK(cond, ...)                                                 \
    do {                                                                       \
        if (!(cond)) mdiff_internal_error(__FILE__, __LINE__, __VA_ARGS__);   \
    } while (0)

/* HDF5: ids and statuses are negative on failure. `what` names the file/object, e.g.
 * MDIFF_H5(H5Dopen2(f, "/images", H5P_DEFAULT), "open /images in %s", path). */
int64_t mdiff_h5_check(int64_t ret, const char *file, int line, const char *fmt, ...)
    MDIFF_PRINTF(4, 5);
#define MDIFF_H5(expr, ...) mdiff_h5_check((int64_t)(expr), __FILE__, __LINE__, __VA_ARGS__)

/* MPI: any code other than MPI_SUCCESS is an internal error with the MPI error string. */
void mdiff_mpi_check(int code, const char *file, int line, const char *what);
#define MDIFF_MPI(expr) mdiff_mpi_check((expr), __FILE__, __LINE__, #expr)

/* Silence HDF5's automatic error-stack printing; call once at start of every program/test. */
void mdiff_h5_quiet(void);

/* Allocation: failure is a user error naming what and how much (the fix: smaller batch/model). */
void *mdiff_malloc(size_t bytes, const char *what);
void *mdiff_calloc(size_t count, size_t size, const char *what);
/* 64-byte aligned, zeroed; free with mdiff_free_aligned (plain free works too). */
void *mdiff_alloc_aligned(size_t bytes, const char *what);
void mdiff_free_aligned(void *p);

/* Logging. mdiff_log: rank 0 only, stdout. mdiff_log_rank: every rank, "[rank N] " prefix when P > 1.
 * mdiff_warn: rank 0 only, stderr, "PROG: warning: ". Lines end with '\n' added when missing. */
void mdiff_log(const char *fmt, ...) MDIFF_PRINTF(1, 2);
void mdiff_log_rank(const char *fmt, ...) MDIFF_PRINTF(1, 2);
void mdiff_warn(const char *fmt, ...) MDIFF_PRINTF(1, 2);
void mdiff_warn_rank(const char *fmt, ...) MDIFF_PRINTF(1, 2);

/* Threads. OpenBLAS's results change bitwise with its thread count (DESIGN.md §7), so how many
 * threads compute is one policy, decided here and nowhere else:
 *  - a rank has a budget, mdiff_rank_threads(): OpenBLAS gets it (process-wide) and the thread
 *    that runs the training loop gives it to mdiff's own loops too (mdiff_set_threads);
 *  - inside a model pass or an op BLAS runs with ONE thread (mdiff_blas_single ... restore) and
 *    the op parallelises its own independent pieces over mdiff_threads(), so no result depends
 *    on the budget;
 *  - sampling runs budget-many workers (mdiff_blas_threads()), each with one BLAS thread and
 *    mdiff_threads() = 1: parallel across fixed micro-batches, bit-identical for any budget. */

/* Decides this rank's thread budget and gives it to OpenBLAS. When OPENBLAS_NUM_THREADS is set
 * (even to "") the user's choice stands: OpenBLAS keeps the count it read from it, which is
 * returned, and *from_env = 1. Else the budget is the node's online CPUs / ranks_on_node, capped
 * by the CPUs this process may run on (its affinity mask), at least 1; it is returned (OpenBLAS
 * may cap it at its build's maximum: mdiff_blas_threads() is the count in effect) and
 * *from_env = 0. from_env may be NULL. */
int mdiff_rank_threads(int ranks_on_node, int *from_env);
/* OpenBLAS's current thread count: the rank's budget outside model passes. */
int mdiff_blas_threads(void);
/* OpenBLAS single-threaded until mdiff_blas_restore(previous); returns the previous count.
 * openblas_set_num_threads is process-wide: only a thread that owns BLAS's setting (the training
 * loop's, not a sampling worker's, which finds 1 already) changes it. */
int mdiff_blas_single(void);
void mdiff_blas_restore(int previous);

/* Threads mdiff's own loops (OpenMP in ops) may use in the CALLING thread; thread-local, default 1.
 * Forward ops partition only independent outputs, so their results do not depend on it. Worker
 * threads that run their own model (parallel sampling) keep 1. */
void mdiff_set_threads(int n);
int mdiff_threads(void);

/* Monotonic wall time in seconds. */
double mdiff_now(void);

/* Bounded strings: copy/format into dst of size cap; truncation is an internal error
 * (paths and names are sized generously, so truncation means a bug or absurd input). */
void mdiff_strcpy(char *dst, size_t cap, const char *src);
void mdiff_snprintf(char *dst, size_t cap, const char *fmt, ...) MDIFF_PRINTF(3, 4);
/* Returns 1 when s ends with suffix. */
int mdiff_ends_with(const char *s, const char *suffix);

/* Temporary files removed by every error exit (write to tmp, then rename; unregister after). */
void mdiff_tmpfile_register(const char *path);
void mdiff_tmpfile_unregister(const char *path);

/* CRC-32 (zlib's polynomial), incremental: crc = mdiff_crc32(crc, buf, n), starting from 0. */
uint32_t mdiff_crc32(uint32_t crc, const void *buf, size_t n);

#endif
