#!/usr/bin/env bash
# GPU check (issues 2 and 6): run the quickstart sweep on CUDA as one process and as
# `mpirun -n 2` on one GPU, and check that every job file says device = cuda:0.
#
# On a GPU machine without a Rust toolchain: build here, carry target/release/ntksweep,
# and run there with the machine's libtorch, e.g.
#   LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${NTKSWEEP_BIN:-target/release/ntksweep}
OUT=${1:-/tmp/ntksweep-gpu-check}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NTKSWEEP_PROGRESS_SECONDS=5
rm -rf "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi -L
fail=0
check() {  # every job's device must be cuda:0
  local dir=$1
  "$BIN" status "$dir" --jobs | tee "$dir/status.txt"
  if grep -E '^[0-9a-f]{16} ' "$dir/status.txt" | grep -v ' cuda:0 ' ; then
    echo "FAIL: a job in $dir did not run on cuda:0"; fail=1
  fi
  grep -q '^done 9 ' "$dir/status.txt" || { echo "FAIL: not all 9 jobs done in $dir"; fail=1; }
}
echo "== one process, --device cuda"
time "$BIN" run sweeps/quickstart.yaml --out "$OUT/single" --device cuda
check "$OUT/single"
echo "== mpirun -n 2 on one GPU, --device cuda"
time mpirun -n 2 --oversubscribe "$BIN" run sweeps/quickstart.yaml --out "$OUT/mpi2" --device cuda --max-batch 2
check "$OUT/mpi2"
grep -h "device" "$OUT/mpi2/logs/"rank-*.log | head -2
[ $fail = 0 ] && echo "GPU CHECK PASSED" || { echo "GPU CHECK FAILED"; exit 1; }
