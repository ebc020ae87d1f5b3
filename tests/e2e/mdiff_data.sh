#!/usr/bin/env bash
# End-to-end tests of mdiff-data: the real Fashion-MNIST conversion (single file and 4 shards, same
# fingerprint, `info` output on the prefix, the shell glob of the shards and several data sets in
# one call), the toy sets, and every bad input of issue 2: each must exit 1 with
# exactly one line on stderr naming the file or option, and leave no output or temporary file.
# Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BIN=$BUILD/bin/mdiff-data
FM=/usr/share/datasets/fashion-mnist
T=$(mktemp -d /tmp/mdiff_e2e_data.XXXXXX)
trap 'rm -rf "$T"' EXIT
export LC_ALL=C
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# expect_error NAME PATTERN OUTGLOB CMD...: exit 1, one stderr line containing PATTERN, nothing
# matching OUTGLOB and no *.tmp.* file left in $T.
expect_error() {
    local name=$1 pat=$2 out=$3; shift 3
    "$@" >"$T/out.txt" 2>"$T/err.txt"
    local rc=$? lines
    lines=$(wc -l <"$T/err.txt")
    if [ $rc -ne 1 ]; then fail "$name" "exit $rc, expected 1 ($(head -c 300 "$T/err.txt"))"; return; fi
    if [ "$lines" -ne 1 ]; then fail "$name" "$lines lines on stderr:"; sed 's/^/    | /' "$T/err.txt"; return; fi
    if ! grep -qF -e "$pat" "$T/err.txt"; then fail "$name" "stderr lacks '$pat': $(cat "$T/err.txt")"; return; fi
    if compgen -G "$out" >/dev/null; then fail "$name" "output left behind: $(echo $out)"; return; fi
    if compgen -G "$T/*.tmp.*" >/dev/null || compgen -G "$T/*/*.tmp.*" >/dev/null; then
        fail "$name" "temporary file left behind"; return; fi
    pass "$name"
}

# expect_ok NAME CMD...: exit 0.
expect_ok() {
    local name=$1; shift
    if "$@" >"$T/out.txt" 2>"$T/err.txt"; then pass "$name"; else
        fail "$name" "exit $?: $(head -c 500 "$T/err.txt")"; fi
}

# Small IDX files: mkidx DIR N_IMAGES N_LABELS IMAGE_MAGIC CUT_BYTES (images 4 x 3, value i*5 mod 256).
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkidx() {
    local d=$1 n=$2 nl=$3 magic=$4 cut=$5 i
    mkdir -p "$d"
    { be32 "$magic"; be32 "$n"; be32 4; be32 3
      for ((i = 0; i < n * 12 - cut; i++)); do printf "\\x$(printf %02x $((i * 5 % 256)))"; done
    } | gzip -n >"$d/train-images-idx3-ubyte.gz"
    { be32 2049; be32 "$nl"
      for ((i = 0; i < nl; i++)); do printf "\\x$(printf %02x $((i % 10)))"; done
    } | gzip -n >"$d/train-labels-idx1-ubyte.gz"
}

[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }

echo "== good input"
t0=$(date +%s.%N)
expect_ok "fashion-mnist train -> one file" "$BIN" fashion-mnist --out "$T/fm.h5"
t1=$(date +%s.%N)
echo "     (conversion of 60000 images: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s)"
expect_ok "info on it" "$BIN" info "$T/fm.h5"
cp "$T/out.txt" "$T/info1.txt"
grep -q "/images uint8 (60000, 1, 28, 28)" "$T/info1.txt" && grep -q "min 0, max 9" "$T/info1.txt" &&
    grep -q "(verified)" "$T/info1.txt" && pass "info shows shape, labels, verified fingerprint" ||
    fail "info content" "$(cat "$T/info1.txt")"
