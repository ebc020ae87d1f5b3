/* data/read: reading an opened data set by global row index (hyperslab reads from whichever files
 * hold the rows, one open file cached), the accessors, the full verification pass of
 * `mdiff-data info` (fingerprints recomputed, value ranges) and closing. */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "mdiff/common.h"

int mdiff_dataset_is_images(const mdiff_dataset *ds) { return ds->is_images; }
int mdiff_dataset_has_labels(const mdiff_dataset *ds) { return ds->has_labels; }
int64_t mdiff_dataset_rows(const mdiff_dataset *ds) { return ds->n; }
int64_t mdiff_dataset_row_floats(const mdiff_dataset *ds) {
    return (int64_t)ds->c * ds->h * ds->w;
}
void mdiff_dataset_shape(const mdiff_dataset *ds, int *c, int *h, int *w) {
    *c = ds->c;
    *h = ds->h;
    *w = ds->w;
}
uint32_t mdiff_dataset_fingerprint(const mdiff_dataset *ds) { return ds->fingerprint; }
const char *mdiff_dataset_spec(const mdiff_dataset *ds) { return ds->spec; }
const char *mdiff_dataset_kind(const mdiff_dataset *ds) { return ds->kind; }
int mdiff_dataset_scale(const mdiff_dataset *ds, double *scale, int cap) {
    int n = ds->n_scale < cap ? ds->n_scale : cap;
    for (int i = 0; i < n; i++) scale[i] = ds->scale[i];
    return ds->n_scale;
}
int mdiff_dataset_nfiles(const mdiff_dataset *ds) { return ds->nfiles; }

void mdiff_dataset_file(const mdiff_dataset *ds, int i, mdiff_dataset_file_info *out) {
    MDIFF_CHECK(i >= 0 && i < ds->nfiles, "file %d of %d", i, ds->nfiles);
    const ds_file *f = &ds->files[i];
    out->path = f->path;
    out->row_offset = f->row_offset;
    out->rows = f->rows;
    out->shard_index = f->shard_index;
    out->shard_count = f->shard_count;
    out->fingerprint = f->fingerprint;
    out->chunk_rows = f->chunk_rows;
}

static void close_current(mdiff_dataset *ds) {
    if (ds->lid >= 0) H5Dclose(ds->lid);
    if (ds->did >= 0) H5Dclose(ds->did);
    if (ds->fid >= 0) H5Fclose(ds->fid);
    ds->lid = ds->did = ds->fid = -1;
    ds->open_idx = -1;
}

void mdiff_dataset_close(mdiff_dataset *ds) {
    if (!ds) return;
    close_current(ds);
    for (int i = 0; i < ds->nfiles; i++) free(ds->files[i].path);
    free(ds->files);
    free(ds->spec);
    free(ds);
}

/* Files were validated at open; failing now means they changed or vanished under us. */
static void ensure_open(mdiff_dataset *ds, int i) {
    if (ds->open_idx == i) return;
    close_current(ds);
    const char *p = ds->files[i].path;
    ds->fid = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->fid < 0) mdiff_user_error("cannot reopen data set file %s: was it moved or changed?", p);
    ds->did = MDIFF_H5(H5Dopen2(ds->fid, ds->is_images ? "images" : "points", H5P_DEFAULT),
                       "open data of %s", p);
    if (ds->has_labels) ds->lid = MDIFF_H5(H5Dopen2(ds->fid, "labels", H5P_DEFAULT), "labels of %s", p);
    ds->open_idx = i;
}

/* The file holding global row g (binary search over the row offsets). */
static int file_of(const mdiff_dataset *ds, int64_t g) {
    int lo = 0, hi = ds->nfiles - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ds->files[mid].row_offset <= g)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Rows [lo, lo + count) of dataset `which` (data or labels) into dst, one read per file touched. */
static void read_span(mdiff_dataset *ds, int labels, int64_t lo, int64_t count, void *dst) {
    MDIFF_CHECK(lo >= 0 && count >= 0 && lo + count <= ds->n, "rows [%lld, +%lld) outside [0, %lld)",
                (long long)lo, (long long)count, (long long)ds->n);
    MDIFF_CHECK(!labels || ds->has_labels, "labels requested from a data set without /labels");
    char *out = dst;
    int64_t rb = labels ? 4 : ds->row_bytes;
    int rank = labels ? 1 : ds->is_images ? 4 : 2;
    hid_t mtype = labels ? H5T_NATIVE_INT32 : ds->is_images ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    while (count > 0) {
        int i = file_of(ds, lo);
        const ds_file *f = &ds->files[i];
        int64_t r0 = lo - f->row_offset, n = f->rows - r0 < count ? f->rows - r0 : count;
        ensure_open(ds, i);
        hid_t d = labels ? ds->lid : ds->did;
        hsize_t start[4] = {(hsize_t)r0, 0, 0, 0};
        hsize_t cnt[4] = {(hsize_t)n, (hsize_t)ds->c, (hsize_t)ds->h, (hsize_t)ds->w};
        hid_t fsp = MDIFF_H5(H5Dget_space(d), "space of %s", f->path);
        MDIFF_H5(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL), "select rows");
        hid_t msp = MDIFF_H5(H5Screate_simple(rank, cnt, NULL), "memory space");
        if (H5Dread(d, mtype, msp, fsp, H5P_DEFAULT, out) < 0)
            mdiff_user_error("cannot read rows %lld..%lld of %s: the file is damaged (remake it)",
                             (long long)r0, (long long)(r0 + n - 1), f->path);
        H5Sclose(msp);
        H5Sclose(fsp);
        ds->n_reads++;
        ds->rows_read += n;
        out += n * rb;
        lo += n;
        count -= n;
    }
}

