#!/usr/bin/env bash
# Which onnxruntime aarch64 wheels import under qemu-user, with the host's x86 /proc/cpuinfo (what
# qemu 7.2 shows the guest) and with an ARM one (what every aarch64 kernel writes). Run
# scripts/aarch64/check.sh once first: this reuses its cached rootfs and NumPy.
#   bash scripts/aarch64/import_matrix.sh [VERSION ...]   (default: 1.19.2 1.26.0 1.27.0 1.28.0 1.32.0)
# Writes benchmarks/results/aarch64-ort-import.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${VGGSIM_CACHE:-$HOME/.cache/vggsim-aarch64}
HOST_PY=${VGGSIM_HOST_PYTHON:-.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=$(command -v python3)
ROOTFS=$CACHE/rootfs
SITE=$(ls -d "$CACHE"/site-*/numpy 2>/dev/null | head -1 | xargs -r dirname)
[ -x "$ROOTFS/usr/bin/python3" ] && [ -n "$SITE" ] || { echo "import_matrix.sh: run scripts/aarch64/check.sh first (no rootfs/site in $CACHE)" >&2; exit 2; }
VERSIONS=("$@"); [ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(1.19.2 1.26.0 1.27.0 1.28.0 1.32.0)
ARM_INFO=$(mktemp /tmp/vggsim-cpuinfo-XXXXXX); trap 'rm -f "$ARM_INFO"; "$HOST_PY" scripts/aarch64/cpuinfo.py "$(nproc)" > "$ROOTFS/proc/cpuinfo"' EXIT
"$HOST_PY" scripts/aarch64/cpuinfo.py "$(nproc)" > "$ARM_INFO"
rows=()
printf '%-10s %-14s %-14s\n' onnxruntime "x86 cpuinfo" "ARM cpuinfo"
for v in "${VERSIONS[@]}"; do
  dir=$CACHE/ort-import/$v
  [ -d "$dir/onnxruntime" ] || "$HOST_PY" -m pip install -q --no-deps --target "$dir" --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
    --python-version 3.11 "onnxruntime==$v" 2>/dev/null
  res=()
  for info in host arm; do
    if [ $info = host ]; then rm -f "$ROOTFS/proc/cpuinfo"; else cp "$ARM_INFO" "$ROOTFS/proc/cpuinfo"; fi
    rc=0
    # In a subshell with its output dropped, so bash's own "Segmentation fault" line stays out of the table.
    ( PYTHONPATH=$dir:$SITE timeout 300 qemu-aarch64-static -cpu neoverse-n1 -L "$ROOTFS" "$ROOTFS/usr/bin/python3" \
      -c 'import onnxruntime as o; o.InferenceSession' ) >/dev/null 2>&1 || rc=$?
    if [ $rc = 0 ]; then res+=(ok); elif [ $rc = 139 ]; then res+=(SIGSEGV); else res+=("exit $rc"); fi
  done
  printf '%-10s %-14s %-14s\n' "$v" "${res[0]}" "${res[1]}"
  rows+=("\"$v\": {\"x86_proc_cpuinfo\": \"${res[0]}\", \"arm_proc_cpuinfo\": \"${res[1]}\"}")
done
mkdir -p benchmarks/results
{ echo "{\"qemu\": \"$(qemu-aarch64-static --version | head -1)\", \"qemu_cpu\": \"neoverse-n1\", \"import\": {"
  (IFS=,; echo "${rows[*]}"); echo "}}"; } | "$HOST_PY" -m json.tool > benchmarks/results/aarch64-ort-import.json
