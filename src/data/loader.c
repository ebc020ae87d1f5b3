/* data/loader: a rank's share of the rows and the shuffled batch iterator over it.
 * Resident mode (rows fit the budget): rows read once, each epoch a uniform shuffle.
 * Streaming mode: the rank's range is cut into blocks at chunk boundaries (each block lies in one
 * chunk of one file, so it is one HDF5 read); each epoch shuffles the block order, then takes
 * windows of W blocks (W * block bytes <= budget), reads a window and shuffles its rows.
 * All shuffles of an epoch come from one Philox stream keyed by (seed, SHUFFLE, epoch, lo), so a
 * state (epoch, cursor) determines everything that follows. */
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "mdiff/common.h"
#include "mdiff/rng.h"

void mdiff_shard_range(int64_t n, int p, int r, int64_t *lo, int64_t *hi) {
    MDIFF_CHECK(n >= 0 && p >= 1 && r >= 0 && r < p, "shard range: n %lld, p %d, r %d", (long long)n, p, r);
    /* floor(r*n/p) without overflow: r*n = r*q*p + r*rem with r*rem < p*p */
    int64_t q = n / p, rem = n % p;
    *lo = (int64_t)r * q + ((int64_t)r * rem) / p;
    *hi = (int64_t)(r + 1) * q + ((int64_t)(r + 1) * rem) / p;
}

struct mdiff_loader {
    mdiff_dataset *ds;
    uint64_t seed;
    int flip, resident;
    int64_t lo, hi, m;        /* owned global rows [lo, hi), m = hi - lo */
    int64_t rb, rf;           /* stored bytes and floats per row */
    uint8_t *buf;             /* resident: m rows; streaming: one window */
    int64_t *order;           /* shuffled slots of the current window */
    int64_t *slot_row;        /* streaming: global row of each buffer slot */
    int64_t nb, W;            /* blocks, blocks per window */
    int64_t *bstart;          /* nb + 1 block boundaries (global rows) */
    int64_t *bperm;           /* this epoch's block order */
    int64_t epoch, cursor;    /* rows consumed in the epoch */
    int64_t win, win_start, wrows;
    int loaded;
    mdiff_rng rng;
    int64_t reads0, rows0;    /* ds I/O counters when created */
};

/* Blocks of [lo, hi): boundaries at file starts and at each file's chunk boundaries. */
static void make_blocks(mdiff_loader *L) {
    mdiff_dataset *ds = L->ds;
    int64_t cap = 16, nb = 0;
    int64_t *b = mdiff_malloc((size_t)cap * sizeof(int64_t), "blocks");
    b[0] = L->lo;
    for (int i = 0; i < ds->nfiles; i++) {
        const ds_file *f = &ds->files[i];
        for (int64_t s = f->row_offset; s < f->row_offset + f->rows; s += f->chunk_rows) {
            int64_t e = s + f->chunk_rows < f->row_offset + f->rows ? s + f->chunk_rows : f->row_offset + f->rows;
            if (e <= L->lo || s >= L->hi) continue;
            if (nb + 2 > cap) {
                cap *= 2;
                int64_t *nbuf = realloc(b, (size_t)cap * sizeof(int64_t));
                MDIFF_CHECK(nbuf != NULL, "out of memory for blocks");
                b = nbuf;
            }
            b[++nb] = e < L->hi ? e : L->hi;
        }
    }
    MDIFF_CHECK(nb >= 1 && b[nb] == L->hi, "blocks do not cover [%lld, %lld)", (long long)L->lo,
                (long long)L->hi);
    L->nb = nb;
    L->bstart = b;
}

static void iota_shuffle(int64_t *v, int64_t n, mdiff_rng *r) {
    for (int64_t i = 0; i < n; i++) v[i] = i;
    mdiff_rng_shuffle_i64(v, n, r);
}

static void begin_epoch(mdiff_loader *L) {
    /* the counter index is 32 bits: beyond 2^32 rows, ranks share streams over different rows */
    mdiff_rng_init(&L->rng, L->seed, MDIFF_RNG_SHUFFLE, (uint64_t)L->epoch, (uint64_t)L->lo & 0xFFFFFFFFu);
    L->cursor = 0;
    L->win_start = 0;
    if (L->resident) {
        iota_shuffle(L->order, L->m, &L->rng);
        L->win = 0;
        L->wrows = L->m;
    } else {
        iota_shuffle(L->bperm, L->nb, &L->rng);
        L->win = -1;
        L->wrows = 0;
        L->loaded = 0;
    }
}

/* Slots of the current window (blocks bperm[win*W ..]) and, when `load`, their rows: one read per
 * block. Returns the window's row count. */
static int64_t fill_window(mdiff_loader *L, int load) {
    int64_t k0 = L->win * L->W, k1 = k0 + L->W < L->nb ? k0 + L->W : L->nb;
    int64_t s = 0;
    for (int64_t k = k0; k < k1; k++) {
        int64_t b = L->bperm[k], a = L->bstart[b], n = L->bstart[b + 1] - a;
        for (int64_t j = 0; j < n; j++) L->slot_row[s + j] = a + j;
        if (load) ds_read_raw(L->ds, a, n, L->buf + s * L->rb);
        s += n;
    }
    L->loaded = load;
    return s;
}

/* Moves to the next window and draws its row shuffle; reads it when `load`. */
static void next_window(mdiff_loader *L, int load) {
    L->win++;
    L->win_start += L->wrows;
    L->wrows = fill_window(L, load);
    iota_shuffle(L->order, L->wrows, &L->rng);
}

