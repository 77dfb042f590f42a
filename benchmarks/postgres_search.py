"""PostgreSQL + pgvector as a destination and search back end, side by side with exact search of the store.

    python benchmarks/postgres_search.py DIR [--base 100000] [--added 5000] [--queries 200] [--out FILE.json]

Makes a synthetic store of ``--base`` 512-d vectors in DIR (collection_workload's generator: ReLU-like,
clustered), starts a PostgreSQL 16 + pgvector 0.6 from the pgserver wheel in DIR, then in one process:
times the first ``sync_store`` (COPY of every vector and the HNSW build), an incremental sync after
``--added`` more vectors, and a sync of the unchanged store; then ``--queries`` queries (stored vectors
plus noise) through :class:`~vggsim.postgres.PostgresSearch` and through the store's exact scan, with
recall@10 of the first against the second and the latency of both. Prints one JSON report (and
writes it with ``--out``); DIR is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collection_workload import make  # noqa: E402


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=5_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent / "suites"))
    from conftest import machine_line
    import pgserver

    from vggsim.postgres import PostgresSearch, sync_store
    from vggsim.search.exact import exact_topk
    from vggsim.store import Record, Store, StoreIdentity, StoreWriter

    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    root = args.dir / "store"
    server = pgserver.get_server(args.dir / "pgdata", cleanup_mode="stop")
    try:
        uri = server.get_uri()
        make(root, args.base)
        first = sync_store(root, uri)
        rng = np.random.default_rng(1)
        centres = np.abs(np.random.default_rng(0).standard_normal((1000, 512))).astype(np.float32)
        added = centres[rng.integers(0, 1000, args.added)] + \
            0.5 * np.abs(rng.standard_normal((args.added, 512))).astype(np.float32)
        with StoreWriter.open(root, StoreIdentity("synthetic", {}, 512)) as writer:
            for n, vector in enumerate(added, args.base):
                writer.add(Record(f"/synthetic/{n:07d}.jpg", "ok"), vector)
        grown = sync_store(root, uri)
        again = sync_store(root, uri)
        store = Store.open(root)
        total = args.base + args.added
        queries = store.vectors(np.sort(rng.choice(total, args.queries, replace=False)))
        queries = queries + 0.1 * np.abs(rng.standard_normal(queries.shape)).astype(np.float32)
        paths = store.paths()
        search = PostgresSearch(uri, StoreIdentity("synthetic", {}, 512))
        search.search(queries[0], 10)  # the connection opened, outside the timing
        pg_s, exact_s, hits = [], [], 0
        for query in queries:
            started = time.perf_counter()
            found, _, _ = search.search(query, 10)
            pg_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            ids, _ = exact_topk(query[None, :], store.blocks(), 10)
            exact_s.append(time.perf_counter() - started)
            hits += len({m.path for m in found} & {paths[int(i)] for i in ids[0]})
        search.close()
    finally:
        server.cleanup()
        shutil.rmtree(args.dir, ignore_errors=True)
    report = {"machine": machine_line(), "platform": platform.platform(), "postgres": "16.2 (pgserver 0.1.4)",
              "pgvector": "0.6.2", "base": args.base, "added": args.added, "queries": args.queries,
              "first_sync_s": round(first.seconds, 2), "first_sync_rows": first.rows,
              "incremental_sync_s": round(grown.seconds, 2), "incremental_written": grown.written,
              "unchanged_sync_s": round(again.seconds, 3), "unchanged_up_to_date": again.up_to_date,
              "recall_at_10": round(hits / (10 * args.queries), 4),
              "postgres_search": percentiles(pg_s), "exact_search": percentiles(exact_s),
              "command": " ".join(["python", "benchmarks/postgres_search.py", *sys.argv[1:]])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
