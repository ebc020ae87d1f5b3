#!/usr/bin/env bash
# The loss curve of a run: RUN_DIR/metrics.csv drawn by gnuplot into RUN_DIR/metrics.png.
#
#   jobs/plot.sh RUN_DIR [OUT.png]
#
# Three panels against step: the training loss and the loss of each quarter of the timesteps
# (t in the 1st ... 4th quarter of 1..T) on a log scale, the learning rate, and images/s.
# Columns are looked up by name in metrics.csv's header (README lists them), so a file from an
# older layout still plots. Safe while training runs: a row being appended is skipped, and the PNG
# is replaced by rename, so a viewer never sees half a file. Needs gnuplot (Debian: gnuplot-nox);
# without it: one line on stderr, exit 1.
set -euo pipefail
log() { echo "plot.sh: $*" >&2; }
[ $# -ge 1 ] && [ $# -le 2 ] || { log "usage: jobs/plot.sh RUN_DIR [OUT.png]"; exit 1; }
command -v gnuplot >/dev/null 2>&1 ||
    { log "error: gnuplot not found on PATH (Debian: apt-get install gnuplot-nox); the numbers are in $1/metrics.csv"; exit 1; }
run=$1
csv=$run/metrics.csv
out=${2:-$run/metrics.png}
[ -s "$csv" ] || { log "error: $csv not found or empty (is $run a run directory of mdiff-train?)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mdiff_plot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The columns wanted, by name, into a whitespace table for gnuplot; nan and empty become "?"
# (gnuplot's missing value). Rows with a different field count than the header (one being written)
# are dropped.
want="step loss loss_q1 loss_q2 loss_q3 loss_q4 lr images_per_s"
if ! awk -F, -v want="$want" -v csv="$csv" '
    NR == 1 {
        n = split(want, w, " ")
        for (i = 1; i <= NF; i++) col[$i] = i
        for (k = 1; k <= n; k++)
            if (!(w[k] in col)) { printf "column %s missing from the header of %s\n", w[k], csv; bad = 1; exit 1 }
        nf = NF; next
    }
    NF == nf {
        line = ""
        for (k = 1; k <= n; k++) { v = $(col[w[k]]); if (v == "" || tolower(v) ~ /nan/) v = "?"; line = line (k > 1 ? " " : "") v }
        print line; rows++
    }
    END { if (!bad && rows == 0) { printf "%s has no rows yet\n", csv; exit 1 } }
' "$csv" >"$tmp/data" 2>"$tmp/awk.err"; then
    msg=$(cat "$tmp/data" "$tmp/awk.err" | tail -n 1)
    log "error: ${msg:-cannot read $csv}"; exit 1
fi
rows=$(wc -l <"$tmp/data")
plural=s; [ "$rows" -eq 1 ] && plural=""
first=$(head -n 1 "$tmp/data" | cut -d' ' -f1)
last=$(tail -n 1 "$tmp/data" | cut -d' ' -f1)
# Few rows: draw the points too, a line through two points says little.
style="lines lw 2"
[ "$rows" -lt 20 ] && style="linespoints lw 2 pt 7 ps 0.8"
term="pngcairo size 1000,1000 font 'sans,11'"
case $(gnuplot -e 'set terminal' 2>&1 || true) in *pngcairo*) ;; *) term="png size 1000,1000" ;; esac
name=$(basename "$(cd "$run" && pwd)"); name=${name//[\'\"\\]/}  # quoted in gnuplot below

cat >"$tmp/plot.gp" <<EOF
set terminal $term
set output '$tmp/out.png'
set datafile missing '?'
set grid
set key outside right top Left reverse
set lmargin 12
set rmargin 24
set multiplot layout 3,1 title "mdiff run '$name': metrics.csv, $rows row$plural, steps $first to $last"
set title 'training loss (log scale), overall and by timestep quarter of 1..T'
set logscale y
set format y '%g'
plot '$tmp/data' using 1:2 with $style lc rgb 'black' title 'loss', \
     '' using 1:3 with $style lc rgb '#1b9e77' title 't in 1st quarter', \
     '' using 1:4 with $style lc rgb '#d95f02' title 't in 2nd quarter', \
     '' using 1:5 with $style lc rgb '#7570b3' title 't in 3rd quarter', \
     '' using 1:6 with $style lc rgb '#e7298a' title 't in 4th quarter'
unset logscale y
unset key
set format y '%g'
set title 'learning rate'
plot '$tmp/data' using 1:7 with $style lc rgb '#1f78b4' title 'lr'
set format y '%g'
set title 'throughput (training images/s, all ranks)'
set xlabel 'step'
set yrange [0:*]
plot '$tmp/data' using 1:8 with $style lc rgb '#33a02c' title 'images/s'
unset multiplot
EOF
if ! gnuplot "$tmp/plot.gp" >"$tmp/gnuplot.log" 2>&1 || [ ! -s "$tmp/out.png" ]; then
    log "error: gnuplot failed on $csv: $(grep -v '^$' "$tmp/gnuplot.log" | tail -n 1)"; exit 1
fi
# rename within the output's directory: a viewer sees the old picture or the new one, never half
cp "$tmp/out.png" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
echo "plot.sh: wrote $out ($rows row$plural, steps $first to $last)"
