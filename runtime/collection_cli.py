"""Handlers of ``vggsim embed``, ``search`` and ``dedup``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np

from .errors import VggsimError, require

DEDUP_BLOCK_ROWS = 4096  # a 4096 x 4096 float32 score block is 64 MB
COMMIT_ROWS, COMMIT_SECONDS = 1024, 30.0  # an embed publishes what it has at least this often


def add_collection_parsers(sub: Any, add_model_args: Callable[[Any], None]) -> None:
    """Register the collection subcommands."""
    p = sub.add_parser("embed", help="embed files, folders and globs into a store",
                       description="Embed images into STORE. Reruns embed only new or changed files. "
                       "Exit 0 when every file was embedded (or unchanged), 1 when some could not be "
                       "embedded (each is recorded in the store and listed in the summary).")
    p.add_argument("inputs", nargs="*", help="files, folders (recursive) and globs")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--from", dest="list_file", metavar="FILE", help="read paths from FILE, one per line ('-': stdin)")
    p.add_argument("--all-files", action="store_true", help="in folders, try every file, not only image extensions")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=None, help="decode threads (default: usable CPUs)")
    p.add_argument("--float16", action="store_true", help="store vectors as float16 (new stores only)")
    p.add_argument("--prune", action="store_true", help="mark files that no longer exist as deleted")
    p.add_argument("--retry-errors", action="store_true", help="retry unchanged files that failed before")
    p.add_argument("--decode-timeout", type=float, default=60.0, help="seconds before a decode is abandoned")
    p.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_model_args(p)
    p.set_defaults(handler="embed")

    p = sub.add_parser("search", help="the k most similar stored images to each query image")
    p.add_argument("queries", nargs="+", help="query images")
    p.add_argument("--store", required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--ann", action="store_true", help="approximate search with faiss HNSW (vggsim[ann])")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="OUT.png", help="each query beside its matches with scores")
    add_model_args(p)
    p.set_defaults(handler="search")

    p = sub.add_parser("dedup", help="groups of near-duplicate images in a store")
    p.add_argument("--store", required=True)
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine score for near-duplicates (default: the one calibrated for this model at export)")
    p.add_argument("--model", help="model folder whose calibrated threshold is the default")
    p.add_argument("--json", metavar="OUT.json", help="write groups as JSON")
    p.add_argument("--csv", metavar="OUT.csv", help="write group id, path, score to the group's first member")
    p.add_argument("--plot", metavar="OUT.png", help="draw the largest groups")
    p.set_defaults(handler="dedup")


def _unchanged(records: list[Any], retry_errors: bool) -> dict[str, tuple[int, int]]:
    keep = {}
    for r in records:
        if r.status == "ok" or (r.status == "error" and not retry_errors and r.size is not None):
            keep[r.path] = (r.size, r.mtime_ns)
    return keep


def _record(path: str, status: str, info: Any = None, error_kind: str | None = None, error: str | None = None) -> Any:
    """A store Record; a failed file's size and mtime come from the file itself if it exists,
    so an unchanged bad file is not retried on every run."""
    from .store import Record

    if info is not None:
        return Record(path, status, info.size, info.mtime_ns, info.sha256, info.width, info.height, error_kind, error)
    size = mtime = None
    if status == "error":
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            pass
    return Record(path, status, size, mtime, error_kind=error_kind, error=error)


def _todo(paths: Iterator[Path], known: dict[str, tuple[int, int]], counts: Counter[str]) -> Iterator[str]:
    for path in paths:
        key = os.path.abspath(path)
        counts["seen"] += 1
        try:
            stat = os.stat(key)
            if known.get(key) == (stat.st_size, stat.st_mtime_ns):
                counts["unchanged"] += 1
                continue
        except OSError:
            pass
        yield key


def cmd_embed(args: argparse.Namespace) -> int:
    from .commands import embedder_from_args
    from .pipeline import iter_embeddings
    from .sources import iter_inputs
    from .store import Store, StoreIdentity

    if not args.inputs and not args.list_file and not args.prune:
        raise VggsimError("embed: name files, folders or globs, or --from FILE")
    embedder = embedder_from_args(args)
    if args.max_pixels:
        embedder.max_pixels = args.max_pixels
    identity = StoreIdentity.of(embedder, "float16" if args.float16 else "float32")
    writer = Store.open_for_writing(args.store, identity)
    counts: Counter[str] = Counter()
    failures: list[dict[str, str]] = []
    started = time.perf_counter()
    try:
        records = writer.store.records()
        if args.prune:
            for record in records:
                if not os.path.exists(record.path):
                    writer.add(_record(record.path, "deleted"))
                    counts["pruned"] += 1
        todo = _todo(iter_inputs(args.inputs, args.list_file, args.all_files), _unchanged(records, args.retry_errors), counts)
        progress = _progress(args)
        since_flush, last_commit = 0, time.monotonic()
        for result in iter_embeddings(embedder, todo, args.batch_size, args.workers, args.decode_timeout):
            if result.error is None:
                writer.add(_record(result.path, "ok", result.info), result.vector)
                counts["embedded"] += 1
            else:
                writer.add(_record(result.path, "error", None, result.error.kind, result.error.reason))
                counts["failed"] += 1
                failures.append({"path": result.path, "kind": result.error.kind, "error": result.error.reason})
            since_flush += 1
            if since_flush >= args.batch_size:
                writer.flush()
                since_flush = 0
                if writer.pending >= COMMIT_ROWS or time.monotonic() - last_commit >= COMMIT_SECONDS:
                    writer.commit()  # searchable from now on
                    last_commit = time.monotonic()
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.close()
    finally:
        writer.close()
    summary = {"store": args.store, "seen": counts["seen"], "embedded": counts["embedded"],
               "unchanged": counts["unchanged"], "failed": counts["failed"], "pruned": counts["pruned"],
               "failed_by_kind": dict(Counter(f["kind"] for f in failures)), "failures": failures,
               "seconds": round(time.perf_counter() - started, 2), "provider": embedder.provider}
    _print_summary(summary, args)
    return 1 if failures else 0


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet or args.json:
        return None
    tqdm = require("tqdm", "store", "The progress bar")
    return tqdm.tqdm(unit="img", desc="embedding", file=sys.stderr, dynamic_ncols=True)  # type: ignore[attr-defined]


def _print_summary(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    if args.quiet:
        return
    err = sys.stderr
    print(f"vggsim: {summary['seen']} files: {summary['embedded']} embedded, {summary['unchanged']} unchanged, "
          f"{summary['failed']} failed, {summary['pruned']} pruned in {summary['seconds']} s", file=err)
    for failure in summary["failures"]:
        print(f"  failed: {failure['path']}: {failure['error']}", file=err)


def cmd_search(args: argparse.Namespace) -> int:
    from .commands import embedder_from_args
    from .search import AnnIndex, exact_topk
    from .store import Store, StoreIdentity

    store = Store.open(args.store)
    embedder = embedder_from_args(args)
    store.require_compatible(StoreIdentity.of(embedder))
    queries = embedder.embed(args.queries)
    if args.ann:
        key = f"generation {store.generation}"
        index = AnnIndex.load(store.root / "ann", key)
        if index is None:
            index = AnnIndex.build(store.blocks(), store.dim)
            index.save(store.root / "ann", key)
        ids, scores = index.search(queries, args.k)
    else:
        ids, scores = exact_topk(queries, store.blocks(), args.k)
    paths = store.paths()
    results = [{"query": q, "matches": [{"path": paths[i], "score": float(s)} for i, s in zip(row_ids, row_scores) if i >= 0]}
               for q, row_ids, row_scores in zip(args.queries, ids, scores)]
    if args.plot:
        from .plot import contact_sheet

        contact_sheet([[(r["query"], "query\n" + Path(r["query"]).name)] +
                       [(m["path"], f"{m['score']:.4f}\n{Path(m['path']).name}") for m in r["matches"]]
                       for r in results], args.plot, title=f"top {args.k} by cosine similarity")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["query"])
            for m in r["matches"]:
                print(f"  {m['score']:.6f}  {m['path']}")
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from .dedup import group_pairs, similar_pairs
    from .manifest import read_manifest
    from .store import Store

    store = Store.open(args.store)
    threshold = args.threshold
    if threshold is None:
        calibration = read_manifest(args.model, verify=False).data.get("dedup") or {}
        if "threshold" not in calibration:
            raise VggsimError("this model's manifest has no calibrated dedup threshold: pass --threshold T")
        threshold = float(calibration["threshold"])
    groups = group_pairs(similar_pairs(lambda: store.blocks(DEDUP_BLOCK_ROWS), threshold))
    paths = store.paths()
    wanted = sorted({i for g in groups for i in g})
    vectors = dict(zip(wanted, store.vectors(wanted)))
    rows: list[dict[str, Any]] = []
    for number, group in enumerate(groups, 1):
        first = vectors[group[0]]
        for member in group:
            score = float(np.dot(first, vectors[member]) / (np.linalg.norm(first) * np.linalg.norm(vectors[member]) or 1.0))
            rows.append({"group": number, "path": paths[member], "score": round(score, 6)})
    if args.json:
        Path(args.json).write_text(json.dumps({"threshold": threshold, "groups": rows}, indent=2))
    if args.csv:
        with open(args.csv, "w", newline="") as fp:
            writer = csv.DictWriter(fp, fieldnames=["group", "path", "score"])
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        from .plot import contact_sheet

        by_group: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_group.setdefault(row["group"], []).append(row)
        largest = sorted(by_group.values(), key=len, reverse=True)[:8]
        contact_sheet([[(r["path"], f"group {r['group']}  {r['score']:.4f}\n{Path(r['path']).name}") for r in g[:6]]
                       for g in largest], args.plot, title=f"near-duplicate groups at threshold {threshold}")
    print(f"vggsim: {len(groups)} groups, {len(rows)} images at threshold {threshold}", file=sys.stderr)
    if not (args.json or args.csv):
        for row in rows:
            print(f"{row['group']}\t{row['score']:.6f}\t{row['path']}")
    return 0
