"""Collections at scale: folder throughput against model-only, search and dedup time and memory.

Run: bash scripts/bench.sh benchmarks/suites/test_bench_collections.py
Targets: end-to-end folder throughput >= 90% of model-only throughput on the same images;
exact search of a 1,000,000 x 512 store under 1 GB resident.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import RESULTS
from vggsim import Embedder, sample_photos
from vggsim.ingest.pipeline import iter_embeddings

WORKLOAD = Path(__file__).resolve().parents[1] / "collection_workload.py"


def test_folder_throughput_against_model_only(models: dict[str, Path], tmp_path: Path) -> None:
    photos = sample_photos()
    files = []
    for n in range(48):
        target = tmp_path / f"{n:03d}{photos[n % len(photos)].suffix}"
        shutil.copy(photos[n % len(photos)], target)
        files.append(target)
    embedder = Embedder(models["caffe"], providers="cpu")
    arrays = np.stack([embedder.load(f) for f in files])
    embedder.run(arrays[:8])  # warm-up
    rates: dict[str, list[float]] = {"model only": [], "end to end": []}
    for _ in range(2):  # interleaved rounds
        start = time.perf_counter()
        for i in range(0, len(arrays), 8):
            embedder.run(arrays[i:i + 8])
        rates["model only"].append(len(files) / (time.perf_counter() - start))
        start = time.perf_counter()
        done = sum(r.ok for r in iter_embeddings(embedder, files, batch_size=8))
        rates["end to end"].append(done / (time.perf_counter() - start))
    model, e2e = max(rates["model only"]), max(rates["end to end"])
    RESULTS["folder img/s (model only / end to end)"] = f"{model:.2f} / {e2e:.2f}  ratio {e2e / model:.3f}"
    assert e2e >= 0.9 * model


def _workload(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(WORKLOAD), *args], capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_search_at_scale(tmp_path: Path, size: int) -> None:
    store = tmp_path / "store"
    _workload("make", str(store), str(size))
    exact = _workload("search", str(store))
    RESULTS[f"exact search {size:,}: s / peak MB"] = f"{exact['seconds']} / {exact['peak_mb']}"
    if __import__("importlib").util.find_spec("faiss"):
        ann = _workload("ann", str(store))
        RESULTS[f"hnsw {size:,}: build s / search ms / recall@10 / peak MB"] = (
            f"{ann['build_s']} / {ann['search_ms']} / {ann['recall_at_10']:.3f} / {ann['peak_mb']}")
    if size == 100_000:
        dedup = _workload("dedup", str(store), "0.99")
        RESULTS[f"dedup {size:,} at 0.99: s / peak MB / groups"] = f"{dedup['seconds']} / {dedup['peak_mb']} / {dedup['groups']}"
    assert exact["peak_mb"] < 1024
