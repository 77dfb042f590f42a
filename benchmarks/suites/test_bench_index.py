"""The on-disk IVF index at scale: build time, size and memory; recall@10, latency and memory of search.

Run: bash scripts/bench.sh benchmarks/suites/test_bench_index.py   (300k and 1M: about 15 min on 2 shared cores)
The full table (300k, 1M, 3M measured, 10M derived) is one command:
    cd benchmarks && python index_workload.py scale /tmp/DIR 300000 1000000 3000000
Targets at 1,000,000 x 512 synthetic vectors (collection_workload.py's generator): recall@10
against exact >= 0.95, <= 20 ms per query (median), <= 500 MB peak resident while searching (a
fresh process: VmHWM). Each step runs in its own process (index_scale.measure).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import RESULTS

pytest.importorskip("faiss")


@pytest.mark.parametrize("size", [300_000, 1_000_000])
def test_index_at_scale(tmp_path: Path, size: int) -> None:
    from index_scale import measure

    found = measure(tmp_path / "store", size)
    RESULTS[f"index {size:,}: {found['factory']} build s / peak MB / index MB"] = (
        f"{found['build_s']} / {found['build_peak_mb']} / {found['index_mb']}")
    RESULTS[f"index {size:,}: recall@10 / ms per query (median, p95) / search peak MB"] = (
        f"{found['recall_at_10']:.3f} / {found['ms_median']}, {found['ms_p95']} / {found['search_peak_mb']}")
    assert found["recall_at_10"] >= 0.95
    assert found["ms_median"] <= 20
    assert found["search_peak_mb"] <= 500
