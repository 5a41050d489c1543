#!/usr/bin/env bash
# Gather into one folder everything a GPU machine needs to run ntksweep besides its own
# libtorch: the release binary, Open MPI (libraries, `mpirun`, its MCA plugins and help files,
# PMIx, hwloc, libevent, libudev) unpacked from this machine's Debian packages, the sweeps, the
# scripts, the bench's reference scripts, and `env.sh`, which points PATH, LD_LIBRARY_PATH and
# Open MPI's relocation variables at the folder.
#
# Why: the GPU machine of the device tool (Ubuntu 24.04, PyTorch 2.11 + CUDA 13 under
# /opt/torch) has no Rust toolchain and may have no Open MPI, while the binary links Debian's
# libmpi.so.40. Build here, run this, name the folder in the device tool's `carry`, and there:
#   source .carry/env.sh && scripts/gpu-all.sh "$OUT"
# (scripts/gpu-all.sh sources .carry/env.sh by itself when the folder is present.)
#
# Usage: scripts/gpu-carry.sh [DIR]   (default .carry, ignored by git)
# Environment: NTKSWEEP_BIN (default target/release/ntksweep), TORCH_LIB (the GPU machine's
# torch/lib for env.sh; default /opt/torch/.venv/lib/python3.12/site-packages/torch/lib),
# MAX_MIB (size limit, default 64: the device tool carries at most 64 MiB).
#
# Checks before it succeeds: every shared library the binary, mpirun, orted and each kept MCA
# plugin needs resolves inside the folder or is a base-system library every Linux has (glibc,
# libstdc++, libgcc_s, zlib; libtorch and the CUDA libraries are the GPU machine's own); plugins whose libraries are
# not carried (InfiniBand verbs, UCX, libfabric, PSM: not needed on one node) are left out;
# the folder is at most MAX_MIB.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.carry}
BIN=${NTKSWEEP_BIN:-target/release/ntksweep}
TORCH_LIB=${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
MAX_MIB=${MAX_MIB:-64}
MULTIARCH=x86_64-linux-gnu
log() { printf '[gpu-carry] %s\n' "$*" >&2; }
die() { printf '[gpu-carry] error: %s\n' "$*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN not found: build it first (make setup, or cargo build --release)"
# Debian packages of the Open MPI the binary was linked against, at the installed versions.
PKGS=(libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 libevent-core-2.1-7
      libevent-pthreads-2.1-7 libudev1 libmunge2)
# Libraries every Linux system has (glibc, the C++ runtime, zlib), and libtorch, which the GPU
# machine brings: they are not carried.
BASE_RE='^(linux-vdso\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libutil\.so|libresolv\.so|libstdc\+\+\.so|libgcc_s\.so|libz\.so|libtorch|libc10|libgomp|libcuda|libcu|libnccl|libnvJitLink|libnvshmem|libnvrtc|libnvToolsExt)'

rm -rf "$DIR"
mkdir -p "$DIR/debs" "$DIR/root" "$DIR/bin"
ABS=$(cd "$DIR" && pwd)

# --- Open MPI from Debian's packages ------------------------------------------------------
pinned=()
for p in "${PKGS[@]}"; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || die "package $p is not installed (run scripts/setup.sh)"
  pinned+=("$p=$v")
done
log "downloading ${pinned[*]}"
(cd "$DIR/debs" && apt-get download -q "${pinned[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
for p in "${PKGS[@]}"; do ls "$DIR/debs/${p}_"*.deb >/dev/null 2>&1 || die "apt-get download of $p failed"; done
for deb in "$DIR"/debs/*.deb; do dpkg -x "$deb" "$DIR/root"; done
rm -rf "$DIR/debs"
R="$DIR/root"
# What a run on one node does not use: documentation, headers, compiler wrappers' data,
# Fortran/Java/C++ bindings, OpenSHMEM.
rm -rf "$R/usr/share/doc" "$R/usr/share/man" "$R/usr/share/lintian" "$R/usr/lib/$MULTIARCH/openmpi/include"
rm -f "$R/usr/lib/$MULTIARCH/openmpi/lib/"{libmpi_java,libmpi_mpifh,libmpi_usempi,liboshmem}* \
      "$R/usr/lib/$MULTIARCH/"{libmpi_java,libmpi_mpifh,libmpi_usempi,liboshmem}* \
      "$R/usr/lib/$MULTIARCH/openmpi/lib/openmpi3/"{mca_spml,mca_sshmem,mca_atomic,mca_scoll}_* \
      "$R/usr/lib/$MULTIARCH/openmpi/lib/"*.jar 2>/dev/null || true

# --- the binary and what the scripts run ----------------------------------------------------
cp "$BIN" "$DIR/bin/ntksweep"
mkdir -p "$DIR/tree/tests" "$DIR/tree/analysis"
cp -r sweeps scripts "$DIR/tree/"
cp tests/compare_results.py "$DIR/tree/tests/"
cp -r analysis/reference "$DIR/tree/analysis/"
find "$DIR/tree" -name __pycache__ -prune -exec rm -rf {} +

# --- environment ----------------------------------------------------------------------------
cat > "$DIR/env.sh" <<EOF
# Source this on the GPU machine: ntksweep and Open MPI from this folder, libtorch from the
# machine's PyTorch ($TORCH_LIB unless TORCH_LIB is set).
_carry=\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)
_root=\$_carry/root/usr
export NTKSWEEP_BIN=\$_carry/bin/ntksweep
export PATH=\$_carry/bin:\$_root/bin:\$PATH
export LD_LIBRARY_PATH=\$_root/lib/$MULTIARCH:\$_root/lib/$MULTIARCH/openmpi/lib:\$_root/lib/$MULTIARCH/pmix2/lib:\${TORCH_LIB:-$TORCH_LIB}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
# Open MPI and PMIx were built for /usr: relocate them into this folder.
export OPAL_PREFIX=\$_root
export PMIX_INSTALL_PREFIX=\$_root/lib/$MULTIARCH/pmix2
export PMIX_MCA_mca_base_component_path=\$_root/lib/$MULTIARCH/pmix2/lib/pmix
export OMPI_MCA_mca_base_component_path=\$_root/lib/$MULTIARCH/openmpi/lib/openmpi3
# One node: shared memory and self only (the plugins for networks were not carried).
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_mtl=^ofi,psm,psm2
# No ssh on the GPU machine: launch the ranks on this node only.
export OMPI_MCA_plm=isolated
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export NTKSWEEP_CARRY=\$_carry
unset _carry _root
EOF
# mpirun is a link to orterun through Debian's alternatives: make it a plain link in the folder.
ln -sf orterun "$R/usr/bin/mpirun"

# --- dependency check -----------------------------------------------------------------------
libpath="$R/usr/lib/$MULTIARCH:$R/usr/lib/$MULTIARCH/openmpi/lib:$R/usr/lib/$MULTIARCH/pmix2/lib"
# Prints the libraries an ELF file needs that resolve neither in the folder nor as base-system
# libraries (a library found on this machine outside the folder counts as missing).
outside() {
  LD_LIBRARY_PATH=$libpath ldd "$1" 2>/dev/null | awk '{print $1, $3}' | while read -r name path; do
    name=$(basename "$name")
    [[ "$name" =~ $BASE_RE ]] && continue
    case "$path" in "$ABS"/*|"$DIR"/*) ;; *) echo "$name" ;; esac
  done
}
plugins=("$R/usr/lib/$MULTIARCH/openmpi/lib/openmpi3/"*.so "$R/usr/lib/$MULTIARCH/pmix2/lib/pmix/"*.so)
dropped=()
for so in "${plugins[@]}"; do
  miss=$(outside "$so" | sort -u | tr '\n' ' ')
  if [ -n "$miss" ]; then dropped+=("$(basename "$so") ($miss)"); rm -f "$so"; fi
done
[ ${#dropped[@]} -gt 0 ] && log "left out ${#dropped[@]} plugins whose libraries are not carried: ${dropped[*]}"
bad=0
for elf in "$DIR/bin/ntksweep" "$R/usr/bin/orterun" "$R/usr/bin/orted" "$R/usr/lib/$MULTIARCH/libmpi.so.40"; do
  miss=$(outside "$elf" | sort -u | tr '\n' ' ')
  if [ -n "$miss" ]; then log "MISSING for $(basename "$elf"): $miss"; bad=1; fi
done
[ $bad = 0 ] || die "libraries missing from $DIR (see above)"
log "ldd: the binary, mpirun, orted, libmpi and $(( ${#plugins[@]} - ${#dropped[@]} )) plugins need nothing outside the folder but glibc, libstdc++, libgcc_s, zlib and libtorch"

kib=$(du -sk "$DIR" | cut -f1)
mib=$(( (kib + 1023) / 1024 ))
[ "$mib" -le "$MAX_MIB" ] || die "$DIR is $mib MiB, over the $MAX_MIB MiB limit"
log "$DIR: $mib MiB (limit $MAX_MIB)"
echo "$DIR"
