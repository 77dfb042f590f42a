#!/usr/bin/env bash
# Set up and run every test: the full suite with the export extra, then the runtime tests
# again in a second environment that has no TensorFlow at all, then the Pillow corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== full environment (.venv): vggsim[export,test,ann]"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e ".[export,test,ann,fp16]" "mypy==2.4.1" "ruff==0.17.6"
.venv/bin/ruff check runtime export tests benchmarks scripts
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider tests

echo "== runtime-only environment (.venv-runtime): vggsim[test], no TensorFlow"
rm -rf .venv-runtime .cache/test-model
"$PYTHON" -m venv .venv-runtime
.venv-runtime/bin/python -m pip install -q --upgrade pip
.venv-runtime/bin/python -m pip install -q ".[test]"
.venv/bin/vggsim export --weights random --seed 0 --out .cache/test-model --no-verify
# The wheel check and the Pillow corpus already ran above; the rest runs again without TensorFlow.
VGGSIM_TEST_MODEL="$PWD/.cache/test-model" VGGSIM_RUNTIME_ONLY=1 \
  .venv-runtime/bin/python -m pytest -q -p no:cacheprovider tests -m "not export" \
  --deselect tests/test_import.py::test_wheel_holds_vggsim_and_vggsim_export_only \
  --deselect tests/test_corpus.py::test_pillow_corpus_every_file_embedded_or_reported
