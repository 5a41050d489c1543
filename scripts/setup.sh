#!/usr/bin/env bash
# Set up everything ntksweep needs on a fresh Debian machine, idempotently:
#   apt packages (MPI, libclang for bindgen, h5dump), a Python virtual environment in .venv
#   with the pinned torch wheel (its libtorch is what `tch` links against), cmake >= 3.26
#   (the bundled static HDF5 needs it), numpy, h5py, matplotlib, pytest, scipy, pyyaml, pandas,
#   polars; then the release build.
# Re-running skips every step that is already done. Set NTKSWEEP_NO_BUILD=1 to skip the build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TORCH_VERSION=2.11.0
log() { printf '[setup] %s\n' "$*" >&2; }

# --- apt packages -----------------------------------------------------------------------
APT_PKGS=(libclang-dev clang libopenmpi-dev openmpi-bin hdf5-tools pkg-config)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# --- Python virtual environment ---------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
VPY=.venv/bin/python
need_pip=0
$VPY - 2>/dev/null <<PYEOF || need_pip=1
import importlib.metadata as m, sys
want = {"torch": "$TORCH_VERSION"}
for pkg in ["numpy", "h5py", "matplotlib", "pytest", "cmake", "scipy", "pyyaml", "pandas", "polars"]:
    m.version(pkg)
assert m.version("torch").split("+")[0] == want["torch"], m.version("torch")
from packaging.version import Version
assert Version(m.version("cmake")) >= Version("3.26")
PYEOF
if [ $need_pip = 1 ]; then
  log "installing Python packages (torch==$TORCH_VERSION is large: a few minutes)"
  $VPY -m pip install -q --upgrade pip
  # pyyaml: analysis/ reads the job files' `config` attribute; pandas: analysis.load.to_dataframe
  # and the jobs.csv tests; polars: the test that jobs.csv loads there too.
  $VPY -m pip install -q "torch==$TORCH_VERSION" numpy h5py matplotlib pytest scipy packaging "cmake>=3.26" \
    pyyaml pandas polars
else
  log "Python packages present"
fi
# JAX is optional: only the benchmark reference scripts use it. Failure is not fatal.
if [ "${NTKSWEEP_WITH_JAX:-1}" = 1 ] && ! $VPY -c "import jax" 2>/dev/null; then
  log "installing jax (optional, for analysis/reference benchmarks)"
  $VPY -m pip install -q "jax[cpu]" || log "jax install failed; benchmarks will skip the JAX reference"
fi

# tch finds libtorch through LIBTORCH=.venv/libtorch (.cargo/config.toml): link it to the wheel.
TORCH_DIR=$($VPY -c "import torch, os; print(os.path.dirname(torch.__file__))")
ln -sfn "$TORCH_DIR" .venv/libtorch

# --- Rust build -------------------------------------------------------------------------
# .cargo/config.toml points LIBTORCH and CMAKE into .venv, so plain `cargo` works afterwards.
if [ "${NTKSWEEP_NO_BUILD:-0}" != 1 ] && [ -f Cargo.toml ]; then
  log "cargo build --release"
  cargo build --release --quiet
fi
log "done"
