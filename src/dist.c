/* dist: MPI context, bucketed overlapping gradient allreduce, reductions (see dist.h). */
#include "mdiff/dist.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdiff/common.h"

void mdiff_dist_init(mdiff_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        int provided = 0;
        MDIFF_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
        d->mpi_owned = 1;
    }
    MDIFF_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    MDIFF_MPI(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
    MPI_Comm local;
    MDIFF_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local));
    MDIFF_MPI(MPI_Comm_rank(local, &d->local_rank));
    MDIFF_MPI(MPI_Comm_size(local, &d->local_size));
    MPI_Comm_free(&local);
    const char *tasks = getenv("SLURM_STEP_NUM_TASKS");
    if (d->size == 1 && tasks && atoi(tasks) > 1)
        mdiff_user_error("SLURM started %s tasks but MPI sees one process each: srun lacks PMI "
                         "support here. Launch with 'srun --mpi=pmix' (see 'srun --mpi=list') or "
                         "with mpirun inside the allocation (jobs/train.sbatch does)", tasks);
}

void mdiff_dist_finalize(mdiff_dist *d) {
    free(d->reqs);
    d->reqs = NULL;
    int fin = 0;
    MPI_Finalized(&fin);
    if (d->mpi_owned && !fin) MPI_Finalize();
}

void mdiff_dist_setup_buckets(mdiff_dist *d, float *grads, int64_t n, double bucket_mb, int overlap) {
    d->grads = grads;
    d->n = n;
    d->overlap = overlap;
    d->bucket_floats = (int64_t)(bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (d->bucket_floats < 1) d->bucket_floats = 1;
    if (d->bucket_floats > INT_MAX) d->bucket_floats = INT_MAX;
    d->nbuckets = (int)((n + d->bucket_floats - 1) / d->bucket_floats);
    free(d->reqs);
    d->reqs = mdiff_calloc((size_t)d->nbuckets, sizeof(MPI_Request), "allreduce requests");
    for (int b = 0; b < d->nbuckets; b++) d->reqs[b] = MPI_REQUEST_NULL;
}

/* Bucket b covers [lo, hi) counted from the end of the buffer. */
static void bucket_range(const mdiff_dist *d, int b, int64_t *lo, int64_t *hi) {
    *hi = d->n - (int64_t)b * d->bucket_floats;
    *lo = *hi - d->bucket_floats;
    if (*lo < 0) *lo = 0;
}

static void start_bucket(mdiff_dist *d, int b) {
    int64_t lo, hi;
    bucket_range(d, b, &lo, &hi);
    double t0 = mdiff_now();
    MDIFF_MPI(MPI_Iallreduce(MPI_IN_PLACE, d->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM,
                             MPI_COMM_WORLD, &d->reqs[b]));
    d->comm_seconds += mdiff_now() - t0;
}

void mdiff_dist_grad_begin(mdiff_dist *d) {
    d->lowest_ready = d->n;
    d->next_bucket = 0;
    d->first_pending = 0;
}

void mdiff_dist_grad_ready(void *ctx, int64_t offset, int64_t count) {
    mdiff_dist *d = ctx;
    if (d->size == 1 || !d->overlap) return;
    MDIFF_CHECK(offset + count == d->lowest_ready,
                "gradient range [%lld, %lld) reported out of order (expected to end at %lld)",
                (long long)offset, (long long)(offset + count), (long long)d->lowest_ready);
    d->lowest_ready = offset;
    while (d->next_bucket < d->nbuckets) {
        int64_t lo, hi;
        bucket_range(d, d->next_bucket, &lo, &hi);
        if (d->lowest_ready > lo) break;
        start_bucket(d, d->next_bucket++);
    }
    /* Progress what is in flight: any MPI_Test drives Open MPI's progress engine for every
     * outstanding request, so testing from the oldest pending bucket until one is still running
     * suffices (and keeps the cost per report O(1) amortised even with thousands of buckets). */
    double t0 = mdiff_now();
    while (d->first_pending < d->next_bucket) {
        int done = 0;
        MDIFF_MPI(MPI_Test(&d->reqs[d->first_pending], &done, MPI_STATUS_IGNORE));
        if (!done) break;
        d->first_pending++;
    }
    d->comm_seconds += mdiff_now() - t0;
}

void mdiff_dist_grad_finish(mdiff_dist *d) {
    if (d->size == 1) return;
    double t0 = mdiff_now();
    if (!d->overlap) {
        for (int64_t off = 0; off < d->n; off += INT_MAX) {
            int64_t cnt = d->n - off < INT_MAX ? d->n - off : INT_MAX;
            MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, d->grads + off, (int)cnt, MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD));
        }
    } else {
        while (d->next_bucket < d->nbuckets) start_bucket(d, d->next_bucket++);
        MDIFF_MPI(MPI_Waitall(d->nbuckets, d->reqs, MPI_STATUSES_IGNORE));
    }
    double dt = mdiff_now() - t0;
    d->wait_seconds += dt;
    d->comm_seconds += dt;
}

