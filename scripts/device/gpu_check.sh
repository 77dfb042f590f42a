#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU over a copy of this tree plus .devgpu/
# (made here by scripts/device/pack.sh): no registry is needed there. Writes logs and the
# bench report under $OUT.
#   CUDA tests (tests/test_cuda.py, failing rather than skipping without CUDA), the fp16
#   variant made and checked there, CUDA settings side by side, and vggsim bench at batch 1, 8 and 64 with
#   Keras on the same GPU (Keras 3 on JAX: TensorFlow's GPU build cannot travel).
set -uo pipefail
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
OUT=${OUT:-/tmp/vggsim-gpu}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
. "$(dirname "$0")/start_cuda.sh"
SITE=/tmp/vggsim-site MODELS=/tmp/vggsim-models
rm -rf "$SITE" "$MODELS"; mkdir -p "$SITE"
step() { echo; echo "== $* ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
$PY --version

step "install: onnxruntime-gpu, keras, onnxconverter-common, vggsim laid out as its wheel"
$PY -c "import tarfile, sys; tarfile.open('.devgpu/onnxruntime-gpu.tar.xz').extractall(sys.argv[1])" "$SITE" || exit 1
$PY -c "import tarfile, sys; tarfile.open('.devgpu/python-extras.tar.xz').extractall(sys.argv[1])" "$SITE" || exit 1
cp -r runtime "$SITE/vggsim" && cp -r export "$SITE/vggsim/export"
# CUDA and cuDNN from the image's nvidia-* wheels, beside onnxruntime as onnxruntime-gpu[cuda,cudnn] puts them.
NVIDIA=$($PY -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null) && ln -s "$NVIDIA" "$SITE/nvidia"
export PYTHONPATH=$SITE
$PY -c "import onnxruntime as o, vggsim; print('onnxruntime', o.__version__, o.get_available_providers()); print('vggsim from', vggsim.__file__)"

step "model: rebuild the random-weight test model (sha256 checked), derive fp16"
$PY scripts/device/model_skeleton.py unpack .devgpu/model "$MODELS/fp32" || exit 1
$PY -c "
from pathlib import Path; from vggsim.export.variants import export_variant
out = export_variant(Path('$MODELS/fp32'), Path('$MODELS/fp16'), 'fp16', log=print)
import json; print(json.dumps(json.loads((out / 'manifest.json').read_text())['accuracy_vs_fp32']))"

step "CUDA through vggsim's own library preload (no LD_LIBRARY_PATH)"
start_cuda "$MODELS/fp32" || exit 1

step "tests/test_cuda.py"
VGGSIM_TEST_MODEL=$MODELS/fp32 VGGSIM_REQUIRE_CUDA=1 timeout 240 $PY -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"

step "CUDA settings side by side (TF32, NHWC; fp32 and fp16), and Keras on the GPU with the same weights"
timeout 180 $PY -W ignore scripts/device/cuda_options.py "$MODELS/fp32" "$MODELS/fp16" "$OUT/cuda_options.json" 2>&1 | grep -v cudnn_fe

step "keras on the GPU?"
KERAS_FLAG=""
$PY -c "import keras, jax; print('keras', keras.__version__, keras.backend.backend(), jax.devices())" && KERAS_FLAG=--keras

step "vggsim bench --providers cuda --batch-sizes 1,8,64 $KERAS_FLAG"
timeout 330 $PY -W ignore -m vggsim bench --model "$MODELS/fp32" --model "$MODELS/fp16" --providers cuda \
  --batch-sizes 1,8,64 --threads 16 --rounds 20 $KERAS_FLAG --json "$OUT/bench-gpu.json" --plot "$OUT/bench-gpu.png" \
  2>&1 | tee "$OUT/bench.log"

step "vggsim bench --providers cuda-tf32 (fp32 model)"
timeout 150 $PY -W ignore -m vggsim bench --model "$MODELS/fp32" --providers cuda-tf32 --batch-sizes 1,8,64 --threads 16 \
  --rounds 20 --json "$OUT/bench-gpu-tf32.json" 2>&1 | tee "$OUT/bench-tf32.log"
cp "$MODELS/fp16/manifest.json" "$OUT/fp16-manifest.json"
step "done"
