/* data/write: writes an mdiff data set (one file or K shards) from rows in memory.
 * Every file goes to "<name>.tmp.<pid>" first and is renamed only when all of them are complete,
 * so a failure never leaves a partial data set; the error exit removes the temporaries.
 * Files use the HDF5 v1.10 format (metadata checksums), chunks of about 1 MiB along N. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"
#include "mdiff/common.h"
#include "mdiff/config.h"

/* Temporaries of a sharded write: more than common's registry holds, so removed by an error hook. */
static char **g_pending;
static int g_npending;
/* The file being written: closed by the error hook, because HDF5's own atexit close of a file
 * whose writes failed (EFBIG, ENOSPC) crashes in HDF5 1.10.8. */
static hid_t g_open_file = -1;

static void remove_pending(void) {
    if (g_open_file >= 0) H5Fclose(g_open_file);
    g_open_file = -1;
    for (int i = 0; i < g_npending; i++)
        if (g_pending[i]) unlink(g_pending[i]);
}

void mdiff_data_shard_name(char *dst, size_t cap, const char *prefix, int k, int shards) {
    mdiff_snprintf(dst, cap, "%s-%05d-of-%05d.h5", prefix, k, shards);
}

static int64_t row_bytes_of(const mdiff_data_content *ct) {
    int64_t vals = (int64_t)ct->c * ct->h * ct->w;
    return ct->is_images ? vals : 4 * vals;
}

uint32_t mdiff_data_fingerprint(const mdiff_data_content *ct) {
    uint32_t crc = mdiff_crc32(0, ct->data, (size_t)(ct->n * row_bytes_of(ct)));
    if (ct->labels) crc = mdiff_crc32(crc, ct->labels, (size_t)ct->n * sizeof(int32_t));
    return crc;
}

/* ---- attributes ------------------------------------------------------------------------------ */

static void attr_write(hid_t loc, const char *name, hid_t mtype, hid_t ftype, int64_t count,
                       const void *v) {
    hsize_t d = (hsize_t)count;
    hid_t sp = count == 0 ? MDIFF_H5(H5Screate(H5S_SCALAR), "scalar space")
                          : MDIFF_H5(H5Screate_simple(1, &d, NULL), "attribute space");
    hid_t a = MDIFF_H5(H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT), "attribute %s", name);
    MDIFF_H5(H5Awrite(a, mtype, v), "write attribute %s", name);
    H5Aclose(a);
    H5Sclose(sp);
}

static void attr_str(hid_t loc, const char *name, const char *v) {
    /* fixed-length, NUL-terminated ASCII: readable by h5dump, h5py (as bytes) and plain C */
    hid_t t = MDIFF_H5(H5Tcopy(H5T_C_S1), "string type");
    MDIFF_H5(H5Tset_size(t, strlen(v) + 1), "string size");
    MDIFF_H5(H5Tset_strpad(t, H5T_STR_NULLTERM), "string pad");
    attr_write(loc, name, t, t, 0, v);
    H5Tclose(t);
}

static void attr_i64(hid_t loc, const char *name, int64_t v) {
    attr_write(loc, name, H5T_NATIVE_INT64, H5T_STD_I64LE, 0, &v);
}

/* ---- one file -------------------------------------------------------------------------------- */

static void write_failed(const char *final, const char *tmp) {
    mdiff_user_error("cannot write %s (writing %s failed: disk full, quota or file size limit?): "
                     "free space or choose another --out",
                     final, tmp);
}

static void write_array(hid_t file, const char *name, hid_t mtype, hid_t ftype, int rank,
                        const hsize_t *dims, hsize_t chunk_rows, const void *buf, const char *final,
                        const char *tmp) {
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++) chunk[i] = dims[i];
    chunk[0] = chunk_rows < dims[0] ? chunk_rows : dims[0];
    hid_t sp = MDIFF_H5(H5Screate_simple(rank, dims, NULL), "dataspace of %s", name);
    hid_t dcpl = MDIFF_H5(H5Pcreate(H5P_DATASET_CREATE), "dcpl");
    MDIFF_H5(H5Pset_chunk(dcpl, rank, chunk), "chunk %s", name);
    /* no creation/modification times in the object headers: the same content makes the same
     * bytes (mdiff-sample --h5 is byte-identical over runs, ranks and threads) */
    MDIFF_H5(H5Pset_obj_track_times(dcpl, 0), "track times %s", name);
    hid_t d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) write_failed(final, tmp);
    if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) write_failed(final, tmp);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

static int64_t default_chunk_rows(const mdiff_data_content *ct) {
    int64_t r = MDIFF_DATA_CHUNK_BYTES / row_bytes_of(ct);
    return r < 1 ? 1 : r;
}

