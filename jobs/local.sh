#!/usr/bin/env bash
# mdiff-train / mdiff-sample under mpirun on one machine (see jobs/README.md).
#
#   jobs/local.sh [-np P] [-t THREADS] train --data DATA --run-dir RUN [mdiff-train options]
#   jobs/local.sh [-np P] [-t THREADS] sample CKPT.h5 [mdiff-sample options]
#
# P ranks (default MDIFF_NP or 1), each with THREADS OpenBLAS threads (default: physical cores / P,
# at least 1). When P x THREADS fits the cores, each rank is bound to its own THREADS cores
# (--map-by slot:PE=THREADS --bind-to core), so a multi-threaded rank is never squeezed onto one
# core (plain `mpirun -np P` binds each rank to a single core); otherwise binding is off
# (--bind-to none, --oversubscribe) with a warning. Training always runs with --resume auto.
# Ctrl-C, SIGTERM or SIGUSR1 ask the ranks to checkpoint and stop (exit 3; run the same command
# again to continue); a second Ctrl-C aborts at once. When training ends, RUN/metrics.png is
# redrawn by jobs/plot.sh if gnuplot is installed.
# Knobs: MDIFF_BIN (directory of the programs; default build/bin next to this script, else PATH),
# MDIFF_MPIRUN_ARGS (extra mpirun arguments).
set -u
log() { echo "local.sh: $*" >&2; }
usage() { sed -n '2,/^set -u/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

np=${MDIFF_NP:-1}
threads=""
while [ $# -gt 0 ]; do
    case $1 in
        -np|-n) [ $# -ge 2 ] || { log "error: $1 needs a value"; exit 1; }; np=$2; shift 2 ;;
        -t|--threads) [ $# -ge 2 ] || { log "error: $1 needs a value"; exit 1; }; threads=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { usage >&2; exit 1; }
what=$1; shift
case $what in train|sample) ;; *) log "error: '$what': say train or sample"; exit 1 ;; esac
case $np in ''|*[!0-9]*|0) log "error: -np '$np': give a positive integer"; exit 1 ;; esac
case ${threads:-1} in ''|*[!0-9]*|0) log "error: -t '$threads': give a positive integer"; exit 1 ;; esac

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${MDIFF_BIN:-}" ]; then prog="$MDIFF_BIN/mdiff-$what"
elif [ -x "$here/build/bin/mdiff-$what" ]; then prog="$here/build/bin/mdiff-$what"
else prog=$(command -v "mdiff-$what" || true); fi
[ -n "$prog" ] && [ -x "$prog" ] || { log "error: mdiff-$what not found (make, or set MDIFF_BIN)"; exit 1; }

# Physical cores this process may use (hyperthreads share a core's FPU: BLAS gains nothing).
cores=$(lscpu -b -p=Core,Socket 2>/dev/null | grep -v '^#' | sort -u | wc -l)
online=$(nproc 2>/dev/null || echo 1)
if [ "${cores:-0}" -lt 1 ] || [ "$cores" -gt "$online" ]; then cores=$online; fi
if [ -z "$threads" ]; then threads=$((cores / np)); [ "$threads" -ge 1 ] || threads=1; fi
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

if [ $((np * threads)) -le "$cores" ]; then
    bind=(--map-by "slot:PE=$threads" --bind-to core)
else
    log "warning: $np ranks x $threads threads exceed the $cores cores: running unbound and oversubscribed"
    bind=(--oversubscribe --bind-to none)
fi
# shellcheck disable=SC2206
cmd=(mpirun -np "$np" "${bind[@]}" ${MDIFF_MPIRUN_ARGS:-} "$prog")
[ "$what" = train ] && cmd+=(--resume auto)
log "$np rank(s) x $threads thread(s): ${cmd[*]} $*"
[ "$what" = sample ] && exec "${cmd[@]}" "$@"

# Own session: a Ctrl-C in the terminal reaches only this script, which turns it into one clean
# SIGUSR1 for mpirun (mpirun itself would answer SIGINT by killing the ranks after a short grace).
setsid=(); command -v setsid >/dev/null && setsid=(setsid)
"${setsid[@]}" "${cmd[@]}" "$@" &
child=$!
ints=0
forward() {
    if [ "$1" = INT ]; then
        ints=$((ints + 1))
        if [ $ints -ge 2 ]; then log "second Ctrl-C: aborting"; kill -INT "$child" 2>/dev/null; return; fi
    fi
    log "SIG$1: asking the ranks to checkpoint and stop (Ctrl-C again to abort)"
    kill -USR1 "$child" 2>/dev/null   # mpirun forwards SIGUSR1 to every rank
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward USR1' USR1
while :; do
    wait "$child"
    rc=$?
    [ $rc -le 128 ] && break
    kill -0 "$child" 2>/dev/null && continue
    wait "$child"
    rc=$?
    break
done
# The loss curve RUN/metrics.png, redrawn when the run ends (whatever its status) and gnuplot is
# installed: outside the MPI job, so training never waits for it.
run_dir=""
prev=""
for a in "$@"; do
    case $a in --run-dir=*) run_dir=${a#--run-dir=} ;; esac
    [ "$prev" = --run-dir ] && run_dir=$a
    prev=$a
done
if [ -n "$run_dir" ] && [ -s "$run_dir/metrics.csv" ] && command -v gnuplot >/dev/null; then
    bash "$here/jobs/plot.sh" "$run_dir" >&2 || log "warning: the loss plot failed (the training run is not affected)"
fi
[ $rc -eq 3 ] && log "stopped with a checkpoint: run the same command again to continue"
exit $rc
