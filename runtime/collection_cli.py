"""Handlers of ``vggsim embed``, ``search`` and ``dedup``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from .errors import VggsimError, require

if TYPE_CHECKING:
    from .collection import EmbedSummary


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


def cmd_embed(args: argparse.Namespace) -> int:
    from .collection import EmbedProgress, embed_into_store
    from .commands import embedder_from_args

    if not args.inputs and not args.list_file and not args.prune:
        raise VggsimError("embed: name files, folders or globs, or --from FILE")
    embedder = embedder_from_args(args)  # takes --max-pixels too
    bar = _progress(args)

    def show(p: EmbedProgress) -> None:
        if bar.total != p.total:
            bar.reset(total=p.total)
        bar.n = p.done
        bar.refresh()

    try:
        summary = embed_into_store(
            embedder, args.inputs, args.store, list_file=args.list_file, all_files=args.all_files,
            prune=args.prune, retry_errors=args.retry_errors, batch_size=args.batch_size, workers=args.workers,
            decode_timeout=args.decode_timeout, float16=args.float16, progress=show if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    _print_summary(summary, args)
    return summary.exit_code


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet or args.json:
        return None
    tqdm = require("tqdm", "store", "The progress bar")
    return tqdm.tqdm(unit="img", desc="embedding", file=sys.stderr, dynamic_ncols=True)  # type: ignore[attr-defined]


def _print_summary(summary: EmbedSummary, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    if args.quiet:
        return
    err = sys.stderr
    for note in summary.notes:
        print(f"vggsim: {summary.store}: {note}", file=err)
    still = f", {summary.still_failing} still failing (unchanged; --retry-errors retries them)" \
        if summary.still_failing else ""
    print(f"vggsim: {summary.seen} files: {summary.embedded} embedded, {summary.unchanged} unchanged, "
          f"{summary.failed} failed, {summary.pruned} pruned{still} in {summary.seconds} s", file=err)
    for failure in summary.failures:
        print(f"  failed: {failure.path}: {failure.reason}", file=err)


def cmd_search(args: argparse.Namespace) -> int:
    from .collection import search_images
    from .store import Store
    from .commands import embedder_from_args

    store = Store.open(args.store)
    embedder = embedder_from_args(args)
    found = search_images(embedder, store, args.queries, args.k, args.ann)
    results = [{"query": q, "matches": [{"path": m.path, "score": m.score} for m in matches]}
               for q, matches in zip(args.queries, found)]
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
    from .collection import dedup_threshold, find_duplicates
    from .store import Store
    from .collection.validate import threshold as check_threshold
    from .manifest import read_manifest

    store = Store.open(args.store)
    embedder = None
    threshold = args.threshold
    if args.model is not None or threshold is None:
        from .embedder import Embedder

        if threshold is None:
            threshold = dedup_threshold(read_manifest(args.model, verify=False))
        else:
            check_threshold(threshold)
        embedder = Embedder(args.model, providers="cpu")
    groups = find_duplicates(store, threshold, embedder=embedder)
    rows = [{"group": g.number, "path": m.path, "score": m.score} for g in groups for m in g.members]
    if args.json:
        Path(args.json).write_text(json.dumps({"threshold": threshold, "groups": rows}, indent=2))
    if args.csv:
        with open(args.csv, "w", newline="") as fp:
            writer = csv.DictWriter(fp, fieldnames=["group", "path", "score"])
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        from .plot import contact_sheet

        largest = sorted(groups, key=lambda g: len(g.members), reverse=True)[:8]
        contact_sheet([[(m.path, f"group {g.number}  {m.score:.4f}\n{Path(m.path).name}") for m in g.members[:6]]
                       for g in largest], args.plot, title=f"near-duplicate groups at threshold {threshold}")
    print(f"vggsim: {len(groups)} groups, {len(rows)} images at threshold {threshold}", file=sys.stderr)
    if not (args.json or args.csv):
        for row in rows:
            print(f"{row['group']}\t{row['score']:.6f}\t{row['path']}")
    return 0
