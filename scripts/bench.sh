#!/usr/bin/env bash
# Run the benchmark suites side by side with Keras; prints a table and saves JSON under .benchmarks/.
#   bash scripts/bench.sh [pytest args]   e.g. benchmarks/suites/test_bench_core.py
# VGGSIM_BENCH_WEIGHTS=imagenet (or a notop .h5 path) benchmarks with real weights.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e ".[export,test,ann,fp16]"
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/python -m pytest -p no:cacheprovider -q -rA "${@:-benchmarks/suites}" --benchmark-autosave --benchmark-columns=min,median,max,rounds
