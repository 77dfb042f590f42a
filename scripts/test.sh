#!/usr/bin/env bash
# Set up and run every test: lint and types, the default run and the heavy cases (-m slow) in
# the full environment, then the runtime tests again in a second environment that has no
# TensorFlow at all, and last the emulated aarch64 parity check. The Pillow corpus test runs
# where ../shared exists (the header says so).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1
PYTEST=(-p no:cacheprovider --durations=10)

EXTRAS=export,test,ann,fp16,serve,ray,edge-bench
echo "== full environment (.venv): vggsim[$EXTRAS]"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e ".[$EXTRAS]" "mypy==2.4.1" "ruff==0.17.6"
# The web page test drives Debian's chromium through chromedriver (never a downloaded browser).
# Install them where this runs as root with apt; elsewhere the test skips and says why.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "chromium could not be installed: tests/test_serve_page.py will skip"
  fi
fi
.venv/bin/ruff check runtime export tests benchmarks scripts
.venv/bin/mypy
echo "== default run (what a bare \`pytest\` runs)"
.venv/bin/python -m pytest -q "${PYTEST[@]}" tests
echo "== heavy cases (-m slow)"
.venv/bin/python -m pytest -q "${PYTEST[@]}" tests -m slow

echo "== runtime-only environment (.venv-runtime): vggsim[test], no TensorFlow"
rm -rf .venv-runtime .cache/test-model
"$PYTHON" -m venv .venv-runtime
.venv-runtime/bin/python -m pip install -q --upgrade pip
.venv-runtime/bin/python -m pip install -q ".[test]"
.venv/bin/vggsim export --weights random --seed 0 --out .cache/test-model --no-verify
VGGSIM_TEST_MODEL="$PWD/.cache/test-model" VGGSIM_RUNTIME_ONLY=1 \
  .venv-runtime/bin/python -m pytest -q "${PYTEST[@]}" tests -m "not export and not slow"

echo "== aarch64 parity (emulated arm64 Python: scripts/aarch64/check.sh)"
# Needs qemu-user-static and mmdebstrap, which it installs with apt where this runs as root;
# elsewhere it says so and skips. VGGSIM_SKIP_AARCH64=1 skips it on purpose (about 4-8 minutes).
if [ -n "${VGGSIM_SKIP_AARCH64:-}" ]; then
  echo "skipped: VGGSIM_SKIP_AARCH64 is set"
elif [ "$(id -u)" != 0 ] && ! { command -v qemu-aarch64-static && command -v mmdebstrap; } >/dev/null 2>&1; then
  echo "skipped: needs qemu-user-static and mmdebstrap (apt-get install, as root)"
else
  VGGSIM_TEST_MODEL="$PWD/.cache/test-model" VGGSIM_HOST_PYTHON="$PWD/.venv/bin/python" bash scripts/aarch64/check.sh
fi
