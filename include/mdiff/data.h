/* data: mdiff's HDF5 data sets (DESIGN.md §4, schema in datasets/README.md).
 * - open a data set given as a file, a comma-separated list, a directory (all *.h5 in name order)
 *   or a shard prefix (PREFIX-00000-of-0000K.h5 ...), validating every file and the shard sets;
 * - rank r of P owns the contiguous rows [r*N/P, (r+1)*N/P) and reads only those (hyperslabs from
 *   whichever files hold them), held in memory within a budget, else streamed in chunk-aligned
 *   blocks; a per-epoch Philox shuffle and a batch iterator giving float32 in [-1, 1] (images)
 *   or the stored values (points), with optional horizontal flips;
 * - the writer used by mdiff-data (temporary names renamed when complete, CRC32 fingerprint)
 *   and the two sources it converts: Fashion-MNIST IDX files and the 2-D toy sets.
 * Errors in user input are user errors (one line naming the file and the fix, exit 1). */
#ifndef MDIFF_DATA_H
#define MDIFF_DATA_H

#include <stddef.h>
#include <stdint.h>

#define MDIFF_DATA_FORMAT "dataset/1"
/* Default per-rank memory budget for holding a rank's rows (bytes). */
#define MDIFF_DATA_DEFAULT_BUDGET ((int64_t)2 << 30)
/* Target chunk size of /images and /points along N. */
#define MDIFF_DATA_CHUNK_BYTES ((int64_t)1 << 20)

/* ---- reading -------------------------------------------------------------------------------- */

typedef struct mdiff_dataset mdiff_dataset;

/* spec: a file, several comma-separated entries, a directory (all *.h5 in name order), or a shard
 * prefix PREFIX (PREFIX-00000-of-0000K.h5 ...); each comma entry may itself be any of these.
 * Validates every file (schema, dtypes, shapes, finite /points, shard sets complete and in order);
 * user error on bad input. The files are opened on demand; mdiff_dataset_close closes them all. */
mdiff_dataset *mdiff_dataset_open(const char *spec);
void mdiff_dataset_close(mdiff_dataset *ds);
/* Groups paths given as separate arguments into specs for mdiff_dataset_open, for commands that
 * take several data sets (mdiff-data info): a shell glob such as PREFIX-*.h5 gives one argument
 * per shard, in whatever order the shell sorts them. Arguments named PREFIX-KKKKK-of-NNNNN.h5
 * with the same PREFIX and NNNNN form one spec, their paths comma-separated in shard order, at the
 * place of the first of them; every other argument (a file, a comma list, a directory, a prefix)
 * is a spec of its own. A set with a shard missing from the arguments, or a shard given twice, is a
 * user error naming the missing (or repeated) file and the fix; the files' contents are validated
 * later by mdiff_dataset_open. Returns the number of specs; free each of *specs, then *specs. */
int mdiff_data_group_args(int n, char *const *args, char ***specs);

int mdiff_dataset_is_images(const mdiff_dataset *ds); /* else points */
int mdiff_dataset_has_labels(const mdiff_dataset *ds);
int64_t mdiff_dataset_rows(const mdiff_dataset *ds);
int64_t mdiff_dataset_row_floats(const mdiff_dataset *ds); /* C*H*W or D */
void mdiff_dataset_shape(const mdiff_dataset *ds, int *c, int *h, int *w); /* points: D,1,1 */
/* One data set made by one mdiff-data run (single file or complete shard set): its recorded CRC32.
 * Several independent files: CRC32 of their fingerprints (uint32 little-endian, in order). */
uint32_t mdiff_dataset_fingerprint(const mdiff_dataset *ds);
const char *mdiff_dataset_spec(const mdiff_dataset *ds);
const char *mdiff_dataset_kind(const mdiff_dataset *ds); /* attribute `kind` of the first file, or "" */
/* Attribute `scale` (toy sets: stored = raw * scale per axis); returns the count (0: none). */
int mdiff_dataset_scale(const mdiff_dataset *ds, double *scale, int cap);

/* The files, in global row order. */
typedef struct {
    const char *path;
    int64_t row_offset, rows; /* global rows [row_offset, row_offset + rows) */
    int shard_index, shard_count;
    uint32_t fingerprint;     /* recorded: of the whole set the file belongs to */
    int64_t chunk_rows;       /* rows per chunk (the streaming block) */
} mdiff_dataset_file_info;
int mdiff_dataset_nfiles(const mdiff_dataset *ds);
void mdiff_dataset_file(const mdiff_dataset *ds, int i, mdiff_dataset_file_info *out);

/* Rows [lo, lo + count) as float32, row-major (count, row_floats): images x/127.5 - 1, points as
 * stored. For validation sets and tests; reads in bounded blocks. */
void mdiff_data_read_rows(mdiff_dataset *ds, int64_t lo, int64_t count, float *out);
/* Labels [lo, lo + count) (internal error if the data set has none: check has_labels). */
void mdiff_data_read_labels(mdiff_dataset *ds, int64_t lo, int64_t count, int32_t *out);

/* Reads everything once: recomputes the fingerprint of every single file / shard set and compares
 * it with the recorded one (mismatch: user error), and gathers the value range. */
