/* ckpt: checkpoint files (layout in include/mdiff/ckpt.h). Writing never kills the run: every
 * failure is reported once and returned, with the temporary file removed and earlier checkpoints
 * untouched. Reading validates everything and turns any problem into one user-error line. */
#include "mdiff/ckpt.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "mdiff/common.h"

#define CKPT_FORMAT "checkpoint/1"
#ifndef MDIFF_GIT_HASH
#define MDIFF_GIT_HASH "unknown"
#endif

void mdiff_library_versions(char *buf, size_t cap) {
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strchr(mpi, ','); /* "Open MPI v4.1.4, package: ..." -> keep the first part */
    if (nl) *nl = '\0';
    snprintf(buf, cap, "HDF5 %u.%u.%u; %s; %s; libpng %s; zlib %s", maj, min, rel, mpi,
             openblas_get_config(), png_get_libpng_ver(NULL), zlibVersion());
}

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct {
    int failed;
    char what[512];
} wstate;

/* Records the first failure (with errno when the OS said something) and returns 1 if failed. */
static int wfail(wstate *w, int64_t ret, const char *what) {
    if (ret >= 0 || w->failed) return w->failed || ret < 0;
    int e = errno;
    w->failed = 1;
    if (e)
        snprintf(w->what, sizeof w->what, "%s (%s)", what, strerror(e));
    else
        snprintf(w->what, sizeof w->what, "%s", what);
    return 1;
}

static void attr_write(wstate *w, hid_t loc, const char *name, hid_t type, hid_t mtype,
                       const void *buf, hsize_t count) {
    if (w->failed) return;
    hid_t sp = count == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, NULL);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (!wfail(w, a, "create attribute")) {
        wfail(w, H5Awrite(a, mtype, buf), "write attribute");
        H5Aclose(a);
    }
    H5Sclose(sp);
}

static void attr_str(wstate *w, hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    attr_write(w, loc, name, t, t, v, 1);
    H5Tclose(t);
}

static void attr_i64(wstate *w, hid_t loc, const char *name, int64_t v) {
    attr_write(w, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 1);
}

static void write_config_attrs(wstate *w, hid_t root, const mdiff_config *cfg) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    for (int i = 0; i < n && !w->failed; i++) {
        const char *base = (const char *)cfg + f[i].off;
        switch (f[i].type) {
        case MDIFF_F_I64: attr_write(w, root, f[i].attr, H5T_STD_I64LE, H5T_NATIVE_INT64, base, 1); break;
        case MDIFF_F_INT:
        case MDIFF_F_FLAG: attr_write(w, root, f[i].attr, H5T_STD_I32LE, H5T_NATIVE_INT, base, 1); break;
        case MDIFF_F_U64: attr_write(w, root, f[i].attr, H5T_STD_U64LE, H5T_NATIVE_UINT64, base, 1); break;
        case MDIFF_F_F64: attr_write(w, root, f[i].attr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, base, 1); break;
        case MDIFF_F_F32: attr_write(w, root, f[i].attr, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, base, 1); break;
        case MDIFF_F_STR: attr_str(w, root, f[i].attr, base); break;
        case MDIFF_F_INTLIST: {
            /* an empty list (e.g. --attn none) is stored as [0]: entries are >= 1 otherwise */
            int count = *(const int *)((const char *)cfg + f[i].count_off);
            int zero = 0;
            attr_write(w, root, f[i].attr, H5T_STD_I32LE, H5T_NATIVE_INT, count ? base : (const char *)&zero,
                       (hsize_t)(count ? count : 1));
            break;
        }
        }
    }
}

