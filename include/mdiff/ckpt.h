/* ckpt: checkpoints in HDF5 (DESIGN.md §4) — atomic write, read, validation, config <-> attributes.
 *
 * Layout (v1.10 file format: metadata checksums; every tensor Fletcher32-checksummed):
 *   /                  attributes: mdiff_format = "checkpoint/1", step, world_size,
 *                      data_fingerprint, every config field (config.h's table) as its own
 *                      attribute, provenance (mdiff_version, git_hash, command_line, libraries)
 *   /params/<name>     float32, the PyTorch twin's state_dict key and shape
 *   /ema/<name>        EMA of the parameters
 *   /adam/m/<name>     AdamW first moments
 *   /adam/v/<name>     AdamW second moments
 *   /state/loader_epoch, /state/loader_cursor   int64 (world_size): each rank's data position
 *                      (Philox is counter-based: with seed and step it is the whole RNG state)
 *   /state             attributes: nonfinite_skipped (total), ema_updates
 * Files are RUN_DIR/ckpt-%08d.h5, written as "<name>.tmp.<pid>", fsynced, renamed, the directory
 * fsynced; RUN_DIR/latest.h5 is a relative symlink replaced by rename. */
#ifndef MDIFF_CKPT_H
#define MDIFF_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "mdiff/config.h"
#include "mdiff/model.h"

typedef struct {
    const mdiff_config *cfg;
    int64_t step;               /* optimizer steps completed */
    int world_size;
    uint32_t data_fingerprint;
    const char *command_line;
    const mdiff_model *model;
    const float *params, *ema, *adam_m, *adam_v;
    const int64_t *loader_epoch, *loader_cursor; /* world_size entries each */
    int64_t nonfinite_skipped;
    int64_t ema_updates;
} mdiff_ckpt_save;

/* Writes RUN_DIR/ckpt-%08d.h5 atomically, points latest.h5 at it and keeps the newest `keep`
 * checkpoints. Returns 0 on success. On failure (disk full, file size limit, unwritable directory)
 * prints one warning naming the cause, removes its temporary file, leaves every earlier checkpoint
 * and latest.h5 untouched, and returns -1: the caller decides whether to go on. */
int mdiff_ckpt_write(const char *run_dir, const mdiff_ckpt_save *s, int64_t keep, char *path_out,
                     size_t cap);

typedef struct mdiff_ckpt mdiff_ckpt;
/* Opens and validates format and attributes; any problem is a user error naming the file. */
mdiff_ckpt *mdiff_ckpt_open(const char *path);
void mdiff_ckpt_close(mdiff_ckpt *ck);
const char *mdiff_ckpt_path(const mdiff_ckpt *ck);
int64_t mdiff_ckpt_step(const mdiff_ckpt *ck);
int mdiff_ckpt_world_size(const mdiff_ckpt *ck);
uint32_t mdiff_ckpt_fingerprint(const mdiff_ckpt *ck);
int64_t mdiff_ckpt_nonfinite(const mdiff_ckpt *ck);
int64_t mdiff_ckpt_ema_updates(const mdiff_ckpt *ck);
/* Every config field from the attributes (cfg should hold defaults first). */
void mdiff_ckpt_read_config(const mdiff_ckpt *ck, mdiff_config *cfg);
/* Reads group "params" | "ema" | "adam/m" | "adam/v" into the flat buffer laid out by `model`;
 * a missing tensor, an extra tensor, a wrong shape or a checksum failure is a user error. */
void mdiff_ckpt_read_tensors(const mdiff_ckpt *ck, const mdiff_model *model, const char *group,
                             float *dst);
/* Reads the per-rank loader state (world_size entries each). */
void mdiff_ckpt_read_loader(const mdiff_ckpt *ck, int64_t *epoch, int64_t *cursor);

/* Resolves RUN_DIR/latest.h5; returns 1 and the path when it exists, else 0. */
int mdiff_ckpt_latest(const char *run_dir, char *path, size_t cap);
/* Removes temporaries that a killed writer left in run_dir (ckpt-*.h5.tmp.*, latest.h5.tmp.*). */
void mdiff_ckpt_clean_tmp(const char *run_dir);
/* "HDF5 1.10.8; Open MPI v4.1.4 ...; OpenBLAS ...; libpng 1.6.39; zlib 1.2.13" */
void mdiff_library_versions(char *buf, size_t cap);

#endif
