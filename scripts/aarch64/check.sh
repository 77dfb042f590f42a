#!/usr/bin/env bash
# aarch64 parity check: the vggsim wheel, installed with aarch64 wheels into an emulated arm64
# Python (qemu-user + a Debian arm64 rootfs), embeds real photos with the fp32 model and an int8
# variant; the vectors must match x86-64's (fp32 max relative error <= 1e-5, int8 min cosine >= 0.999).
#
#   bash scripts/aarch64/check.sh [--model DIR]     (default: $VGGSIM_TEST_MODEL, else .cache/test-model)
#
# Environment: VGGSIM_AARCH64_RESULTS (where the two result JSON files go; default .cache/aarch64),
# VGGSIM_CACHE (downloads kept between runs; default ~/.cache/vggsim-aarch64),
# VGGSIM_HOST_PYTHON (x86-64 Python with vggsim[export]; default .venv/bin/python),
# VGGSIM_AARCH64_ORT (onnxruntime requirement for the arm64 side; default: the newest, as pip would pick),
# VGGSIM_AARCH64_FP32_PHOTOS / VGGSIM_AARCH64_INT8_PHOTOS (photos per model, default 1 and 2: emulated
# fp32 costs 116-148 CPU seconds a photo here, int8 about 10), VGGSIM_AARCH64_CPUINFO=host (reproduce the crash below).
#
# Why a /proc/cpuinfo is written into the rootfs: qemu-user 7.2 (Debian 12) shows the guest the
# host's x86 /proc/cpuinfo. pytorch-cpuinfo, which onnxruntime >= 1.28 runs at import on aarch64,
# finds no ARM processor in it and then dereferences NULL while reading the cache sysfs (SIGSEGV).
# A real aarch64 kernel always writes ARM entries; qemu's -L prefix serves ours instead of the host's.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
t0=$(date +%s)
MODEL=${VGGSIM_TEST_MODEL:-$ROOT/.cache/test-model}
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    *) echo "check.sh: unknown argument $1 (only --model DIR)" >&2; exit 2 ;;
  esac