/* One float32 tensor with its true shape, one chunk, Fletcher32. */
static void write_tensor(wstate *w, hid_t grp, const mdiff_param *p, const float *data) {
    if (w->failed) return;
    hsize_t dims[4];
    for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
    hid_t sp = H5Screate_simple(p->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, p->ndim, dims);
    H5Pset_fletcher32(dcpl);
    hid_t ds = H5Dcreate2(grp, p->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (!wfail(w, ds, "create tensor")) {
        wfail(w, H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data + p->offset),
              "write tensor");
        wfail(w, H5Dclose(ds), "close tensor");
    }
    H5Pclose(dcpl);
    H5Sclose(sp);
}

static void write_group(wstate *w, hid_t file, const char *name, const mdiff_model *m,
                        const float *data) {
    if (w->failed) return;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(file, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (wfail(w, g, "create group")) return;
    int nt = mdiff_model_num_tensors(m);
    for (int i = 0; i < nt && !w->failed; i++) write_tensor(w, g, mdiff_model_tensor(m, i), data);
    H5Gclose(g);
}

static void write_i64_dataset(wstate *w, hid_t loc, const char *name, const int64_t *v, int n) {
    if (w->failed) return;
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!wfail(w, ds, "create state")) {
        wfail(w, H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "write state");
        H5Dclose(ds);
    }
    H5Sclose(sp);
}

static void write_contents(wstate *w, hid_t f, const mdiff_ckpt_save *s) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (wfail(w, root, "open root")) return;
    char libs[1024];
    mdiff_library_versions(libs, sizeof libs);
    attr_str(w, root, "mdiff_format", CKPT_FORMAT);
    attr_i64(w, root, "step", s->step);
    attr_i64(w, root, "world_size", s->world_size);
    attr_write(w, root, "data_fingerprint", H5T_STD_U32LE, H5T_NATIVE_UINT32, &s->data_fingerprint, 1);
    attr_str(w, root, "mdiff_version", MDIFF_VERSION);
    attr_str(w, root, "git_hash", mdiff_git_hash());
    attr_str(w, root, "command_line", s->command_line ? s->command_line : "");
    attr_str(w, root, "libraries", libs);
    write_config_attrs(w, root, s->cfg);
    H5Gclose(root);
    write_group(w, f, "params", s->model, s->params);
    write_group(w, f, "ema", s->model, s->ema);
    write_group(w, f, "adam/m", s->model, s->adam_m);
    write_group(w, f, "adam/v", s->model, s->adam_v);
    if (w->failed) return;
    hid_t st = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (wfail(w, st, "create /state")) return;
    write_i64_dataset(w, st, "loader_epoch", s->loader_epoch, s->world_size);
    write_i64_dataset(w, st, "loader_cursor", s->loader_cursor, s->world_size);
    attr_i64(w, st, "nonfinite_skipped", s->nonfinite_skipped);
    attr_i64(w, st, "ema_updates", s->ema_updates);
    H5Gclose(st);
}

static int fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Jenkins' lookup3 hashlittle (public domain), byte-wise: HDF5's metadata checksum. */
#define ROT32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const uint8_t *k, size_t len, uint32_t init) {
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len + init;
    for (; len > 12; len -= 12, k += 12) {
        a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT32(c, 4), c += b, b -= a, b ^= ROT32(a, 6), a += c;
        c -= b, c ^= ROT32(b, 8), b += a, a -= c, a ^= ROT32(c, 16), c += b;
        b -= a, b ^= ROT32(a, 19), a += c, c -= b, c ^= ROT32(b, 4), b += a;
    }
    if (len == 0) return c;
    uint32_t w[3] = {0, 0, 0};
    for (size_t i = 0; i < len; i++) w[i / 4] |= (uint32_t)k[i] << (8 * (i % 4));
    a += w[0], b += w[1], c += w[2];
    c ^= b, c -= ROT32(b, 14), a ^= c, a -= ROT32(c, 11), b ^= a, b -= ROT32(a, 25);
    c ^= b, c -= ROT32(b, 16), a ^= c, a -= ROT32(c, 4), b ^= a, b -= ROT32(a, 14);
    c ^= b, c -= ROT32(b, 24);
    return c;
}

