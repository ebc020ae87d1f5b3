#!/usr/bin/env bash
# The job scripts without SLURM (issue 5): jobs/train.sbatch, jobs/sample.sbatch and jobs/local.sh
# run with SLURM's environment variables set and stub mpirun / srun / scontrol first on PATH (the
# stubs record their arguments and environment; the mpirun stub can wait for SIGUSR1 and then exit
# 3 like a stopped mdiff-train). Checked: the #SBATCH header (signal 120 s ahead to the batch shell,
# requeue, append), the launch line (rank count, ranks per node, cores per rank bound, --resume
# auto, OpenBLAS threads = SLURM_CPUS_PER_TASK), srun launch (with --kill-on-bad-exit=1, so a
# rank that dies ends the step instead of leaving the others in a collective), SIGUSR1 and SIGTERM to the script
# forwarded as SIGUSR1 to the MPI job, requeue on exit 3 (and not on 0/1, nor past
# MDIFF_MAX_REQUEUES, and a failed requeue reported), argument errors, local.sh's binding rule.
# Then for real (real mpirun and mdiff-train, only scontrol stubbed): train.sbatch and local.sh
# each stopped by a signal to the script: exit 3 with a checkpoint, and a rerun resumes. Last,
# mdiff-train's own launch checks: srun without PMI (SLURM_STEP_NUM_TASKS > 1, one MPI process)
# is refused with one line, and BLAS threads default to cores / ranks per node unless
# OPENBLAS_NUM_THREADS is set. Also --run-dir's %A/%a/%j (array jobs) and jobs/plot.sh on a real
# run's metrics.csv (a PNG of sane size; columns by name; one line and exit 1 without gnuplot).
# Environment: BUILD (build directory, default "build").
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
ROOT=$PWD
T=$(mktemp -d /tmp/mdiff_e2e_jobs.XXXXXX)
BGPID=""
# kill_bg: the background script and its direct children (mpirun runs in its own session under
# local.sh, so killing the script alone would leave it running).
kill_bg() {
    [ -n "$BGPID" ] || return 0
    local kids; kids=$(pgrep -P "$BGPID")
    kill -KILL "$BGPID" $kids 2>/dev/null
    wait "$BGPID" 2>/dev/null; BGPID=""
}
cleanup() { kill_bg; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
# check NAME CONDITION-CMD...: pass when the command succeeds.
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "$(tail -n 5 "$T/out.txt" 2>/dev/null)"; fi; }
has_line() { grep -qxF -e "$2" "$1"; }     # FILE LINE: an exact line
has() { grep -qF -e "$2" "$1"; }           # FILE TEXT

# ---- stubs ----------------------------------------------------------------------------------
S=$T/stubs
mkdir -p "$S/bin"
for p in mdiff-train mdiff-sample; do printf '#!/bin/sh\nexit 0\n' >"$S/bin/$p"; chmod +x "$S/bin/$p"; done
# mpirun / srun: argv one per line in $S/<name>.args, threads in $S/<name>.env; STUB_MODE:
#   ok (exit 0) | fail (exit 1) | wait_usr1 (exit 3 on SIGUSR1, 99 after 20 s without one)
for p in mpirun srun; do
    cat >"$S/$p" <<EOF
#!/usr/bin/env bash
printf '%s\n' "\$@" >"$S/$p.args"
echo "OPENBLAS_NUM_THREADS=\${OPENBLAS_NUM_THREADS:-unset} OMP_NUM_THREADS=\${OMP_NUM_THREADS:-unset}" >"$S/$p.env"
case \${STUB_MODE:-ok} in
    ok) exit 0 ;;
    fail) exit 1 ;;
    wait_usr1)
        trap 'echo got USR1 >>"$S/$p.signals"; exit 3' USR1
        touch "$S/$p.started"
        for _ in \$(seq 1 200); do sleep 0.1; done
        exit 99 ;;
esac
EOF
    chmod +x "$S/$p"
