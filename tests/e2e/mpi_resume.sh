#!/usr/bin/env bash
# Resume under MPI (issue 5), end to end with mdiff-train:
#  1. np=2, U-Net (attention, dropout, flips) on Fashion-MNIST's test split: 8 steps straight vs
#     4 steps + `--resume auto` to 8: /params, /ema, /adam/m, /adam/v and /state are bit-identical
#     (h5diff compares exactly by default); the two step-4 checkpoints too. A negative control
#     (step 4 vs step 8) proves h5diff sees a difference when there is one.
#  2. np=2, MLP on 120 points with an uneven batch (12 + 11) so the data cursors cross epochs and
#     the resume lands mid-epoch: 10 straight vs 5 + 5, bit-identical.
#  3. np=2 checkpoint resumed on np=3: runs, warns that the data order is re-derived, and keeps
#     model, EMA and optimizer exactly: the np=3 step-5 checkpoint equals one AdamW + EMA update
#     of the np=2 step-4 state, checked in closed form (tests/e2e/ckpt_check.c, built here), which
#     a lost or re-initialised state would fail by orders of magnitude.
# Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
BIN=$BUILD/bin
# ckpt_check reads checkpoints for section 3 (no Python in tests): built here, as bad_input.sh
# builds h5poke; into a temporary name first so a concurrent run never sees a half-written file.
CK=$BUILD/tests/ckpt_check
mkdir -p "$BUILD/tests"
mpicc -O1 -Wall -Wextra -o "$CK.$$" tests/e2e/ckpt_check.c $(pkg-config --cflags --libs hdf5-openmpi) -lm &&
    mv -f "$CK.$$" "$CK" || { echo "FAIL: cannot build ckpt_check"; exit 1; }
T=$(mktemp -d /tmp/mdiff_e2e_mpi_resume.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# train NAME NP ARGS...: runs mdiff-train, log in $T/NAME.log; fails the test on a non-zero exit.
train() {
    local name=$1 np=$2; shift 2
    "${MPIRUN[@]}" -np "$np" "$BIN/mdiff-train" "$@" >"$T/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] && return 0
    fail "$name" "mdiff-train exited $rc:"; tail -n 15 "$T/$name.log" | sed 's/^/    | /'; return 1
}

# same NAME A B: the four tensor groups and /state of two checkpoints are bit-identical.
same() {
    local name=$1 a=$2 b=$3 g
    for g in /params /ema /adam/m /adam/v /state; do
        if ! h5diff -q "$a" "$b" "$g" "$g" >/dev/null 2>&1; then
            fail "$name" "$g differs between $a and $b: $(h5diff "$a" "$b" "$g" "$g" 2>&1 | head -n 5)"
            return
        fi
    done
    pass "$name"
}

"$BIN/mdiff-data" fashion-mnist --split test --out "$T/fmt.h5" >/dev/null || { echo "FAIL mdiff-data"; exit 1; }
"$BIN/mdiff-data" toy --kind moons --n 120 --out "$T/moons.h5" >/dev/null || { echo "FAIL mdiff-data toy"; exit 1; }

# ---- 1. U-Net, np=2, 8 straight vs 4 + 4 -------------------------------------------------------
UNET=(--data "$T/fmt.h5" --ch 8 --mult 1,2 --res-blocks 1 --attn 14 --heads 2 --groups 4
      --dropout 0.1 --flip --batch 11 --timesteps 100 --lr 1e-3 --warmup 2 --ema 0.9
      --log-every 2 --ckpt-every 4 --keep 5 --sample-every 0 --check-every 2 --bucket-mb 0.01)
if train unet_straight 2 "${UNET[@]}" --run-dir "$T/a" --steps 8 &&
   train unet_first_half 2 "${UNET[@]}" --run-dir "$T/b" --steps 4 &&
   train unet_resumed 2 "${UNET[@]}" --run-dir "$T/b" --steps 8 --resume auto; then
    grep -q "resumed from .* at step 4$" "$T/unet_resumed.log" ||
        fail "unet resume log" "no 'resumed from ... at step 4' line"
    same "unet np=2: step-4 checkpoints identical" "$T/a/ckpt-00000004.h5" "$T/b/ckpt-00000004.h5"
    same "unet np=2: 8 straight == 4 + resume to 8 (params, ema, adam m/v, state)" \
        "$T/a/ckpt-00000008.h5" "$T/b/ckpt-00000008.h5"
    if h5diff -q "$T/a/ckpt-00000004.h5" "$T/a/ckpt-00000008.h5" /params /params >/dev/null 2>&1; then
        fail "negative control" "h5diff sees no change between step 4 and step 8"
    else pass "negative control: step 4 and step 8 differ"; fi
fi

# ---- 2. MLP, np=2, epochs crossed, resume mid-epoch -------------------------------------------
MLP=(--data "$T/moons.h5" --mlp-width 32 --mlp-depth 2 --batch 23 --timesteps 50 --lr 1e-2
     --warmup 0 --log-every 5 --ckpt-every 5 --keep 5 --sample-every 0 --bucket-mb 0.001)
if train mlp_straight 2 "${MLP[@]}" --run-dir "$T/c" --steps 10 &&
   train mlp_first_half 2 "${MLP[@]}" --run-dir "$T/d" --steps 5 &&
   train mlp_resumed 2 "${MLP[@]}" --run-dir "$T/d" --steps 10 --resume auto; then
    same "mlp np=2 across epochs: 10 straight == 5 + resume to 10" \
        "$T/c/ckpt-00000010.h5" "$T/d/ckpt-00000010.h5"
    ep=$(h5dump -d /state/loader_epoch -y -w 0 "$T/d/ckpt-00000010.h5" | sed -n '/DATA {/,/}/p' | tr -dc '0-9 ,\n' | tr -s ' ,\n' ' ')
    case "$ep" in *[1-9]*) pass "mlp run crossed an epoch (loader epochs:$ep)" ;;
                  *) fail "mlp epochs" "expected an epoch boundary, loader epochs:$ep" ;; esac
fi

# ---- 3. np=2 checkpoint resumed on np=3 ---------------------------------------------------------
if [ -f "$T/a/ckpt-00000004.h5" ] &&
   train unet_np3 3 "${UNET[@]}" --run-dir "$T/e" --steps 5 --resume "$T/a/ckpt-00000004.h5"; then
    if grep -q "resuming a 2-rank checkpoint on 3 ranks" "$T/unet_np3.log"; then
        pass "np=2 -> np=3 resume warns about the re-derived data order"
    else fail "np=3 warning" "no warning in the log"; fi
    # One AdamW + EMA update (optim.h) takes the step-4 state to the step-5 state: with g recovered
    # from the first moments, the second moments, parameters and EMA must follow in closed form
    # (ckpt_check adam-step; also checks step 4 -> 5, world sizes 2 and 3, ema_updates u -> u + 1).
    if out=$("$CK" adam-step "$T/a/ckpt-00000004.h5" "$T/e/ckpt-00000005.h5" 2 3 2>&1); then
        pass "np=3 step 5 = one exact AdamW+EMA update of the np=2 step-4 state ($out)"
    else fail "np=3 keeps model and optimizer" "$out"; fi
fi

[ $fails -eq 0 ] && echo "mpi_resume: all passed" || echo "mpi_resume: $fails failed"
[ $fails -eq 0 ]