/* HDF5 1.10.8's H5Fget_file_image clears the "open for write" flag in a version 2/3 superblock
 * but keeps the checksum computed with it set, so the image would not open ("incorrect metadata
 * checksum"): recompute it. Layout: 12 bytes signature..flags, 4 addresses of 8 bytes, checksum. */
static void fix_superblock_checksum(uint8_t *img, size_t size) {
    if (size < 48 || memcmp(img, "\x89HDF\r\n\x1a\n", 8) != 0 || img[8] < 2 || img[9] != 8) return;
    uint32_t ck = lookup3(img, 44, 0);
    for (int i = 0; i < 4; i++) img[44 + i] = (uint8_t)(ck >> (8 * i));
}

/* The whole checkpoint is built in memory (HDF5's core driver, no backing store) and written to
 * disk by write_image with plain POSIX calls. HDF5 never does the disk I/O, so a failing disk
 * (EFBIG under a file size limit, ENOSPC, EIO) is an errno we report and recover from. Written
 * through HDF5 instead, such a failure leaves a file that H5Fclose cannot close: HDF5 1.10.8 then
 * crashes at exit (H5F__close_cb) and keeps the unlinked file's descriptor, so its disk space is
 * never freed. Cost: rank 0 holds the image twice (core buffer + copy) while writing. */
static void *build_image(wstate *w, const mdiff_ckpt_save *s, size_t *size) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    H5Pset_fapl_core(fapl, (size_t)16 << 20, 0);
    hid_t f = H5Fcreate("mdiff-checkpoint-image", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (wfail(w, f, "create the file image")) return NULL;
    write_contents(w, f, s);
    void *image = NULL;
    if (!w->failed) wfail(w, H5Fflush(f, H5F_SCOPE_GLOBAL), "flush the file image");
    ssize_t n = w->failed ? -1 : H5Fget_file_image(f, NULL, 0);
    if (!wfail(w, n, "size the file image")) {
        image = malloc((size_t)n ? (size_t)n : 1);
        if (!image) wfail(w, -1, "allocate memory for the file image");
        else if (!wfail(w, H5Fget_file_image(f, image, (size_t)n), "copy the file image"))
            *size = (size_t)n;
        if (!w->failed) fix_superblock_checksum(image, *size);
    }
    H5Fclose(f); /* in memory: nothing to flush */
    return image;
}

/* Writes the image to path and fsyncs it; close() is checked too (NFS reports errors there). */
static void write_image(wstate *w, const char *path, const void *image, size_t size) {
    errno = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (wfail(w, fd, "create the file")) return;
    const char *p = image;
    while (size > 0) {
        ssize_t k = write(fd, p, size);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            wfail(w, -1, "write the file");
            break;
        }
        p += k;
        size -= (size_t)k;
    }
    if (!w->failed && fsync(fd) != 0) wfail(w, -1, "fsync");
    if (close(fd) != 0) wfail(w, -1, "close the file");
}

static int is_ckpt_name(const char *name) {
    int n = 0;
    return strlen(name) == 16 && sscanf(name, "ckpt-%8d.h5%n", &n, &n) >= 1 &&
           strncmp(name, "ckpt-", 5) == 0 && mdiff_ends_with(name, ".h5");
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keeps the newest `keep` ckpt-*.h5 (names sort by step: zero-padded). */
static void prune(const char *run_dir, int64_t keep, const char *newest) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096)
        if (is_ckpt_name(e->d_name)) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    for (int i = 0; i < n; i++) {
        if ((int64_t)(n - i) > keep && strcmp(names[i], newest) != 0) {
            char p[MDIFF_PATH_MAX + 32];
            snprintf(p, sizeof p, "%s/%s", run_dir, names[i]);
            unlink(p);
        }
        free(names[i]);
    }
}