/* Rows [r0, r0 + rows) of ct as shard k of K (K = 1 for a single file). */
static void write_file(const char *tmp, const char *final, const mdiff_data_content *ct, int64_t r0,
                       int64_t rows, int k, int K, uint32_t fp) {
    hid_t fapl = MDIFF_H5(H5Pcreate(H5P_FILE_ACCESS), "fapl");
    MDIFF_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), "libver bounds");
    hid_t fcpl = MDIFF_H5(H5Pcreate(H5P_FILE_CREATE), "fcpl");
    MDIFF_H5(H5Pset_obj_track_times(fcpl, 0), "track times"); /* the root group's: see write_array */
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (f < 0) write_failed(final, tmp);
    g_open_file = f;
    H5Pclose(fapl);
    H5Pclose(fcpl);

    hsize_t chunk_rows = (hsize_t)(ct->chunk_rows > 0 ? ct->chunk_rows : default_chunk_rows(ct));
    int64_t rb = row_bytes_of(ct);
    const char *data = (const char *)ct->data + r0 * rb;
    if (ct->is_images) {
        hsize_t dims[4] = {(hsize_t)rows, (hsize_t)ct->c, (hsize_t)ct->h, (hsize_t)ct->w};
        write_array(f, "images", H5T_NATIVE_UINT8, H5T_STD_U8LE, 4, dims, chunk_rows, data, final, tmp);
    } else {
        hsize_t dims[2] = {(hsize_t)rows, (hsize_t)ct->c};
        write_array(f, "points", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dims, chunk_rows, data, final,
                    tmp);
    }
    if (ct->labels) {
        hsize_t dims[1] = {(hsize_t)rows};
        write_array(f, "labels", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, dims, 65536, ct->labels + r0,
                    final, tmp);
    }
    attr_str(f, "mdiff_format", MDIFF_DATA_FORMAT);
    attr_write(f, "fingerprint", H5T_NATIVE_UINT32, H5T_STD_U32LE, 0, &fp);
    attr_i64(f, "shard_index", k);
    attr_i64(f, "shard_count", K);
    attr_i64(f, "row_offset", r0);
    attr_i64(f, "total_rows", ct->n);
    if (ct->kind) attr_str(f, "kind", ct->kind);
    if (ct->split) attr_str(f, "split", ct->split);
    if (ct->has_seed) attr_write(f, "seed", H5T_NATIVE_UINT64, H5T_STD_U64LE, 0, &ct->seed);
    if (ct->n_scale > 0)
        attr_write(f, "scale", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, ct->n_scale, ct->scale);
    attr_str(f, "mdiff_version", MDIFF_VERSION);
    if (H5Fclose(f) < 0) write_failed(final, tmp); /* the hook retries the close */
    g_open_file = -1;
    /* durable before the rename makes it visible */
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) write_failed(final, tmp);
    close(fd);
}

/* The output's directory must exist and the temporary must be creatable: say so plainly. */
static void check_writable(const char *final, const char *tmp) {
    char dir[MDIFF_PATH_MAX];
    mdiff_strcpy(dir, sizeof dir, final);
    const char *d = dirname(dir);
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        mdiff_user_error("cannot write %s: directory %s does not exist (create it first)", final, d);
    if (stat(final, &st) == 0 && S_ISDIR(st.st_mode))
        mdiff_user_error("cannot write %s: it is a directory (choose a file name for --out)", final);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        mdiff_user_error("cannot write %s: %s (choose a writable --out)", final, strerror(errno));
    close(fd);
}

static void check_content(const mdiff_data_content *ct, int shards) {
    MDIFF_CHECK(ct->n >= 1 && ct->c >= 1 && ct->h >= 1 && ct->w >= 1 && ct->data,
                "bad content: n %lld, shape %d,%d,%d", (long long)ct->n, ct->c, ct->h, ct->w);
    MDIFF_CHECK(ct->is_images || (ct->h == 1 && ct->w == 1), "points must have h = w = 1");
    MDIFF_CHECK(ct->n_scale >= 0 && ct->n_scale <= 8, "n_scale %d", ct->n_scale);
    if (shards < 0 || shards > 99999)
        mdiff_user_error("--shards %d: give a count from 1 to 99999", shards);
    if (shards > ct->n)
        mdiff_user_error("--shards %d is more than the %lld rows: every shard needs at least one row",
                         shards, (long long)ct->n);
}

void mdiff_data_write(const char *out, int shards, const mdiff_data_content *ct) {
    check_content(ct, shards);
    int K = shards == 0 ? 1 : shards;
    uint32_t fp = mdiff_data_fingerprint(ct);
    char **finals = mdiff_calloc((size_t)K, sizeof(char *), "shard names");
    g_pending = mdiff_calloc((size_t)K, sizeof(char *), "shard names");
    g_npending = K;
    mdiff_set_error_hook(remove_pending);
    for (int k = 0; k < K; k++) {
        char name[MDIFF_PATH_MAX], tmp[MDIFF_PATH_MAX + 32];
        if (shards == 0)
            mdiff_strcpy(name, sizeof name, out);
        else
            mdiff_data_shard_name(name, sizeof name, out, k, K);
        mdiff_snprintf(tmp, sizeof tmp, "%s.tmp.%ld", name, (long)getpid());
        finals[k] = strdup(name);
        g_pending[k] = strdup(tmp); /* before creating it, so an error exit removes it */
        MDIFF_CHECK(finals[k] && g_pending[k], "strdup");
        check_writable(name, tmp);
        int64_t lo, hi;
        mdiff_shard_range(ct->n, K, k, &lo, &hi);
        write_file(tmp, name, ct, lo, hi - lo, k, K, fp);
    }
    for (int k = 0; k < K; k++) {
        if (rename(g_pending[k], finals[k]) != 0)
            mdiff_user_error("cannot rename %s to %s: %s", g_pending[k], finals[k], strerror(errno));
        free(g_pending[k]);
        g_pending[k] = NULL;
    }
    mdiff_set_error_hook(NULL);
    /* make the renames durable too */
    char dir[MDIFF_PATH_MAX];
    mdiff_strcpy(dir, sizeof dir, finals[0]);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    for (int k = 0; k < K; k++) free(finals[k]);
    free(finals);
    free(g_pending);
    g_pending = NULL;
    g_npending = 0;
}
