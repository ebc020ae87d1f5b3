#!/usr/bin/env bash
# make demo: Fashion-MNIST -> HDF5, a bounded training run (~10 minutes on 2 cores) that visibly
# learns, then a sample grid and a denoising trajectory from its last checkpoint, and the loss
# curve (RUN/metrics.png, jobs/plot.sh).
# Knobs (environment): DEMO_STEPS, DEMO_NP (MPI ranks), DEMO_DIR (run dir), DEMO_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/bin
DATA=${DEMO_DATA:-data/fashion-mnist-train.h5}
RUN=${DEMO_DIR:-runs/demo}
STEPS=${DEMO_STEPS:-800}
NP=${DEMO_NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ ! -f "$DATA" ]; then
    mkdir -p "$(dirname "$DATA")"
    "$BIN/mdiff-data" fashion-mnist --split train --out "$DATA"
fi
"$BIN/mdiff-data" info "$DATA"

# A U-Net sized for what 10 minutes on 2 cores can teach: 2 levels (28, 14), attention at 14,
# a short warmup and a higher learning rate than the 20000-step default.
TRAIN_ARGS=(--data "$DATA" --run-dir "$RUN" --steps "$STEPS" --batch 64
            --ch 32 --mult 1,2 --res-blocks 1 --attn none --groups 8
            --lr 1e-3 --warmup 100 --ema 0.995 --log-every 50 --ckpt-every 400
            --sample-every 400 --resume auto)
if [ "$NP" -gt 1 ]; then
    # one BLAS thread per rank: the ranks already use every core
    OPENBLAS_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np "$NP" \
        "$BIN/mdiff-train" "${TRAIN_ARGS[@]}"
else
    "$BIN/mdiff-train" "${TRAIN_ARGS[@]}"
fi

"$BIN/mdiff-sample" "$RUN/latest.h5" -n 64 --sampler ddim --steps 50 \
    -o "$RUN/demo-grid.png" --trajectory "$RUN/demo-trajectory.png" --h5 "$RUN/demo-samples.h5"
# the loss curve (make demo installs gnuplot-nox with the other Debian packages)
if ! command -v gnuplot >/dev/null; then plot="(gnuplot is not installed; then: jobs/plot.sh $RUN)"
elif bash jobs/plot.sh "$RUN" >/dev/null; then plot=$RUN/metrics.png
else plot="(jobs/plot.sh $RUN failed: see above)"; fi
echo
echo "demo done:"
echo "  loss curve:  $plot"
echo "  metrics:     $RUN/metrics.csv (first and last rows below: step, loss)"
sed -n '2p;$p' "$RUN/metrics.csv" | cut -d, -f1,3
echo "  sample grid: $RUN/demo-grid.png"
echo "  trajectory:  $RUN/demo-trajectory.png"
echo "  samples:     $RUN/demo-samples.h5"
