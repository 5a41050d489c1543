#!/usr/bin/env bash
# Scale benchmark: `ntksweep plan` and the start of `ntksweep run` on a sweep of 1,000,000 jobs.
#
#   bash scripts/bench-scale.sh [JOBS_PER_WIDTH_EPS]     (default 50000: 4 eps x 5 widths x 50000 seeds)
#
# The sweep is the quickstart (darcy1d, collocation and NTK settings as shipped) with axes
# eps (4) x width (5) x seed (N). It measures, with the real binary:
#   plan  - wall time, CPU time (user + sys) and peak memory (/usr/bin/time: elapsed, user,
#           system, maximum resident set size) of `ntksweep plan` writing its table to /dev/null;
#   run   - wall time from the start of `ntksweep run` to the first "batch ... start" line of
#           its log (parse, validate, expand, scan the results folder, write plan.tsv, plan the
#           batches), the CPU time (user + sys, /proc/PID/stat) and the peak resident memory
#           (VmHWM) at that moment; then the run is
#           stopped with SIGTERM (its first batch saves a checkpoint) and the folder removed.
# Both include the process start (loading libtorch: about 0.5 GB resident by itself). On a
# machine shared with other work the CPU seconds are the number to compare: wall time grows
# with the load, CPU time hardly.
# Environment: NTKSWEEP_BIN (default target/release/ntksweep).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${NTKSWEEP_BIN:-$REPO/target/release/ntksweep}
N=${1:-50000}
WORK=$(mktemp -d /tmp/ntksweep-bench-scale.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

sed -e '/^sweep:/,$d' -e 's/^name: quickstart/name: scale/' "$REPO/sweeps/quickstart.yaml" >"$WORK/scale.yaml"
cat >>"$WORK/scale.yaml" <<EOF
sweep:
  eps: [0.5, 0.25, 0.125, 0.0625]
  width: [20, 50, 100, 200, 500]
  seed: {range: [0, $N]}
EOF
JOBS=$((20 * N))
echo "scale benchmark: $JOBS jobs, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $BIN"

/usr/bin/time -f "%e %U %S %M" -o "$WORK/plan.time" "$BIN" plan "$WORK/scale.yaml" >/dev/null
read -r secs usr sys kb <"$WORK/plan.time"
printf "plan          %8.2f s wall  %8.2f s CPU  %6.0f MB peak resident\n" "$secs" "$(echo "$usr + $sys" | bc)" "$((kb / 1024))"

OUT=$WORK/res
t0=$(date +%s.%N)
"$BIN" run "$WORK/scale.yaml" --out "$OUT" --device cpu -q >"$WORK/run.out" 2>&1 &
pid=$!
until grep -q "batch of .* start" "$OUT/logs/rank-0.log" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then cat "$WORK/run.out"; echo "run ended before its first batch" >&2; exit 1; fi
  sleep 0.05
done
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
# utime and stime (fields 14 and 15, in clock ticks) of the process and its threads.
ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
kill -TERM "$pid"
wait "$pid" || true
printf "run (start)   %8.2f s wall  %8.2f s CPU  %6.0f MB peak resident\n" "$(echo "$t1 - $t0" | bc)" "$(echo "scale=2; $ticks / $(getconf CLK_TCK)" | bc)" "$((hwm / 1024))"
grep -E "^sweep|^batches" "$WORK/run.out" | sed 's/^/  /'