expect_ok "fashion-mnist train -> 4 shards" "$BIN" fashion-mnist --out "$T/fm4" --shards 4
expect_ok "info on the shard prefix" "$BIN" info "$T/fm4"
cp "$T/out.txt" "$T/info4.txt"
fp1=$(awk '/fingerprint/{print $2}' "$T/info1.txt")
fp4=$(awk '/fingerprint/{print $2}' "$T/info4.txt")
[ -n "$fp1" ] && [ "$fp1" = "$fp4" ] && pass "shards carry the single file's fingerprint ($fp1)" ||
    fail "shard fingerprint" "$fp1 vs $fp4"
grep -q "rows \[45000, 60000)  shard 3 of 4" "$T/info4.txt" && pass "shard layout" || fail "shard layout" "$(cat "$T/info4.txt")"
mkdir "$T/fm4dir" && cp "$T"/fm4-0000*.h5 "$T/fm4dir/"
expect_ok "info on a directory and on a list" "$BIN" info "$T/fm4dir" "$T/fm4-00000-of-00004.h5,$T/fm4-00001-of-00004.h5,$T/fm4-00002-of-00004.h5,$T/fm4-00003-of-00004.h5"
# the shell glob of the set (one argument per shard, sorted by the shell) and the same files in
# reverse order: each is that one set (DESIGN.md §5), described exactly as the prefix describes it
# apart from the first line, which names the files opened
expect_ok "info on the shell glob of the shard set" "$BIN" info "$T"/fm4-*.h5
cp "$T/out.txt" "$T/info_glob.txt"
[ "$(grep -c fingerprint "$T/info_glob.txt")" -eq 1 ] && grep -q "^  rows         60000$" "$T/info_glob.txt" &&
    grep -q "^  files        4$" "$T/info_glob.txt" && grep -q "rows \[15000, 30000)  shard 1 of 4" "$T/info_glob.txt" &&
    grep -q "rows \[45000, 60000)  shard 3 of 4" "$T/info_glob.txt" && grep -q "fingerprint  $fp1 (verified)" "$T/info_glob.txt" &&
    pass "the glob is described as one set: 60000 rows, 4 shards, fingerprint $fp1" ||
    fail "info on the glob" "$(cat "$T/info_glob.txt")"
tail -n +2 "$T/info_glob.txt" | cmp -s - <(tail -n +2 "$T/info4.txt") && pass "glob and prefix give the same description" ||
    fail "glob vs prefix" "$(diff <(tail -n +2 "$T/info4.txt") <(tail -n +2 "$T/info_glob.txt"))"
expect_ok "info on the shard files in reverse order" "$BIN" info "$T/fm4-00003-of-00004.h5" "$T/fm4-00002-of-00004.h5" "$T/fm4-00001-of-00004.h5" "$T/fm4-00000-of-00004.h5"
cmp -s "$T/out.txt" "$T/info_glob.txt" && pass "reverse order gives the glob's description" ||
    fail "reverse order" "$(diff "$T/info_glob.txt" "$T/out.txt")"
expect_error "info on 3 of the 4 shards" "fm4-00002-of-00004.h5 is missing" "$T/none*" "$BIN" info "$T"/fm4-0000[013]-of-00004.h5
expect_error "a shard given twice" "fm4-00001-of-00004.h5 is given twice" "$T/none*" "$BIN" info "$T"/fm4-*.h5 "$T/fm4-00001-of-00004.h5"
expect_ok "fashion-mnist test split" "$BIN" fashion-mnist --split test --out "$T/fmt.h5"
"$BIN" info "$T/fmt.h5" | grep -q "rows         10000" && pass "test split has 10000 rows" || fail "test split" "rows"
for k in gaussians8 swissroll moons; do
    expect_ok "toy $k" "$BIN" toy --kind $k --n 1000 --seed 3 --out "$T/$k.h5"
    expect_ok "info toy $k" "$BIN" info "$T/$k.h5"
done
# --opt=value (issue 16): the same data set as --opt value
expect_ok "toy --kind=moons --n=1000 --seed=3 --out=FILE" "$BIN" toy --kind=moons --n=1000 --seed=3 --out="$T/moons_eq.h5"
[ -n "$("$BIN" info "$T/moons.h5" | grep fingerprint)" ] &&
    [ "$("$BIN" info "$T/moons_eq.h5" | grep fingerprint)" = "$("$BIN" info "$T/moons.h5" | grep fingerprint)" ] &&
    pass "--opt=value gives the fingerprint of --opt value" || fail "--opt=value" "fingerprints differ"
