/* data/open: resolves a data set spec into files, validates each file's schema and the shard sets
 * they form, and reads rows/labels by global index (one hyperslab read per file touched); groups
 * shard files given as separate arguments (a shell glob) into the spec of their set.
 * Validation errors are on shared input, so every rank finds the same one: mdiff_user_error_all. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"
#include "mdiff/common.h"
#include "mdiff/config.h"

#define BAD(...) mdiff_user_error_all(__VA_ARGS__)
#define SCHEMA_HINT "see datasets/README.md; make data sets with mdiff-data"

/* ---- spec -> list of paths ------------------------------------------------------------------- */

typedef struct {
    char **v;
    int n, cap;
} strlist;

static void sl_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, (size_t)l->cap * sizeof(char *));
        MDIFF_CHECK(nv != NULL, "out of memory for the file list");
        l->v = nv;
    }
    l->v[l->n] = strdup(s);
    MDIFF_CHECK(l->v[l->n] != NULL, "strdup");
    l->n++;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void join_path(char *dst, size_t cap, const char *dir, const char *name) {
    if (strcmp(dir, ".") == 0)
        mdiff_strcpy(dst, cap, name);
    else
        mdiff_snprintf(dst, cap, "%s/%s", dir, name);
}

static void list_dir(const char *dir, strlist *out) {
    DIR *d = opendir(dir);
    if (!d) BAD("cannot read directory %s: %s", dir, strerror(errno));
    strlist names = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && mdiff_ends_with(e->d_name, ".h5")) sl_push(&names, e->d_name);
    closedir(d);
    if (names.n == 0) BAD("directory %s has no *.h5 files: give a data set file, directory or prefix", dir);
    qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str);
    for (int i = 0; i < names.n; i++) {
        char p[MDIFF_PATH_MAX];
        join_path(p, sizeof p, dir, names.v[i]);
        sl_push(out, p);
        free(names.v[i]);
    }
    free(names.v);
}

/* PREFIX-00000-of-KKKKK.h5 in PREFIX's directory: returns K, or 0 when there is none. */
static int find_shard_count(const char *prefix) {
    char a[MDIFF_PATH_MAX], b[MDIFF_PATH_MAX];
    mdiff_strcpy(a, sizeof a, prefix);
    mdiff_strcpy(b, sizeof b, prefix);
    const char *dir = dirname(a), *base = basename(b);
    DIR *d = opendir(dir);
    if (!d) return 0;
    char head[MDIFF_PATH_MAX];
    mdiff_snprintf(head, sizeof head, "%s-00000-of-", base);
    size_t hl = strlen(head);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, head, hl) != 0 || strlen(s) != hl + 8 || strcmp(s + hl + 5, ".h5") != 0) continue;
        int k = 0, digits = 1;
        for (int i = 0; i < 5; i++) {
            if (s[hl + i] < '0' || s[hl + i] > '9') digits = 0;
            k = 10 * k + (s[hl + i] - '0');
        }
        if (!digits || k < 1) continue;
        if (found && found != k) {
            closedir(d);
            BAD("two shard sets with prefix %s (-of-%05d and -of-%05d): remove the stale one", prefix,
                found, k);
        }
        found = k;
    }
    closedir(d);
    return found;
}

static void resolve_entry(const char *e, strlist *out) {
    struct stat st;
    if (e[0] == '\0') BAD("empty entry in the data set list: give files, directories or prefixes separated by commas");
    if (stat(e, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            list_dir(e, out);
        else
            sl_push(out, e);
        return;
    }
    int K = find_shard_count(e);
    if (K == 0)
        BAD("no data set at %s: not a file, a directory or a shard prefix (%s-00000-of-0000K.h5); make "
            "one with mdiff-data",
            e, e);
    for (int k = 0; k < K; k++) {
        char p[MDIFF_PATH_MAX];
        mdiff_data_shard_name(p, sizeof p, e, k, K);
        if (stat(p, &st) != 0)
            BAD("shard set %s is incomplete: %s is missing (remake it with mdiff-data --shards %d)", e, p, K);
        sl_push(out, p);
    }
}

static void resolve_spec(const char *spec, strlist *out) {
    char *copy = strdup(spec);
    MDIFF_CHECK(copy != NULL, "strdup");
    char *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        resolve_entry(p, out);
        if (!comma) break;
        p = comma + 1;
    }
    free(copy);
}