int mdiff_ckpt_write(const char *run_dir, const mdiff_ckpt_save *s, int64_t keep, char *path_out,
                     size_t cap) {
    char name[32], path[MDIFF_PATH_MAX + 32], tmp[MDIFF_PATH_MAX + 64];
    mdiff_snprintf(name, sizeof name, "ckpt-%08lld.h5", (long long)s->step);
    mdiff_snprintf(path, sizeof path, "%s/%s", run_dir, name);
    mdiff_snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    wstate w = {0};
    errno = 0;
    mdiff_tmpfile_register(tmp);
    size_t size = 0;
    void *image = build_image(&w, s, &size);
    if (!w.failed) write_image(&w, tmp, image, size);
    free(image);
    if (!w.failed) { /* the image must open as HDF5 before it may replace anything */
        hid_t chk = H5Fopen(tmp, H5F_ACC_RDONLY, H5P_DEFAULT);
        errno = 0;
        if (!wfail(&w, chk, "verify (reopen) the file")) H5Fclose(chk);
    }
    if (!w.failed && rename(tmp, path) != 0) wfail(&w, -1, "rename into place");
    if (w.failed) {
        unlink(tmp);
        mdiff_tmpfile_unregister(tmp);
        mdiff_warn("checkpoint at step %lld NOT written: %s failed for %s; earlier checkpoints and "
                   "latest.h5 are untouched (check free space, quota and permissions of %s)",
                   (long long)s->step, w.what, path, run_dir);
        return -1;
    }
    mdiff_tmpfile_unregister(tmp);
    fsync_path(run_dir, 1);
    /* latest.h5: a relative symlink, replaced atomically by rename */
    char link_tmp[MDIFF_PATH_MAX + 64], link_path[MDIFF_PATH_MAX + 32];
    mdiff_snprintf(link_path, sizeof link_path, "%s/latest.h5", run_dir);
    mdiff_snprintf(link_tmp, sizeof link_tmp, "%s/latest.h5.tmp.%ld", run_dir, (long)getpid());
    unlink(link_tmp);
    if (symlink(name, link_tmp) != 0 || rename(link_tmp, link_path) != 0) {
        unlink(link_tmp);
        mdiff_warn("checkpoint %s written, but latest.h5 could not be updated: %s", path,
                   strerror(errno));
        return -1;
    }
    fsync_path(run_dir, 1);
    prune(run_dir, keep, name);
    if (path_out) mdiff_strcpy(path_out, cap, path);
    return 0;
}

/* ---- reading ---------------------------------------------------------------------------------- */

struct mdiff_ckpt {
    hid_t file;
    char path[MDIFF_PATH_MAX];
    int64_t step, world_size, nonfinite, ema_updates;
    uint32_t fingerprint;
};

const char *mdiff_ckpt_path(const mdiff_ckpt *ck) { return ck->path; }
int64_t mdiff_ckpt_step(const mdiff_ckpt *ck) { return ck->step; }
int mdiff_ckpt_world_size(const mdiff_ckpt *ck) { return (int)ck->world_size; }
uint32_t mdiff_ckpt_fingerprint(const mdiff_ckpt *ck) { return ck->fingerprint; }
int64_t mdiff_ckpt_nonfinite(const mdiff_ckpt *ck) { return ck->nonfinite; }
int64_t mdiff_ckpt_ema_updates(const mdiff_ckpt *ck) { return ck->ema_updates; }

