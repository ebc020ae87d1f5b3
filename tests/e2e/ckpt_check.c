/* ckpt_check: reads mdiff checkpoints for the MPI end-to-end scripts (tests/e2e/mpi_resume.sh and
 * mpi_signal.sh build it), in place of h5py + numpy: h5py is not allowed in tests. Not part of mdiff.
 *   ckpt_check state FILE
 *       prints "STEP WORLD e0 e1 ... c0 c1 ...": root attributes step and world_size, then every
 *       rank's /state/loader_epoch and /state/loader_cursor.
 *   ckpt_check adam-step A.h5 B.h5 [WORLD_A WORLD_B]
 *       checks that B is exactly one AdamW + EMA update (src/optim.c) of A: B's step = A's step + 1,
 *       (with the world sizes given: A's and B's world_size attributes, and B's /state/loader_epoch
 *       has WORLD_B entries), /state ema_updates u -> u + 1, and for every tensor under /params,
 *       in double, with g recovered from the first moments as (m1 - b1 m0) / (1 - b1):
 *         v1   = b2 v0 + (1 - b2) g^2                            (error relative to max|v1|)
 *         p1   = p0 - lr / (1 - b1^k) * m1 / (sqrt(v1) / sqrt(1 - b2^k) + eps)
 *         ema1 = d ema0 + (1 - d) p1
 *       with b1 = 0.9, b2 = 0.999, eps = 1e-8, k = u + 1, lr = attr lr * min(1, (u+1) / warmup)
 *       (warmup <= 0: no warmup, as mdiff_lr_at), d = min(D, (1+u) / (10+u)), D = attr ema.
 *       Weight decay is taken as 0 (the scripts' default). Prints the worst errors as
 *       "v=.. p=.. ema=.." and exits 0 only if v < 1e-5, p < 1e-6 and ema < 1e-6 (a NaN fails).
 * Exit 0 on success; 1 with one line on stderr on any failure. */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ckpt_check: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static hid_t open_file(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) die("%s: cannot open as HDF5", path);
    return f;
}

/* One-element attribute NAME of object OBJ, read as MTYPE (HDF5 converts). WANT is the type class
 * the attribute must have (H5T_NO_CLASS: integer or float). */
static void read_attr(hid_t f, const char *path, const char *obj, const char *name, H5T_class_t want,
                      hid_t mtype, void *buf) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) die("%s: no attribute %s on %s", path, name, obj);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int ok_class = want == H5T_NO_CLASS ? (cls == H5T_INTEGER || cls == H5T_FLOAT) : cls == want;
    if (!ok_class) die("%s: attribute %s on %s is not %s", path, name, obj,
                       want == H5T_INTEGER ? "an integer" : "a number");
    if (n != 1) die("%s: attribute %s on %s has %lld values, expected 1", path, name, obj, (long long)n);
    if (H5Aread(a, mtype, buf) < 0) die("%s: cannot read attribute %s on %s", path, name, obj);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
}

static int64_t attr_i64(hid_t f, const char *path, const char *obj, const char *name) {
    int64_t v;
    read_attr(f, path, obj, name, H5T_INTEGER, H5T_NATIVE_INT64, &v);
    return v;
}

static double attr_f64(hid_t f, const char *path, const char *obj, const char *name) {
    double v;
    read_attr(f, path, obj, name, H5T_NO_CLASS, H5T_NATIVE_DOUBLE, &v);
    return v;
}

/* Dataset DS as doubles (malloc'd); its shape in dims/ndim; CLS its required type class. */
static double *read_dataset(hid_t f, const char *path, const char *ds, H5T_class_t cls, int *ndim,
                            hsize_t dims[H5S_MAX_RANK], size_t *count) {
    if (H5Lexists(f, ds, H5P_DEFAULT) <= 0) die("%s: no %s", path, ds);
    hid_t d = H5Oopen(f, ds, H5P_DEFAULT);
    if (d < 0) die("%s: cannot open %s", path, ds);
    if (H5Iget_type(d) != H5I_DATASET) die("%s: %s is not a dataset", path, ds);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    if (t < 0 || H5Tget_class(t) != cls)
        die("%s: %s is not %s", path, ds, cls == H5T_FLOAT ? "a float dataset" : "an integer dataset");
    *ndim = H5Sget_simple_extent_ndims(sp);
    if (*ndim < 0 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) die("%s: cannot read the shape of %s", path, ds);
    size_t n = 1;
    for (int i = 0; i < *ndim; i++) n *= (size_t)dims[i];
    double *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf) die("out of memory reading %s", ds);
    if (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        die("%s: cannot read %s (checksum or I/O error)", path, ds);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
    *count = n;
    return buf;
}