/* ---- separate arguments -> data set specs ---------------------------------------------------- */

/* PATH = PREFIX-KKKKK-of-NNNNN.h5 (the writer's shard names, mdiff_data_shard_name) with k < n: sets
 * the prefix length, k and n and returns 1; 0 for any other name, a directory or a path holding a
 * comma (which mdiff_dataset_open would split). */
static int shard_arg(const char *path, size_t *plen, int *k, int *n) {
    static const char tail[] = "-00000-of-00000.h5";
    size_t L = strlen(path), T = sizeof tail - 1;
    if (L <= T || L >= MDIFF_PATH_MAX || strchr(path, ',')) return 0;
    const char *s = path + L - T;
    if (s[0] != '-' || memcmp(s + 6, "-of-", 4) != 0 || strcmp(s + 15, ".h5") != 0) return 0;
    int a = 0, b = 0;
    for (int i = 0; i < 5; i++) {
        if (s[1 + i] < '0' || s[1 + i] > '9' || s[10 + i] < '0' || s[10 + i] > '9') return 0;
        a = 10 * a + (s[1 + i] - '0');
        b = 10 * b + (s[10 + i] - '0');
    }
    struct stat st;
    if (b < 1 || a >= b || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) return 0;
    *plen = L - T;
    *k = a;
    *n = b;
    return 1;
}

int mdiff_data_group_args(int n, char *const *args, char ***specs_out) {
    char **specs = mdiff_calloc(n > 0 ? (size_t)n : 1, sizeof(char *), "data set specs");
    char *taken = mdiff_calloc(n > 0 ? (size_t)n : 1, 1, "argument flags");
    int ns = 0;
    for (int i = 0; i < n; i++) {
        if (taken[i]) continue;
        taken[i] = 1;
        size_t pl;
        int k, K;
        if (!shard_arg(args[i], &pl, &k, &K)) {
            specs[ns] = strdup(args[i]);
            MDIFF_CHECK(specs[ns] != NULL, "strdup");
            ns++;
            continue;
        }
        /* the set PREFIX-*-of-K: every later argument with the same prefix and count */
        int *at = mdiff_malloc((size_t)K * sizeof(int), "shard arguments");
        for (int s = 0; s < K; s++) at[s] = -1;
        at[k] = i;
        int given = 1;
        size_t len = strlen(args[i]) + 1;
        for (int j = i + 1; j < n; j++) {
            size_t pj;
            int kj, Kj;
            if (taken[j] || !shard_arg(args[j], &pj, &kj, &Kj) || pj != pl || Kj != K ||
                strncmp(args[j], args[i], pl) != 0)
                continue;
            if (at[kj] >= 0)
                BAD("%s is given twice: give each shard of a set once (e.g. the glob %.*s-*.h5)", args[j],
                    (int)pl, args[i]);
            at[kj] = j;
            taken[j] = 1;
            given++;
            len += strlen(args[j]) + 1;
        }
        if (given < K) {
            int m = 0;
            while (at[m] >= 0) m++;
            char prefix[MDIFF_PATH_MAX], miss[MDIFF_PATH_MAX];
            mdiff_snprintf(prefix, sizeof prefix, "%.*s", (int)pl, args[i]);
            mdiff_data_shard_name(miss, sizeof miss, prefix, m, K);
            struct stat st;
            if (stat(miss, &st) == 0)
                BAD("shard set %s is incomplete: %d of its %d shards are given, %s is missing: give all "
                    "%d shard files (e.g. %s-*.h5) or the prefix %s",
                    prefix, given, K, miss, K, prefix, prefix);
            BAD("shard set %s is incomplete: %s is missing (%d of %d shards given and it does not exist): "
                "remake the set with mdiff-data --shards %d or remove its leftover shards",
                prefix, miss, given, K, K);
        }
        char *spec = mdiff_malloc(len, "data set spec");
        size_t used = 0;
        for (int s = 0; s < K; s++) {
            size_t l = strlen(args[at[s]]);
            if (s) spec[used++] = ',';
            memcpy(spec + used, args[at[s]], l);
            used += l;
        }
        spec[used] = '\0';
        specs[ns++] = spec;
        free(at);
    }
    free(taken);
    *specs_out = specs;
    return ns;
}