void mdiff_dist_sum_f64(const mdiff_dist *d, double *v, int n) {
    if (d->size > 1) MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void mdiff_dist_max_f64(const mdiff_dist *d, double *v, int n) {
    if (d->size > 1) MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
}

int mdiff_dist_or(const mdiff_dist *d, int flag) {
    int v = flag ? 1 : 0;
    if (d->size > 1) MDIFF_MPI(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD));
    return v;
}

void mdiff_dist_bcast_bytes(const mdiff_dist *d, void *v, int64_t n, int root) {
    if (d->size == 1) return;
    char *p = v;
    for (int64_t off = 0; off < n; off += INT_MAX) {
        int64_t cnt = n - off < INT_MAX ? n - off : INT_MAX;
        MDIFF_MPI(MPI_Bcast(p + off, (int)cnt, MPI_BYTE, root, MPI_COMM_WORLD));
    }
}

void mdiff_dist_bcast_f32(const mdiff_dist *d, float *v, int64_t n, int root) {
    mdiff_dist_bcast_bytes(d, v, n * (int64_t)sizeof(float), root);
}

void mdiff_dist_allgather_i64(const mdiff_dist *d, int64_t v, int64_t *all) {
    if (d->size == 1) {
        all[0] = v;
        return;
    }
    MDIFF_MPI(MPI_Allgather(&v, 1, MPI_INT64_T, all, 1, MPI_INT64_T, MPI_COMM_WORLD));
}

void mdiff_dist_gatherv_f32(const mdiff_dist *d, const float *send, int64_t count, float *recv,
                            const int64_t *counts, int root) {
    if (d->size == 1) {
        if (recv != send) memcpy(recv, send, (size_t)count * sizeof(float));
        return;
    }
    int *cnt = NULL, *disp = NULL;
    if (d->rank == root) {
        cnt = mdiff_malloc((size_t)d->size * sizeof(int), "gather counts");
        disp = mdiff_malloc((size_t)d->size * sizeof(int), "gather displacements");
        int64_t off = 0;
        for (int r = 0; r < d->size; r++) {
            MDIFF_CHECK(counts[r] <= INT_MAX && off <= INT_MAX, "gather of %lld floats too large",
                        (long long)(off + counts[r]));
            cnt[r] = (int)counts[r];
            disp[r] = (int)off;
            off += counts[r];
        }
    }
    MDIFF_MPI(MPI_Gatherv(send, (int)count, MPI_FLOAT, recv, cnt, disp, MPI_FLOAT, root, MPI_COMM_WORLD));
    free(cnt);
    free(disp);
}

void mdiff_dist_barrier(const mdiff_dist *d) {
    if (d->size > 1) MDIFF_MPI(MPI_Barrier(MPI_COMM_WORLD));
}
