/* data_internal: the dataset struct and the helpers shared by the files of src/data/ (not public API). */
#ifndef MDIFF_DATA_INTERNAL_H
#define MDIFF_DATA_INTERNAL_H

#include <hdf5.h>
#include <stdint.h>

#include "mdiff/data.h"

typedef struct {
    char *path;
    int64_t row_offset, rows;  /* global rows of this file in the data set */
    int64_t rec_offset;        /* recorded row_offset within its shard set */
    int shard_index, shard_count;
    int64_t total_rows;        /* of the set the file belongs to */
    uint32_t fingerprint;
    int64_t chunk_rows;
    int group;                 /* files of one single file / shard set share a group number */
} ds_file;

struct mdiff_dataset {
    char *spec;
    int nfiles;
    ds_file *files;
    int is_images, has_labels;
    int c, h, w;
    int64_t n, row_bytes;      /* stored bytes per row: C*H*W or 4*D */
    uint32_t fingerprint;
    int ngroups;
    char kind[64];
    int n_scale;
    double scale[8];
    /* the one file kept open for reading (opened on demand, closed by close) */
    int open_idx;
    hid_t fid, did, lid;
    /* I/O counters (tests) */
    int64_t n_reads, rows_read;
};

/* Raw stored bytes of rows [lo, lo + count) into dst (row_bytes each), one hyperslab read per
 * file touched. */
void ds_read_raw(mdiff_dataset *ds, int64_t lo, int64_t count, void *dst);
/* Stored bytes of labels [lo, lo + count) (int32). */
void ds_read_labels_raw(mdiff_dataset *ds, int64_t lo, int64_t count, int32_t *dst);

#endif