mdiff_loader *mdiff_loader_create(mdiff_dataset *ds, int rank, int nranks, uint64_t seed, int flip,
                                  int64_t mem_budget_bytes) {
    MDIFF_CHECK(nranks >= 1 && rank >= 0 && rank < nranks, "rank %d of %d", rank, nranks);
    if (ds->n < nranks)
        mdiff_user_error_all("data set %s has %lld rows, fewer than the %d ranks: run with at most %lld "
                             "ranks or use more data",
                             ds->spec, (long long)ds->n, nranks, (long long)ds->n);
    if (flip && !ds->is_images)
        mdiff_user_error_all("--flip needs images but %s holds /points: drop --flip", ds->spec);
    if (mem_budget_bytes <= 0) mem_budget_bytes = MDIFF_DATA_DEFAULT_BUDGET;
    mdiff_loader *L = mdiff_calloc(1, sizeof *L, "loader");
    L->ds = ds;
    L->seed = seed;
    L->flip = flip;
    mdiff_shard_range(ds->n, nranks, rank, &L->lo, &L->hi);
    L->m = L->hi - L->lo;
    L->rb = ds->row_bytes;
    L->rf = mdiff_dataset_row_floats(ds);
    L->reads0 = ds->n_reads;
    L->rows0 = ds->rows_read;
    L->resident = L->m * L->rb <= mem_budget_bytes;
    if (L->resident) {
        L->buf = mdiff_malloc((size_t)(L->m * L->rb), "data rows of this rank");
        L->order = mdiff_malloc((size_t)L->m * sizeof(int64_t), "shuffle order");
        ds_read_raw(ds, L->lo, L->m, L->buf);
    } else {
        make_blocks(L);
        int64_t maxb = 1;
        for (int64_t k = 0; k < L->nb; k++)
            if (L->bstart[k + 1] - L->bstart[k] > maxb) maxb = L->bstart[k + 1] - L->bstart[k];
        L->W = mem_budget_bytes / (maxb * L->rb);
        if (L->W < 1) L->W = 1; /* one block is the least we can stream */
        if (L->W > L->nb) L->W = L->nb;
        int64_t cap = L->W * maxb;
        L->buf = mdiff_malloc((size_t)(cap * L->rb), "data window");
        L->order = mdiff_malloc((size_t)cap * sizeof(int64_t), "shuffle order");
        L->slot_row = mdiff_malloc((size_t)cap * sizeof(int64_t), "window rows");
        L->bperm = mdiff_malloc((size_t)L->nb * sizeof(int64_t), "block order");
    }
    L->epoch = 0;
    begin_epoch(L);
    return L;
}

/* Copies buffer slot s into out as float, mirrored along W when flip. */
static void emit(const mdiff_loader *L, int64_t s, float *out, int flip) {
    const mdiff_dataset *ds = L->ds;
    if (!ds->is_images) {
        memcpy(out, L->buf + s * L->rb, (size_t)L->rb);
        return;
    }
    const uint8_t *src = L->buf + s * L->rb;
    int W = ds->w;
    for (int64_t rowi = 0; rowi < (int64_t)ds->c * ds->h; rowi++) {
        const uint8_t *sr = src + rowi * W;
        float *o = out + rowi * W;
        for (int x = 0; x < W; x++) o[x] = (float)sr[flip ? W - 1 - x : x] / 127.5f - 1.0f;
    }
}

void mdiff_loader_next(mdiff_loader *L, float *out, int64_t *rows_out, int b, uint64_t step,
                       int64_t g0) {
    for (int j = 0; j < b; j++) {
        if (L->cursor == L->m) {
            L->epoch++;
            begin_epoch(L);
        }
        if (!L->resident) {
            if (L->cursor == L->win_start + L->wrows) next_window(L, 1);
            if (!L->loaded) fill_window(L, 1);
        }
        int64_t s = L->order[L->cursor - L->win_start];
        L->cursor++;
        int fl = 0;
        if (L->flip) {
            mdiff_rng r;
            mdiff_rng_init(&r, L->seed, MDIFF_RNG_FLIP, step, (uint64_t)(g0 + j));
            fl = mdiff_rng_uniform(&r) < 0.5f;
        }
        emit(L, s, out + (int64_t)j * L->rf, fl);
        if (rows_out) rows_out[j] = L->resident ? L->lo + s : L->slot_row[s];
    }
}

void mdiff_loader_get_state(const mdiff_loader *L, int64_t *epoch, int64_t *cursor) {
    *epoch = L->epoch;
    *cursor = L->cursor;
}

void mdiff_loader_set_state(mdiff_loader *L, int64_t epoch, int64_t cursor) {
    if (epoch < 0 || cursor < 0 || cursor > L->m)
        mdiff_user_error("data loader state (epoch %lld, cursor %lld) does not fit this rank's %lld "
                         "rows: resume with the same data set and number of ranks",
                         (long long)epoch, (long long)cursor, (long long)L->m);
    L->epoch = epoch;
    begin_epoch(L);
    if (!L->resident)
        while (L->win_start + L->wrows <= cursor && L->win_start + L->wrows < L->m) next_window(L, 0);
    L->cursor = cursor;
}

void mdiff_loader_range(const mdiff_loader *L, int64_t *lo, int64_t *hi) {
    *lo = L->lo;
    *hi = L->hi;
}

int mdiff_loader_is_resident(const mdiff_loader *L) { return L->resident; }

void mdiff_loader_io(const mdiff_loader *L, int64_t *reads, int64_t *rows) {
    *reads = L->ds->n_reads - L->reads0;
    *rows = L->ds->rows_read - L->rows0;
}

void mdiff_loader_free(mdiff_loader *L) {
    if (!L) return;
    free(L->buf);
    free(L->order);
    free(L->slot_row);
    free(L->bstart);
    free(L->bperm);
    free(L);
}
