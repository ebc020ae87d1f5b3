#!/usr/bin/env bash
# Preemption under MPI (issue 5): a signal that reaches ONE rank stops every rank at the same step
# after one checkpoint, and the job exits 3 (mpirun returns the ranks' status).
#  1. SIGUSR1 to rank 1's process only (np=2): exit 3, "stopped by a signal at step S", latest.h5
#     at step S, and every rank's gathered data cursor says it ran exactly S steps of its share of
#     the batch (epoch * rows + cursor = S * B_r), i.e. all ranks checkpointed at the same step;
#     then `--resume auto` continues from S and finishes (exit 0).
#  2. SIGUSR1 to mpirun itself (what jobs/train.sbatch forwards): Open MPI passes it on; exit 3.
#  3. SIGTERM to rank 2 of 3: exit 3 with a checkpoint.
# Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
BIN=$BUILD/bin
# ckpt_check reads the checkpoints' step and data cursors (no Python in tests): built here, as
# bad_input.sh builds h5poke; into a temporary name first so a concurrent run never sees half a file.
CK=$BUILD/tests/ckpt_check
mkdir -p "$BUILD/tests"
mpicc -O1 -Wall -Wextra -o "$CK.$$" tests/e2e/ckpt_check.c $(pkg-config --cflags --libs hdf5-openmpi) -lm &&
    mv -f "$CK.$$" "$CK" || { echo "FAIL: cannot build ckpt_check"; exit 1; }
