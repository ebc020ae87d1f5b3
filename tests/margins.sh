#!/usr/bin/env bash
# Measures the learned-quality figures of the toy tests (tests/unit/test_e2e_train.c, case "toy")
# over seeds and OpenBLAS kernel sets, and prints per figure: runs, mean, standard deviation,
# minimum, maximum, mean - 4 sd and mean + 4 sd (the most a lower or upper threshold may ask;
# issue 11). A run whose log already holds all its figures is not run again (delete OUT to redo). Not part of make test:
# 5 seeds x 5 kernels take about 25 min on 2 cores.
#   SEEDS="0 1 2 3 4"  KERNELS="Prescott Nehalem Sandybridge Haswell Zen"  JOBS=2
#   OUT=build/margins (raw logs, one per run; figures.txt, the parsed lines)
# Kernels the CPU cannot run (SkylakeX, Cooperlake without AVX-512) are skipped: OpenBLAS would
# fall back or the programs would die of SIGILL.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
SEEDS=${SEEDS:-0 1 2 3 4}
KERNELS=${KERNELS:-Prescott Nehalem Sandybridge Haswell Zen SkylakeX Cooperlake}
JOBS=${JOBS:-2}
OUT=${OUT:-$BUILD/margins}
mkdir -p "$OUT"
# a loaded machine may slow a run past the suite's own time limits: they are not what is measured
export OPENBLAS_NUM_THREADS=1 BUILD CK_RUN_CASE=toy CK_TIMEOUT_MULTIPLIER=10
avx512=0; grep -qw avx512f /proc/cpuinfo && avx512=1
runs=()
for k in $KERNELS; do
    case $k in SkylakeX|Cooperlake) [ $avx512 = 1 ] || { echo "skip $k: this CPU has no AVX-512"; continue; } ;; esac
    for s in $SEEDS; do runs+=("$k $s"); done
done
echo "margins: ${#runs[@]} runs (${JOBS} at a time) into $OUT"
one() {  # kernel seed
    if [ "$(grep -c '^margin |' "$OUT/$1-$2.log" 2>/dev/null)" = 6 ]; then echo "  have $1 seed $2"; return; fi
    OPENBLAS_CORETYPE=$1 MDIFF_E2E_SEED=$2 "$BUILD/tests/test_e2e_train" >"$OUT/$1-$2.log" 2>&1
    echo "  done $1 seed $2 (exit $?): $(grep -c '^margin |' "$OUT/$1-$2.log") figures"
}
export -f one; export OUT
printf '%s\n' "${runs[@]}" | xargs -P "$JOBS" -L 1 bash -c 'one $0 $1'
# A run is counted only when its log names the kernel it was asked for (OpenBLAS falls back
# silently for names it does not know on this CPU).
: >"$OUT/figures.txt"
for r in "${runs[@]}"; do
    set -- $r
    f="$OUT/$1-$2.log"
    core=$(sed -n 's/^OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p' "$f")
    [ "$core" = "$1" ] || { echo "  $1 seed $2: OpenBLAS ran '$core', not counted"; continue; }
    sed -n "s/^margin | /$1 | /p" "$f" >>"$OUT/figures.txt"
done
echo
echo "| figure | runs | mean | sd | min | max | mean - 4 sd | mean + 4 sd |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
awk -F' [|] ' '
    { name = $2; for (i = 4; i <= NF; i++) { split($i, kv, " "); key = name " " kv[1]; v = kv[2] + 0;
        if (kv[2] ~ /nan/) continue;  # the figure does not apply (swissroll has no modes)
        n[key]++; s[key] += v; ss[key] += v * v;
        if (!(key in lo) || v < lo[key]) lo[key] = v; if (!(key in hi) || v > hi[key]) hi[key] = v;
        if (!(key in seen)) { seen[key] = 1; order[++m] = key } } }
    END { for (j = 1; j <= m; j++) { k = order[j]; mean = s[k] / n[k];
            var = n[k] > 1 ? (ss[k] - n[k] * mean * mean) / (n[k] - 1) : 0; if (var < 0) var = 0; sd = sqrt(var);
            printf "| %s | %d | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n", k, n[k], mean, sd, lo[k], hi[k],
                   mean - 4 * sd, mean + 4 * sd } }' \
    "$OUT/figures.txt"
