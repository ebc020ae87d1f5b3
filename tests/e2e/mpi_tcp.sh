#!/usr/bin/env bash
# The same training over TCP on loopback, as between nodes (issue 5, DESIGN.md §7): np=2 U-Net
# with overlapping allreduce in tiny buckets (hundreds of MPI_Iallreduce in flight over TCP) and
# with the blocking allreduce, each compared with the same run over shared memory. With two ranks
# every element's sum is a + b whatever the transport or algorithm, so the final /params, /ema,
# /adam/m, /adam/v must be bit-identical (h5diff, exact). --check-every 1 compares the ranks'
# parameters after every step.
# Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
BIN=$BUILD/bin
T=$(mktemp -d /tmp/mdiff_e2e_mpi_tcp.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
TCP=(--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# train NAME MCA-ARGS... -- TRAIN-ARGS...
train() {
    local name=$1; shift
    local mca=()
    while [ "$1" != "--" ]; do mca+=("$1"); shift; done
    shift
    mpirun --oversubscribe --bind-to none -np 2 "${mca[@]}" "$BIN/mdiff-train" "$@" \
        --run-dir "$T/$name" >"$T/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] && return 0
    fail "$name" "mpirun exited $rc:"; tail -n 10 "$T/$name.log" | sed 's/^/    | /'; return 1
}

same() {
    local g
    for g in /params /ema /adam/m /adam/v; do
        if ! h5diff -q "$T/$2/latest.h5" "$T/$3/latest.h5" "$g" "$g" >/dev/null 2>&1; then
            fail "$1" "$g differs"; return; fi
    done
    pass "$1"
}

"$BIN/mdiff-data" fashion-mnist --split test --out "$T/fmt.h5" >/dev/null || { echo "FAIL mdiff-data"; exit 1; }
A=(--data "$T/fmt.h5" --steps 6 --batch 9 --ch 8 --mult 1,2 --res-blocks 1 --attn 14 --heads 2
   --groups 4 --timesteps 100 --lr 1e-3 --warmup 0 --ema 0.9 --log-every 3 --sample-every 0
   --check-every 1)
for mode in "overlap 0.001" "blocking 4"; do
    set -- $mode
    if train "tcp_$1" "${TCP[@]}" -- "${A[@]}" --allreduce "$1" --bucket-mb "$2" &&
       train "shm_$1" -- "${A[@]}" --allreduce "$1" --bucket-mb "$2"; then
        grep -q "done: 6 steps" "$T/tcp_$1.log" || fail "tcp_$1" "no 'done: 6 steps' line"
        same "np=2 over TCP loopback ($1, $2 MB buckets) == over shared memory, bit for bit" "tcp_$1" "shm_$1"
    fi
done

[ $fails -eq 0 ] && echo "mpi_tcp: all passed" || echo "mpi_tcp: $fails failed"
[ $fails -eq 0 ]