T=$(mktemp -d /tmp/mdiff_e2e_mpi_signal.XXXXXX)
MPID=""
cleanup() { [ -n "$MPID" ] && kill -KILL "$MPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

"$BIN/mdiff-data" toy --kind moons --n 120 --out "$T/moons.h5" >/dev/null || { echo "FAIL mdiff-data"; exit 1; }
# Steps enough to outlast the test; a checkpoint only when stopped (or at the far end).
ARGS=(--data "$T/moons.h5" --mlp-width 32 --mlp-depth 2 --batch 23 --timesteps 50 --lr 1e-3
      --warmup 0 --steps 100000000 --log-every 200 --ckpt-every 100000000 --sample-every 0)

# start NAME NP: mdiff-train under mpirun in the background; MPID = mpirun's pid. Waits until the
# first log line of training shows up (every rank is past set-up and in the loop).
start() {
    local name=$1 np=$2
    mpirun --oversubscribe --bind-to none -np "$np" "$BIN/mdiff-train" "${ARGS[@]}" \
        --run-dir "$T/$name" >"$T/$name.log" 2>&1 &
    MPID=$!
    for _ in $(seq 1 300); do
        grep -q '^step ' "$T/$name.log" 2>/dev/null && return 0
        kill -0 "$MPID" 2>/dev/null || break
        sleep 0.1
    done
    fail "$name" "training did not start:"; tail -n 10 "$T/$name.log" | sed 's/^/    | /'
    kill -KILL "$MPID" 2>/dev/null; wait "$MPID" 2>/dev/null; MPID=""
    return 1
}

# rank_pid R: pid of the rank-R process among mpirun's children (Open MPI puts the rank in the
# environment of each process it starts).
rank_pid() {
    local p
    for p in $(pgrep -P "$MPID"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
            echo "$p"; return 0; fi
    done
    return 1
}

# finish NAME: waits for mpirun (at most 30 s) and checks exit 3 and the stop line; sets STOP_STEP.
finish() {
    local name=$1 rc
    for _ in $(seq 1 300); do kill -0 "$MPID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$MPID" 2>/dev/null; then
        fail "$name" "job still running 30 s after the signal"; kill -KILL "$MPID"; wait "$MPID"; MPID=""
        return 1
    fi
    wait "$MPID"; rc=$?; MPID=""
    STOP_STEP=$(sed -n 's/^stopped by a signal at step \([0-9]*\) .*/\1/p' "$T/$name.log")
    if [ $rc -ne 3 ]; then fail "$name" "mpirun exited $rc, expected 3"; tail -n 8 "$T/$name.log" | sed 's/^/    | /'; return 1; fi
    if [ -z "$STOP_STEP" ]; then fail "$name" "no 'stopped by a signal at step' line"; return 1; fi
    return 0
}

# ckpt_state FILE: "step world e0 e1 ... c0 c1 ..." (loader epochs and cursors of every rank).
ckpt_state() { "$CK" state "$1"; }

# ---- 1. SIGUSR1 to rank 1 only ------------------------------------------------------------------
if start usr1_rank1 2; then
    pid=$(rank_pid 1)
    if [ -z "$pid" ]; then fail "usr1_rank1" "cannot find rank 1's process"; kill -KILL "$MPID"; wait "$MPID"; MPID=""
    else
        kill -USR1 "$pid"
        if finish usr1_rank1; then
            pass "SIGUSR1 to rank 1 (pid $pid): job exits 3 after stopping at step $STOP_STEP"
            read -r step world e0 e1 c0 c1 <<<"$(ckpt_state "$T/usr1_rank1/latest.h5")"
            # 120 rows: 60 per rank; batch 23: rank 0 takes 12 per step, rank 1 11
            if [ "$step" = "$STOP_STEP" ] && [ "$world" = 2 ] &&
               [ $((e0 * 60 + c0)) -eq $((STOP_STEP * 12)) ] && [ $((e1 * 60 + c1)) -eq $((STOP_STEP * 11)) ]; then
                pass "checkpoint at step $step holds both ranks' cursors at that step (epochs $e0 $e1, cursors $c0 $c1)"
            else
                fail "usr1_rank1 checkpoint" "step $step world $world epochs $e0 $e1 cursors $c0 $c1 (stop step $STOP_STEP)"
            fi
            more=$((STOP_STEP + 7))
            if mpirun --oversubscribe --bind-to none -np 2 "$BIN/mdiff-train" "${ARGS[@]}" --steps "$more" \
                   --run-dir "$T/usr1_rank1" --resume auto >"$T/usr1_resume.log" 2>&1 &&
               grep -q "resumed from .* at step $STOP_STEP\$" "$T/usr1_resume.log" &&
               [ "$(ckpt_state "$T/usr1_rank1/latest.h5" | cut -d' ' -f1)" = "$more" ]; then
                pass "--resume auto continues from step $STOP_STEP to $more"
            else
                fail "resume after stop" "$(tail -n 5 "$T/usr1_resume.log")"
            fi
        fi
    fi
fi

# ---- 2. SIGUSR1 to mpirun (forwarded to every rank) ----------------------------------------------
if start usr1_mpirun 2; then
    kill -USR1 "$MPID"
    if finish usr1_mpirun && [ "$(ckpt_state "$T/usr1_mpirun/latest.h5" | cut -d' ' -f1)" = "$STOP_STEP" ]; then
        pass "SIGUSR1 to mpirun is forwarded: exit 3, checkpoint at step $STOP_STEP"
    fi
fi

# ---- 3. SIGTERM to rank 2 of 3 ---------------------------------------------------------------
if start term_rank2 3; then
    pid=$(rank_pid 2)
    if [ -z "$pid" ]; then fail "term_rank2" "cannot find rank 2's process"; kill -KILL "$MPID"; wait "$MPID"; MPID=""
    else
        kill -TERM "$pid"
        if finish term_rank2 && [ "$(ckpt_state "$T/term_rank2/latest.h5" | cut -d' ' -f1-2)" = "$STOP_STEP 3" ]; then
            pass "SIGTERM to rank 2 of 3: exit 3, checkpoint at step $STOP_STEP"
        fi
    fi
fi

[ $fails -eq 0 ] && echo "mpi_signal: all passed" || echo "mpi_signal: $fails failed"
[ $fails -eq 0 ]
