#!/usr/bin/env bash
# valgrind --leak-check=full of the three programs (issue 7): mdiff-data (toy, IDX conversion, info),
# a short mdiff-train of an MLP (checkpoints, a sample grid, validation, resume) and of a tiny U-Net
# (attention, 2 steps), mdiff-sample of both (ddim with --h5 and --trajectory, ddpm), and one
# rejected input. Passes when no definitely-lost block was allocated by mdiff's own code
# (valgrind_filter.awk: the first frame past the allocator is in mdiff's sources) and valgrind saw
# no invalid read/write or uninitialised use. Open MPI's start-up leaks (no debug info) are not ours.
# Environment: BUILD (default build).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$BUILD/bin
T=$(mktemp -d /tmp/mdiff_valgrind.XXXXXX)
trap 'rm -rf "$T"' EXIT
export LC_ALL=C OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v valgrind >/dev/null || { echo "FAIL: valgrind not installed"; exit 1; }
SUPP=/usr/share/openmpi/openmpi-valgrind.supp
VG="valgrind --leak-check=full --num-callers=40 --error-exitcode=99 --errors-for-leak-kinds=none"
[ -f $SUPP ] && VG="$VG --suppressions=$SUPP"
FILTER=tests/e2e/valgrind_filter.awk
fails=0

# the filter must see a leak where there is one: a made-up record with an mdiff frame
printf '==1== 8 bytes in 1 blocks are definitely lost in loss record 1 of 1\n==1==    at 0x1: malloc (in vg.so)\n==1==    by 0x2: mdiff_model_create (model.c:12)\n==1== \n' >"$T/fake.txt"
awk -f $FILTER "$T/fake.txt" | grep -q "^1 definite" || { echo "FAIL: valgrind_filter.awk misses a leak"; fails=$((fails + 1)); }

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkdir -p "$T/idx"
{ be32 2051; be32 8; be32 8; be32 8; head -c 512 /dev/urandom; } | gzip -n >"$T/idx/train-images-idx3-ubyte.gz"
{ be32 2049; be32 8; head -c 8 /dev/zero; } | gzip -n >"$T/idx/train-labels-idx1-ubyte.gz"

# vg NAME EXPECTED_EXIT CMD...: valgrind log in $T/NAME.vg
vg() {
    local name=$1 want=$2; shift 2
    $VG --log-file="$T/$name.vg" "$@" >"$T/$name.out" 2>&1
    echo $? >"$T/$name.rc"
}
check() {
    local name=$1 want=$2 rc leaks
    rc=$(cat "$T/$name.rc")
    leaks=$(awk -f $FILTER "$T/$name.vg")
    if [ "$rc" = 99 ]; then echo "FAIL $name: valgrind errors:"; grep -E -A8 "Invalid|uninitialised|Conditional" "$T/$name.vg" | head -n 30; fails=$((fails + 1))
    elif [ "$rc" != "$want" ]; then echo "FAIL $name: exit $rc, expected $want"; tail -n 5 "$T/$name.out"; fails=$((fails + 1))
    elif [ "${leaks%% *}" != 0 ]; then echo "FAIL $name: $leaks"; awk -f $FILTER "$T/$name.vg" | head -n 40; fails=$((fails + 1))
    else
        total=$(grep -o 'definitely lost: [0-9,]* bytes' "$T/$name.vg" | head -n1 | sed 's/definitely lost: //')
        echo "ok   $name: exit $rc, $leaks (definitely lost in all: ${total:-nothing}; the rest is Open MPI's)"
    fi
}
t0=$(date +%s)
vg data_toy 0 $BIN/mdiff-data toy --kind gaussians8 --n 64 --out "$T/toy.h5"
vg data_idx 0 $BIN/mdiff-data fashion-mnist --src "$T/idx" --out "$T/img.h5"
vg data_info 0 $BIN/mdiff-data info "$T/toy.h5" "$T/img.h5"
M="--data $T/toy.h5 --batch 8 --mlp-width 16 --mlp-depth 2 --timesteps 20 --log-every 2 --sample-every 3 --ckpt-every 3"
U="--data $T/img.h5 --batch 4 --ch 8 --mult 1,2 --res-blocks 1 --attn 4 --groups 4 --timesteps 10 --log-every 1 --sample-every 0 --ckpt-every 1"
# two at a time on 2 cores
vg train_mlp 0 $BIN/mdiff-train $M --val-data "$T/toy.h5" --run-dir "$T/rm" --steps 6 &
vg train_unet 0 $BIN/mdiff-train $U --run-dir "$T/ru" --steps 2 &
wait
vg resume_mlp 0 $BIN/mdiff-train $M --run-dir "$T/rm" --steps 8 --resume auto &
vg sample_unet 0 $BIN/mdiff-sample "$T/ru/latest.h5" -n 3 --steps 3 -o "$T/u.png" --h5 "$T/u.h5" --trajectory "$T/t.png" &
wait
vg sample_mlp 0 $BIN/mdiff-sample "$T/rm/latest.h5" -n 20 --sampler ddpm -o "$T/m.png" &
vg bad_ckpt 1 $BIN/mdiff-sample "$T/toy.h5" &
wait
for n in data_toy data_idx data_info train_mlp train_unet resume_mlp sample_unet sample_mlp bad_ckpt; do check $n $([ $n = bad_ckpt ] && echo 1 || echo 0); done
echo "valgrind.sh: $fails failure(s), $(( $(date +%s) - t0 ))s"
[ $fails -eq 0 ]