/* ---- attributes ------------------------------------------------------------------------------ */

/* Scalar string attribute, fixed or variable length. 1: read; 0: absent; -1: not a scalar string. */
static int attr_read_str(hid_t loc, const char *name, char *buf, size_t cap) {
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = MDIFF_H5(H5Aopen(loc, name, H5P_DEFAULT), "open attribute %s", name);
    hid_t t = MDIFF_H5(H5Aget_type(a), "type of %s", name);
    hid_t sp = MDIFF_H5(H5Aget_space(a), "space of %s", name);
    int ok = H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1;
    if (ok && H5Tis_variable_str(t) > 0) {
        hid_t mt = MDIFF_H5(H5Tcopy(H5T_C_S1), "string type");
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t)); /* h5py writes UTF-8; HDF5 converts no cset to another */
        char *s = NULL;
        ok = H5Aread(a, mt, &s) >= 0 && s;
        if (ok) snprintf(buf, cap, "%s", s);
        if (s) H5free_memory(s);
        H5Tclose(mt);
    } else if (ok) {
        size_t sz = H5Tget_size(t);
        char *tmp = mdiff_calloc(sz + 1, 1, "string attribute");
        hid_t mt = MDIFF_H5(H5Tcopy(H5T_C_S1), "string type");
        H5Tset_size(mt, sz + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(t));
        ok = H5Aread(a, mt, tmp) >= 0;
        if (ok) snprintf(buf, cap, "%s", tmp);
        free(tmp);
        H5Tclose(mt);
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return ok ? 1 : -1;
}

/* Scalar integer attribute. 1: read; 0: absent; -1: not a scalar integer. */
static int attr_read_i64(hid_t loc, const char *name, int64_t *v) {
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = MDIFF_H5(H5Aopen(loc, name, H5P_DEFAULT), "open attribute %s", name);
    hid_t t = MDIFF_H5(H5Aget_type(a), "type of %s", name);
    hid_t sp = MDIFF_H5(H5Aget_space(a), "space of %s", name);
    int ok = H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return ok ? 1 : -1;
}

/* Float array attribute of at most cap values: count, 0 when absent, -1 when malformed. */
static int attr_read_f64v(hid_t loc, const char *name, double *v, int cap) {
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = MDIFF_H5(H5Aopen(loc, name, H5P_DEFAULT), "open attribute %s", name);
    hid_t t = MDIFF_H5(H5Aget_type(a), "type of %s", name);
    hid_t sp = MDIFF_H5(H5Aget_space(a), "space of %s", name);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    int ok = H5Tget_class(t) == H5T_FLOAT && np >= 1 && np <= cap &&
             H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0;
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return ok ? (int)np : -1;
}

/* ---- one file -------------------------------------------------------------------------------- */

