#!/usr/bin/env bash
# One job per run directory (issue 16, item 1), with real mdiff-train processes on a toy set:
# a second job on a run dir that a running job holds exits 1 with one line naming the holder's PID
# and writes nothing; after the holder is killed with -9 (its flock dies with it) a third starts,
# takes the lock over with a warning, and a clean exit removes the lock file. Then the holder-
# record fallback for file systems without flock (an LD_PRELOAD shim makes flock() fail with
# ENOLCK, as NFS without lockd does): a live PID of this host refuses, a dead one is taken over, another host's record
# refuses naming MDIFF_FORCE_UNLOCK, which overrides it, and a record of the same SLURM job (a
# requeue) is taken over. Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
T=$(mktemp -d /tmp/mdiff_e2e_lock.XXXXXX)
HOLDER=""
cleanup() { [ -n "$HOLDER" ] && kill -KILL "$HOLDER" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
export OPENBLAS_NUM_THREADS=1
unset SLURM_JOB_ID SLURM_ARRAY_TASK_ID MDIFF_FORCE_UNLOCK
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "$(tail -n 3 "$T/err.txt" 2>/dev/null)"; fi; }
one_line() { [ "$(wc -l <"$T/err.txt")" -eq 1 ] && grep -qF -e "$1" "$T/err.txt"; }
snapshot() { (cd "$T/r" && find . -type f -print0 | sort -z | xargs -0 -r md5sum; find . -type l -printf '%p -> %l\n'); }
unchanged() { snapshot | cmp -s - "$T/before"; }
# refused FRAGMENT: the last run exited 1 ($rc) with one stderr line containing FRAGMENT
refused() { [ "$rc" -eq 1 ] && one_line "$1"; }

"$BIN/mdiff-data" toy --kind moons --n 300 --out "$T/moons.h5" >/dev/null || { echo "FAIL: toy data"; exit 1; }
A=(--data "$T/moons.h5" --run-dir "$T/r" --mlp-width 16 --mlp-depth 1 --batch 16 --timesteps 50
   --sample-every 0 --resume auto)
train() { "$BIN/mdiff-train" "${A[@]}" "$@" >"$T/out.txt" 2>"$T/err.txt"; }

# a finished short run first, so the run dir has checkpoints and metrics rows to protect
train --steps 4 --log-every 2
check "a first run finishes (exit $?)" test -e "$T/r/latest.h5"
# the holder: resumes, then trains with nothing due (no log line, checkpoint or grid) until killed
"$BIN/mdiff-train" "${A[@]}" --steps 100000000 --log-every 100000000 --ckpt-every 100000000 \
    >"$T/holder.txt" 2>&1 &
HOLDER=$!
for _ in $(seq 1 100); do grep -q "^pid=$HOLDER\$" "$T/r/.lock" 2>/dev/null && grep -q '^resumed from' "$T/holder.txt" && break; sleep 0.1; done
sleep 0.5 # past train.log and metrics.csv, which it writes once right after resuming
check "the holder's record: host, PID, start time" \
    bash -c "grep -qx 'host=$(hostname)' $T/r/.lock && grep -qx 'pid=$HOLDER' $T/r/.lock && grep -q '^started=' $T/r/.lock"
snapshot >"$T/before"
train --steps 8
rc=$?
check "second job on a held run dir: exit 1 (got $rc), one line naming PID $HOLDER and the fix" \
    refused "is in use by another job (host $(hostname), PID $HOLDER, started "
check "  ... naming the fix" grep -q 'wait for it to finish, or use another --run-dir' "$T/err.txt"
check "second job wrote nothing (checkpoints, metrics.csv, train.log, lock unchanged)" unchanged
SLURM_ARRAY_TASK_ID=3 train --steps 8
rc=$?
check "an array task on a shared run dir is told to put %a in --run-dir" refused "put %a in --run-dir"

kill -KILL "$HOLDER"; wait "$HOLDER" 2>/dev/null; HOLDER=""
check "the killed holder's record is still there" grep -q '^pid=' "$T/r/.lock"
train --steps 8
rc=$?
check "after kill -9 of the holder a third job starts and finishes (exit $rc), taking the lock over" \
    bash -c "[ $rc -eq 0 ] && grep -q 'resumed from' $T/out.txt && grep -q 'taking over .* ended without releasing' $T/err.txt"
check "a clean exit removes the lock file" test ! -e "$T/r/.lock"

# ---- without flock: the holder record decides ---------------------------------------------------
printf '#include <errno.h>\nint flock(int fd, int op) { (void)fd; (void)op; errno = ENOLCK; return -1; }\n' >"$T/enolck.c"
cc -shared -fPIC -o "$T/enolck.so" "$T/enolck.c" || fail "no flock" "cannot build the flock shim"
export LD_PRELOAD=$T/enolck.so
rec() { printf 'host=%s\npid=%s\nslurm_job=%s\nstarted=2026-01-01 00:00:00 UTC\n' "$1" "$2" "$3" >"$T/r/.lock"; }
sleep 300 & LIVE=$!
rec "$(hostname)" "$LIVE" ""
snapshot >"$T/before"
train --steps 9
rc=$?
check "no flock, this host, live PID: exit 1 (got $rc), one line naming it" refused "PID $LIVE, started"
check "  ... nothing written" unchanged
kill "$LIVE"; wait "$LIVE" 2>/dev/null
train --steps 9
rc=$?
check "no flock, this host, dead PID: taken over (exit $rc) with the fallback warning" \
    bash -c "[ $rc -eq 0 ] && grep -q 'flock on .* is not supported here' $T/err.txt && grep -q 'taking over' $T/err.txt"
rec other-node-17 4242 9911
train --steps 10
rc=$?
check "no flock, another host's record: exit 1 (got $rc), one line naming it" \
    refused "host other-node-17, PID 4242, SLURM job 9911"
check "  ... and how to clear it" grep -q 'squeue -j 9911), rerun with MDIFF_FORCE_UNLOCK=1' "$T/err.txt"
MDIFF_FORCE_UNLOCK=1 train --steps 10
check "MDIFF_FORCE_UNLOCK=1 takes another host's lock over (exit $?)" grep -q 'taking over' "$T/err.txt"
rec other-node-17 4242 9911
SLURM_JOB_ID=9911 train --steps 11
check "a record of this same SLURM job (a requeue on another node) is taken over (exit $?)" \
    bash -c "grep -q 'resumed from .* at step 10' $T/out.txt && [ ! -e $T/r/.lock ]"

echo "run_lock: $fails failed"
[ $fails -eq 0 ]
