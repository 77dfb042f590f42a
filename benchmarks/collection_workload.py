"""Search and dedup workloads over a synthetic store, run in a fresh process to measure its peak memory.

python benchmarks/collection_workload.py make STORE N      # N synthetic 512-d vectors
python benchmarks/collection_workload.py search STORE      # exact top-10 of 10 queries
python benchmarks/collection_workload.py ann STORE         # faiss HNSW: build, search, recall@10
python benchmarks/collection_workload.py dedup STORE T     # all pairs >= T, grouped
Each command prints one JSON line with its seconds and peak resident memory (VmHWM, MB).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make(root: Path, n: int) -> dict[str, float]:
    from vggsim.store import Record, StoreIdentity, StoreWriter

    writer = StoreWriter.open(root, StoreIdentity("synthetic", {}, 512))
    rng = np.random.default_rng(0)
    centres = np.abs(rng.standard_normal((1000, 512))).astype(np.float32)
    chunk = 50_000
    for start in range(0, n, chunk):  # ReLU-like, clustered, a few exact near-copies
        count = min(chunk, n - start)
        vectors = centres[rng.integers(0, 1000, count)] + 0.5 * np.abs(rng.standard_normal((count, 512))).astype(np.float32)
        for offset, vector in enumerate(vectors):
            writer.add(Record(f"/synthetic/{start + offset:07d}.jpg", "ok"), vector)
        writer.commit()  # one shard per chunk, as a long embed commits as it goes
    writer.close()
    return {"vectors": n}


def queries(root: Path, n: int = 10) -> np.ndarray:
    """Stored vectors plus noise: queries that, like real query photos, have true neighbours."""
    rng = np.random.default_rng(1)
    stored = np.load(next((root / "vectors").glob("*.npy")), mmap_mode="r")
    picked = np.asarray(stored[np.sort(rng.choice(len(stored), n, replace=False))], np.float32)
    return picked + 0.1 * np.abs(rng.standard_normal(picked.shape)).astype(np.float32)


def main() -> None:
    command, root = sys.argv[1], Path(sys.argv[2])
    started = time.perf_counter()
    result: dict[str, object]
    if command == "make":
        result = make(root, int(sys.argv[3]))
    else:
        from vggsim.store import Store

        store = Store.open(root)
        if command == "search":
            from vggsim.search.exact import exact_topk

            ids, _ = exact_topk(queries(root), store.blocks(), 10)
            np.save(root / "exact_ids.npy", ids)
            result = {"queries": 10}
        elif command == "ann":
            from vggsim.search.exact import AnnIndex, recall_at_k

            index = AnnIndex.build(store.blocks(), 512)
            built = time.perf_counter() - started
            t = time.perf_counter()
            ids, _ = index.search(queries(root), 10)
            result = {"build_s": round(built, 2), "search_ms": round((time.perf_counter() - t) * 1000, 2),
                      "recall_at_10": recall_at_k(np.load(root / "exact_ids.npy"), ids)}
        elif command == "dedup":
            from vggsim.collection import DEDUP_BLOCK_ROWS
            from vggsim.search.pairs import group_pairs, similar_pairs

            groups = group_pairs(similar_pairs(lambda: store.blocks(DEDUP_BLOCK_ROWS), float(sys.argv[3])))
            result = {"groups": len(groups)}
        else:
            raise SystemExit(f"unknown command {command}")
    result.update(seconds=round(time.perf_counter() - started, 2), peak_mb=round(peak_mb(), 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
