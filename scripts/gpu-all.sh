#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one device call (issues 2, 3, 4, 6, 8):
#   1. scripts/gpu-check.sh: quickstart on CUDA as one process and as `mpirun -n 2` on one GPU,
#      every job file says cuda:0 (issues 2 and 6);
#   2. `ntksweep bench --device cuda` with the PyTorch references in the same invocation
#      (issues 3 and 8; JAX rows appear only where JAX is installed);
#   3. each shipped sweep shortened to SWEEP_STEPS Adam steps (and 20 L-BFGS iterations where it
#      has them), timed, with the full sweep's time extrapolated (issue 4).
#
# Usage, from a checkout on the GPU machine, with the folder made here by scripts/gpu-carry.sh
# (binary, Open MPI, sweeps, scripts) carried as .carry:
#   scripts/gpu-all.sh OUT_DIR
# It sources .carry/env.sh (or $CARRY/env.sh) when present: ntksweep and mpirun then come from
# the folder, libtorch from the machine's PyTorch (TORCH_LIB, default /opt/torch/...). Without
# the folder, carry target/release/ntksweep and set LD_LIBRARY_PATH to the machine's torch/lib:
#   LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib scripts/gpu-all.sh OUT_DIR
# Environment: NTKSWEEP_BIN (default target/release/ntksweep), NTKSWEEP_PYTHON (default
# /opt/torch/.venv/bin/python when present), SWEEP_STEPS (default 1000), SWEEP_TIMEOUT seconds
# per shortened sweep (default 150); for a dry run of this script on a CPU machine:
# DEVICE=cpu BENCH_ARGS="--quick --no-references" SWEEP_STEPS=5 scripts/gpu-all.sh /tmp/x
# (scripts/gpu-carry-dryrun.sh does that with this machine's Open MPI hidden, so that only the
# carried folder can serve.)
# Writes OUT_DIR/gpu-check.log, OUT_DIR/bench.md, OUT_DIR/sweeps.tsv and prints them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu-all.sh OUT_DIR}
mkdir -p "$OUT"
CARRY=${CARRY:-.carry}
if [ -f "$CARRY/env.sh" ]; then
  # shellcheck disable=SC1091
  source "$CARRY/env.sh"
  echo "== using the carried folder $CARRY: $(command -v mpirun), $NTKSWEEP_BIN"
fi
BIN=${NTKSWEEP_BIN:-target/release/ntksweep}
export NTKSWEEP_BIN=$BIN
if [ -z "${NTKSWEEP_PYTHON:-}" ] && [ -x /opt/torch/.venv/bin/python ]; then
  export NTKSWEEP_PYTHON=/opt/torch/.venv/bin/python
fi
DEVICE=${DEVICE:-cuda}
STEPS=${SWEEP_STEPS:-1000}
LIMIT=${SWEEP_TIMEOUT:-150}
status=0

if [ -z "${SKIP_CHECK:-}" ]; then
  echo "== 1. gpu-check"
  DEVICE=$DEVICE scripts/gpu-check.sh "$OUT/check" 2>&1 | tee "$OUT/gpu-check.log" || status=1
fi

echo "== 2. bench --device $DEVICE"
# shellcheck disable=SC2086
"$BIN" bench --device "$DEVICE" ${BENCH_ARGS:-} --output "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log" || status=1

echo "== 3. shipped sweeps, $STEPS Adam steps each"
printf 'sweep\tjobs\tsteps_run\tseconds\tfull_adam_steps\textrapolated_hours\n' > "$OUT/sweeps.tsv"
for f in sweeps/*.yaml; do
  name=$(basename "$f" .yaml)
  full=$(grep -E '^  steps:' "$f" | head -1 | awk '{print $2}')
  sets=(--set "training.steps=$STEPS")
  grep -q '^  lbfgs:' "$f" && sets+=(--set training.lbfgs.steps=20)
  rm -rf "$OUT/sweeps/$name"
  start=$(date +%s.%N)
  timeout "$LIMIT" "$BIN" run "$f" --out "$OUT/sweeps/$name" --device "$DEVICE" -q "${sets[@]}" > "$OUT/sweeps-$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  jobs=$("$BIN" status "$OUT/sweeps/$name" 2>/dev/null | awk '{print $2}')
  if [ "$rc" = 0 ] && [ -n "$full" ]; then
    hours=$(awk -v s="$secs" -v f="$full" -v n="$STEPS" 'BEGIN {printf "%.2f", s * f / n / 3600}')
  else
    hours="rc=$rc"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$jobs" "$STEPS" "$secs" "${full:-?}" "$hours" >> "$OUT/sweeps.tsv"
done
column -t "$OUT/sweeps.tsv"
exit $status