done
[ -f "$MODEL/manifest.json" ] || { echo "check.sh: no model at $MODEL: pass --model DIR (a vggsim export) or set VGGSIM_TEST_MODEL" >&2; exit 2; }
MODEL=$(cd "$MODEL" && pwd)
CACHE=${VGGSIM_CACHE:-$HOME/.cache/vggsim-aarch64}
HOST_PY=${VGGSIM_HOST_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=$(command -v python3)
ORT_REQ=${VGGSIM_AARCH64_ORT:-onnxruntime}
FP32_N=${VGGSIM_AARCH64_FP32_PHOTOS:-1}
INT8_N=${VGGSIM_AARCH64_INT8_PHOTOS:-2}
CPU=neoverse-n1   # Cortex-A76 class (Raspberry Pi 5, Graviton2): NEON and dot product, no SVE to emulate
PLATFORMS=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64)
# The result files go to .cache/aarch64 (ignored by git), never over the tracked figures:
# VGGSIM_AARCH64_RESULTS=benchmarks/results updates those on purpose.
RESULTS=${VGGSIM_AARCH64_RESULTS:-$ROOT/.cache/aarch64}
mkdir -p "$CACHE" "$RESULTS"
WORK=$(mktemp -d /tmp/vggsim-aarch64-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
phase() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

phase "tools: qemu-user-static, mmdebstrap"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v mmdebstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "check.sh: install qemu-user-static and mmdebstrap (apt, as root)" >&2; exit 2; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static mmdebstrap >/dev/null
fi
QEMU=$(command -v qemu-aarch64-static)

ROOTFS=$CACHE/rootfs
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  phase "arm64 rootfs (Debian bookworm: python3, libstdc++6, libgomp1)"
  [ -f "$CACHE/rootfs.tar" ] || {
    mmdebstrap --quiet --variant=extract --arch=arm64 --include=python3,libstdc++6,libgomp1 \
      bookworm "$CACHE/rootfs.partial.tar" && mv "$CACHE/rootfs.partial.tar" "$CACHE/rootfs.tar"; }
  rm -rf "$ROOTFS.part" && mkdir -p "$ROOTFS.part" && tar -C "$ROOTFS.part" -xf "$CACHE/rootfs.tar"
  mv "$ROOTFS.part" "$ROOTFS"
fi
mkdir -p "$ROOTFS/proc"
if [ "${VGGSIM_AARCH64_CPUINFO:-arm}" = host ]; then rm -f "$ROOTFS/proc/cpuinfo"
else "$HOST_PY" scripts/aarch64/cpuinfo.py "$(nproc)" > "$ROOTFS/proc/cpuinfo"; fi
ARM_PY=("$QEMU" -cpu "$CPU" -L "$ROOTFS" "$ROOTFS/usr/bin/python3")
PYVER=$("${ARM_PY[@]}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The aarch64 wheels of the base requirements, installed once per requirement set and Python.
SITE=$CACHE/site-$(echo "$ORT_REQ numpy pillow py$PYVER" | sha256sum | cut -c1-12)
if [ ! -f "$SITE/.complete" ]; then
  phase "aarch64 wheels for Python $PYVER: $ORT_REQ numpy pillow"
  rm -rf "$SITE"
  "$HOST_PY" -m pip install -q --target "$SITE" "${PLATFORMS[@]}" --python-version "$PYVER" \
    --only-binary=:all: "$ORT_REQ" numpy pillow
  touch "$SITE/.complete"
fi

phase "vggsim wheel"
"$HOST_PY" -m pip wheel -q --no-deps . -w "$WORK/dist" >"$WORK/wheel.log" 2>&1 || { cat "$WORK/wheel.log"; exit 1; }
"$HOST_PY" -m pip install -q --no-deps --target "$WORK/vggsim" "$WORK"/dist/vggsim-*.whl

# int8 variant, made on x86-64 once per model (keyed by the fp32 model's sha256).
SHA=$("$HOST_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["sha256"][:16])' "$MODEL/manifest.json")
INT8=$CACHE/int8-$SHA
if [ ! -f "$INT8/manifest.json" ]; then
  phase "int8 variant of $MODEL (x86-64)"
  rm -rf "$INT8"
  "$HOST_PY" -W ignore -c 'import sys; from pathlib import Path; from vggsim.export.variants import export_variant
export_variant(Path(sys.argv[1]), Path(sys.argv[2]), "int8")' "$MODEL" "$INT8"
fi

# Held-out sample photos (the int8 variant calibrates on the others).
mapfile -t PHOTOS < <("$HOST_PY" -c 'import sys; from vggsim.images.samples import sample_photos
print("\n".join(str(p) for p in sample_photos()[1::2][:int(sys.argv[1])]))' "$(( FP32_N > INT8_N ? FP32_N : INT8_N ))")
[ "${#PHOTOS[@]}" -ge 1 ] || { echo "check.sh: no sample photos: install scikit-learn and scikit-image on the host Python" >&2; exit 2; }
mkdir -p "$WORK/photos" && cp "${PHOTOS[@]}" "$WORK/photos/"
PHOTOS=("$WORK"/photos/*)

for precision in fp32 int8; do
  dir=$MODEL n=$FP32_N; [ $precision = int8 ] && dir=$INT8 n=$INT8_N
  phase "$precision: x86-64"
  PYTHONPATH=$WORK/vggsim "$HOST_PY" -W ignore scripts/aarch64/embed.py "$dir" "$WORK/${precision}_x86_64.npy" \
    "${PHOTOS[@]:0:n}" > "$WORK/${precision}_x86_64.json"
  cat "$WORK/${precision}_x86_64.json"
  phase "$precision: emulated arm64 ($CPU)"
  PYTHONPATH=$WORK/vggsim:$SITE PYTHONDONTWRITEBYTECODE=1 "${ARM_PY[@]}" -W ignore scripts/aarch64/embed.py \
    "$dir" "$WORK/${precision}_arm64.npy" "${PHOTOS[@]:0:n}" > "$WORK/${precision}_arm64.json"
  cat "$WORK/${precision}_arm64.json"
done

phase "aarch64 site-packages"
"$HOST_PY" scripts/aarch64/size.py "$SITE" --label aarch64 --json "$RESULTS/aarch64-site-packages.json" \
  --meta "requirements=$ORT_REQ numpy pillow" --meta "python=$PYVER"
phase "parity"
rc=0
"$HOST_PY" scripts/aarch64/compare.py --work "$WORK" --json "$RESULTS/aarch64-check.json" \
  --meta "qemu=$("$QEMU" --version | head -1)" --meta "qemu_cpu=$CPU" --meta "model_sha256=$SHA" \
  --meta "wall_s=$(( $(date +%s) - t0 ))" --meta "load_average=$(cut -d' ' -f1-3 /proc/loadavg)" \
  --meta "host_cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" || rc=$?
phase "done (exit $rc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
