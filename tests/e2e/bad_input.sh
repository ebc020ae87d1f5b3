#!/usr/bin/env bash
# The bad-input matrix of issue 7: runs every row of tests/bad_input.tsv against mdiff-data,
# mdiff-train and mdiff-sample. Each case must exit 1 with exactly ONE line on stderr containing the
# row's expected fragment, leave no new file in its work directory (no output, no temporary), and
# leave every file that existed before it (fixtures, a run dir's checkpoints, latest.h5) unchanged.
# Fixtures are made here with the C tools: mdiff-data (toy sets; tiny IDX image sets converted with
# `fashion-mnist --src`), mdiff-train (2-step checkpoints), hdf5-tools (h5copy), dd (byte flips)
# and tests/e2e/h5poke.c (removes objects/attributes, sets values; built here).
# Table columns (tab-separated): id, program (data|train|sample|train-np2|train-np3|sample-np3),
# args, setup (shell run in the case's empty work dir $W first; "-" for none), expected fragment.
# args and setup are evaluated by bash with $FIX (fixtures), $W, $TM/$TU (base train arguments for
# points / images) and $POKE. Environment: BUILD (default build); CASES=regex runs matching ids.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$BUILD/bin
TABLE=tests/bad_input.tsv
T=$(mktemp -d /tmp/mdiff_bad_input.XXXXXX)
trap 'rm -rf "$T"' EXIT
export LC_ALL=C OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe --bind-to none -q"
FIX=$T/fix
POKE=$BUILD/tests/h5poke
mkdir -p "$FIX"
for p in mdiff-data mdiff-train mdiff-sample; do [ -x "$BIN/$p" ] || { echo "FAIL: $BIN/$p not built"; exit 1; }; done
mkdir -p "$BUILD/tests"
mpicc -O1 -Wall -Wextra -o "$POKE" tests/e2e/h5poke.c $(pkg-config --cflags --libs hdf5-openmpi) ||
    { echo "FAIL: cannot build h5poke"; exit 1; }

