#!/usr/bin/env bash
# `make sanitize`: mdiff built with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -O1, in
# build-asan/), then (1) every unit suite, (2) one end-to-end run: mdiff-data, mdiff-train with
# checkpoints, a resume and a sample grid, mdiff-sample (images and points), and mdiff-train and
# mdiff-sample under mpirun -np 2, (3) a short run of each libFuzzer target (tests/fuzz/run.sh,
# clang). Any sanitizer report fails it. Leak checking is on for single-process runs (Open MPI's
# own start-up allocations suppressed) in the unit suites; in the programs, which all start MPI, it
# is off (DESIGN.md §7) and tests/valgrind.sh checks their leaks.
# Environment: SAN_BUILD (default build-asan), FUZZ_TIME (seconds per fuzz target, default 5).
set -u
cd "$(dirname "$0")/.."
B=${SAN_BUILD:-build-asan}
T=$(mktemp -d /tmp/mdiff_sanitize.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 LC_ALL=C
cat >"$T/lsan.supp" <<'SUPP'
# Open MPI, PMIx, hwloc and libevent allocate at MPI_Init and keep it until exit
leak:libmpi.so
leak:libopen-pal.so
leak:libopen-rte.so
leak:libpmix.so
leak:libhwloc.so
leak:libevent
leak:mca_
leak:libgomp.so
SUPP
ASAN1="detect_leaks=1:abort_on_error=1"
# the programs start MPI: its components are dlclose()d at MPI_Finalize, so their leaks cannot be
# told apart by module ("<unknown module>"); leaks of the programs are checked by valgrind instead
ASANTOOL="detect_leaks=0:abort_on_error=1"
export LSAN_OPTIONS="suppressions=$T/lsan.supp:print_suppressions=0"
ASANMPI="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fails=0
t_start=$(date +%s)
step() { printf '  %-58s' "$1"; }
ok() { echo "ok ($1)"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
# run LOG CMD...: runs it, fails on a non-zero exit or any sanitizer line in its output
run() {
    local log=$1; shift
    "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] || grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$log"; then
        echo "FAIL (exit $rc): $*"; grep -E -A12 "ERROR: |runtime error:" "$log" | head -n 30 | sed 's/^/      | /'
        [ $rc -ne 0 ] && ! grep -qE "ERROR: |runtime error:" "$log" && tail -n 10 "$log" | sed 's/^/      | /'
        fails=$((fails + 1)); return 1
    fi
    return 0
}

echo "sanitize: building $B (gcc -O1 -fsanitize=address,undefined)"
make --no-print-directory -s BUILD=$B OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer" tests \
    >"$T/build.log" 2>&1 || { tail -n 30 "$T/build.log"; echo "sanitize: build FAILED"; exit 1; }

echo "sanitize: unit suites"
for src in tests/unit/test_*.c; do
    n=$(basename "$src" .c)
    # test_e2e_*: minutes of training that the end-to-end run below already covers under ASan
    case "$n" in test_e2e_*) continue ;; esac
    step "$n"
    t0=$(date +%s)
    # test_data's bad-input cases end in exit(1) by design, leaving the aborted call's buffers
    opts=$ASAN1; [ "$n" = test_data ] && opts=$ASANTOOL
    ASAN_OPTIONS=$opts run "$T/$n.log" "$B/tests/$n" && ok "$(( $(date +%s) - t0 ))s"
done

echo "sanitize: end-to-end"
BIN=$B/bin
mk_images() { # tiny 16 x 1 x 8 x 8 image set through an IDX pair
    local d=$T/idx; mkdir -p "$d"
    be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
    { be32 2051; be32 16; be32 8; be32 8; head -c 1024 /dev/urandom; } | gzip -n >"$d/train-images-idx3-ubyte.gz"
    { be32 2049; be32 16; head -c 16 /dev/zero; } | gzip -n >"$d/train-labels-idx1-ubyte.gz"
}
mk_images
U="--ch 8 --mult 1,2 --res-blocks 1 --attn 4 --heads 2 --groups 4 --timesteps 20 --batch 4 --log-every 2 --sample-every 3 --ckpt-every 2"
t0=$(date +%s)
step "mdiff-data (images, toy, info)"
ASAN_OPTIONS=$ASANTOOL run "$T/d1.log" $BIN/mdiff-data fashion-mnist --src "$T/idx" --out "$T/img.h5" &&
ASAN_OPTIONS=$ASANTOOL run "$T/d2.log" $BIN/mdiff-data toy --kind swissroll --n 128 --out "$T/toy.h5" &&
ASAN_OPTIONS=$ASANTOOL run "$T/d3.log" $BIN/mdiff-data info "$T/img.h5" "$T/toy.h5" && ok "$(( $(date +%s) - t0 ))s"
t0=$(date +%s)
step "mdiff-train U-Net 4 steps, resume to 6, sample grids"
ASAN_OPTIONS=$ASANTOOL run "$T/t1.log" $BIN/mdiff-train --data "$T/img.h5" --run-dir "$T/ru" --steps 4 $U &&
ASAN_OPTIONS=$ASANTOOL run "$T/t2.log" $BIN/mdiff-train --data "$T/img.h5" --run-dir "$T/ru" --steps 6 --resume auto $U &&
ok "$(( $(date +%s) - t0 ))s"
t0=$(date +%s)
step "mdiff-sample U-Net (ddim, ddpm, dpm++2m, --h5, --trajectory)"
ASAN_OPTIONS=$ASANTOOL run "$T/s1.log" $BIN/mdiff-sample "$T/ru/latest.h5" -n 5 --steps 4 -o "$T/g.png" --h5 "$T/g.h5" --trajectory "$T/tr.png" &&
ASAN_OPTIONS=$ASANTOOL run "$T/s2.log" $BIN/mdiff-sample "$T/ru/latest.h5" -n 3 --sampler ddpm --no-ema -o "$T/g2.png" &&
ASAN_OPTIONS=$ASANTOOL run "$T/s3.log" $BIN/mdiff-sample "$T/ru/latest.h5" -n 3 --sampler dpm++2m --steps 5 -o "$T/g3.png" &&
ok "$(( $(date +%s) - t0 ))s"
t0=$(date +%s)
step "MLP on points: train (val data, flips off) and sample"
ASAN_OPTIONS=$ASANTOOL run "$T/t3.log" $BIN/mdiff-train --data "$T/toy.h5" --val-data "$T/toy.h5" --run-dir "$T/rm" --steps 20 --batch 16 \
    --mlp-width 32 --mlp-depth 2 --timesteps 30 --objective v --schedule cosine --log-every 5 --sample-every 10 --ckpt-every 10 &&
ASAN_OPTIONS=$ASANTOOL run "$T/s4.log" $BIN/mdiff-sample "$T/rm/latest.h5" -n 50 -o "$T/p.png" --h5 "$T/p.h5" && ok "$(( $(date +%s) - t0 ))s"
t0=$(date +%s)
step "mpirun -np 2: mdiff-train U-Net and mdiff-sample"
ASAN_OPTIONS=$ASANMPI run "$T/m1.log" mpirun --oversubscribe --bind-to none -q -x ASAN_OPTIONS -x UBSAN_OPTIONS -np 2 \
    $BIN/mdiff-train --data "$T/img.h5" --run-dir "$T/rp" --steps 4 --check-every 1 $U &&
ASAN_OPTIONS=$ASANMPI run "$T/m2.log" mpirun --oversubscribe --bind-to none -q -x ASAN_OPTIONS -x UBSAN_OPTIONS -np 2 \
    $BIN/mdiff-sample "$T/rp/latest.h5" -n 5 --steps 3 -o "$T/mp.png" && ok "$(( $(date +%s) - t0 ))s"
t0=$(date +%s)
step "a rejected input exits cleanly (bad checkpoint, bad option)"
head -c 5000 "$T/ru/latest.h5" >"$T/trunc.h5"
ASAN_OPTIONS=$ASANTOOL $BIN/mdiff-sample "$T/trunc.h5" >"$T/e1.log" 2>&1; r1=$?
ASAN_OPTIONS=$ASANTOOL $BIN/mdiff-train --data "$T/img.h5" --run-dir "$T/rx" --groups 3 >"$T/e2.log" 2>&1; r2=$?
if [ $r1 -eq 1 ] && [ $r2 -eq 1 ] && ! grep -qE "Sanitizer|runtime error" "$T/e1.log" "$T/e2.log"; then ok "$(( $(date +%s) - t0 ))s"
else bad "exit $r1/$r2: $(cat "$T/e1.log" "$T/e2.log" | head -n 20)"; fi

echo "sanitize: fuzzing (tests/fuzz/run.sh, ${FUZZ_TIME:-5}s per target)"
bash tests/fuzz/run.sh 2>&1 | grep -E "^(ok|FAIL|fuzz:)|    \|" | sed 's/^/  /'
[ "${PIPESTATUS[0]}" -eq 0 ] || fails=$((fails + 1))

echo "sanitize: $fails failure(s), $(( $(date +%s) - t_start ))s"
[ $fails -eq 0 ]
