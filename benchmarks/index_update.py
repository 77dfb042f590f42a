"""Growing the on-disk index with new commits (`update_index`) against training it again (`build_index`).

    python benchmarks/index_update.py DIR [--base 100000] [--added 5000] [--out FILE.json]

Makes a synthetic store of ``--base`` 512-d vectors in DIR (collection_workload's generator),
builds its index with the default rule, commits ``--added`` more vectors from the same
distribution, then in one process: times ``update_index`` (the new vectors encoded, the rest
kept), measures recall@10 of 100 queries against exact search, builds the index again from
scratch the way ``vggsim index build`` does and measures the same. Prints one JSON report (and
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


def recall(store: object, queries: np.ndarray, truth: np.ndarray) -> float:
    from vggsim.search.ivf import OnDiskIndex

    found, _ = OnDiskIndex.open(store).search(queries, 10)  # type: ignore[arg-type]
    return round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())])), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=5_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent / "suites"))
    from conftest import machine_line

    from vggsim.search.exact import exact_topk
    from vggsim.search.ivf import build_index, update_index
    from vggsim.store import Record, Store, StoreIdentity, StoreWriter

    root = args.dir / "store"
    shutil.rmtree(args.dir, ignore_errors=True)
    try:
        make(root, args.base)
        started = time.perf_counter()
        build_index(Store.open(root))
        first_build_s = time.perf_counter() - started
        rng = np.random.default_rng(1)
        centres = np.abs(np.random.default_rng(0).standard_normal((1000, 512))).astype(np.float32)
        added = centres[rng.integers(0, 1000, args.added)] + \
            0.5 * np.abs(rng.standard_normal((args.added, 512))).astype(np.float32)
        with StoreWriter.open(root, StoreIdentity("synthetic", {}, 512)) as writer:
            for n, vector in enumerate(added, args.base):
                writer.add(Record(f"/synthetic/{n:07d}.jpg", "ok"), vector)
        store = Store.open(root)
        picked = np.concatenate([rng.choice(args.base, 50, replace=False), args.base + rng.choice(args.added, 50, replace=False)])
        queries = store.vectors(picked) + 0.1 * np.abs(rng.standard_normal((100, 512))).astype(np.float32)
        truth, _ = exact_topk(queries, store.blocks(), 10)
        started = time.perf_counter()
        summary = update_index(store)
        update_s = time.perf_counter() - started
        updated_recall = recall(store, queries, truth)
        started = time.perf_counter()
        build_index(store)
        rebuild_s = time.perf_counter() - started
        rebuilt_recall = recall(store, queries, truth)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    report = {"machine": machine_line(), "platform": platform.platform(), "base": args.base, "added": args.added,
              "first_build_s": round(first_build_s, 2), "update_s": round(update_s, 2),
              "rebuild_s": round(rebuild_s, 2), "update_to_rebuild": round(update_s / rebuild_s, 3),
              "update": {"added": summary.added, "kept": summary.kept, "retrained": summary.retrained,
                         "drift": None if summary.drift is None else round(summary.drift, 3)},
              "recall_at_10": {"updated": updated_recall, "rebuilt": rebuilt_recall},
              "queries": "50 stored before the update, 50 added by it, plus noise",
              "command": " ".join(["python", "benchmarks/index_update.py", *sys.argv[1:]])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
