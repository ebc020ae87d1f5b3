#!/usr/bin/env bash
# Shows that the learned-quality thresholds of tests/unit/test_e2e_train.c catch real defects
# (issue 11): each mutant below is a plausible one-line bug in the sampler or in an objective's
# conversion; the script builds it in a copy of the tree and runs the toy test case, which must
# fail in every test the mutant breaks; test_diffusion (samplers driven by an exact denoiser) is run
# on each mutant too and its verdict printed beside. Not part of make test (about 2 min per mutant on 2 cores).
#   MUTANTS="ddim_sign ..." (default: all)  JOBS=2  OUT=build/mutants
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/mutants}
JOBS=${JOBS:-2}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)  # absolute: the runs cd into the copy
# name | file | exact text | replacement | toy tests that must fail
MUTANT_TABLE='
ddim_sign|src/diffusion/samplers.c|double v = cx0 * x0h[j] + ce * eps[j] + cx * x[j];|double v = cx0 * x0h[j] - ce * eps[j] + cx * x[j];|gaussians8_eps_ddim_dpmpp gaussians8_x0_ddim gaussians8_v_ddim
dpm_correction_sign|src/diffusion/samplers.c|w1 = 1.0 + 0.5 / r;\n            w0 = -0.5 / r;|w1 = 1.0 - 0.5 / r;\n            w0 = 0.5 / r;|gaussians8_eps_ddim_dpmpp
ddpm_mean_sign|src/diffusion/samplers.c|cx = sqrt(a) * omp / om;|cx = -sqrt(a) * omp / om;|gaussians8_xprev_ddpm swissroll_eps_ddpm
ddpm_beta_not_posterior|src/diffusion/samplers.c|sigma = sqrt(b * omp / om);|sigma = sqrt(b);|swissroll_eps_ddpm
v_read_as_eps|src/diffusion/schedule.c|x0 = a * xt - sg * f;\n            e = sg * xt + a * f;|x0 = (xt - sg * f) / a;\n            e = f;|gaussians8_v_ddim
x0_read_as_eps|src/diffusion/schedule.c|x0 = f;\n            e = (xt - a * f) / sg;|x0 = (xt - sg * f) / a;\n            e = f;|gaussians8_x0_ddim
xprev_residual_sign|src/diffusion/schedule.c|x0 = (xt + k * f - c2 * xt) / c1;|x0 = (xt - k * f - c2 * xt) / c1;|gaussians8_xprev_ddpm
'
MUTANTS=${MUTANTS:-$(echo "$MUTANT_TABLE" | awk -F'|' 'NF {print $1}')}
export BUILD OUT MUTANT_TABLE

one() {  # name
    local name=$1 line file from to expect d
    line=$(echo "$MUTANT_TABLE" | awk -F'|' -v n="$name" '$1 == n')
    [ -n "$line" ] || { echo "  $name: no such mutant"; return 1; }
    IFS='|' read -r _ file from to expect <<<"$line"
    d=$OUT/$name
    rm -rf "$d"; mkdir -p "$d"
    cp -a Makefile src include tests "$d/"
    # reuse the built objects: only the mutated file recompiles
    mkdir -p "$d/$BUILD"; cp -a "$BUILD/obj" "$BUILD/libmdiff.a" "$d/$BUILD/" 2>/dev/null
    FROM="$from" TO="$to" perl -0pi -e 'my ($f, $t) = ($ENV{FROM}, $ENV{TO}); s/\\n/\n/g for $f, $t;
        my $n = () = /\Q$f\E/g; die "matched $n times\n" unless $n == 1; s/\Q$f\E/$t/' "$d/$file" ||
        { echo "  $name: the text to mutate is not in $file exactly once"; return 1; }
    (cd "$d" && make BUILD="$BUILD" tests >build.log 2>&1) || { echo "  $name: build failed ($d/build.log)"; return 1; }
    (cd "$d" && OPENBLAS_NUM_THREADS=1 CK_RUN_CASE=toy CK_TIMEOUT_MULTIPLIER=10 BUILD="$BUILD" \
        "$BUILD/tests/test_e2e_train" >"$OUT/$name.log" 2>&1)
    # the exact-denoiser checks of the samplers (test_diffusion) see the same mutant
    local unit
    if (cd "$d" && "$BUILD/tests/test_diffusion" >"$OUT/$name.diffusion.log" 2>&1); then unit="passes"
    else unit="FAILS ($(grep -c ':F:' "$OUT/$name.diffusion.log") checks)"; fi
    local caught="" missed=""
    for t in $expect; do
        if grep -q ":toy:$t:" "$OUT/$name.log"; then caught="$caught $t"; else missed="$missed $t"; fi
    done
    local figs
    figs=$(sed -n 's/^margin | \([^|]*\) | seed [0-9]* | near \([0-9.]*\).*/\1 \2/p' "$OUT/$name.log" | paste -sd ';' -)
    if [ -z "$missed" ]; then echo "  CAUGHT $name: fails$caught | test_diffusion $unit | figures: $figs"
    else echo "  MISSED $name: passes$missed | test_diffusion $unit | figures: $figs"; fi
    rm -rf "$d"
}
export -f one
echo "mutants: $(echo $MUTANTS | wc -w), $JOBS at a time (logs in $OUT)"
printf '%s\n' $MUTANTS | xargs -P "$JOBS" -I{} bash -c 'one {}' | tee "$OUT/summary.txt"
! grep -q '^  MISSED\|no such\|not in\|build failed' "$OUT/summary.txt"