void ds_read_raw(mdiff_dataset *ds, int64_t lo, int64_t count, void *dst) {
    read_span(ds, 0, lo, count, dst);
}

void ds_read_labels_raw(mdiff_dataset *ds, int64_t lo, int64_t count, int32_t *dst) {
    read_span(ds, 1, lo, count, dst);
}

void mdiff_data_read_labels(mdiff_dataset *ds, int64_t lo, int64_t count, int32_t *out) {
    read_span(ds, 1, lo, count, out);
}

void mdiff_data_read_rows(mdiff_dataset *ds, int64_t lo, int64_t count, float *out) {
    if (!ds->is_images) {
        read_span(ds, 0, lo, count, out);
        return;
    }
    int64_t rf = ds->row_bytes, blk = MDIFF_DATA_CHUNK_BYTES / rf > 0 ? MDIFF_DATA_CHUNK_BYTES / rf : 1;
    if (blk > count) blk = count;
    uint8_t *buf = mdiff_malloc((size_t)(blk * rf), "image rows");
    for (int64_t r = 0; r < count; r += blk) {
        int64_t n = count - r < blk ? count - r : blk;
        read_span(ds, 0, lo + r, n, buf);
        float *o = out + r * rf;
        for (int64_t i = 0; i < n * rf; i++) o[i] = (float)buf[i] / 127.5f - 1.0f;
    }
    free(buf);
}

/* ---- verification ---------------------------------------------------------------------------- */

/* Pass over rows [lo, lo + n) of data (or labels) in ~4 MiB blocks: CRC and value range. */
static uint32_t scan(mdiff_dataset *ds, int labels, int64_t lo, int64_t n, uint32_t crc, double *vmin,
                     double *vmax) {
    int64_t rb = labels ? 4 : ds->row_bytes;
    int64_t blk = (4 * MDIFF_DATA_CHUNK_BYTES) / rb > 0 ? (4 * MDIFF_DATA_CHUNK_BYTES) / rb : 1;
    if (blk > n) blk = n;
    void *buf = mdiff_malloc((size_t)(blk * rb), "verification block");
    for (int64_t r = 0; r < n; r += blk) {
        int64_t m = n - r < blk ? n - r : blk;
        read_span(ds, labels, lo + r, m, buf);
        crc = mdiff_crc32(crc, buf, (size_t)(m * rb));
        int64_t nv = m * rb / (labels || !ds->is_images ? 4 : 1);
        for (int64_t i = 0; i < nv; i++) {
            double v = labels ? (double)((int32_t *)buf)[i]
                       : ds->is_images ? (double)((uint8_t *)buf)[i] : (double)((float *)buf)[i];
            if (v < *vmin) *vmin = v;
            if (v > *vmax) *vmax = v;
        }
    }
    free(buf);
    return crc;
}

void mdiff_dataset_verify(mdiff_dataset *ds, mdiff_dataset_stats *st) {
    st->vmin = 1e300;
    st->vmax = -1e300;
    double lmin = 1e300, lmax = -1e300;
    for (int i = 0; i < ds->nfiles;) {
        int j = i;
        while (j < ds->nfiles && ds->files[j].group == ds->files[i].group) j++;
        int64_t lo = ds->files[i].row_offset, n = ds->files[j - 1].row_offset + ds->files[j - 1].rows - lo;
        uint32_t crc = scan(ds, 0, lo, n, 0, &st->vmin, &st->vmax);
        if (ds->has_labels) crc = scan(ds, 1, lo, n, crc, &lmin, &lmax);
        if (crc != ds->files[i].fingerprint)
            mdiff_user_error_all("fingerprint mismatch in %s%s: recorded %08x, content gives %08x: the "
                                 "data were changed or damaged (remake them with mdiff-data)",
                                 ds->files[i].path, j - i > 1 ? " and the rest of its shard set" : "",
                                 ds->files[i].fingerprint, crc);
        i = j;
    }
    st->lmin = ds->has_labels ? (int64_t)lmin : 0;
    st->lmax = ds->has_labels ? (int64_t)lmax : 0;
    st->fingerprint = ds->fingerprint;
}
