#!/usr/bin/env bash
# Makes the default data sets of mdiff from Debian's dataset-fashion-mnist:
#   OUT_DIR/fashion-mnist-train.h5 (60000 images) and OUT_DIR/fashion-mnist-test.h5 (10000),
# each /images uint8 (N,1,28,28) + /labels int32 (N), then checks them with `mdiff-data info`.
# Usage: datasets/fashion-mnist.sh [OUT_DIR] (default: data). Environment: BUILD (default build),
# SHARDS=K to also write OUT_DIR/fashion-mnist-train-0000k-of-0000K.h5 shards.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${1:-data}
BIN=$BUILD/bin/mdiff-data
[ -x "$BIN" ] || make --no-print-directory "$BIN"
[ -d /usr/share/datasets/fashion-mnist ] || {
    echo "fashion-mnist.sh: /usr/share/datasets/fashion-mnist is missing: run 'make deps' (as root)" >&2
    exit 1
}
mkdir -p "$OUT"
"$BIN" fashion-mnist --split train --out "$OUT/fashion-mnist-train.h5"
"$BIN" fashion-mnist --split test --out "$OUT/fashion-mnist-test.h5"
if [ -n "${SHARDS:-}" ]; then
    "$BIN" fashion-mnist --split train --shards "$SHARDS" --out "$OUT/fashion-mnist-train"
fi
"$BIN" info "$OUT/fashion-mnist-train.h5" "$OUT/fashion-mnist-test.h5"