# several independent data sets in one call: each described on its own, in argument order
expect_ok "info on two single files" "$BIN" info "$T/gaussians8.h5" "$T/moons.h5"
[ "$(grep -c "(verified)" "$T/out.txt")" -eq 2 ] && [ "$(grep -c "^  rows         1000$" "$T/out.txt")" -eq 2 ] &&
    [ "$(grep "^  kind" "$T/out.txt" | awk '{print $2}' | paste -sd,)" = "gaussians8,moons" ] &&
    [ "$(grep -v "^ " "$T/out.txt" | paste -sd,)" = "$T/gaussians8.h5,$T/moons.h5" ] &&
    pass "two single files: two descriptions (gaussians8, moons)" || fail "two single files" "$(cat "$T/out.txt")"
expect_ok "info on a file, the glob of a set and a file" "$BIN" info "$T/moons.h5" "$T"/fm4-*.h5 "$T/gaussians8.h5"
[ "$(grep -c "(verified)" "$T/out.txt")" -eq 3 ] &&
    [ "$(grep "^  rows" "$T/out.txt" | awk '{print $2}' | paste -sd,)" = "1000,60000,1000" ] &&
    pass "file, set, file: three descriptions (1000, 60000, 1000 rows)" || fail "file, set, file" "$(cat "$T/out.txt")"
expect_ok "--help" "$BIN" --help
expect_ok "toy --help" "$BIN" toy --help
expect_ok "--version" "$BIN" --version

echo "== bad command lines"
expect_error "no subcommand" "subcommand" "$T/none*" "$BIN"
expect_error "unknown subcommand" "frobnicate" "$T/none*" "$BIN" frobnicate
expect_error "unknown option" "--bogus" "$T/x.h5" "$BIN" fashion-mnist --out "$T/x.h5" --bogus
expect_error "missing --out" "--out" "$T/x.h5" "$BIN" fashion-mnist
expect_error "option without value" "--out" "$T/x.h5" "$BIN" toy --kind moons --n 10 --out
expect_error "--split foo" "--split" "$T/x.h5" "$BIN" fashion-mnist --split foo --out "$T/x.h5"
expect_error "--shards 0" "--shards" "$T/x*" "$BIN" fashion-mnist --shards 0 --out "$T/x"
expect_error "--shards -2" "--shards" "$T/x*" "$BIN" fashion-mnist --shards -2 --out "$T/x"
expect_error "--shards abc" "--shards" "$T/x*" "$BIN" fashion-mnist --shards abc --out "$T/x"
expect_error "toy --n 0" "--n" "$T/x.h5" "$BIN" toy --kind moons --n 0 --out "$T/x.h5"
expect_error "toy --n -5" "--n" "$T/x.h5" "$BIN" toy --kind moons --n -5 --out "$T/x.h5"
expect_error "toy --n abc" "--n" "$T/x.h5" "$BIN" toy --kind moons --n abc --out "$T/x.h5"
expect_error "toy --n 1e3" "--n" "$T/x.h5" "$BIN" toy --kind moons --n 1e3 --out "$T/x.h5"
expect_error "toy --seed -1" "--seed" "$T/x.h5" "$BIN" toy --kind moons --n 10 --seed -1 --out "$T/x.h5"
expect_error "toy --seed x" "--seed" "$T/x.h5" "$BIN" toy --kind moons --n 10 --seed x --out "$T/x.h5"
expect_error "toy --kind foo" "--kind" "$T/x.h5" "$BIN" toy --kind foo --n 10 --out "$T/x.h5"
expect_error "toy without --kind" "--kind" "$T/x.h5" "$BIN" toy --n 10 --out "$T/x.h5"
expect_error "toy without --n" "--n" "$T/x.h5" "$BIN" toy --kind moons --out "$T/x.h5"
expect_error "--out in a missing directory" "$T/nodir" "$T/nodir" "$BIN" toy --kind moons --n 10 --out "$T/nodir/x.h5"
expect_error "info without paths" "PATH" "$T/none*" "$BIN" info
expect_error "info unknown option" "--bogus" "$T/none*" "$BIN" info --bogus "$T/fm.h5"