/* Reads a numeric attribute (converted to mtype) of `count` elements; user error when missing. */
static void attr_read(const mdiff_ckpt *ck, hid_t loc, const char *name, hid_t mtype, void *buf,
                      int max_count, int *count_out) {
    if (H5Aexists(loc, name) <= 0)
        mdiff_user_error("checkpoint %s lacks attribute '%s' (damaged, or not written by mdiff-train)",
                         ck->path, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    if (n < 1 || n > max_count || (cls != H5T_INTEGER && cls != H5T_FLOAT) || H5Aread(a, mtype, buf) < 0) {
        H5Aclose(a);
        mdiff_user_error("checkpoint %s: attribute '%s' has the wrong type or size", ck->path, name);
    }
    H5Aclose(a);
    if (count_out) *count_out = (int)n;
}

static void attr_read_str(const mdiff_ckpt *ck, hid_t loc, const char *name, char *buf, size_t cap) {
    if (H5Aexists(loc, name) <= 0)
        mdiff_user_error("checkpoint %s lacks attribute '%s' (damaged, or not written by mdiff-train)",
                         ck->path, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && H5Tget_size(t) <= cap;
    if (ok) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5Tget_size(t));
        memset(buf, 0, cap);
        ok = H5Aread(a, mt, buf) >= 0;
        H5Tclose(mt);
        buf[cap - 1] = '\0';
    }
    H5Tclose(t);
    H5Aclose(a);
    if (!ok) mdiff_user_error("checkpoint %s: attribute '%s' is not a string of at most %zu bytes",
                              ck->path, name, cap - 1);
}

mdiff_ckpt *mdiff_ckpt_open(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        mdiff_user_error("cannot open checkpoint %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        mdiff_user_error("checkpoint %s is %s (give a ckpt-*.h5 file written by mdiff-train)", path,
                         S_ISREG(st.st_mode) ? "empty" : "not a regular file");
    if (H5Fis_hdf5(path) <= 0)
        mdiff_user_error("checkpoint %s is not an HDF5 file (truncated or not a checkpoint)", path);
    mdiff_ckpt *ck = mdiff_calloc(1, sizeof *ck, "checkpoint handle");
    mdiff_strcpy(ck->path, sizeof ck->path, path);
    ck->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ck->file < 0)
        mdiff_user_error("cannot open checkpoint %s as HDF5 (truncated or damaged)", path);
    char fmt[64];
    htri_t has_format = H5Aexists(ck->file, "mdiff_format");
    if (has_format < 0) /* e.g. the root group's header fails its metadata checksum */
        mdiff_user_error("checkpoint %s is damaged: its root attributes cannot be read (use an "
                         "earlier checkpoint)", path);
    if (has_format == 0)
        mdiff_user_error("%s is not an mdiff checkpoint (no mdiff_format attribute)", path);
    attr_read_str(ck, ck->file, "mdiff_format", fmt, sizeof fmt);
    if (strncmp(fmt, "dataset/", 8) == 0)
        mdiff_user_error("%s is an mdiff data set, not a checkpoint (give a ckpt-*.h5 from a run "
                         "directory)", path);
    if (strcmp(fmt, CKPT_FORMAT) != 0)
        mdiff_user_error("%s has format '%s'; this mdiff reads '%s' (use the mdiff version that wrote it)",
                         path, fmt, CKPT_FORMAT);
    attr_read(ck, ck->file, "step", H5T_NATIVE_INT64, &ck->step, 1, NULL);
    attr_read(ck, ck->file, "world_size", H5T_NATIVE_INT64, &ck->world_size, 1, NULL);
    attr_read(ck, ck->file, "data_fingerprint", H5T_NATIVE_UINT32, &ck->fingerprint, 1, NULL);
    if (ck->step < 0 || ck->world_size < 1)
        mdiff_user_error("checkpoint %s: step %lld / world_size %lld out of range", path,
                         (long long)ck->step, (long long)ck->world_size);
    if (H5Lexists(ck->file, "state", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(ck->file, "state", H5P_DEFAULT);
        attr_read(ck, g, "nonfinite_skipped", H5T_NATIVE_INT64, &ck->nonfinite, 1, NULL);
        attr_read(ck, g, "ema_updates", H5T_NATIVE_INT64, &ck->ema_updates, 1, NULL);
        H5Gclose(g);
    }
    return ck;
}

