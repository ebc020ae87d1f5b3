#!/usr/bin/env bash
# bench/run.sh: `make bench` — one run on this machine that prints the table of issue 6:
# the sgemm limit, mdiff vs the PyTorch twin (training with AdamW and inference, 1 thread and all
# cores), data-parallel scaling (np=1 vs np=2, 1 thread per rank), peak memory per rank and the
# time per op family. Read bench/README.md for what each line means.
# Environment: BUILD (default build), BENCH_REPS (timed reps per figure, default 5),
# BENCH_STEPS (mdiff-train steps per data-parallel run, default 30), BENCH_PYTHON (the python with
# torch, default /usr/bin/python3; without torch the PyTorch lines are skipped with a message).
set -euo pipefail
BUILD=${BUILD:-build}
REPS=${BENCH_REPS:-5}
STEPS=${BENCH_STEPS:-30}
PY=${BENCH_PYTHON:-/usr/bin/python3}
T=$(nproc)
BATCH=64
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/mdiff-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_NUM_THREADS OMP_NUM_THREADS

bm="$BUILD/bench/bench_model"
for f in "$bm" "$BUILD/bin/mdiff-train" "$BUILD/bin/mdiff-data"; do
    [ -x "$f" ] || { echo "bench: $f is missing: run 'make bench' (or make tools $bm)" >&2; exit 1; }
done

