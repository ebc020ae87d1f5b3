#!/usr/bin/env bash
# Builds mdiff's libFuzzer targets (clang, ASan + UBSan + libFuzzer, library in build-fuzz/) and runs
# each for FUZZ_TIME seconds (default 5: the short run of `make sanitize`) from seed corpora made by
# the mdiff tools. A crash, sanitizer report, timeout or out-of-memory fails the run; the reproducer
# is kept under build-fuzz/fuzz/artifacts/. Targets: fuzz_idx (IDX reader), fuzz_cli (command-line
# parser), fuzz_ckpt (checkpoint validator), fuzz_dataset (data-set validator).
#   bash tests/fuzz/run.sh                      # short run, ~25 s plus the build
#   FUZZ_TIME=600 bash tests/fuzz/run.sh        # the long run (10 minutes per target)
#   FUZZ_TARGETS="fuzz_ckpt" FUZZ_TIME=60 bash tests/fuzz/run.sh
set -u
cd "$(dirname "$0")/../.."
FB=build-fuzz
FUZZ_TIME=${FUZZ_TIME:-5}
TARGETS=${FUZZ_TARGETS:-fuzz_idx fuzz_cli fuzz_ckpt fuzz_dataset}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
export OMPI_CC=clang OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=${FUZZ_LEAKS:-1}:allocator_may_return_null=1:abort_on_error=1
# Leaks are findings, except HDF5's own memory: ids (dataspaces, property lists) that a rejected
# input's aborted call still held cannot be enumerated and closed from outside in HDF5 1.10; in the
# programs that abort is exit(1). mdiff's own allocations stay checked (the harness frees an aborted
# call's buffers and gzip streams, so anything else left is a leak of mdiff's code).
mkdir -p $FB/fuzz
printf 'leak:libhdf5\n' >$FB/fuzz/lsan.supp
export LSAN_OPTIONS=suppressions=$PWD/$FB/fuzz/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
command -v clang >/dev/null || { echo "FAIL: clang not installed"; exit 1; }
make --no-print-directory -s BUILD=$FB OPT="-O1 -g $SAN -fsanitize=fuzzer-no-link -Wno-unknown-pragmas" lib ||
    { echo "FAIL: building $FB/libmdiff.a with clang"; exit 1; }
mkdir -p $FB/fuzz/artifacts
LIBS=$(pkg-config --libs ompi-c hdf5-openmpi openblas libpng zlib)
CFL=$(pkg-config --cflags ompi-c hdf5-openmpi openblas libpng zlib)
for t in $TARGETS; do
    if [ ! -x $FB/fuzz/$t ] || [ tests/fuzz/$t.c -nt $FB/fuzz/$t ] || [ tests/fuzz/fuzz_common.h -nt $FB/fuzz/$t ] ||
        [ $FB/libmdiff.a -nt $FB/fuzz/$t ]; then
        mpicc -O1 -g $SAN -fsanitize=fuzzer -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude $CFL \
            -Wl,--wrap=exit,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=strdup,--wrap=free,--wrap=gzopen,--wrap=gzclose_r tests/fuzz/$t.c -o $FB/fuzz/$t $FB/libmdiff.a $LIBS -lm -fopenmp ||
            { echo "FAIL: building $t"; exit 1; }
    fi
done

# seed corpora, made with the tools of the normal build when present (else the fuzz build's own)
BIN=build/bin
[ -x $BIN/mdiff-train ] || make --no-print-directory -s tools >/dev/null
S=$(mktemp -d /tmp/mdiff_fuzz_seeds.XXXXXX)
trap 'rm -rf "$S"' EXIT
mkdir -p $S/idx $S/cli $S/ckpt $S/dataset
$BIN/mdiff-data toy --kind moons --n 8 --out $S/dataset/toy.h5 >/dev/null
mkdir -p $S/fm
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
{ be32 2051; be32 3; be32 4; be32 4; head -c 48 /dev/urandom; } >$S/img.idx
{ be32 2049; be32 3; printf '\x01\x02\x03'; } >$S/lab.idx
# fuzz_idx input: byte 0 = split point, then images, then labels
{ printf "\\x$(printf %02x $((255 * 64 / 75)))"; cat $S/img.idx $S/lab.idx; } >$S/idx/seed
gzip -nc $S/img.idx >$S/fm/train-images-idx3-ubyte.gz && gzip -nc $S/lab.idx >$S/fm/train-labels-idx1-ubyte.gz
$BIN/mdiff-data fashion-mnist --src $S/fm --out $S/dataset/img.h5 >/dev/null
$BIN/mdiff-train --data $S/dataset/toy.h5 --run-dir $S/run --steps 1 --batch 2 --mlp-width 4 --mlp-depth 1 \
    --timesteps 4 --sample-every 0 >/dev/null && cp $S/run/ckpt-00000001.h5 $S/ckpt/mlp.h5
printf -- '--data\0x.h5\0--run-dir\0r\0--mult\0001,2,2\0--attn\0none\0--lr\0001e-3\0--groups\0004' >$S/cli/a
printf -- '--steps\0-3\0--ch\00032\0--flip\0--resume\0auto\0--ema\0000.99' >$S/cli/b

fails=0
for t in $TARGETS; do
    c=${t#fuzz_}
    mkdir -p $FB/fuzz/corpus_$c
    t0=$(date +%s)
    # every rejected input prints its one error line: keep only the log's tail
    $FB/fuzz/$t -max_total_time=$FUZZ_TIME -timeout=20 -rss_limit_mb=3072 -close_fd_mask=1 \
        -artifact_prefix=$FB/fuzz/artifacts/$t- $FB/fuzz/corpus_$c $S/$c 2>&1 | tail -n 300 >$FB/fuzz/$t.log
    rc=${PIPESTATUS[0]}
    runs=$(grep -o 'Done [0-9]* runs' $FB/fuzz/$t.log | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "ok   $t: ${runs:-?} in $(( $(date +%s) - t0 ))s, corpus $(ls $FB/fuzz/corpus_$c | wc -l) inputs"
    else
        echo "FAIL $t (exit $rc): see $FB/fuzz/$t.log"; grep -E "ERROR|SUMMARY|#[0-9] " $FB/fuzz/$t.log | head -n 12 | sed 's/^/    | /'
        fails=$((fails + 1))
    fi
done
echo "fuzz: $fails target(s) failed"
[ $fails -eq 0 ]
