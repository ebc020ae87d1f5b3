/* fuzz_common: what every libFuzzer target of mdiff shares (tests/fuzz/run.sh builds and runs them).
 * mdiff reports bad input by printing one line and calling exit(1); a fuzz target must survive that
 * and go on, so the targets are linked with -Wl,--wrap=exit and FUZZ_TRY turns exit() during the
 * call into a longjmp back. What the aborted call held is reclaimed: mdiff's allocations and gzip
 * streams (tracked through --wrap), HDF5 objects, descriptors into the scratch dir. A crash, an
 * ASan/UBSan report, a leak, a hang or running out of memory is a finding; a clean exit(1) is the
 * expected answer to bad bytes. */
#ifndef MDIFF_FUZZ_COMMON_H
#define MDIFF_FUZZ_COMMON_H

#include <dirent.h>
#include <hdf5.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdiff/common.h"

static jmp_buf fuzz_jmp;
static int fuzz_armed;
static char fuzz_dir[256];

void __real_exit(int code) __attribute__((noreturn));
void __wrap_exit(int code) __attribute__((noreturn));
void __wrap_exit(int code) {
    if (fuzz_armed) {
        fuzz_armed = 0;
        longjmp(fuzz_jmp, 1);
    }
    __real_exit(code);
}

/* Allocations made by mdiff's code (and gzip streams opened) while a call is armed: an aborted call's are
 * freed on the way back; a completed call's belong to the caller. free() is wrapped too so a
 * buffer mdiff already released is not freed twice. */
#define FUZZ_MAX_LIVE 4096
static void *fuzz_live[FUZZ_MAX_LIVE];
static int fuzz_nlive;
static void *fuzz_gz[16];
static int fuzz_ngz;

static void *fuzz_track(void *p) {
    if (fuzz_armed && p && fuzz_nlive < FUZZ_MAX_LIVE) fuzz_live[fuzz_nlive++] = p;
    return p;
}
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);
void *__wrap_malloc(size_t n) { return fuzz_track(__real_malloc(n)); }
void *__wrap_calloc(size_t n, size_t size) { return fuzz_track(__real_calloc(n, size)); }
void *__wrap_aligned_alloc(size_t align, size_t n) { return fuzz_track(__real_aligned_alloc(align, n)); }
char *__wrap_strdup(const char *s) { return fuzz_track(__real_strdup(s)); }
void *__wrap_realloc(void *p, size_t n) {
    void *q = __real_realloc(p, n);
    for (int i = 0; p && q && i < fuzz_nlive; i++)
        if (fuzz_live[i] == p) {
            fuzz_live[i] = q;
            return q;
        }
    return fuzz_track(q);
}
void __wrap_free(void *p) {
    for (int i = 0; p && i < fuzz_nlive; i++)
        if (fuzz_live[i] == p) fuzz_live[i] = NULL;
    __real_free(p);
}
#include <zlib.h>
gzFile __real_gzopen(const char *path, const char *mode);
gzFile __wrap_gzopen(const char *path, const char *mode) {
    gzFile g = __real_gzopen(path, mode);
    if (fuzz_armed && g && fuzz_ngz < 16) fuzz_gz[fuzz_ngz++] = g;
    return g;
}
int __real_gzclose_r(gzFile g);
int __wrap_gzclose_r(gzFile g) {
    for (int i = 0; i < fuzz_ngz; i++)
        if (fuzz_gz[i] == g) fuzz_gz[i] = NULL;
    return __real_gzclose_r(g);
}

static void fuzz_release(int aborted) {
    for (int i = 0; aborted && i < fuzz_nlive; i++)
        if (fuzz_live[i]) __real_free(fuzz_live[i]);
    for (int i = 0; aborted && i < fuzz_ngz; i++)
        if (fuzz_gz[i]) gzclose(fuzz_gz[i]);
    fuzz_nlive = fuzz_ngz = 0;
}

/* Closes every HDF5 object still open (an aborted call's files, datasets, ...). */
static void fuzz_close_h5(void) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n <= 0) return;
    hid_t *ids = malloc((size_t)n * sizeof *ids);
    n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        switch (H5Iget_type(ids[i])) {
        case H5I_FILE: break;
        case H5I_GROUP: H5Gclose(ids[i]); break;
        case H5I_DATASET: H5Dclose(ids[i]); break;
        case H5I_ATTR: H5Aclose(ids[i]); break;
        case H5I_DATATYPE: H5Tclose(ids[i]); break;
        default: break;
        }
    }
    for (ssize_t i = 0; i < n; i++)
        if (H5Iget_type(ids[i]) == H5I_FILE) H5Fclose(ids[i]);
    free(ids);
}

/* Closes descriptors that point into the scratch dir (e.g. a gzFile of an aborted read). */
static void fuzz_close_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    struct dirent *e;
    int fds[256], n = 0;
    while ((e = readdir(d)) && n < 256) {
        char p[64], target[512];
        int fd = atoi(e->d_name);
        if (fd < 3) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(p, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = '\0';
        if (strncmp(target, fuzz_dir, strlen(fuzz_dir)) == 0) fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) close(fds[i]);
}

/* The scratch directory (one per process), made on first use. */
static const char *fuzz_scratch(void) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/mdiff_fuzz.%ld", (long)getpid());
        mkdir(fuzz_dir, 0700);
        mdiff_set_progname("fuzz");
        mdiff_h5_quiet();
    }
    return fuzz_dir;
}

/* Writes bytes to scratch/name; returns the path (static buffer). */
static const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_scratch(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

/* FUZZ_TRY(stmt): runs stmt; an exit() inside it returns here, and the leftovers are reclaimed. */
#define FUZZ_TRY(stmt)                                                                            \
    do {                                                                                          \
        if (setjmp(fuzz_jmp) == 0) {                                                              \
            fuzz_armed = 1;                                                                       \
            stmt;                                                                                 \
            fuzz_armed = 0;                                                                       \
            fuzz_release(0);                                                                      \
        } else {                                                                                  \
            fuzz_release(1);                                                                      \
            fuzz_close_h5();                                                                      \
            fuzz_close_fds();                                                                     \
        }                                                                                         \
    } while (0)

#endif
