"""The on-disk IVF index over a synthetic store, each step in a fresh process to measure its peak memory.

python benchmarks/collection_workload.py make STORE N     # N synthetic 512-d vectors (same generator)
python benchmarks/index_workload.py exact STORE Q         # exact top-10 of Q queries -> STORE/exact_q.npy
python benchmarks/index_workload.py build STORE           # vggsim's build with the default rule
python benchmarks/index_workload.py search STORE [NPROBE] # search_store(index=True), one query at a time
python benchmarks/index_workload.py sweep STORE           # recall@10 and latency over nprobe x rerank
Each command prints one JSON line with its seconds and peak resident memory (VmHWM, MB).

python benchmarks/index_workload.py scale DIR N [N ...] [--keep]
    runs all of the above, each in a fresh process, for stores DIR/index-N (made if missing, removed
    afterwards unless --keep), writes benchmarks/results/index-scale.json and prints the table, with
    10M derived from the two largest sizes measured (a straight line through them).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from collection_workload import peak_mb


def queries(root: Path, n: int = 10) -> np.ndarray:
    """collection_workload.queries (same rows, same noise), its rows read by pread: indexing a memory
    map of the shard would map whole large folios and add up to a shard's size to the search's peak."""
    from vggsim.store import Store

    rng = np.random.default_rng(1)
    path = next((root / "vectors").glob("*.npy"))
    store = Store.open(root)
    shard = next(s for s in store.commit_record.shards if s.id == int(path.stem))
    with store.vector_file(shard.id) as file:  # checked against the commit record, read by pread
        picked = file.take(np.sort(rng.choice(shard.rows, n, replace=False)))
    return picked + 0.1 * np.abs(rng.standard_normal(picked.shape)).astype(np.float32)


def main() -> None:
    command, root = sys.argv[1], Path(sys.argv[2])
    if command == "scale":
        from index_scale import scale

        scale(root, [int(a) for a in sys.argv[3:] if a != "--keep"], keep="--keep" in sys.argv)
        return
    started = time.perf_counter()
    from vggsim.store import Store

    store = Store.open(root)
    result: dict[str, object]
    if command == "exact":
        from vggsim.search.exact import exact_topk

        n = int(sys.argv[3])
        ids, _ = exact_topk(queries(root, n), store.blocks(), 10)
        np.save(root / "exact_q.npy", ids)
        result = {"queries": n}
    elif command == "build":
        from vggsim.search.ivf import build_index

        summary = build_index(store)
        result = {"vectors": summary.vectors, "factory": summary.params.factory, "nprobe": summary.params.nprobe,
                  "sample": summary.params.sample, "index_mb": round(summary.bytes / 1e6, 1),
                  "build_s": round(summary.seconds, 1)}
    elif command == "search":
        from vggsim.collection import search_store
        from vggsim.search.ivf import OnDiskIndex
        from vggsim.search.exact import recall_at_k

        exact = np.load(root / "exact_q.npy")
        wanted = queries(root, len(exact))
        opened = time.perf_counter()
        index = OnDiskIndex.open(store)
        if len(sys.argv) > 3:
            index.nprobe = int(sys.argv[3])
        search_store(store, wanted[:1], 10, index=True)  # first query: store table, quantiser, pages
        first_ms = (time.perf_counter() - opened) * 1000
        times, found = [], []
        for row in wanted:
            t = time.perf_counter()
            ids, _ = index.search(row[None, :], 10)
            times.append(time.perf_counter() - t)
            found.append(ids[0])
        t = time.perf_counter()
        matches = search_store(store, wanted, 10, index=True)  # the library path, paths included
        batch_ms = (time.perf_counter() - t) * 1000 / len(wanted)
        assert [m.id for m in matches[0]] == list(found[0][found[0] >= 0])
        result = {"queries": len(wanted), "nprobe": index.nprobe, "recall_at_10": round(recall_at_k(exact, np.array(found)), 4),
                  "ms_per_query_median": round(float(np.median(times)) * 1000, 2),
                  "ms_per_query_p95": round(float(np.percentile(times, 95)) * 1000, 2),
                  "ms_per_query_batched_with_paths": round(batch_ms, 2), "open_and_first_query_ms": round(first_ms, 1)}
    elif command == "sweep":
        from vggsim.search.ivf import OnDiskIndex
        from vggsim.search.exact import recall_at_k

        exact = np.load(root / "exact_q.npy")
        wanted = queries(root, len(exact))
        index = OnDiskIndex.open(store)
        index.search(wanted[:5], 10)
        grid = []
        for nprobe in (8, 16, 32):
            for rerank in (20, 50, 100, 150, 300):
                times, found = [], []
                for row in wanted:
                    t = time.perf_counter()
                    ids, _ = index.search(row[None, :], 10, nprobe=nprobe, rerank=rerank)
                    times.append(time.perf_counter() - t)
                    found.append(ids[0])
                grid.append({"nprobe": nprobe, "rerank": rerank, "recall_at_10": round(recall_at_k(exact, np.array(found)), 4),
                             "ms_median": round(float(np.median(times)) * 1000, 2)})
        result = {"grid": grid}
    else:
        raise SystemExit(f"unknown command {command}")
    result.update(seconds=round(time.perf_counter() - started, 2), peak_mb=round(peak_mb(), 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
