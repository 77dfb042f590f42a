#!/usr/bin/env bash
# Set up vggsim with its export extra, export VGG16 to ONNX, and compare two sample photos.
#   bash scripts/quickstart.sh                    # ImageNet weights (Keras downloads them once)
#   bash scripts/quickstart.sh --weights random   # offline: deterministic random weights
#   bash scripts/quickstart.sh --weights /path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "installing vggsim[export] into .venv (TensorFlow included: a minute or two the first time)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[export]"
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/vggsim export --out models/vgg16 "$@"
read -r A B < <(.venv/bin/python -c "import vggsim; p = vggsim.sample_photos(); print(p[0], p[1])")
mkdir -p out
echo "vggsim compare $(basename "$A") $(basename "$B"):"
.venv/bin/vggsim compare "$A" "$B" --model models/vgg16 --plot out/compare.png
