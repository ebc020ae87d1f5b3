/* dist: the MPI context of a run (works with one process and without mpirun), the bucketed
 * gradient allreduce that overlaps backward, metric reductions, broadcasts and gathers.
 *
 * Gradient buckets: the flat gradient buffer is cut into buckets from its END, because backward
 * finishes parameters in reverse forward order. The model's backward reports each finished range
 * (descending, contiguous) through mdiff_dist_grad_ready; a bucket whose range is complete starts
 * an in-place MPI_Iallreduce at once and outstanding ones are progressed with MPI_Test at every
 * report, so communication hides behind the rest of backward. mdiff_dist_grad_finish waits for
 * the rest. With `blocking`, one MPI_Allreduce of the whole buffer runs at finish instead. */
#ifndef MDIFF_DIST_H
#define MDIFF_DIST_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int rank, size;             /* in MPI_COMM_WORLD */
    int local_rank, local_size; /* on this node (shared-memory communicator) */
    int mpi_owned;              /* 1 if we called MPI_Init (and so must finalize) */
    /* gradient buckets */
    float *grads;
    int64_t n;                  /* floats in grads */
    int64_t bucket_floats;
    int nbuckets;
    int overlap;
    int64_t lowest_ready;       /* grads[lowest_ready, n) are final this step */
    int next_bucket;            /* buckets [0, next_bucket) have been started (0 = the last range) */
    int first_pending;          /* buckets [0, first_pending) are known complete */
    MPI_Request *reqs;
    double wait_seconds;        /* time blocked in finish (accumulated; reset by the caller) */
    double comm_seconds;        /* time inside MPI calls for gradients (accumulated) */
} mdiff_dist;

/* MPI_Init (if not yet) and ranks; also checks srun-without-PMI (SLURM says several tasks, MPI one). */
void mdiff_dist_init(mdiff_dist *d, int *argc, char ***argv);
/* Frees buckets and finalizes MPI if we initialised it. */
void mdiff_dist_finalize(mdiff_dist *d);

void mdiff_dist_setup_buckets(mdiff_dist *d, float *grads, int64_t n, double bucket_mb, int overlap);
/* Marks the start of a step's backward (no bucket in flight). */
void mdiff_dist_grad_begin(mdiff_dist *d);
/* Model backward callback: grads[offset, offset+count) are final. ctx is the mdiff_dist. */
void mdiff_dist_grad_ready(void *ctx, int64_t offset, int64_t count);
/* Starts what is left, waits for every bucket: grads then hold the sum over ranks. */
void mdiff_dist_grad_finish(mdiff_dist *d);

/* Reductions over all ranks (in place). */
void mdiff_dist_sum_f64(const mdiff_dist *d, double *v, int n);
void mdiff_dist_max_f64(const mdiff_dist *d, double *v, int n);
int mdiff_dist_or(const mdiff_dist *d, int flag);
/* Broadcast of n floats from root (chunked: counts may exceed INT_MAX). */
void mdiff_dist_bcast_f32(const mdiff_dist *d, float *v, int64_t n, int root);
void mdiff_dist_bcast_bytes(const mdiff_dist *d, void *v, int64_t n, int root);
/* Gather one int64 per rank to every rank (allgather). */
void mdiff_dist_allgather_i64(const mdiff_dist *d, int64_t v, int64_t *all);
/* Gather variable-size float blocks to root: counts[r] floats from rank r, concatenated by rank. */
void mdiff_dist_gatherv_f32(const mdiff_dist *d, const float *send, int64_t count, float *recv,
                            const int64_t *counts, int root);
void mdiff_dist_barrier(const mdiff_dist *d);


#endif
