/* h5poke: a tiny HDF5 editor for the bad-input tests (tests/e2e/bad_input.sh builds it). It makes
 * the damaged files that hdf5-tools cannot: a removed object or attribute, an attribute with another
 * value, one float set to NaN/Inf. Not part of mdiff; h5py is not allowed in tests.
 *   h5poke FILE rm PATH                    delete the link PATH (a tensor, a group)
 *   h5poke FILE rmattr OBJ NAME            delete attribute NAME of object OBJ ("/" for the root)
 *   h5poke FILE setattr OBJ NAME INT       overwrite an integer attribute
 *   h5poke FILE setf DATASET INDEX VALUE   element INDEX (flat) of a float32 dataset := VALUE
 *                                          (strtod: "nan", "inf" work)
 *   h5poke FILE offset DATASET             print the file offset of the dataset's first chunk
 *                                          (or of its contiguous data), for dd byte flips
 * Exit 0 on success, 1 on any failure (with HDF5's error stack). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "h5poke: %s failed\n", what);
    H5Eprint2(H5E_DEFAULT, stderr);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: h5poke FILE rm PATH | rmattr OBJ NAME | setattr OBJ NAME INT | "
                        "setf DATASET INDEX VALUE\n");
        return 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return fail("open");
    const char *op = argv[2];
    int rc = 0;
    if (!strcmp(op, "rm")) {
        if (H5Ldelete(f, argv[3], H5P_DEFAULT) < 0) rc = fail("rm");
    } else if (!strcmp(op, "offset")) {
        hid_t d = H5Dopen2(f, argv[3], H5P_DEFAULT);
        hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
        haddr_t addr = HADDR_UNDEF;
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
            hid_t sp = H5Dget_space(d);
            hsize_t off[8];
            unsigned mask;
            hsize_t size;
            if (H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) < 0) addr = HADDR_UNDEF;
            H5Sclose(sp);
        } else if (d >= 0) {
            addr = H5Dget_offset(d);
        }
        if (addr == HADDR_UNDEF) rc = fail("offset");
        else printf("%llu\n", (unsigned long long)addr);
        if (dcpl >= 0) H5Pclose(dcpl);
        if (d >= 0) H5Dclose(d);
    } else if (!strcmp(op, "rmattr") && argc == 5) {
        if (H5Adelete_by_name(f, argv[3], argv[4], H5P_DEFAULT) < 0) rc = fail("rmattr");
    } else if (!strcmp(op, "setattr") && argc == 6) {
        long long v = strtoll(argv[5], NULL, 10);
        hid_t a = H5Aopen_by_name(f, argv[3], argv[4], H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &v) < 0) rc = fail("setattr");
        if (a >= 0) H5Aclose(a);
    } else if (!strcmp(op, "setf") && argc == 6) {
        hid_t d = H5Dopen2(f, argv[3], H5P_DEFAULT);
        if (d < 0) {
            rc = fail("open dataset");
        } else {
            hid_t sp = H5Dget_space(d);
            int nd = H5Sget_simple_extent_ndims(sp);
            hsize_t dims[8], coord[8];
            H5Sget_simple_extent_dims(sp, dims, NULL);
            unsigned long long flat = strtoull(argv[4], NULL, 10);
            for (int i = nd - 1; i >= 0; i--) {
                coord[i] = flat % dims[i];
                flat /= dims[i];
            }
            float v = strtof(argv[5], NULL);
            hsize_t one = 1;
            hid_t ms = H5Screate_simple(1, &one, NULL);
            if (H5Sselect_elements(sp, H5S_SELECT_SET, 1, coord) < 0 ||
                H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &v) < 0)
                rc = fail("setf");
            H5Sclose(ms);
            H5Sclose(sp);
            H5Dclose(d);
        }
    } else {
        rc = fail("unknown operation");
    }
    if (H5Fclose(f) < 0) rc = fail("close");
    return rc;
}
