"""The on-disk IVF index at scale: build time, size and memory; recall@10, latency and memory of search.

Run: bash scripts/bench.sh benchmarks/test_index.py   (1M: about 20 min on 2 shared cores)
Targets at 1,000,000 x 512 synthetic vectors (collection_workload.py's generator): recall@10
against exact >= 0.95, <= 20 ms per query, <= 500 MB peak resident while searching (a fresh
process: VmHWM), the build's peak reported. Each step runs in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import RESULTS

HERE = Path(__file__).parent

pytest.importorskip("faiss")


def _run(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, timeout=3600,
                         cwd=HERE)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("size", [300_000, 1_000_000])
def test_index_at_scale(tmp_path: Path, size: int) -> None:
    store = tmp_path / "store"
    _run("collection_workload.py", "make", str(store), str(size))
    _run("index_workload.py", "exact", str(store), "100")
    built = _run("index_workload.py", "build", str(store))
    found = _run("index_workload.py", "search", str(store))
    RESULTS[f"index {size:,}: {built['factory']} build s / peak MB / index MB"] = (
        f"{built['build_s']} / {built['peak_mb']} / {built['index_mb']}")
    RESULTS[f"index {size:,}: recall@10 / ms per query (median, p95) / search peak MB"] = (
        f"{found['recall_at_10']:.3f} / {found['ms_per_query_median']}, {found['ms_per_query_p95']} / {found['peak_mb']}")
    assert found["recall_at_10"] >= 0.95
    assert found["ms_per_query_median"] <= 20
    assert found["peak_mb"] <= 500