void mdiff_ckpt_close(mdiff_ckpt *ck) {
    if (!ck) return;
    if (ck->file >= 0) H5Fclose(ck->file);
    free(ck);
}

void mdiff_ckpt_read_config(const mdiff_ckpt *ck, mdiff_config *cfg) {
    int n;
    const mdiff_field *f = mdiff_config_fields(&n);
    for (int i = 0; i < n; i++) {
        char *base = (char *)cfg + f[i].off;
        switch (f[i].type) {
        case MDIFF_F_I64: attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_INT64, base, 1, NULL); break;
        case MDIFF_F_INT:
        case MDIFF_F_FLAG: attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_INT, base, 1, NULL); break;
        case MDIFF_F_U64: attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_UINT64, base, 1, NULL); break;
        case MDIFF_F_F64: attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_DOUBLE, base, 1, NULL); break;
        case MDIFF_F_F32: attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_FLOAT, base, 1, NULL); break;
        case MDIFF_F_STR: attr_read_str(ck, ck->file, f[i].attr, base, f[i].size); break;
        case MDIFF_F_INTLIST: {
            int *count = (int *)((char *)cfg + f[i].count_off);
            attr_read(ck, ck->file, f[i].attr, H5T_NATIVE_INT, base, (int)f[i].size, count);
            if (*count == 1 && ((int *)base)[0] == 0) *count = 0;
            for (int k = 0; k < *count; k++)
                if (((int *)base)[k] < f[i].lo || ((int *)base)[k] > f[i].hi)
                    mdiff_user_error("checkpoint %s: attribute '%s' has an out-of-range entry",
                                     ck->path, f[i].attr);
            break;
        }
        }
        if (f[i].hi > f[i].lo || (f[i].type == MDIFF_F_INT && !f[i].opt)) {
            /* numbers as the option parser bounds them; in_ch/height/width (no option) >= 1 */
            double v = f[i].type == MDIFF_F_I64   ? (double)*(int64_t *)base
                       : f[i].type == MDIFF_F_U64 ? (double)*(uint64_t *)base
                       : f[i].type == MDIFF_F_F64 ? *(double *)base
                       : f[i].type == MDIFF_F_F32 ? (double)*(float *)base
                       : f[i].type == MDIFF_F_INTLIST ? f[i].lo
                                                      : (double)*(int *)base;
            double lo = f[i].hi > f[i].lo ? f[i].lo : 1, hi = f[i].hi > f[i].lo ? f[i].hi : 1e9;
            if (!(v >= lo && v <= hi))
                mdiff_user_error("checkpoint %s: attribute '%s' = %g is out of range [%g, %g] "
                                 "(damaged, or not written by mdiff-train)", ck->path, f[i].attr, v,
                                 lo, hi);
        }
        if (f[i].type == MDIFF_F_STR && !mdiff_field_choice_ok(&f[i], (const char *)cfg + f[i].off))
            mdiff_user_error("checkpoint %s: attribute '%s' = '%s' is not one of %s", ck->path,
                             f[i].attr, (const char *)cfg + f[i].off, f[i].choices);
    }
}

static void read_tensor(const mdiff_ckpt *ck, hid_t g, const char *group, const mdiff_param *p,
                        float *dst) {
    if (H5Lexists(g, p->name, H5P_DEFAULT) <= 0)
        mdiff_user_error("checkpoint %s lacks tensor /%s/%s (a checkpoint of another model? check "
                         "--arch/--ch/--mult/--attn)", ck->path, group, p->name);
    hid_t ds = H5Dopen2(g, p->name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    int ok = nd == p->ndim && nd <= 8;
    if (ok) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int d = 0; d < nd; d++) ok = ok && dims[d] == (hsize_t)p->shape[d];
    }
    H5Sclose(sp);
    if (!ok) {
        H5Dclose(ds);
        mdiff_user_error("checkpoint %s: tensor /%s/%s has the wrong shape for this model", ck->path,
                         group, p->name);
    }
    herr_t rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst + p->offset);
    H5Dclose(ds);
    if (rc < 0)
        mdiff_user_error("checkpoint %s: tensor /%s/%s cannot be read: checksum mismatch or damaged "
                         "file (use an earlier checkpoint)", ck->path, group, p->name);
}