echo "== bad Fashion-MNIST sources"
expect_error "missing --src directory" "/nonexistent/fm" "$T/x.h5" "$BIN" fashion-mnist --src /nonexistent/fm --out "$T/x.h5"
mkidx "$T/ok" 5 5 2051 0
expect_ok "small valid IDX set" "$BIN" fashion-mnist --src "$T/ok" --out "$T/small.h5"
mkidx "$T/nolab" 5 5 2051 0 && rm "$T/nolab/train-labels-idx1-ubyte.gz"
expect_error "missing labels file" "train-labels-idx1-ubyte.gz" "$T/x.h5" "$BIN" fashion-mnist --src "$T/nolab" --out "$T/x.h5"
mkidx "$T/magic" 5 5 2049 0
expect_error "wrong IDX magic" "magic" "$T/x.h5" "$BIN" fashion-mnist --src "$T/magic" --out "$T/x.h5"
mkidx "$T/trunc" 5 5 2051 7
expect_error "truncated IDX" "truncated" "$T/x.h5" "$BIN" fashion-mnist --src "$T/trunc" --out "$T/x.h5"
mkidx "$T/count" 5 4 2051 0
expect_error "images/labels count mismatch" "4 labels" "$T/x.h5" "$BIN" fashion-mnist --src "$T/count" --out "$T/x.h5"
mkidx "$T/gztrunc" 50 50 2051 0
head -c 300 "$T/gztrunc/train-images-idx3-ubyte.gz" >"$T/gztrunc/t.gz" && mv "$T/gztrunc/t.gz" "$T/gztrunc/train-images-idx3-ubyte.gz"
expect_error "truncated gzip stream" "train-images-idx3-ubyte.gz" "$T/x.h5" "$BIN" fashion-mnist --src "$T/gztrunc" --out "$T/x.h5"
mkidx "$T/gzbad" 50 50 2051 0
printf '\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4' | dd of="$T/gzbad/train-images-idx3-ubyte.gz" bs=1 seek=30 conv=notrunc status=none
expect_error "corrupt gzip" "corrupt gzip data in $T/gzbad/train-images-idx3-ubyte.gz" "$T/x.h5" "$BIN" fashion-mnist --src "$T/gzbad" --out "$T/x.h5"
mkidx "$T/plain" 5 5 2051 0 && gzip -dc "$T/plain/train-images-idx3-ubyte.gz" >"$T/plain/p" && mv "$T/plain/p" "$T/plain/train-images-idx3-ubyte.gz"
expect_error "not gzip" "not a gzip file" "$T/x.h5" "$BIN" fashion-mnist --src "$T/plain" --out "$T/x.h5"
expect_error "more shards than rows" "--shards" "$T/x*" "$BIN" fashion-mnist --src "$T/ok" --shards 6 --out "$T/x"
# shard 2's name is taken by a directory: shards 0 and 1 are already written (as temporaries) when
# that is found, and must not survive
mkdir -p "$T/isdir-00002-of-00003.h5"
expect_error "a shard name is a directory" "isdir-00002-of-00003.h5" "$T/isdir-0000[01]*" "$BIN" fashion-mnist --src "$T/ok" --shards 3 --out "$T/isdir"

