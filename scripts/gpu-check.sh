#!/usr/bin/env bash
# GPU check (issues 2, 6 and 8): run the quickstart sweep on CUDA as one process and as
# `mpirun -n 2` on one GPU, and check that every job file says device = cuda:0; then train
# it in float64 for 100 steps with the hand-written reverse pass and with
# NTKSWEEP_REVERSE=autograd and compare the job files (needs a Python with h5py: PY, default
# NTKSWEEP_PYTHON or python3; skipped with a note where there is none).
#
# On a GPU machine without a Rust toolchain: build here, carry the folder of
# scripts/gpu-carry.sh (binary + Open MPI) and run scripts/gpu-all.sh there, or carry
# target/release/ntksweep and run with the machine's libtorch, e.g.
#   LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib scripts/gpu-check.sh
# DEVICE=cpu runs the same checks on the CPU (dry run; every job file must then say cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${NTKSWEEP_BIN:-target/release/ntksweep}
DEVICE=${DEVICE:-cuda}
WANT=$([ "$DEVICE" = cuda ] && echo cuda:0 || echo "$DEVICE")
OUT=${1:-/tmp/ntksweep-gpu-check}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NTKSWEEP_PROGRESS_SECONDS=5
rm -rf "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi -L
fail=0
check() {  # every job's device must be $WANT
  local dir=$1
  "$BIN" status "$dir" --jobs | tee "$dir/status.txt"
  if grep -E '^[0-9a-f]{16} ' "$dir/status.txt" | grep -v " $WANT " ; then
    echo "FAIL: a job in $dir did not run on $WANT"; fail=1
  fi
  # Every planned job done (the count comes from the sweep: the quickstart has 18 jobs).
  grep -qE '^done ([1-9][0-9]*) +failed 0 +diverged 0 +pending 0 +\(of \1 planned\)' "$dir/status.txt" \
    || { echo "FAIL: not every planned job is done in $dir"; fail=1; }
}
echo "== one process, --device $DEVICE"
time "$BIN" run sweeps/quickstart.yaml --out "$OUT/single" --device "$DEVICE"
check "$OUT/single"
echo "== mpirun -n 2 on one device, --device $DEVICE"
time mpirun -n 2 --oversubscribe "$BIN" run sweeps/quickstart.yaml --out "$OUT/mpi2" --device "$DEVICE" --max-batch 2
check "$OUT/mpi2"
grep -h "device" "$OUT/mpi2/logs/"rank-*.log | head -2
echo "== hand-written reverse pass vs autograd on $DEVICE (float64, 100 steps)"
short=(--device "$DEVICE" --set model.dtype=float64 --set training.steps=100 --set ntk.every=50)
NTKSWEEP_REVERSE=tape "$BIN" run sweeps/quickstart.yaml --out "$OUT/tape" "${short[@]}" --quiet
NTKSWEEP_REVERSE=autograd "$BIN" run sweeps/quickstart.yaml --out "$OUT/autograd" "${short[@]}" --quiet
PY=${PY:-${NTKSWEEP_PYTHON:-python3}}
if "$PY" -c "import h5py, numpy" 2>/dev/null; then
  "$PY" tests/compare_results.py "$OUT/tape" "$OUT/autograd" --rtol 1e-8 || { echo "FAIL: the hand-written pass differs from autograd on $DEVICE"; fail=1; }
else
  echo "note: no h5py for $PY: job files not compared"
fi
[ $fail = 0 ] && echo "GPU CHECK PASSED" || { echo "GPU CHECK FAILED"; exit 1; }