# RESULT lines -> value of one key from a saved output
val() { awk -v k="$2" '$1 == "RESULT" && $2 == k { print $3 }' "$1" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.0f%%", 100 * a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a == "") print "-"; else printf "%.1f", a }'; }
row() { printf '%-52s %14s %14s\n' "$@"; }
log() { echo "[bench] $*" >&2; }

cpu=$(lscpu 2>/dev/null | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
log "sgemm limit ($T threads)"
"$bm" --mode limit --threads "$T" --batch $BATCH > "$tmp/limit.txt"

for t in 1 "$T"; do
    log "mdiff train, $t thread(s)"
    "$bm" --mode train --threads "$t" --batch $BATCH --reps "$REPS" --warmup 2 > "$tmp/train$t.txt"
    log "mdiff inference, $t thread(s)"
    "$bm" --mode infer --threads "$t" --batch $BATCH --reps "$REPS" --warmup 2 > "$tmp/infer$t.txt"
done
params=$(awk '/^bench_model:/ { for (i = 1; i <= NF; i++) if ($(i+1) == "parameters,") print $i; exit }' "$tmp/train1.txt")

torch_ok=0
if [ -x "$PY" ] && "$PY" -c "import torch" 2>/dev/null; then
    torch_ok=1
    for t in 1 "$T"; do
        log "PyTorch train, $t thread(s)"
        "$PY" "$here/bench_torch.py" --mode train --threads "$t" --batch $BATCH --reps "$REPS" \
            --params "$params" > "$tmp/torch_train$t.txt"
        log "PyTorch inference, $t thread(s)"
        "$PY" "$here/bench_torch.py" --mode infer --threads "$t" --batch $BATCH --reps "$REPS" \
            --params "$params" > "$tmp/torch_infer$t.txt"
    done
fi
tval() { [ -f "$1" ] && awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i+1) }' "$1" || true; }

# data parallel: mdiff-train on Fashion-MNIST, 1 OpenBLAS/OpenMP thread per rank
dp_ok=0
if "$BUILD/bin/mdiff-data" fashion-mnist --out "$tmp/fm.h5" > "$tmp/data.txt" 2>&1; then
    dp_ok=1
    for np in 1 2; do
        log "mdiff-train np=$np, $STEPS steps"
        OPENBLAS_NUM_THREADS=1 mpirun -np $np --bind-to none --oversubscribe \
            /usr/bin/time -f "RSSKB %M" "$BUILD/bin/mdiff-train" --data "$tmp/fm.h5" \
            --run-dir "$tmp/run$np" --steps "$STEPS" --batch $BATCH --log-every 3 \
            --sample-every 0 --ckpt-every 100000 --check-every 0 > "$tmp/dp$np.txt" 2>&1 \
            || { echo "bench: mdiff-train np=$np failed:" >&2; tail -5 "$tmp/dp$np.txt" >&2; dp_ok=0; }
    done
else
    log "no Fashion-MNIST (dataset-fashion-mnist): skipping the data-parallel runs"
fi
# img/s of the log lines after the first interval (warm-up), median
dp_ips() { awk '/^step [0-9]+\// { for (i = 1; i <= NF; i++) if ($(i) == "img/s") print $(i-1) }' "$1" \
    | tail -n +2 | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
dp_rss() { awk '$1 == "RSSKB" { if ($2 > m) m = $2 } END { if (m) printf "%.0f", m / 1024 }' "$1"; }

load1=$(cut -d' ' -f1-3 /proc/loadavg)
sq1=$(val "$tmp/limit.txt" sgemm_square_1); sqT=$(val "$tmp/limit.txt" sgemm_square_T)
un1=$(val "$tmp/limit.txt" sgemm_unet_1); unT=$(val "$tmp/limit.txt" sgemm_unet_T)
mi1=$(val "$tmp/train1.txt" img_s); miT=$(val "$tmp/train$T.txt" img_s)
mg1=$(val "$tmp/train1.txt" gflops); mgT=$(val "$tmp/train$T.txt" gflops)
fi1=$(val "$tmp/infer1.txt" img_s); fiT=$(val "$tmp/infer$T.txt" img_s)
pi1=$(tval "$tmp/torch_train1.txt" img_s); piT=$(tval "$tmp/torch_train$T.txt" img_s)
pf1=$(tval "$tmp/torch_infer1.txt" img_s); pfT=$(tval "$tmp/torch_infer$T.txt" img_s)

echo
echo "mdiff benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $cpu, $T cores, git $(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
echo "default U-Net 28x28x1 ($params parameters), batch $BATCH; medians of $REPS reps after 2 warm-up; load average before/after: $load0 / $load1"
echo
row "" "1 thread" "$T threads"
row "sgemm 2048^3 GFLOP/s (the limit)" "$(fmt "$sq1")" "$(fmt "$sqT")"
row "sgemm at the U-Net's GEMM shapes, FLOP-weighted" "$(fmt "$un1")" "$(fmt "$unT")"
row "train: mdiff images/s" "$(fmt "$mi1")" "$(fmt "$miT")"
row "train: mdiff GFLOP/s" "$(fmt "$mg1")" "$(fmt "$mgT")"
row "train: mdiff share of the 2048^3 sgemm limit" "$(pct "$mg1" "$sq1")" "$(pct "$mgT" "$sqT")"
row "train: mdiff share of the U-Net-shape sgemm" "$(pct "$mg1" "$un1")" "$(pct "$mgT" "$unT")"
if [ $torch_ok = 1 ]; then
    row "train: PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) images/s (AdamW)" "$(fmt "$pi1")" "$(fmt "$piT")"
    row "train: mdiff / PyTorch" "$(ratio "$mi1" "$pi1")" "$(ratio "$miT" "$piT")"
fi
row "inference (1 denoiser evaluation): mdiff images/s" "$(fmt "$fi1")" "$(fmt "$fiT")"
if [ $torch_ok = 1 ]; then
    row "inference: PyTorch images/s" "$(fmt "$pf1")" "$(fmt "$pfT")"
    row "inference: mdiff / PyTorch" "$(ratio "$fi1" "$pf1")" "$(ratio "$fiT" "$pfT")"
else
    echo "PyTorch: skipped ($PY cannot import torch; install python3-torch for the comparison)"
fi
echo
if [ $dp_ok = 1 ]; then
    d1=$(dp_ips "$tmp/dp1.txt"); d2=$(dp_ips "$tmp/dp2.txt")
    row "data parallel (mdiff-train, 1 thread/rank)" "np=1" "np=2"
    row "train images/s (global batch $BATCH)" "$(fmt "$d1")" "$(fmt "$d2")"
    row "speed-up np=2 / np=1 (target >= 1.85x)" "" "$(ratio "$d2" "$d1")"
    row "scaling efficiency (speed-up / 2)" "" "$(awk -v a="$d1" -v b="$d2" 'BEGIN { if (a > 0) printf "%.0f%%", 50 * b / a; else print "-" }')"
    row "peak RSS per rank, mdiff-train (MB)" "$(dp_rss "$tmp/dp1.txt")" "$(dp_rss "$tmp/dp2.txt")"
    echo
fi
row "peak RSS of one training process (MB)" "1 thread" "$T threads"
row "mdiff (model, arena, params, grads, AdamW)" "$(val "$tmp/train1.txt" peak_rss_mb)" "$(val "$tmp/train$T.txt" peak_rss_mb)"
if [ $torch_ok = 1 ]; then
    row "PyTorch (same model, batch, AdamW)" "$(tval "$tmp/torch_train1.txt" peak_rss_mb)" "$(tval "$tmp/torch_train$T.txt" peak_rss_mb)"
fi
echo
echo "mdiff time per op family, training step, $T threads (wall ms per step):"
sed -n '/^time per step by op family/,$p' "$tmp/train$T.txt" | grep -v '^RESULT' | tail -n +2
echo
echo "(made by: make bench; single figures: see bench/README.md)"