static hid_t open_h5(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) BAD("cannot open data set file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) BAD("data set file %s is not a regular file", path);
    if (access(path, R_OK) != 0) BAD("cannot read data set file %s: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) BAD("%s is not an HDF5 file (%s)", path, SCHEMA_HINT);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) BAD("cannot open %s with HDF5: the file is damaged (remake it with mdiff-data)", path);
    return f;
}

typedef struct {
    int is_images, has_labels;
    int64_t rows;
    int c, h, w;
} file_shape;

static const char *dname(int is_images) { return is_images ? "/images" : "/points"; }

/* Opens /images or /points, checks dtype and rank, fills the shape; returns the dataset id. */
static hid_t open_data(hid_t f, const char *path, file_shape *fs, int64_t *chunk_rows) {
    int hi = H5Lexists(f, "images", H5P_DEFAULT) > 0, hp = H5Lexists(f, "points", H5P_DEFAULT) > 0;
    if (hi && hp) BAD("%s has both /images and /points: a data set holds one of them (%s)", path, SCHEMA_HINT);
    if (!hi && !hp) BAD("%s has neither /images nor /points (%s)", path, SCHEMA_HINT);
    fs->is_images = hi;
    const char *nm = dname(hi);
    hid_t d = H5Dopen2(f, nm, H5P_DEFAULT);
    if (d < 0) BAD("%s: %s is not a readable dataset (%s)", path, nm, SCHEMA_HINT);
    hid_t t = MDIFF_H5(H5Dget_type(d), "type of %s in %s", nm, path);
    int ok = hi ? H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1 && H5Tget_sign(t) == H5T_SGN_NONE
                : H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    H5Tclose(t);
    if (!ok)
        BAD("%s: %s has the wrong dtype: it must be %s (%s)", path, nm, hi ? "uint8" : "float32",
            SCHEMA_HINT);
    hid_t sp = MDIFF_H5(H5Dget_space(d), "space of %s in %s", nm, path);
    int rank = H5Sget_simple_extent_ndims(sp), want = hi ? 4 : 2;
    hsize_t dims[4] = {0, 1, 1, 1};
    if (rank != want)
        BAD("%s: %s has %d dimensions, expected %d (%s) (%s)", path, nm, rank, want,
            hi ? "N, C, H, W" : "N, D", SCHEMA_HINT);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (dims[0] == 0) BAD("%s: %s has zero rows: an empty data set cannot be used (remake it)", path, nm);
    for (int i = 1; i < rank; i++)
        if (dims[i] == 0 || dims[i] > 65536)
            BAD("%s: %s dimension %d is %llu: give 1..65536", path, nm, i, (unsigned long long)dims[i]);
    fs->rows = (int64_t)dims[0];
    fs->c = (int)dims[1];
    fs->h = (int)dims[2];
    fs->w = (int)dims[3];
    int64_t rb = hi ? (int64_t)fs->c * fs->h * fs->w : 4 * (int64_t)fs->c;
    *chunk_rows = MDIFF_DATA_CHUNK_BYTES / rb > 0 ? MDIFF_DATA_CHUNK_BYTES / rb : 1;
    hid_t dcpl = MDIFF_H5(H5Dget_create_plist(d), "dcpl of %s", path);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
        hsize_t ch[4];
        if (H5Pget_chunk(dcpl, rank, ch) == rank && ch[0] > 0) *chunk_rows = (int64_t)ch[0];
    }
    H5Pclose(dcpl);
    return d;
}

static void check_labels(hid_t f, const char *path, file_shape *fs) {
    fs->has_labels = H5Lexists(f, "labels", H5P_DEFAULT) > 0;
    if (!fs->has_labels) return;
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
    if (d < 0) BAD("%s: /labels is not a readable dataset (%s)", path, SCHEMA_HINT);
    hid_t t = MDIFF_H5(H5Dget_type(d), "type of /labels in %s", path);
    int ok = H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 4 && H5Tget_sign(t) == H5T_SGN_2;
    H5Tclose(t);
    hid_t sp = MDIFF_H5(H5Dget_space(d), "space of /labels in %s", path);
    hsize_t n = 0;
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank == 1) H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp);
    H5Dclose(d);
    if (!ok) BAD("%s: /labels has the wrong dtype: it must be int32 (%s)", path, SCHEMA_HINT);
    if (rank != 1 || (int64_t)n != fs->rows)
        BAD("%s: /labels must be one-dimensional with one label per row (%lld rows) (%s)", path,
            (long long)fs->rows, SCHEMA_HINT);
}