echo "== bad data set files"
expect_error "info on a missing path" "$T/missing" "$T/none*" "$BIN" info "$T/missing"
echo "not hdf5" >"$T/text.h5"
expect_error "info on a non-HDF5 file" "$T/text.h5" "$T/none*" "$BIN" info "$T/text.h5"
mkdir -p "$T/empty"
expect_error "info on a directory without .h5" "$T/empty" "$T/none*" "$BIN" info "$T/empty"
"$BIN" fashion-mnist --src "$T/ok" --shards 3 --out "$T/s3" >/dev/null
rm "$T/s3-00001-of-00003.h5"
expect_error "missing shard" "s3-00001-of-00003.h5" "$T/none*" "$BIN" info "$T/s3"
expect_error "glob of a set with a shard missing on disk" "s3-00001-of-00003.h5 is missing (2 of 3 shards given and it does not exist)" "$T/none*" "$BIN" info "$T"/s3-*.h5
"$BIN" fashion-mnist --src "$T/ok" --shards 2 --out "$T/sa" >/dev/null
mkidx "$T/ok6" 6 6 2051 0
"$BIN" fashion-mnist --src "$T/ok6" --shards 2 --out "$T/sb" >/dev/null
expect_error "shards of different sets" "sb-00001-of-00002.h5" "$T/none*" "$BIN" info "$T/sa-00000-of-00002.h5,$T/sb-00001-of-00002.h5"
expect_error "shards out of order" "sa-00001-of-00002.h5" "$T/none*" "$BIN" info "$T/sa-00001-of-00002.h5,$T/sa-00000-of-00002.h5"
# names of one set, contents of two: the glob cannot be grouped into one data set
mkdir "$T/mix" && cp "$T/sa-00000-of-00002.h5" "$T/mix/m-00000-of-00002.h5" && cp "$T/sb-00001-of-00002.h5" "$T/mix/m-00001-of-00002.h5"
expect_error "glob over shards of different sets" "m-00001-of-00002.h5 belongs to another data set" "$T/none*" "$BIN" info "$T"/mix/m-*.h5
"$BIN" toy --kind moons --n 10 --out "$T/pts.h5" >/dev/null
expect_error "images and points mixed" "/points" "$T/none*" "$BIN" info "$T/small.h5,$T/pts.h5"
# change one pixel inside the stored data: the recomputed fingerprint must differ
cp "$T/small.h5" "$T/tamper.h5"
off=$(od -An -v -tx1 -w1 "$T/tamper.h5" | awk '{b[NR-1]=$1} END{for(i=0;i<NR-4;i++)
    if(b[i]=="05"&&b[i+1]=="0a"&&b[i+2]=="0f"&&b[i+3]=="14"){print i; exit}}')
if [ -n "$off" ]; then
    printf '\x63' | dd of="$T/tamper.h5" bs=1 seek=$((off + 1)) conv=notrunc status=none
    expect_error "fingerprint mismatch" "fingerprint mismatch in $T/tamper.h5" "$T/none*" "$BIN" info "$T/tamper.h5"
else
    fail "fingerprint mismatch" "pixel pattern not found in the file"
fi

echo "== failed write leaves nothing"
# a 1 MiB file size limit: the 7.8 MB test split (2 MB per shard) cannot be written (SIGXFSZ
# ignored, so writes fail with EFBIG)
(trap '' XFSZ; ulimit -f 1024; exec "$BIN" fashion-mnist --split test --out "$T/big.h5") >"$T/out.txt" 2>"$T/err.txt"
rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err.txt")" -eq 1 ] && grep -q "cannot write $T/big.h5" "$T/err.txt" &&
    ! compgen -G "$T/big.h5*" >/dev/null; then pass "write failure: exit 1, one line, no file"
else fail "write failure" "exit $rc: $(cat "$T/err.txt"); files: $(ls "$T" | grep big)"; fi
(trap '' XFSZ; ulimit -f 1024; exec "$BIN" fashion-mnist --split test --shards 4 --out "$T/bigs") >"$T/out.txt" 2>"$T/err.txt"
rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err.txt")" -eq 1 ] && ! compgen -G "$T/bigs*" >/dev/null; then
    pass "sharded write failure: no shard left"
else fail "sharded write failure" "exit $rc: $(cat "$T/err.txt"); files: $(ls "$T" | grep bigs)"; fi

echo "mdiff_data.sh: $fails failure(s)"
[ $fails -eq 0 ]
