#!/usr/bin/env bash
# The GPU benchmark on a lent GPU, in one call: CUDA tests (must pass), then scripts/device/gpu_benchmark.py
# (every setting at batch 1, 8, 64, 256 from GPU and host memory, optimised-graph Cast and
# Transpose counts, JPEG decode feeding the GPU) and Keras 3 on JAX on the same GPU.
# Runs over a copy of this tree plus .devgpu/ (scripts/device/pack.sh); writes under $OUT:
# gpu_benchmark.log, test_cuda.log, gpu_benchmark.json, embedder.json, keras.json, serve_cuda.json, summary.md,
# fp16-manifest.json.
#   DRY_RUN=1 bash scripts/device/gpu_benchmark.sh   checks it here on the CPU, tiny rounds, no install
set -uo pipefail
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
OUT=${OUT:-/tmp/vggsim-gpu}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_benchmark.log") 2>&1
DRY=${DRY_RUN:-0}; FLAG=""; [ "$DRY" = 1 ] && FLAG=--dry-run && export KERAS_BACKEND=${DRY_KERAS_BACKEND:-tensorflow}
PY=${PYTHON:-python3}
. "$(dirname "$0")/start_cuda.sh"
SITE=/tmp/vggsim-site MODELS=/tmp/vggsim-models-$$
step() { echo; echo "== $* ($(date +%T), ${SECONDS}s)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || echo "no nvidia-smi"
$PY --version; nproc

if [ "$DRY" != 1 ]; then
  step "install: onnxruntime-gpu, keras, onnxconverter-common, vggsim laid out as its wheel"
  rm -rf "$SITE"; mkdir -p "$SITE"
  $PY -c "import tarfile, sys; tarfile.open('.devgpu/onnxruntime-gpu.tar.xz').extractall(sys.argv[1])" "$SITE" || exit 1
  $PY -c "import tarfile, sys; tarfile.open('.devgpu/python-extras.tar.xz').extractall(sys.argv[1])" "$SITE" || exit 1
  cp -r runtime "$SITE/vggsim" && cp -r export "$SITE/vggsim/export"
  NVIDIA=$($PY -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null) && ln -s "$NVIDIA" "$SITE/nvidia"
  export PYTHONPATH=$SITE
fi
$PY -c "import onnxruntime as o, vggsim; print('onnxruntime', o.__version__, o.get_available_providers()); print('vggsim from', vggsim.__file__)" || exit 1

step "models: the random-weight test model, fp16 (first convolution padded to 8 channels) and fp16 as converted before"
mkdir -p "$MODELS"
if [ "$DRY" = 1 ]; then cp -r "${VGGSIM_TEST_MODEL:?}" "$MODELS/fp32"; else
  $PY scripts/device/model_skeleton.py unpack .devgpu/model "$MODELS/fp32" || exit 1; fi
$PY - "$MODELS" <<'PYEOF' || exit 1
import json, sys, warnings
from pathlib import Path
import onnx
from onnxconverter_common import float16
from vggsim.export.variants import export_variant, graph_op_counts
models = Path(sys.argv[1])
out = export_variant(models / "fp32", models / "fp16", "fp16", log=print)
manifest = json.loads((out / "manifest.json").read_text())
print("fp16 export:", json.dumps(manifest["quantization"]), json.dumps(manifest["accuracy_vs_fp32"]))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    old = float16.convert_float_to_float16(onnx.load(str(models / "fp32/model.onnx")), keep_io_types=True)
(models / "fp16old").mkdir(exist_ok=True)
onnx.save(old, str(models / "fp16old/model.onnx"))
(models / "fp16old/manifest.json").write_text(json.dumps({"quantization": {"graph_ops": graph_op_counts(old), "first_conv_input_channels": 3}}))
print("fp16 as before:", graph_op_counts(old))
PYEOF
cp "$MODELS/fp16/manifest.json" "$OUT/fp16-manifest.json"

if [ "$DRY" != 1 ]; then
  step "CUDA through vggsim's own library preload (no LD_LIBRARY_PATH)"
  start_cuda "$MODELS/fp32" || exit 1
  step "tests/test_cuda.py"
  [ -n "${SKIP_TESTS:-}" ] || VGGSIM_TEST_MODEL=$MODELS/fp32 VGGSIM_REQUIRE_CUDA=1 timeout 150 $PY -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
else
  step "tests/test_cuda.py (CPU: the GPU tests skip)"
  VGGSIM_TEST_MODEL=$MODELS/fp32 timeout 300 $PY -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
fi

step "every setting side by side, graphs, pipeline"
[ -n "${SKIP_MAIN:-}" ] || timeout ${MAIN_TIMEOUT:-300} $PY -W ignore scripts/device/gpu_benchmark.py main "$MODELS/fp32" "$MODELS/fp16" "$MODELS/fp16old" "$OUT" \
  --budget-s=${BUDGET_S:-240} $FLAG ${ONLY:+"--only=$ONLY"} ${NO_PIPELINE:+--no-pipeline} 2>&1 | grep --line-buffered -v cudnn_fe

step "the library's own path: Embedder.run and embed with the fixed-batch feed"
[ -n "${SKIP_EMBEDDER:-}" ] || timeout ${EMBEDDER_TIMEOUT:-150} $PY -W ignore scripts/device/embedder_path.py "$MODELS/fp32" "$MODELS/fp16" "$OUT" $FLAG 2>&1 | grep --line-buffered -v cudnn_fe

step "Keras 3 on JAX, same weights, same GPU"
[ -n "${SKIP_KERAS:-}" ] || timeout 60 $PY -W ignore scripts/device/gpu_benchmark.py reference "$MODELS/fp32" "$OUT" $FLAG
[ -n "${SKIP_KERAS:-}" ] || timeout ${KERAS_TIMEOUT:-70} $PY -W ignore scripts/device/gpu_benchmark.py keras "$OUT" --budget-s=50 $FLAG 2>&1 | grep --line-buffered -v "^WARNING\|cudnn_fe"
rm -f "$OUT/reference.npy"

step "vggsim serve under load on CUDA (fp16, cuda-tf32), against Embedder.embed in the same run"
[ -n "${SKIP_SERVE:-}" ] || [ "$DRY" = 1 ] || timeout ${SERVE_TIMEOUT:-170} $PY -W ignore benchmarks/serve_load.py --model "$MODELS/fp16" \
  --providers cuda-tf32 --seconds ${SERVE_SECONDS:-10} --overload-seconds ${SERVE_OVERLOAD_SECONDS:-20} --max-batch 32 --queue-size 128 \
  --out "$OUT/serve_cuda.json" 2>&1 | grep --line-buffered -v cudnn_fe

step "summary"
$PY scripts/device/gpu_benchmark.py summary "$OUT"
rm -rf "$MODELS"
step "done"