/* An int64 vector dataset (rank 1), printed as " x0 x1 ...". */
static void print_i64_vec(hid_t f, const char *path, const char *ds) {
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
    if (d < 0) die("%s: no %s", path, ds);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER) die("%s: %s is not an integer dataset", path, ds);
    if (H5Sget_simple_extent_ndims(sp) != 1) die("%s: %s is not a vector", path, ds);
    hsize_t n;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    int64_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) die("out of memory reading %s", ds);
    if (n && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        die("%s: cannot read %s", path, ds);
    for (hsize_t i = 0; i < n; i++) printf(" %lld", (long long)v[i]);
    free(v);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
}

static int cmd_state(const char *path) {
    hid_t f = open_file(path);
    int64_t step = attr_i64(f, path, "/", "step"), world = attr_i64(f, path, "/", "world_size");
    printf("%lld %lld", (long long)step, (long long)world);
    print_i64_vec(f, path, "/state/loader_epoch");
    print_i64_vec(f, path, "/state/loader_cursor");
    printf("\n");
    H5Fclose(f);
    return 0;
}

/* ---- adam-step ---------------------------------------------------------------------------------- */

typedef struct {
    char **names;
    size_t n, cap;
} namelist;

/* H5Literate's callback: link info type differs between HDF5 1.10 and 1.12+ */
#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define LITERATE H5Literate_by_name2
#else
typedef H5L_info_t link_info;
#define LITERATE H5Literate_by_name
#endif
static herr_t collect(hid_t g, const char *name, const link_info *info, void *op) {
    (void)g;
    (void)info;
    namelist *l = op;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->names = realloc(l->names, l->cap * sizeof *l->names);
        if (!l->names) return -1;
    }
    if (!(l->names[l->n++] = strdup(name))) return -1;
    return 0;
}

/* Reads GROUP/NAME of file F and checks its shape equals the reference (ndim0, dims0). */
static double *tensor(hid_t f, const char *path, const char *group, const char *name, int ndim0,
                      const hsize_t *dims0) {
    char ds[4096];
    if ((size_t)snprintf(ds, sizeof ds, "%s/%s", group, name) >= sizeof ds) die("tensor name too long: %s", name);
    int ndim;
    hsize_t dims[H5S_MAX_RANK];
    size_t n;
    double *x = read_dataset(f, path, ds, H5T_FLOAT, &ndim, dims, &n);
    int same = ndim == ndim0;
    for (int i = 0; same && i < ndim; i++) same = dims[i] == dims0[i];
    if (!same) die("%s: %s has another shape than /params/%s of the first file", path, ds, name);
    return x;
}

static void worse(double *worst, double err) {
    if (isnan(*worst)) return; /* a NaN sticks, and fails the check */
    if (!(err <= *worst)) *worst = err;
}