void mdiff_ckpt_read_tensors(const mdiff_ckpt *ck, const mdiff_model *model, const char *group,
                             float *dst) {
    if (H5Lexists(ck->file, group, H5P_DEFAULT) <= 0 && strchr(group, '/') == NULL)
        mdiff_user_error("checkpoint %s lacks group /%s", ck->path, group);
    if (strchr(group, '/')) { /* "adam/m": check the parent first (H5Lexists needs it) */
        char parent[32];
        mdiff_snprintf(parent, sizeof parent, "%.*s", (int)(strchr(group, '/') - group), group);
        if (H5Lexists(ck->file, parent, H5P_DEFAULT) <= 0 || H5Lexists(ck->file, group, H5P_DEFAULT) <= 0)
            mdiff_user_error("checkpoint %s lacks group /%s", ck->path, group);
    }
    hid_t g = H5Gopen2(ck->file, group, H5P_DEFAULT);
    if (g < 0) mdiff_user_error("checkpoint %s: /%s is not a group", ck->path, group);
    H5G_info_t info;
    int nt = mdiff_model_num_tensors(model);
    if (H5Gget_info(g, &info) < 0 || info.nlinks != (hsize_t)nt) {
        H5Gclose(g);
        mdiff_user_error("checkpoint %s: /%s holds %llu tensors, this model has %d (a checkpoint of "
                         "another architecture?)", ck->path, group, (unsigned long long)info.nlinks, nt);
    }
    for (int i = 0; i < nt; i++) read_tensor(ck, g, group, mdiff_model_tensor(model, i), dst);
    H5Gclose(g);
}

static void read_i64_vec(const mdiff_ckpt *ck, const char *name, int64_t *dst) {
    hid_t ds = H5Lexists(ck->file, "state", H5P_DEFAULT) > 0 ? H5Dopen2(ck->file, name, H5P_DEFAULT) : -1;
    if (ds < 0) mdiff_user_error("checkpoint %s lacks %s", ck->path, name);
    hid_t sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    herr_t rc = n == ck->world_size ? H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) : -1;
    H5Dclose(ds);
    if (rc < 0) mdiff_user_error("checkpoint %s: %s is damaged or has the wrong size", ck->path, name);
}

void mdiff_ckpt_read_loader(const mdiff_ckpt *ck, int64_t *epoch, int64_t *cursor) {
    read_i64_vec(ck, "/state/loader_epoch", epoch);
    read_i64_vec(ck, "/state/loader_cursor", cursor);
}

int mdiff_ckpt_latest(const char *run_dir, char *path, size_t cap) {
    char p[MDIFF_PATH_MAX + 32];
    mdiff_snprintf(p, sizeof p, "%s/latest.h5", run_dir);
    struct stat st;
    if (lstat(p, &st) != 0) return 0;
    if (stat(p, &st) != 0)
        mdiff_user_error("%s points at a missing file (remove it, or resume from a ckpt-*.h5 with "
                         "--resume FILE)", p);
    mdiff_strcpy(path, cap, p);
    return 1;
}

void mdiff_ckpt_clean_tmp(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if ((strncmp(e->d_name, "ckpt-", 5) == 0 || strncmp(e->d_name, "latest.h5", 9) == 0 ||
             strncmp(e->d_name, "samples-", 8) == 0) && strstr(e->d_name, ".tmp.")) {
            char p[MDIFF_PATH_MAX + 300];
            snprintf(p, sizeof p, "%s/%s", run_dir, e->d_name);
            if (unlink(p) == 0) mdiff_log("removed leftover temporary file %s", p);
        }
    }
    closedir(d);
}