done
cat >"$S/scontrol" <<EOF
#!/bin/sh
echo "\$*" >>"$S/scontrol.args"
exit \${STUB_SCONTROL_RC:-0}
EOF
chmod +x "$S/scontrol"
reset_stubs() { rm -f "$S"/*.args "$S"/*.env "$S"/*.signals "$S"/*.started; }

# SLURM's environment for a 2-node job, 4 tasks per node, 6 CPUs per task.
slurm_env=(PATH="$S:$PATH" MDIFF_BIN="$S/bin" SLURM_JOB_ID=4242 SLURM_NTASKS=8 SLURM_NTASKS_PER_NODE=4
           SLURM_CPUS_PER_TASK=6 SLURM_SUBMIT_DIR="$T" SLURM_RESTART_COUNT=0)
TRAIN_ARGS=(--data /d/fm.h5 --run-dir /runs/a --steps 100)

# run_bg NAME CMD...: runs CMD in the background (output $T/out.txt), waits for the mpirun stub to
# start; BGPID = its pid. Background commands of a script start with SIGINT ignored, which bash
# cannot trap: restore the default, as for a command typed at a terminal.
run_bg() {
    shift
    env --default-signal=INT "$@" >"$T/out.txt" 2>&1 &
    BGPID=$!
    for _ in $(seq 1 100); do [ -e "$S/mpirun.started" ] && return 0; sleep 0.05; done
    return 1
}
# wait_bg: waits (at most 30 s) for the background script; 124 if it had to be killed.
wait_bg() {
    for _ in $(seq 1 300); do kill -0 "$BGPID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$BGPID" 2>/dev/null; then kill_bg; return 124; fi
    wait "$BGPID"; local rc=$?; BGPID=""; return $rc
}

# ---- train.sbatch: header ---------------------------------------------------------------------
TS=jobs/train.sbatch
for l in "#SBATCH --signal=B:USR1@120" "#SBATCH --requeue" "#SBATCH --open-mode=append"; do
    check "train.sbatch header: $l" has_line "$TS" "$l"
done
check "train.sbatch header: nodes, tasks per node, cpus per task, time" \
    bash -c "grep -q '^#SBATCH --nodes=' $TS && grep -q '^#SBATCH --ntasks-per-node=' $TS &&
             grep -q '^#SBATCH --cpus-per-task=' $TS && grep -q '^#SBATCH --time=' $TS"
check "sample.sbatch header: nodes, tasks, cpus, time" \
    bash -c "grep -q '^#SBATCH --ntasks-per-node=' jobs/sample.sbatch && grep -q '^#SBATCH --cpus-per-task=' jobs/sample.sbatch"

# ---- train.sbatch: normal run ------------------------------------------------------------------
reset_stubs
env "${slurm_env[@]}" bash "$TS" "${TRAIN_ARGS[@]}" >"$T/out.txt" 2>&1
rc=$?
check "train.sbatch: exit 0 when mdiff-train succeeds (got $rc)" test $rc -eq 0
A=$S/mpirun.args
check "train.sbatch: mpirun -np 8 (SLURM_NTASKS)" bash -c "grep -qx -- -np $A && grep -A1 -x -- -np $A | tail -n1 | grep -qx 8"
check "train.sbatch: 4 ranks per node, each bound to its 6 cores" \
    bash -c "grep -qx 'ppr:4:node:PE=6' $A && grep -A1 -x -- --bind-to $A | tail -n1 | grep -qx core"
check "train.sbatch: runs mdiff-train --resume auto with the user's arguments" \
    bash -c "grep -qx '$S/bin/mdiff-train' $A && grep -A1 -x -- --resume $A | tail -n1 | grep -qx auto &&
             grep -A1 -x -- --run-dir $A | tail -n1 | grep -qx /runs/a && grep -qx 100 $A"
check "train.sbatch: OpenBLAS threads = SLURM_CPUS_PER_TASK" has "$S/mpirun.env" "OPENBLAS_NUM_THREADS=6 OMP_NUM_THREADS=6"
check "train.sbatch: no requeue after success" test ! -e "$S/scontrol.args"

reset_stubs
env "${slurm_env[@]}" MDIFF_THREADS=2 SLURM_NTASKS_PER_NODE='4(x2)' bash "$TS" "${TRAIN_ARGS[@]}" >"$T/out.txt" 2>&1
check "train.sbatch: MDIFF_THREADS overrides; '4(x2)' tasks per node parsed" \
    bash -c "grep -qx 'ppr:4:node:PE=2' $A && grep -q 'OPENBLAS_NUM_THREADS=2 ' $S/mpirun.env"

reset_stubs
env "${slurm_env[@]}" MDIFF_LAUNCH=srun bash "$TS" "${TRAIN_ARGS[@]}" >"$T/out.txt" 2>&1
check "train.sbatch: MDIFF_LAUNCH=srun uses srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=6 --cpu-bind=cores" \
    bash -c "grep -qx -- --mpi=pmix $S/srun.args && grep -qx -- --cpus-per-task=6 $S/srun.args &&
             grep -qx -- --kill-on-bad-exit=1 $S/srun.args &&
             grep -qx -- --cpu-bind=cores $S/srun.args && grep -qx -- '$S/bin/mdiff-train' $S/srun.args"

# ---- train.sbatch: the signal path -------------------------------------------------------------
for sig in USR1 TERM; do
    reset_stubs
    if run_bg "sig$sig" env "${slurm_env[@]}" STUB_MODE=wait_usr1 bash "$TS" "${TRAIN_ARGS[@]}"; then
        kill -"$sig" "$BGPID"
        wait_bg; rc=$?
        check "train.sbatch: SIG$sig to the batch shell -> SIGUSR1 to the MPI job" has "$S/mpirun.signals" "got USR1"
        check "train.sbatch: SIG$sig: exit 3 (got $rc)" test $rc -eq 3
        check "train.sbatch: SIG$sig: requeues job 4242" has_line "$S/scontrol.args" "requeue 4242"
    else fail "train.sbatch SIG$sig" "the mpirun stub never started"; kill_bg; fi
done

# exit 3 past the requeue limit: no requeue, still exit 3
reset_stubs
if run_bg lim env "${slurm_env[@]}" STUB_MODE=wait_usr1 SLURM_RESTART_COUNT=5 MDIFF_MAX_REQUEUES=5 bash "$TS" "${TRAIN_ARGS[@]}"; then
    kill -USR1 "$BGPID"; wait_bg; rc=$?
    check "train.sbatch: at MDIFF_MAX_REQUEUES: exit 3 without requeue" \
        bash -c "[ $rc -eq 3 ] && [ ! -e $S/scontrol.args ] && grep -q MDIFF_MAX_REQUEUES $T/out.txt"
else fail "requeue limit" "stub never started"; kill_bg; fi

reset_stubs
if run_bg rqfail env "${slurm_env[@]}" STUB_MODE=wait_usr1 STUB_SCONTROL_RC=1 bash "$TS" "${TRAIN_ARGS[@]}"; then
    kill -USR1 "$BGPID"; wait_bg; rc=$?
    check "train.sbatch: failed requeue is reported, exit 3" \
        bash -c "[ $rc -eq 3 ] && grep -q 'requeue 4242. failed' $T/out.txt"
else fail "requeue failure" "stub never started"; kill_bg; fi

reset_stubs
env "${slurm_env[@]}" STUB_MODE=fail bash "$TS" "${TRAIN_ARGS[@]}" >"$T/out.txt" 2>&1
rc=$?
check "train.sbatch: mdiff-train failure (1) passes through, no requeue" \
    bash -c "[ $rc -eq 1 ] && [ ! -e $S/scontrol.args ]"

env "${slurm_env[@]}" bash "$TS" --data /d/fm.h5 >"$T/out.txt" 2>&1
check "train.sbatch: missing --run-dir is an error (exit 1)" bash -c "[ $? -eq 1 ] && grep -q -- --run-dir $T/out.txt"

# --run-dir with job ids: %A %a %j as in sbatch --output, %% a literal %, either option spelling
reset_stubs
env "${slurm_env[@]}" SLURM_JOB_ID=508 SLURM_ARRAY_JOB_ID=500 SLURM_ARRAY_TASK_ID=7 bash "$TS" \
    --data /d/fm.h5 --run-dir '/runs/s-%A_%a-j%j-%%x' --steps 100 >"$T/out.txt" 2>&1
rc=$?
check "train.sbatch: --run-dir /runs/s-%A_%a-j%j-%%x -> /runs/s-500_7-j508-%x (array job 500, task 7, job 508)" \
    bash -c "[ $rc -eq 0 ] && grep -A1 -x -- --run-dir $A | tail -n1 | grep -qx '/runs/s-500_7-j508-%x' &&
             grep -qx -- --data $A && grep -qx 100 $A"
reset_stubs
env "${slurm_env[@]}" SLURM_ARRAY_JOB_ID=500 SLURM_ARRAY_TASK_ID=3 bash "$TS" --data /d/fm.h5 '--run-dir=/runs/t%a' >"$T/out.txt" 2>&1
check "train.sbatch: --run-dir=/runs/t%a -> --run-dir /runs/t3" \
    bash -c "[ $? -eq 0 ] && grep -A1 -x -- --run-dir $A | tail -n1 | grep -qx /runs/t3"
reset_stubs
env "${slurm_env[@]}" bash "$TS" --data /d/fm.h5 --run-dir '/runs/t%a' >"$T/out.txt" 2>&1
check "train.sbatch: %a outside an array job: exit 1 naming SLURM_ARRAY_TASK_ID, nothing launched" \
    bash -c "[ $? -eq 1 ] && grep -q 'uses %a but SLURM_ARRAY_TASK_ID is not set' $T/out.txt && [ ! -e $A ]"
env "${slurm_env[@]}" bash "$TS" --data /d/fm.h5 --run-dir /r --resume=/x.h5 >"$T/out.txt" 2>&1
check "train.sbatch: --resume=FILE given is an error (exit 1)" test $? -eq 1
env "${slurm_env[@]}" bash "$TS" "${TRAIN_ARGS[@]}" --resume /x.h5 >"$T/out.txt" 2>&1
check "train.sbatch: --resume given is an error (exit 1)" test $? -eq 1

# ---- sample.sbatch -----------------------------------------------------------------------------
reset_stubs
env "${slurm_env[@]}" bash jobs/sample.sbatch /runs/a/latest.h5 -n 256 --h5 /o/s.h5 >"$T/out.txt" 2>&1
rc=$?
check "sample.sbatch: mpirun -np 8, PE=6 bound, mdiff-sample CKPT args, 6 BLAS threads per rank" \
    bash -c "[ $rc -eq 0 ] && grep -qx 'ppr:4:node:PE=6' $A && grep -qx '$S/bin/mdiff-sample' $A &&
             grep -qx /runs/a/latest.h5 $A && grep -qx 256 $A && grep -q 'OPENBLAS_NUM_THREADS=6 ' $S/mpirun.env"
env "${slurm_env[@]}" STUB_MODE=fail bash jobs/sample.sbatch /runs/a/latest.h5 >"$T/out.txt" 2>&1
check "sample.sbatch: failure passes through" test $? -eq 1
reset_stubs
env "${slurm_env[@]}" MDIFF_LAUNCH=srun bash jobs/sample.sbatch /runs/a/latest.h5 -n 256 >"$T/out.txt" 2>&1
rc=$?
check "sample.sbatch: MDIFF_LAUNCH=srun uses srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=6" \
    bash -c "[ $rc -eq 0 ] && grep -qx -- --mpi=pmix $S/srun.args && grep -qx -- --kill-on-bad-exit=1 $S/srun.args &&
             grep -qx -- --cpus-per-task=6 $S/srun.args && grep -qx -- '$S/bin/mdiff-sample' $S/srun.args"

# ---- local.sh: binding rule ----------------------------------------------------------------------
reset_stubs
env PATH="$S:$PATH" MDIFF_BIN="$S/bin" bash jobs/local.sh -np 1 -t 1 train --data d --run-dir r >"$T/out.txt" 2>&1
check "local.sh: 1 rank x 1 thread: --map-by slot:PE=1 --bind-to core, --resume auto" \
    bash -c "grep -qx 'slot:PE=1' $A && grep -A1 -x -- --bind-to $A | tail -n1 | grep -qx core &&
             grep -A1 -x -- --resume $A | tail -n1 | grep -qx auto && grep -q 'OPENBLAS_NUM_THREADS=1 ' $S/mpirun.env"
reset_stubs
env PATH="$S:$PATH" MDIFF_BIN="$S/bin" bash jobs/local.sh -np 64 -t 4 sample c.h5 >"$T/out.txt" 2>&1
check "local.sh: more ranks x threads than cores: --bind-to none --oversubscribe, a warning, no --resume" \
    bash -c "grep -A1 -x -- --bind-to $A | tail -n1 | grep -qx none && grep -qx -- --oversubscribe $A &&
             ! grep -qx -- --resume $A && grep -q warning $T/out.txt && grep -q 'OPENBLAS_NUM_THREADS=4 ' $S/mpirun.env"
reset_stubs
cores=$(lscpu -b -p=Core,Socket | grep -v '^#' | sort -u | wc -l)
env PATH="$S:$PATH" MDIFF_BIN="$S/bin" bash jobs/local.sh -np 1 sample c.h5 >"$T/out.txt" 2>&1
check "local.sh: default threads = physical cores / ranks ($cores), bound to PE=$cores" \
    bash -c "grep -qx 'slot:PE=$cores' $A && grep -q 'OPENBLAS_NUM_THREADS=$cores ' $S/mpirun.env"
env PATH="$S:$PATH" MDIFF_BIN="$S/bin" bash jobs/local.sh -np 0 train >"$T/out.txt" 2>&1
check "local.sh: -np 0 is an error (exit 1)" test $? -eq 1
reset_stubs
if run_bg localsig env PATH="$S:$PATH" MDIFF_BIN="$S/bin" STUB_MODE=wait_usr1 bash jobs/local.sh -np 2 -t 1 train --run-dir r; then
    kill -INT "$BGPID"; wait_bg; rc=$?
    check "local.sh: Ctrl-C (SIGINT) -> SIGUSR1 to mpirun, exit 3 (got $rc)" \
        bash -c "[ $rc -eq 3 ] && grep -q 'got USR1' $S/mpirun.signals"
else fail "local.sh signal" "stub never started"; kill_bg; fi

# ---- for real: mpirun + mdiff-train, only scontrol stubbed ------------------------------------
BIN=$ROOT/$BUILD/bin
"$BIN/mdiff-data" toy --kind moons --n 120 --out "$T/moons.h5" >/dev/null
REAL=(--data "$T/moons.h5" --mlp-width 16 --mlp-depth 1 --batch 16 --timesteps 50 --steps 100000000
      --log-every 100 --ckpt-every 100000000 --sample-every 0)
# wait_step LOG: until training prints its first log line
wait_step() { for _ in $(seq 1 200); do grep -q '^step ' "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rm -f "$S/scontrol.args"
# 2 tasks x 1 CPU on this machine; cpus_per_task 1 keeps ppr:2:node:PE=1 within 2 cores
env PATH="$S/real:$PATH" MDIFF_BIN="$BIN" SLURM_JOB_ID=77 SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2 \
    SLURM_CPUS_PER_TASK=1 MDIFF_MPIRUN_ARGS="--oversubscribe" \
    bash "$ROOT/jobs/train.sbatch" "${REAL[@]}" --run-dir "$T/real" >"$T/real.txt" 2>&1 &
BGPID=$!
mkdir -p "$S/real"; cp "$S/scontrol" "$S/real/"
if wait_step "$T/real.txt"; then
    kill -USR1 "$BGPID"; wait_bg; rc=$?
    step=$(sed -n 's/^stopped by a signal at step \([0-9]*\) .*/\1/p' "$T/real.txt")
    check "real train.sbatch: SIGUSR1 -> ranks checkpoint at step $step, exit 3, requeue 77" \
        bash -c "[ $rc -eq 3 ] && [ -n '$step' ] && [ -e $T/real/ckpt-\$(printf %08d '$step').h5 ] &&
                 grep -qx 'requeue 77' $S/scontrol.args"
    # the requeued job: same command, resumes (give it a finite --steps this time)
    env PATH="$S/real:$PATH" MDIFF_BIN="$BIN" SLURM_JOB_ID=77 SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2 \
        SLURM_CPUS_PER_TASK=1 SLURM_RESTART_COUNT=1 MDIFF_MPIRUN_ARGS="--oversubscribe" \
        bash "$ROOT/jobs/train.sbatch" "${REAL[@]}" --steps $((step + 5)) --run-dir "$T/real" >"$T/real2.txt" 2>&1
    rc=$?
    check "real train.sbatch: the requeued run resumes at step $step and finishes (exit $rc)" \
        bash -c "[ $rc -eq 0 ] && grep -q 'resumed from .* at step $step\$' $T/real2.txt"
    check "real train.sbatch: redraws the loss curve RUN/metrics.png after the run" \
        bash -c "grep -q 'plot.sh: wrote $T/real/metrics.png' $T/real2.txt && [ -s $T/real/metrics.png ]"
else fail "real train.sbatch" "training did not start: $(tail -n 5 "$T/real.txt")"; kill_bg; fi

env --default-signal=INT MDIFF_BIN="$BIN" bash "$ROOT/jobs/local.sh" -np 2 -t 1 train "${REAL[@]}" --run-dir "$T/loc" >"$T/loc.txt" 2>&1 &
BGPID=$!
if wait_step "$T/loc.txt"; then
    kill -INT "$BGPID"; wait_bg; rc=$?
    check "real local.sh: Ctrl-C -> checkpoint and exit 3 (got $rc)" \
        bash -c "[ $rc -eq 3 ] && grep -q '^stopped by a signal at step' $T/loc.txt && [ -e $T/loc/latest.h5 ]"
    check "real local.sh: redraws the loss curve RUN/metrics.png after the run" \
        bash -c "grep -q 'plot.sh: wrote $T/loc/metrics.png' $T/loc.txt && [ -s $T/loc/metrics.png ]"
else fail "real local.sh" "training did not start: $(tail -n 5 "$T/loc.txt")"; kill_bg; fi

# ---- jobs/plot.sh: the loss curve of a real run's metrics.csv ------------------------------------
if command -v gnuplot >/dev/null; then
    "$BIN/mdiff-train" "${REAL[@]}" --run-dir "$T/plot" --steps 60 --log-every 5 >"$T/out.txt" 2>&1
    rm -f "$T/plot/metrics.png"
    bash jobs/plot.sh "$T/plot" >"$T/out.txt" 2>"$T/err.txt"
    rc=$?
    size=$(stat -c %s "$T/plot/metrics.png" 2>/dev/null || echo 0)
    magic=$(head -c 8 "$T/plot/metrics.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')
    check "plot.sh RUN: exit 0 (got $rc), a PNG of sane size ($size bytes) from 12 rows" \
        bash -c "[ $rc -eq 0 ] && [ '$magic' = 89504e470d0a1a0a ] && [ $size -gt 20000 ] && [ $size -lt 2000000 ] &&
                 grep -qx 'plot.sh: wrote $T/plot/metrics.png (12 rows, steps 5 to 60)' $T/out.txt && [ ! -s $T/err.txt ]"
    # columns by name: the same values in another column order plot the same rows; a half-written
    # last row (training still appending) is skipped
    mkdir -p "$T/plot2"
    awk -F, -v OFS=, '{ t = $1; $1 = $3; $3 = t; print }' "$T/plot/metrics.csv" >"$T/plot2/metrics.csv"
    printf '65,1,0.5' >>"$T/plot2/metrics.csv"
    bash jobs/plot.sh "$T/plot2" "$T/plot2/curve.png" >"$T/out.txt" 2>&1
    check "plot.sh: columns looked up by name, a partial last row skipped, OUT.png honoured" \
        bash -c "[ $? -eq 0 ] && grep -q '(12 rows, steps 5 to 60)' $T/out.txt && [ -s $T/plot2/curve.png ]"
    sed -i '1s/images_per_s/img_s/' "$T/plot2/metrics.csv"
    bash jobs/plot.sh "$T/plot2" >"$T/out.txt" 2>"$T/err.txt"
    check "plot.sh: a missing column: exit 1, one line naming it" \
        bash -c "[ $? -eq 1 ] && [ \$(wc -l <$T/err.txt) -eq 1 ] && grep -q 'column images_per_s missing' $T/err.txt"
else
    fail "plot.sh" "gnuplot is not installed (make deps installs gnuplot-nox)"
fi
env PATH=/nonexistent /bin/bash jobs/plot.sh "$T/plot" >"$T/out.txt" 2>"$T/err.txt"
rc=$?
check "plot.sh without gnuplot on PATH: exit 1 (got $rc), one clear line" \
    bash -c "[ $rc -eq 1 ] && [ ! -s $T/out.txt ] && [ \$(wc -l <$T/err.txt) -eq 1 ] &&
             grep -q 'gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)' $T/err.txt"

# ---- launch checks inside mdiff-train (dist) ----------------------------------------------------
ONE=(--data "$T/moons.h5" --mlp-width 16 --mlp-depth 1 --batch 16 --timesteps 50 --steps 1 --sample-every 0)
env SLURM_STEP_NUM_TASKS=4 "$BIN/mdiff-train" "${ONE[@]}" --run-dir "$T/pmi" >"$T/out.txt" 2>"$T/err.txt"
rc=$?
check "srun without PMI (SLURM_STEP_NUM_TASKS=4, one MPI process): exit 1 naming srun --mpi" \
    bash -c "[ $rc -eq 1 ] && grep -q 'srun --mpi=pmix' $T/err.txt && [ \$(wc -l <$T/err.txt) -eq 1 ]"
online=$(nproc); want=$((online / 2)); [ $want -ge 1 ] || want=1
env -u OPENBLAS_NUM_THREADS mpirun --oversubscribe --bind-to none -np 2 "$BIN/mdiff-train" "${ONE[@]}" \
    --run-dir "$T/thr" >"$T/out.txt" 2>&1
check "BLAS threads default to cores / ranks per node ($online / 2 = $want)" \
    grep -q "| 2 ranks x $want BLAS thread(s) each" "$T/out.txt"
env OPENBLAS_NUM_THREADS=3 mpirun --oversubscribe --bind-to none -np 2 "$BIN/mdiff-train" "${ONE[@]}" \
    --run-dir "$T/thr3" >"$T/out.txt" 2>&1
check "OPENBLAS_NUM_THREADS set by the user stands" grep -q "| 2 ranks x 3 (OPENBLAS_NUM_THREADS) BLAS" "$T/out.txt"

[ $fails -eq 0 ] && echo "jobs: all passed" || echo "jobs: $fails failed"
[ $fails -eq 0 ]