static int cmd_adam_step(const char *pa, const char *pb, int check_world, long long wa, long long wb) {
    hid_t a = open_file(pa), b = open_file(pb);
    int64_t sa = attr_i64(a, pa, "/", "step"), sb = attr_i64(b, pb, "/", "step");
    if (sb != sa + 1) die("step %lld (%s) is not step %lld (%s) + 1", (long long)sb, pb, (long long)sa, pa);
    if (check_world) {
        int64_t xa = attr_i64(a, pa, "/", "world_size"), xb = attr_i64(b, pb, "/", "world_size");
        if (xa != wa || xb != wb)
            die("world sizes %lld (%s) and %lld (%s), expected %lld and %lld", (long long)xa, pa,
                (long long)xb, pb, wa, wb);
        int nd;
        hsize_t dims[H5S_MAX_RANK];
        size_t n;
        free(read_dataset(b, pb, "/state/loader_epoch", H5T_INTEGER, &nd, dims, &n));
        if (nd != 1 || dims[0] != (hsize_t)wb)
            die("%s: /state/loader_epoch has %zu entries in %d dimension(s), expected (%lld,)", pb, n, nd, wb);
    }
    int64_t u = attr_i64(a, pa, "/state", "ema_updates"), ub = attr_i64(b, pb, "/state", "ema_updates");
    if (ub != u + 1) die("/state ema_updates %lld (%s) is not %lld (%s) + 1", (long long)ub, pb, (long long)u, pa);

    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double lr = attr_f64(a, pa, "/", "lr");
    int64_t warmup = attr_i64(a, pa, "/", "warmup");
    if (warmup > 0) lr *= fmin(1.0, (double)(u + 1) / (double)warmup);
    double k = (double)(u + 1);
    double D = attr_f64(a, pa, "/", "ema");
    double d = fmin(D, (1.0 + (double)u) / (10.0 + (double)u));
    double bc1 = 1.0 - pow(b1, k), sbc2 = sqrt(1.0 - pow(b2, k));

    namelist l = {0};
    hsize_t idx = 0;
    if (LITERATE(a, "/params", H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &l, H5P_DEFAULT) < 0)
        die("%s: cannot list /params", pa);
    if (l.n == 0) die("%s: no tensors under /params", pa);

    double wv = 0.0, wp = 0.0, we = 0.0;
    for (size_t t = 0; t < l.n; t++) {
        const char *name = l.names[t];
        char ds[4096];
        snprintf(ds, sizeof ds, "/params/%s", name);
        int ndim;
        hsize_t dims[H5S_MAX_RANK];
        size_t n;
        double *p0 = read_dataset(a, pa, ds, H5T_FLOAT, &ndim, dims, &n);
        double *p1 = tensor(b, pb, "/params", name, ndim, dims);
        double *m0 = tensor(a, pa, "/adam/m", name, ndim, dims), *m1 = tensor(b, pb, "/adam/m", name, ndim, dims);
        double *v0 = tensor(a, pa, "/adam/v", name, ndim, dims), *v1 = tensor(b, pb, "/adam/v", name, ndim, dims);
        double *e0 = tensor(a, pa, "/ema", name, ndim, dims), *e1 = tensor(b, pb, "/ema", name, ndim, dims);
        double vs = 1e-30;
        for (size_t i = 0; i < n; i++) worse(&vs, fabs(v1[i]));
        double ev = 0.0;
        for (size_t i = 0; i < n; i++) {
            double g = (m1[i] - b1 * m0[i]) / (1.0 - b1);
            worse(&ev, fabs(v1[i] - (b2 * v0[i] + (1.0 - b2) * g * g)));
            double p_pred = p0[i] - lr / bc1 * m1[i] / (sqrt(v1[i]) / sbc2 + eps);
            worse(&wp, fabs(p1[i] - p_pred));
            worse(&we, fabs(e1[i] - (d * e0[i] + (1.0 - d) * p1[i])));
        }
        worse(&wv, ev / vs);
        free(p0), free(p1), free(m0), free(m1), free(v0), free(v1), free(e0), free(e1);
        free(l.names[t]);
    }
    free(l.names);
    H5Fclose(a);
    H5Fclose(b);
    /* Tolerances: float32 state; v relative 1e-5 (g recovered from m1 - 0.9 m0 loses ~1 digit, v
     * is then a float32 sum), p and ema absolute 1e-6 (values ~0.1-1 in float32 round at ~6e-8;
     * one update moves p by ~lr = 1e-3, a lost state by far more). */
    if (!(wv < 1e-5 && wp < 1e-6 && we < 1e-6))
        die("%s is not one AdamW+EMA update of %s: worst v=%.2g (limit 1e-05 relative) p=%.2g "
            "(limit 1e-06) ema=%.2g (limit 1e-06)", pb, pa, wv, wp, we);
    printf("v=%.2g p=%.2g ema=%.2g\n", wv, wp, we);
    return 0;
}

static long long parse_ll(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1) die("not a world size: '%s'", s);
    return v;
}

int main(int argc, char **argv) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc == 3 && !strcmp(argv[1], "state")) return cmd_state(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "adam-step")) return cmd_adam_step(argv[2], argv[3], 0, 0, 0);
    if (argc == 6 && !strcmp(argv[1], "adam-step"))
        return cmd_adam_step(argv[2], argv[3], 1, parse_ll(argv[4]), parse_ll(argv[5]));
    die("usage: ckpt_check state FILE | adam-step A.h5 B.h5 [WORLD_A WORLD_B]");
    return 1;
}