typedef struct {
    double vmin, vmax;        /* data values as stored (uint8 or float32) */
    int64_t lmin, lmax;       /* labels (when present) */
    uint32_t fingerprint;     /* = mdiff_dataset_fingerprint, now verified */
} mdiff_dataset_stats;
void mdiff_dataset_verify(mdiff_dataset *ds, mdiff_dataset_stats *st);

/* Rank r of P owns global rows [r*N/P, (r+1)*N/P) (exact 64-bit math). */
void mdiff_shard_range(int64_t n, int p, int r, int64_t *lo, int64_t *hi);

/* ---- batches -------------------------------------------------------------------------------- */

typedef struct mdiff_loader mdiff_loader;

/* The loader of rank `rank` of `nranks` over ds (ds must outlive it). Fewer rows than ranks, or flip
 * on /points, is a user error. mem_budget_bytes <= 0: MDIFF_DATA_DEFAULT_BUDGET. When the rank's rows
 * fit the budget they are read once and held (uint8 or float32) and each epoch is a uniform shuffle
 * of them; otherwise the rows are streamed: each epoch visits the chunk-aligned blocks in a
 * shuffled order, in windows of as many blocks as fit the budget, rows shuffled within a window
 * (every row still exactly once per epoch; each block read once per epoch with one HDF5 read).
 * Shuffles: Philox(seed, MDIFF_RNG_SHUFFLE, step = epoch, index = the rank's first row). */
mdiff_loader *mdiff_loader_create(mdiff_dataset *ds, int rank, int nranks, uint64_t seed, int flip,
                                  int64_t mem_budget_bytes);
/* The next b rows of this rank's shuffled order (crossing epochs: reshuffle at each epoch end),
 * out: (b, row_floats) float32, images x/127.5 - 1, points as stored. flip: sample j is mirrored
 * horizontally when the first uniform of Philox(seed, MDIFF_RNG_FLIP, step, g0 + j) is < 0.5.
 * rows_out (may be NULL) receives the global row index of each sample. */
void mdiff_loader_next(mdiff_loader *L, float *out, int64_t *rows_out, int b, uint64_t step,
                       int64_t g0);
/* Resumable state: epoch (from 0) and rows consumed within it (0..rows of the rank). */
void mdiff_loader_get_state(const mdiff_loader *L, int64_t *epoch, int64_t *cursor);
void mdiff_loader_set_state(mdiff_loader *L, int64_t epoch, int64_t cursor);
void mdiff_loader_range(const mdiff_loader *L, int64_t *lo, int64_t *hi);
int mdiff_loader_is_resident(const mdiff_loader *L);
/* I/O done so far for this loader: HDF5 reads and rows read (tests check block reads). */
void mdiff_loader_io(const mdiff_loader *L, int64_t *reads, int64_t *rows);
void mdiff_loader_free(mdiff_loader *L);

/* ---- writing (mdiff-data, tests) ------------------------------------------------------------ */

typedef struct {
    int is_images;            /* 1: /images uint8 (N,C,H,W); 0: /points float32 (N,D) */
    int64_t n;
    int c, h, w;              /* points: c = D, h = w = 1 */
    const void *data;         /* n rows, row-major */
    const int32_t *labels;    /* NULL: no /labels */
    const char *kind;         /* attribute `kind` (e.g. "fashion-mnist", "moons"); NULL: omitted */
    const char *split;        /* attribute `split`; NULL: omitted */
    int has_seed;             /* attribute `seed` when set */
    uint64_t seed;
    int n_scale;              /* attribute `scale` (float64[n_scale]) when > 0 */
    const double *scale;
    int64_t chunk_rows;       /* rows per chunk; 0: about MDIFF_DATA_CHUNK_BYTES */
} mdiff_data_content;

/* shards == 0: one file named `out`; shards = K >= 1: `out` is a prefix and K files
 * out-00000-of-0000K.h5 ... hold consecutive row ranges (mdiff_shard_range). Everything is written
 * to temporary names and renamed only when all files are complete; an error exit removes them. */
void mdiff_data_write(const char *out, int shards, const mdiff_data_content *ct);
/* "PREFIX-%05d-of-%05d.h5" */
void mdiff_data_shard_name(char *dst, size_t cap, const char *prefix, int k, int shards);
/* CRC32 of the content in global order: data bytes, then label bytes (little-endian). */
uint32_t mdiff_data_fingerprint(const mdiff_data_content *ct);

/* ---- sources -------------------------------------------------------------------------------- */

/* Reads DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (split "train" or "test"), validating
 * gzip integrity, IDX magic, dimensions and exact sizes. *images: (n, h, w) uint8, *labels: n int32
 * in 0..9; free both with free(). */
void mdiff_data_load_fashion_mnist(const char *dir, const char *split, uint8_t **images,
                                   int32_t **labels, int64_t *n, int *h, int *w);

/* Toy 2-D sets (DESIGN.md, issue 2): "gaussians8", "swissroll", "moons". Returns (n, 2) float32
 * already scaled to unit standard deviation per axis; scale[a] = 1/std_a (stored = raw * scale).
 * Point i draws from Philox(seed, MDIFF_RNG_TOY, step = kind number, index = i). Free with free(). */
int mdiff_data_toy_kind_ok(const char *kind);
float *mdiff_data_make_toy(const char *kind, int64_t n, uint64_t seed, double scale[2]);

#endif
