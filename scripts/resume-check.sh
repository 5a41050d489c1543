#!/usr/bin/env bash
# The acceptance check of checkpoints (issue 16) at full size: the quickstart with
# `--set training.steps=STEPS` (default 20000), run once uninterrupted and once interrupted by
# SIGUSR1 three times (each time in the middle of a batch: state saved, exit code 3) and resumed;
# then every dataset and attribute of the two sets of job files is compared with
# tests/compare_results.py --rtol 0 --attrs (provenance attributes excluded: wall time, host,
# pid, rank). Prints the comparison line and the wall time of each part; exits 1 on a difference.
#   bash scripts/resume-check.sh [STEPS]       (NTKSWEEP_BIN, default target/release/ntksweep)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20000}
BIN=${NTKSWEEP_BIN:-target/release/ntksweep}
PY=${PY:-.venv/bin/python}
W=$(mktemp -d /tmp/ntksweep-resume.XXXXXX)
trap 'rm -rf "$W"' EXIT
set_steps=(--set "training.steps=$STEPS" -q)

t0=$(date +%s)
"$BIN" run sweeps/quickstart.yaml --out "$W/whole" "${set_steps[@]}"
t1=$(date +%s)
echo "uninterrupted: $((t1 - t0)) s"

for i in 1 2 3; do
  "$BIN" run sweeps/quickstart.yaml --out "$W/res" "${set_steps[@]}" &
  pid=$!
  # Wait until this run has started (or resumed) a batch, then let it train a while.
  until [ "$(grep -c ' start' "$W/res/logs/rank-0.log" 2>/dev/null || true)" -ge "$i" ]; do sleep 0.5; done
  sleep $(( (t1 - t0) / 8 + 1 ))
  kill -USR1 "$pid"
  rc=0; wait "$pid" || rc=$?
  echo "interrupt $i: exit code $rc"
  [ "$rc" = 3 ] || { echo "expected exit code 3" >&2; exit 1; }
  "$BIN" status "$W/res" | grep -E "checkpointed|step " || true
done
"$BIN" run sweeps/quickstart.yaml --out "$W/res" "${set_steps[@]}"
t2=$(date +%s)
echo "interrupted three times and resumed: $((t2 - t1)) s"
echo "resumes logged: $(grep -c 'resuming from checkpoint' "$W/res/logs/rank-0.log")"
"$PY" tests/compare_results.py "$W/whole" "$W/res" --rtol 0 --attrs