/* Every /points value must be finite: read in ~1 MiB blocks. */
static void check_finite(hid_t d, const char *path, const file_shape *fs, int64_t chunk_rows) {
    int64_t D = fs->c, blk = chunk_rows;
    float *buf = mdiff_malloc((size_t)(blk * D) * sizeof(float), "points block");
    hid_t fsp = MDIFF_H5(H5Dget_space(d), "space");
    for (int64_t r = 0; r < fs->rows; r += blk) {
        int64_t n = fs->rows - r < blk ? fs->rows - r : blk;
        hsize_t start[2] = {(hsize_t)r, 0}, cnt[2] = {(hsize_t)n, (hsize_t)D};
        MDIFF_H5(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL), "select");
        hid_t msp = MDIFF_H5(H5Screate_simple(2, cnt, NULL), "memory space");
        if (H5Dread(d, H5T_NATIVE_FLOAT, msp, fsp, H5P_DEFAULT, buf) < 0)
            BAD("cannot read /points of %s: the file is damaged (remake it)", path);
        H5Sclose(msp);
        for (int64_t i = 0; i < n * D; i++)
            if (!isfinite(buf[i]))
                BAD("%s: /points has a non-finite value (%g) at row %lld, column %lld: remove NaN/Inf "
                    "rows and remake the data set",
                    path, (double)buf[i], (long long)(r + i / D), (long long)(i % D));
    }
    H5Sclose(fsp);
    free(buf);
}

static int64_t req_int_attr(hid_t f, const char *path, const char *name, int64_t dflt, int required) {
    int64_t v = dflt;
    int r = attr_read_i64(f, name, &v);
    if (r < 0) BAD("%s: attribute %s must be a scalar integer (%s)", path, name, SCHEMA_HINT);
    if (r == 0 && required) BAD("%s has no %s attribute (%s)", path, name, SCHEMA_HINT);
    return v;
}

static void read_file_attrs(mdiff_dataset *ds, hid_t f, ds_file *df, int first) {
    const char *path = df->path;
    char fmt[64] = "";
    int r = attr_read_str(f, "mdiff_format", fmt, sizeof fmt);
    if (r == 0) BAD("%s has no mdiff_format attribute: not an mdiff data set (%s)", path, SCHEMA_HINT);
    if (r < 0 || strcmp(fmt, MDIFF_DATA_FORMAT) != 0)
        BAD("%s has mdiff_format '%s', expected '%s' (%s)", path, fmt, MDIFF_DATA_FORMAT, SCHEMA_HINT);
    int64_t fp = req_int_attr(f, path, "fingerprint", 0, 1);
    if (fp < 0 || fp > 0xFFFFFFFFLL) BAD("%s: fingerprint %lld is not a CRC32 value", path, (long long)fp);
    df->fingerprint = (uint32_t)fp;
    int64_t K = req_int_attr(f, path, "shard_count", 1, 0);
    int64_t k = req_int_attr(f, path, "shard_index", 0, 0);
    df->rec_offset = req_int_attr(f, path, "row_offset", 0, 0);
    df->total_rows = req_int_attr(f, path, "total_rows", df->rows, 0);
    if (K < 1 || K > 99999 || k < 0 || k >= K || df->rec_offset < 0 ||
        df->rec_offset + df->rows > df->total_rows)
        BAD("%s: inconsistent shard attributes (shard_index %lld, shard_count %lld, row_offset %lld, "
            "total_rows %lld, %lld rows): remake it with mdiff-data",
            path, (long long)k, (long long)K, (long long)df->rec_offset, (long long)df->total_rows,
            (long long)df->rows);
    df->shard_count = (int)K;
    df->shard_index = (int)k;
    if (first) {
        if (attr_read_str(f, "kind", ds->kind, sizeof ds->kind) <= 0) ds->kind[0] = '\0';
        int ns = attr_read_f64v(f, "scale", ds->scale, 8);
        ds->n_scale = ns > 0 ? ns : 0;
    }
}

