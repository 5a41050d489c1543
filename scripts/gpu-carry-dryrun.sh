#!/usr/bin/env bash
# Dry run of the GPU machine's workflow on this CPU machine: build the carried folder with
# scripts/gpu-carry.sh, then, in a private mount namespace where every file of this machine's
# Open MPI packages is hidden (so only the folder can serve), run scripts/gpu-check.sh
# (quickstart as one process and under the carried `mpirun -n 2`, hand-written reverse pass vs
# autograd) - or the whole scripts/gpu-all.sh with FULL=1 - with DEVICE=cpu.
#
# Usage: scripts/gpu-carry-dryrun.sh [OUT_DIR]   (root only: it needs `unshare -m`)
# FULL=1 also runs the bench (--quick, no references) and the shortened sweeps (5 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/ntksweep-carry-dryrun}
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
  echo "SKIPPED: the dry run hides the system's Open MPI with unshare -m, which needs root"; exit 0
fi
CARRY=${CARRY:-.carry}
scripts/gpu-carry.sh "$CARRY" >/dev/null
# Every regular file of the carried packages, as installed on this machine.
mapfile -t hide < <(dpkg -L libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 \
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libmunge2 2>/dev/null | while read -r f; do [ -f "$f" ] && [ ! -L "$f" ] && echo "$f"; done)
export CARRY OUT FULL="${FULL:-0}" TORCH_LIB=${TORCH_LIB:-$(pwd)/.venv/libtorch/lib}
export NTKSWEEP_PYTHON=${NTKSWEEP_PYTHON:-$(pwd)/.venv/bin/python}
unshare -m bash -c '
  set -euo pipefail
  for f in "$@"; do mount --bind /dev/null "$f"; done
  echo "== hid $# files of the system Open MPI; mpirun on PATH before sourcing: $(command -v mpirun || echo none)"
  if [ "$FULL" = 1 ]; then
    DEVICE=cpu BENCH_ARGS="--quick --no-references" SWEEP_STEPS=5 SWEEP_TIMEOUT=120 scripts/gpu-all.sh "$OUT"
  else
    source "$CARRY/env.sh"
    echo "== mpirun: $(command -v mpirun); libmpi: $(ldd "$NTKSWEEP_BIN" | awk "/libmpi/ {print \$3}")"
    DEVICE=cpu scripts/gpu-check.sh "$OUT"
  fi
' dryrun "${hide[@]}"