# ---- fixtures ------------------------------------------------------------------------------------
die() { echo "FAIL: fixture: $*"; exit 1; }
q() { "$@" >"$T/fixture.log" 2>&1 || { cat "$T/fixture.log"; die "$*"; }; }
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
# mkimg OUT N H W: N random HxW grey images via an IDX pair and mdiff-data fashion-mnist --src
mkimg() {
    local d=$T/idx_$(basename "$1" .h5)
    mkdir -p "$d"
    { be32 2051; be32 "$2"; be32 "$3"; be32 "$4"; head -c $(($2 * $3 * $4)) /dev/urandom; } | gzip -n >"$d/train-images-idx3-ubyte.gz"
    { be32 2049; be32 "$2"; head -c "$2" /dev/zero; } | gzip -n >"$d/train-labels-idx1-ubyte.gz"
    q "$BIN/mdiff-data" fashion-mnist --src "$d" --out "$1"
}
TM="--data $FIX/toy.h5 --run-dir r --steps 4 --batch 8 --mlp-width 16 --mlp-depth 2 --timesteps 20 --sample-every 0 --log-every 1"
TU="--data $FIX/img.h5 --run-dir r --steps 2 --batch 4 --ch 8 --mult 1,2 --res-blocks 1 --attn none --groups 4 --timesteps 20 --sample-every 0 --log-every 1"
t0=$(date +%s.%N)
q "$BIN/mdiff-data" toy --kind moons --n 64 --out "$FIX/toy.h5"
q "$BIN/mdiff-data" toy --kind moons --n 2 --out "$FIX/two.h5"
mkimg "$FIX/img.h5" 16 8 8
mkimg "$FIX/img6.h5" 8 6 6
mkimg "$FIX/img12.h5" 8 12 12
(cd "$T" && q "$OLDPWD/$BIN/mdiff-train" $TM --run-dir "$FIX/runm" --steps 2) && cp "$FIX/runm/ckpt-00000002.h5" "$FIX/ckm.h5"
(cd "$T" && q "$OLDPWD/$BIN/mdiff-train" $TM --run-dir "$T/r32" --steps 2 --mlp-width 32) && cp "$T/r32/ckpt-00000002.h5" "$FIX/ckm32.h5"
(cd "$T" && q "$OLDPWD/$BIN/mdiff-train" $TU --run-dir "$T/ru") && cp "$T/ru/ckpt-00000002.h5" "$FIX/cku.h5"
# damaged checkpoints
echo "this is not HDF5" >"$FIX/text.h5"
: >"$FIX/empty.h5"
head -c 20000 "$FIX/ckm.h5" >"$FIX/ckm_trunc.h5"
head -c 3000 "$FIX/img.h5" >"$FIX/img_trunc.h5"
flip() { # flip FILE OFFSET: invert one byte
    local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp "$FIX/ckm.h5" "$FIX/ckm_flip_ema.h5" && flip "$FIX/ckm_flip_ema.h5" $(($("$POKE" "$FIX/ckm.h5" offset /ema/layers.0.weight) + 37))
cp "$FIX/ckm.h5" "$FIX/ckm_flip_adam.h5" && flip "$FIX/ckm_flip_adam.h5" $(($("$POKE" "$FIX/ckm.h5" offset /adam/v/out.weight) + 5))
cp "$FIX/ckm.h5" "$FIX/ckm_flip_meta.h5" && flip "$FIX/ckm_flip_meta.h5" 60
cp "$FIX/ckm.h5" "$FIX/ckm_noattr.h5" && q "$POKE" "$FIX/ckm_noattr.h5" rmattr / timesteps
cp "$FIX/ckm.h5" "$FIX/ckm_noformat.h5" && q "$POKE" "$FIX/ckm_noformat.h5" rmattr / mdiff_format
cp "$FIX/ckm.h5" "$FIX/ckm_ch0.h5" && q "$POKE" "$FIX/ckm_ch0.h5" setattr / mlp_width 0
cp "$FIX/ckm.h5" "$FIX/ckm_T1.h5" && q "$POKE" "$FIX/ckm_T1.h5" setattr / timesteps 1
cp "$FIX/ckm.h5" "$FIX/ckm_extra.h5" && q h5copy -i "$FIX/ckm.h5" -o "$FIX/ckm_extra.h5" -s /ema/out.bias -d /ema/extra.bias
cp "$FIX/ckm.h5" "$FIX/ckm_shape.h5" && q "$POKE" "$FIX/ckm_shape.h5" rm /ema/layers.0.weight &&
    q h5copy -i "$FIX/ckm32.h5" -o "$FIX/ckm_shape.h5" -s /ema/layers.0.weight -d /ema/layers.0.weight
cp "$FIX/ckm.h5" "$FIX/ckm_rename.h5" && q "$POKE" "$FIX/ckm_rename.h5" rm /params/out.bias &&
    q h5copy -i "$FIX/ckm.h5" -o "$FIX/ckm_rename.h5" -s /params/out.bias -d /params/output.bias
cp "$FIX/ckm.h5" "$FIX/ckm_nostate.h5" && q "$POKE" "$FIX/ckm_nostate.h5" rm /state/loader_cursor
cp "$FIX/toy.h5" "$FIX/toy_nan.h5" && q "$POKE" "$FIX/toy_nan.h5" setf /points 37 nan
cp "$FIX/toy.h5" "$FIX/toy_inf.h5" && q "$POKE" "$FIX/toy_inf.h5" setf /points 100 -inf
echo "     (fixtures: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s)"
chmod -R a-w "$FIX" # (no protection for root; the checksums below are the real check)
( cd "$FIX" && find . -type f -o -type l | sort | xargs md5sum ) >"$T/fix.md5"

# ---- the cases -------------------------------------------------------------------------------------
fails=0; n=0
snapshot() { # regular files with their checksums, symlinks with their targets
    (cd "$W" && find . -type f -print0 | sort -z | xargs -0 -r md5sum
     find . -type l -printf '%p -> %l\n' | sort)
}
run_case() { # id prog args setup expect
    local id=$1 prog=$2 args=$3 setup=$4 expect=$5 rc lines why=""
    W=$T/w/$id
    mkdir -p "$W"
    (cd "$W" && [ "$setup" = "-" ] || eval "$setup") >"$T/setup.log" 2>&1 || { echo "FAIL $id: setup: $(cat "$T/setup.log")"; fails=$((fails+1)); return; }
    snapshot >"$T/before"
    local cmd
    case $prog in
        data|train|sample) cmd="\"$PWD/$BIN/mdiff-$prog\" $args" ;;
        train-np2|train-np3|sample-np3) cmd="$MPIRUN -np ${prog#*-np} \"$PWD/$BIN/mdiff-${prog%-np*}\" $args" ;;
        *) echo "FAIL $id: unknown program $prog"; fails=$((fails+1)); return ;;
    esac
    (cd "$W" && eval "timeout 60 $cmd") </dev/null >"$T/out.txt" 2>"$T/err.txt"
    rc=$?
    n=$((n+1))
    lines=$(wc -l <"$T/err.txt")
    if [ $rc -ne 1 ]; then why="exit $rc, expected 1"
    elif [ "$lines" -ne 1 ]; then why="$lines lines on stderr"
    elif ! grep -qF -e "$expect" "$T/err.txt"; then why="stderr lacks '$expect'"
    elif ! snapshot | cmp -s - "$T/before"; then why="files in the work dir changed: $(snapshot | diff "$T/before" - | grep '^[<>]' | tr '\n' ' ')"
    elif ! (cd "$FIX" && md5sum --quiet -c "$T/fix.md5" >/dev/null 2>&1); then why="a fixture changed"
    fi
    if [ -n "$why" ]; then
        echo "FAIL $id ($prog $args): $why"; sed 's/^/    | /' "$T/err.txt" | head -n 8; fails=$((fails+1))
    else
        echo "ok   $id: $(cat "$T/err.txt")"
    fi
}
only=${CASES:-.}
while IFS=$'\t' read -r id prog args setup expect; do
    [[ -z "$id" || "$id" == \#* ]] && continue
    [[ "$id" =~ $only ]] || continue
    run_case "$id" "$prog" "$args" "$setup" "$expect"
done <"$TABLE"
echo "bad_input.sh: $n case(s), $fails failure(s)"
[ $n -ge 1 ] && [ $fails -eq 0 ]
