#!/usr/bin/env bash
# Build .devgpu/ here: what scripts/device/gpu_check.sh needs on a GPU machine that reaches
# no package registry and takes at most 64 MiB per call. Python 3.12 wheels (the device's Python).
#   bash scripts/device/pack.sh        then carry .devgpu in the device call
set -euo pipefail
cd "$(dirname "$0")/../.."
ORT_GPU=${ORT_GPU:-1.31.1}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .devgpu && mkdir -p .devgpu/work
pip() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" "$@"; }
# Keras (run on JAX there), onnxconverter-common (the fp16 variant) and the `serve` extra
# (the service's CUDA load run) that the device image lacks; the rest is on the device image.
# Installed here for the device's Python and packed as one xz tarball: 3.9 MB against 6.1 MB
# of wheels, which keeps the call under its 64 MiB.
pip -d .devgpu/work/whl keras namex optree onnxconverter-common \
  fastapi starlette pydantic pydantic_core uvicorn python-multipart annotated-types typing-inspection annotated-doc
python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" --target .devgpu/work/site .devgpu/work/whl/*.whl
tar -C .devgpu/work/site -cf - . | xz -9e -T2 > .devgpu/python-extras.tar.xz
rm -rf .devgpu/work
pip -d .devgpu/work "onnxruntime-gpu==$ORT_GPU"
(cd .devgpu/work && python3 -m zipfile -e onnxruntime_gpu-*.whl pkg)
rm -f .devgpu/work/pkg/onnxruntime/capi/libonnxruntime.so.*  # the C API library; Python does not load it
python3 scripts/device/keep_sm90_sass.py .devgpu/work/pkg/onnxruntime/capi/libonnxruntime_providers_cuda.so
tar -C .devgpu/work/pkg -cf - . | xz -9e -T2 > .devgpu/onnxruntime-gpu.tar.xz
rm -rf .devgpu/work
# The random-weight test model, as a few kilobytes (rebuilt bit for bit there).
[ -f .cache/test-model/manifest.json ] || .venv/bin/vggsim export --weights random --seed 0 --out .cache/test-model --no-verify
.venv/bin/python scripts/device/model_skeleton.py pack .cache/test-model .devgpu/model
du -sh .devgpu; du -sh .devgpu/*