static void validate_file(mdiff_dataset *ds, int i) {
    ds_file *df = &ds->files[i];
    hid_t f = open_h5(df->path);
    file_shape fs = {0};
    hid_t d = open_data(f, df->path, &fs, &df->chunk_rows);
    df->rows = fs.rows;
    check_labels(f, df->path, &fs);
    read_file_attrs(ds, f, df, i == 0);
    if (i == 0) {
        ds->is_images = fs.is_images;
        ds->has_labels = fs.has_labels;
        ds->c = fs.c;
        ds->h = fs.h;
        ds->w = fs.w;
    } else {
        const char *p0 = ds->files[0].path;
        if (fs.is_images != ds->is_images)
            BAD("%s holds %s but %s holds %s: all files of a data set hold the same kind", df->path,
                dname(fs.is_images), p0, dname(ds->is_images));
        if (fs.c != ds->c || fs.h != ds->h || fs.w != ds->w)
            BAD("%s has rows of shape (%d, %d, %d) but %s has (%d, %d, %d): all files of a data set "
                "must have the same row shape",
                df->path, fs.c, fs.h, fs.w, p0, ds->c, ds->h, ds->w);
        if (fs.has_labels != ds->has_labels)
            BAD("%s %s /labels but %s %s: give labels in every file or in none", df->path,
                fs.has_labels ? "has" : "has no", p0, ds->has_labels ? "has" : "has none");
    }
    if (!fs.is_images) check_finite(d, df->path, &fs, df->chunk_rows);
    H5Dclose(d);
    H5Fclose(f);
}

/* Files form groups in order: a single file (shard_count 1) or a complete shard set in order. */
static void check_groups(mdiff_dataset *ds) {
    int g = 0;
    uint32_t crc = 0;
    for (int i = 0; i < ds->nfiles;) {
        ds_file *f0 = &ds->files[i];
        int K = f0->shard_count;
        if (f0->shard_index != 0)
            BAD("%s is shard %d of %d but does not follow shard %d of its set: give the whole set "
                "(its prefix) or all of its files in order",
                f0->path, f0->shard_index, K, f0->shard_index - 1);
        if (i + K > ds->nfiles)
            BAD("%s starts a set of %d shards but only %d file(s) follow: give all shards of the set",
                f0->path, K, ds->nfiles - i);
        int64_t off = 0;
        for (int k = 0; k < K; k++) {
            ds_file *f = &ds->files[i + k];
            if (f->fingerprint != f0->fingerprint || f->shard_count != K || f->total_rows != f0->total_rows)
                BAD("%s belongs to another data set than %s (fingerprint %08x vs %08x, %d vs %d "
                    "shards): do not mix shards of different data sets",
                    f->path, f0->path, f->fingerprint, f0->fingerprint, f->shard_count, K);
            if (f->shard_index != k)
                BAD("%s is shard %d of %d but stands where shard %d belongs: give the whole set "
                    "(its prefix) or all of its files in order",
                    f->path, f->shard_index, K, k);
            if (f->rec_offset != off)
                BAD("%s: row_offset %lld but the shards before it hold %lld rows: remake the set",
                    f->path, (long long)f->rec_offset, (long long)off);
            off += f->rows;
            f->group = g;
        }
        if (off != f0->total_rows)
            BAD("the shards of %s hold %lld rows but record total_rows %lld: remake the set", f0->path,
                (long long)off, (long long)f0->total_rows);
        uint8_t le[4] = {(uint8_t)f0->fingerprint, (uint8_t)(f0->fingerprint >> 8),
                         (uint8_t)(f0->fingerprint >> 16), (uint8_t)(f0->fingerprint >> 24)};
        crc = mdiff_crc32(crc, le, 4);
        i += K;
        g++;
    }
    ds->ngroups = g;
    ds->fingerprint = g == 1 ? ds->files[0].fingerprint : crc;
}

mdiff_dataset *mdiff_dataset_open(const char *spec) {
    strlist paths = {0};
    resolve_spec(spec, &paths);
    mdiff_dataset *ds = mdiff_calloc(1, sizeof *ds, "dataset");
    ds->spec = strdup(spec);
    ds->nfiles = paths.n;
    ds->files = mdiff_calloc((size_t)paths.n, sizeof(ds_file), "dataset files");
    ds->open_idx = -1;
    ds->fid = ds->did = ds->lid = -1;
    for (int i = 0; i < paths.n; i++) ds->files[i].path = paths.v[i];
    free(paths.v);
    int64_t off = 0;
    for (int i = 0; i < ds->nfiles; i++) {
        validate_file(ds, i);
        ds->files[i].row_offset = off;
        off += ds->files[i].rows;
    }
    ds->n = off;
    ds->row_bytes = ds->is_images ? (int64_t)ds->c * ds->h * ds->w : 4 * (int64_t)ds->c;
    check_groups(ds);
    return ds;
}
