#!/usr/bin/env bash
# Fault tests of issue 7 (mdiff-train): what a cluster does to a long run.
#  1. kill -9 at random moments of a run that checkpoints every step (so many kills land inside a
#     checkpoint write): after each kill latest.h5 names a complete checkpoint that opens, its step
#     never goes back, `--resume auto` continues from exactly that step, and leftover temporaries are
#     removed at the next start. KILLS kills (default 6 here; tests/faults_full.sh runs 25).
#  2. checkpoint writes that fail, under a file size limit (ulimit -f) and in a directory made
#     read-only mid-run (as an unprivileged user: root writes 0555 directories): the run warns,
#     continues, retries at the next interval, and at the last step exits 1 naming the last good
#     checkpoint, which is byte-identical afterwards; and a disk that fills up (ENOSPC on a small
#     tmpfs, when mounting one is allowed) and is freed again mid-run: later checkpoints succeed.
#  3. non-finite steps (MDIFF_FAULT_NONFINITE) on 2 ranks: skipped on every rank (replicas stay
#     identical, checked every step), counted, logged; K in a row stop the run with exit 1 and a
#     message naming the step; the last good checkpoint is untouched.
#  4. kill -9 of one rank under mpirun -np 2: the job ends (bounded by timeout) instead of hanging.
#  5. HDF5 file locking on a file system that rejects it (flock -> ENOLCK, an LD_PRELOAD shim):
#     every program works by default and with HDF5_USE_FILE_LOCKING=FALSE.
# Environment: BUILD (default build), KILLS (default 6), SEED (kill timing; default: random, printed).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
KILLS=${KILLS:-6}
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
T=$(mktemp -d /tmp/mdiff_faults.XXXXXX)
chmod 0755 "$T"
trap 'umount "$T/full" 2>/dev/null; rm -rf "$T"' EXIT
export LC_ALL=C OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe --bind-to none -q"
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
for p in mdiff-data mdiff-train mdiff-sample; do [ -x "$BIN/$p" ] || { echo "FAIL: $BIN/$p not built"; exit 1; }; done
"$BIN/mdiff-data" toy --kind moons --n 256 --out "$T/toy.h5" >/dev/null || { echo "FAIL: toy data"; exit 1; }
chmod 0644 "$T/toy.h5"
# a ~12 MB checkpoint (MLP 384 x 4): writing it is a good part of each step's time
BIG="--data $T/toy.h5 --batch 16 --mlp-width 384 --mlp-depth 4 --timesteps 50 --sample-every 0 --log-every 1000"
SMALL="--data $T/toy.h5 --batch 8 --mlp-width 16 --mlp-depth 2 --timesteps 20 --sample-every 0 --log-every 1"
latest_step() { local l; l=$(readlink "$1/latest.h5" 2>/dev/null) || { echo -1; return; }; l=${l#ckpt-}; echo $((10#${l%.h5})); }
wait_latest() { local k=0; while [ $k -lt 600 ] && [ ! -L "$1/latest.h5" ]; do sleep 0.05; k=$((k + 1)); done; }
opens() { "$BIN/mdiff-sample" "$1" -n 2 --steps 2 -o "$T/probe.png" >/dev/null 2>"$T/probe.err"; }

echo "== 1. kill -9 at random moments ($KILLS kills, checkpoint every step, seed $SEED)"
R=$T/kill
prev=-1; in_write=0; lost=0; survived=0; t0=$(date +%s.%N)
for ((i = 1; i <= KILLS; i++)); do
    "$BIN/mdiff-train" $BIG --run-dir "$R" --steps 1000000 --ckpt-every 1 --keep 2 --resume auto \
        >"$T/kill$i.log" 2>&1 &
    pid=$!
    sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.2f", 0.3 + 1.7 * r / 32767}')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    tmp=$(find "$R" -name '*.tmp.*' 2>/dev/null | wc -l)
    [ "$tmp" -gt 0 ] && in_write=$((in_write + 1))
    step=$(latest_step "$R")
    ok=1
    if [ "$step" -ge 0 ]; then
        if ! opens "$R/latest.h5"; then fail "kill $i" "latest.h5 (step $step) does not open: $(cat "$T/probe.err")"; ok=0; fi
    fi
    if [ "$step" -lt "$prev" ]; then fail "kill $i" "latest went back from step $prev to $step"; lost=$((lost + 1)); ok=0; fi
    if [ $i -gt 1 ] && [ "$prev" -ge 0 ] && ! grep -q "resumed from $R/latest.h5 at step $prev\$" "$T/kill$i.log" &&
        grep -q "^model:" "$T/kill$i.log"; then
        fail "kill $i" "did not resume at step $prev: $(grep -m1 resumed "$T/kill$i.log")"; ok=0; fi
    if [ "${prev_tmp:-0}" -gt 0 ] && grep -q "^model:" "$T/kill$i.log" &&
        ! grep -q "removed leftover temporary file" "$T/kill$i.log"; then
        fail "kill $i" "the previous kill's temporary file was not removed at start"; ok=0; fi
    [ $ok -eq 1 ] && survived=$((survived + 1))
    echo "     kill $i: latest step $step, temporaries left $tmp"
    prev=$step; prev_tmp=$tmp
done
"$BIN/mdiff-train" $BIG --run-dir "$R" --steps $((prev + 3)) --ckpt-every 1 --keep 2 --resume auto >"$T/final.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(latest_step "$R")" -eq $((prev + 3)) ] && ! compgen -G "$R/*.tmp.*" >/dev/null &&
    { [ "$prev" -lt 0 ] || grep -q "resumed from $R/latest.h5 at step $prev\$" "$T/final.log"; }; then
    pass "final resume from step $prev completes to step $((prev + 3)), no temporaries left"
else fail "final resume" "exit $rc: $(tail -n 3 "$T/final.log")"; fi
echo "     kills: $KILLS, survived: $survived, inside a checkpoint write (temporary left): $in_write, checkpoints lost: $lost ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s)"
[ "$survived" -eq "$KILLS" ] && [ "$lost" -eq 0 ] && pass "every kill survived, no checkpoint lost" || fail "kill loop" "$survived of $KILLS survived"

echo "== 2. failing checkpoint writes"
R=$T/fsize
"$BIN/mdiff-train" $SMALL --run-dir "$R" --steps 4 --ckpt-every 2 >/dev/null 2>&1 || fail "fsize setup" "first run failed"
sum=$(md5sum <"$R/ckpt-00000004.h5")
# ulimit -f inside mpirun: a singleton's MPI start-up itself needs larger files; SIGXFSZ ignored
$MPIRUN -np 1 bash -c "trap '' XFSZ; ulimit -f 40; exec $BIN/mdiff-train $SMALL --run-dir $R --steps 8 --ckpt-every 2 --resume auto" \
    >"$T/fsize.log" 2>"$T/fsize.err" </dev/null
rc=$?
nwarn=$(grep -c "warning: checkpoint at step [68] NOT written: write the file (File too large)" "$T/fsize.err")
if [ $rc -eq 1 ] && [ "$nwarn" -eq 2 ] && grep -q "error: the checkpoint at step 8 could not be written.*the previous one is intact: $R/latest.h5" "$T/fsize.err" &&
    [ "$(md5sum <"$R/ckpt-00000004.h5")" = "$sum" ] && [ "$(latest_step "$R")" -eq 4 ] &&
    ! compgen -G "$R/*.tmp.*" >/dev/null && opens "$R/latest.h5"; then
    pass "ulimit -f: warned at step 6, retried at 8, exit 1 naming the intact checkpoint (step 4)"
else fail "ulimit -f" "exit $rc, $nwarn warnings: $(cat "$T/fsize.err")"; fi

# read-only directory mid-run, as user nobody (root ignores directory permissions)
R=$T/ro
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    mkdir -p "$R" && chown nobody "$R"
    AS_NOBODY="setpriv --reuid=nobody --regid=nogroup --clear-groups"
    $AS_NOBODY "$BIN/mdiff-train" $BIG --run-dir "$R" --steps 100 --ckpt-every 20 >"$T/ro.log" 2>"$T/ro.err" &
    pid=$!
    wait_latest "$R"
    kill -STOP $pid; chmod 0555 "$R"; good=$(latest_step "$R"); sum=$(md5sum <"$R/latest.h5"); kill -CONT $pid
    timeout 120 tail --pid=$pid -f /dev/null
    wait $pid; rc=$?
    chmod 0755 "$R"
    nwarn=$(grep -c "NOT written: create the file (Permission denied)" "$T/ro.err")
    if [ $rc -eq 1 ] && [ "$nwarn" -ge 2 ] && grep -q "could not be written.*the previous one is intact: $R/ckpt-$(printf %08d "$good").h5" "$T/ro.err" &&
        [ "$(latest_step "$R")" -eq "$good" ] && [ "$(md5sum <"$R/latest.h5")" = "$sum" ]; then
        pass "read-only run dir: $nwarn failed writes warned, exit 1 naming the intact checkpoint (step $good)"
    else fail "read-only run dir" "exit $rc, $nwarn warnings, good $good: $(tail -n 3 "$T/ro.err")"; fi
else
    echo "skip read-only run dir: needs user nobody and setpriv"
fi

# disk full (ENOSPC) mid-run on a small tmpfs, then space freed: the run warns, carries on, and the
# next interval's checkpoint succeeds (nothing of the failed write holds the space)
R=$T/full/run
mkdir -p "$T/full"
if mount -t tmpfs -o size=48m tmpfs "$T/full" 2>/dev/null; then
    "$BIN/mdiff-train" $BIG --run-dir "$R" --steps 100 --ckpt-every 20 --keep 1 >"$T/full.log" 2>"$T/full.err" &
    pid=$!
    wait_latest "$R"
    kill -STOP $pid; dd if=/dev/zero of="$T/full/filler" bs=1M >/dev/null 2>&1; kill -CONT $pid
    for ((k = 0; k < 600; k++)); do grep -q "NOT written" "$T/full.err" && break; sleep 0.05; done
    kill -STOP $pid; rm -f "$T/full/filler"; kill -CONT $pid
    wait $pid; rc=$?
    if [ $rc -eq 0 ] && grep -q "NOT written: write the file (No space left on device)" "$T/full.err" &&
        [ "$(latest_step "$R")" -eq 100 ] && opens "$R/latest.h5" && ! compgen -G "$R/*.tmp.*" >/dev/null; then
        pass "disk full: $(grep -c "NOT written" "$T/full.err") checkpoint(s) not written (ENOSPC, warned), later ones written after space was freed"
    else fail "disk full" "exit $rc, latest $(latest_step "$R"): $(head -n 3 "$T/full.err")"; fi
    umount "$T/full"
else
    echo "skip disk full: cannot mount a tmpfs here"
fi

echo "== 3. non-finite steps (2 ranks)"
R=$T/nf
$MPIRUN -np 2 "$BIN/mdiff-train" $SMALL --run-dir "$R" --steps 12 --ckpt-every 4 --check-every 1 --max-nonfinite 3 \
    </dev/null >/dev/null 2>&1 || fail "nonfinite setup" "first run failed"
sum=$(md5sum <"$R/ckpt-00000012.h5")
# steps 14 and 15 (0-based 13, 14) non-finite: 2 in a row < K = 3, the run goes on
MDIFF_FAULT_NONFINITE=13:14 $MPIRUN -np 2 "$BIN/mdiff-train" $SMALL --run-dir "$R" --steps 20 --ckpt-every 4 \
    --check-every 1 --max-nonfinite 3 --resume auto </dev/null >"$T/nf1.log" 2>"$T/nf1.err"
rc=$?
nskip=$(grep -c "non-finite gradient.*step skipped on every rank" "$T/nf1.err")
attr=$(h5dump -a /state/nonfinite_skipped "$R/latest.h5" 2>/dev/null | grep -A1 "DATA {" | tail -n1 | tr -dc 0-9)
if [ $rc -eq 0 ] && [ "$nskip" -eq 2 ] && grep -q "step 14: non-finite" "$T/nf1.err" && grep -q "done: 20 steps, 2 skipped" "$T/nf1.log" && [ "$attr" = "02" ]; then
    pass "2 non-finite steps skipped on every rank (replicas checked each step), counted (checkpoint says 2)"
else fail "non-finite skip" "exit $rc, $nskip skip lines, attribute '$attr': $(tail -n 3 "$T/nf1.err")"; fi
sum=$(md5sum <"$R/ckpt-00000020.h5")
# steps 22, 23, 24 (0-based 21..23) non-finite: the run stops at step 24 before its checkpoint
MDIFF_FAULT_NONFINITE=21:1000 $MPIRUN -np 2 "$BIN/mdiff-train" $SMALL --run-dir "$R" --steps 40 --ckpt-every 4 \
    --check-every 1 --max-nonfinite 3 --resume auto </dev/null >"$T/nf2.log" 2>"$T/nf2.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "training diverged: 3 consecutive non-finite steps ending at step 24" "$T/nf2.err" &&
    grep -q "the last good one, $R/latest.h5, is untouched" "$T/nf2.err" && [ "$(latest_step "$R")" -eq 20 ] &&
    [ "$(md5sum <"$R/ckpt-00000020.h5")" = "$sum" ] && [ "$(grep -c "step skipped on every rank" "$T/nf2.err")" -eq 3 ] &&
    [ "$(grep -c . "$T/nf2.err")" -eq 4 ]; then
    pass "3 consecutive non-finite steps: 3 warnings, exit 1 naming step 24, checkpoint 20 untouched"
else fail "non-finite stop" "exit $rc, latest $(latest_step "$R"): $(cat "$T/nf2.err")"; fi

echo "== 4. a rank dies under mpirun"
R=$T/rankdie
t0=$(date +%s.%N)
timeout 60 $MPIRUN -np 2 "$BIN/mdiff-train" $SMALL --run-dir "$R" --steps 10000000 --ckpt-every 500 </dev/null >"$T/die.log" 2>"$T/die.err" &
tpid=$!
wait_latest "$R"
mp=$(pgrep -P $tpid | head -n 1)
victim=$( [ -n "$mp" ] && pgrep -P "$mp" | tail -n 1)
[ -n "$victim" ] && kill -9 "$victim"
wait $tpid; rc=$?
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
left=$(pgrep -f -- "--run-dir $R " | wc -l)
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$left" -eq 0 ]; then
    pass "kill -9 of one rank (pid $victim): the job ended with exit $rc after ${dt}s, no process left"
else fail "rank death" "victim '$victim', exit $rc (124: hung until timeout), $left processes left"; fi
for p in $(pgrep -f -- "--run-dir $R "); do kill -9 "$p"; done # only this test's own leftovers

echo "== 5. HDF5 file locking"
# A file system without locks (NFS without lockd, some parallel file systems): flock() fails with
# ENOLCK, imitated by an LD_PRELOAD shim. With the user's HDF5_USE_FILE_LOCKING=TRUE HDF5 must fail
# (the shim bites); by default (mdiff turns locking off unless the user set the variable) and with
# HDF5_USE_FILE_LOCKING=FALSE every program works.
printf '#include <errno.h>\nint flock(int fd, int op) { (void)fd; (void)op; errno = ENOLCK; return -1; }\n' >"$T/enolck.c"
cc -shared -fPIC -o "$T/enolck.so" "$T/enolck.c" || fail "locking" "cannot build the flock shim"
all_programs() { # run dir suffix: data, train, resume, sample, info
    local R=$T/lock$1
    "$BIN/mdiff-data" toy --kind moons --n 64 --out "$R.h5" >/dev/null 2>&1 &&
    "$BIN/mdiff-train" $SMALL --data "$R.h5" --run-dir "$R" --steps 4 --ckpt-every 2 >/dev/null 2>&1 &&
    "$BIN/mdiff-train" $SMALL --data "$R.h5" --run-dir "$R" --steps 6 --ckpt-every 2 --resume auto >"$R.log" 2>&1 &&
    grep -q "resumed from" "$R.log" && opens "$R/latest.h5" && "$BIN/mdiff-data" info "$R.h5" >/dev/null 2>&1
}
if HDF5_USE_FILE_LOCKING=TRUE LD_PRELOAD=$T/enolck.so "$BIN/mdiff-data" toy --kind moons --n 64 --out "$T/x.h5" >/dev/null 2>&1; then
    fail "locking" "HDF5_USE_FILE_LOCKING=TRUE under the ENOLCK shim should fail (shim not effective)"
else pass "the ENOLCK shim makes HDF5 fail when the user forces locking (HDF5_USE_FILE_LOCKING=TRUE)"; fi
LD_PRELOAD=$T/enolck.so all_programs 1 && pass "no locks on the file system: data, train, resume, sample, info work (default)" ||
    fail "no locks (default)" "$(tail -n 3 "$T/lock1.log" 2>/dev/null)"
HDF5_USE_FILE_LOCKING=FALSE LD_PRELOAD=$T/enolck.so all_programs 2 && pass "the same with HDF5_USE_FILE_LOCKING=FALSE" ||
    fail "HDF5_USE_FILE_LOCKING=FALSE" "$(tail -n 3 "$T/lock2.log" 2>/dev/null)"
HDF5_USE_FILE_LOCKING=TRUE all_programs 3 && pass "HDF5_USE_FILE_LOCKING=TRUE on a file system with locks" ||
    fail "HDF5_USE_FILE_LOCKING=TRUE" "$(tail -n 3 "$T/lock3.log" 2>/dev/null)"

echo "faults.sh: $fails failure(s)"
[ $fails -eq 0 ]
