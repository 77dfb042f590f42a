"""``vggsim search``: the k most similar stored images to each query image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import (
    MAX_K,
    add_model_args,
    add_parser,
    build_embedder,
    UsageError,
    caveat,
    display_path,
    int_range,
    log,
    output_path,
    plot_title,
    print_json,
    write_output,
)


def register(sub: Any) -> None:
    p = add_parser(sub, "search", help="the k most similar stored images to each query image",
                   description="Embed each query image with the model that made STORE (the store's model and "
                   "preprocessing are checked) and print its k nearest stored images by cosine similarity.")
    p.add_argument("queries", nargs="+", help="query images")
    p.add_argument("--store", required=True, metavar="STORE", help="store folder made by `vggsim embed`")
    p.add_argument("-k", type=int_range(1, MAX_K), default=10, help=f"matches per query, 1-{MAX_K} "
                   "(fewer when the store holds fewer images)")
    p.add_argument("--ann", action="store_true", help="approximate search with a faiss HNSW index, built once "
                   "and cached in the store (needs vggsim[ann])")
    p.add_argument("--index", action="store_true", help="search the store's on-disk IVF index (`vggsim index "
                   "build`), memory-mapped, candidates re-ranked exactly; refused when the store changed since")
    p.add_argument("--rebuild", action="store_true", help="with --index: rebuild a missing or stale index first")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--plot", metavar="OUT.png", help="each query beside its matches with scores "
                   "(folders are created; default: no plot)")
    add_model_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim search")  # before the model loads: say so at once
    if args.ann and args.index:
        raise UsageError("--ann and --index exclude each other: pick one index")
    if args.rebuild and not args.index:
        raise UsageError("--rebuild goes with --index")
    if args.ann or args.index:
        require("faiss", "ann", f"vggsim search {'--index' if args.index else '--ann'}")
    plot = output_path(args.plot, "--plot")
    from vggsim.collection import StoreReader, search_images

    reader = StoreReader(args.store)
    snapshot = reader.snapshot()  # a damaged or missing store fails before the model loads
    opened = None
    if args.index:  # a missing, stale or damaged index too (vggsim.search.policy decides, for every front end)
        from vggsim.search import policy

        opened = policy.open_or_rebuild(snapshot, args.rebuild, progress=log).index
    embedder = build_embedder(args)
    stored = snapshot.count_ok()
    warnings = [] if stored else [f"{display_path(args.store)} holds no embeddings yet"]  # exit 0: an empty answer is an answer
    for warning in warnings:
        log(warning)
    random_weights = embedder.manifest.random_weights
    account: dict[str, Any] = {}
    if opened is not None:
        from vggsim.collection.queries import search_index
        from vggsim.store import StoreIdentity

        snapshot.require_compatible(StoreIdentity.of(embedder))
        through = search_index(snapshot, embedder.embed(list(args.queries)), args.k, index=opened)
        found = through.matches
        account = {"index_nprobe": through.nprobe, "index_widened": through.widened}
        if through.widened:
            log(f"{through.widened} of {len(args.queries)} queries: the {opened.nprobe} index lists searched held fewer "
                f"than {args.k} candidates; searched again with {through.nprobe} lists")
    else:
        found = search_images(embedder, snapshot, args.queries, k=args.k, ann=args.ann, index=args.index)
    rows = [{"query": query, "matches": [{"path": m.path, "score": float(m.score)} for m in matches]}
            for query, matches in zip(args.queries, found)]
    if plot is not None:
        from vggsim.tools.plot import contact_sheet

        sheet = [[(r["query"], "query\n" + Path(r["query"]).name)] +
                 [(m["path"], f"{m['score']:.4f}\n{Path(m['path']).name}") for m in r["matches"]] for r in rows]
        title = plot_title(f"top {args.k} by cosine similarity", random_weights)
        write_output(plot, lambda out: contact_sheet(sheet, out, title=title), "--plot")
    if args.json:
        print_json({"store": args.store, "k": args.k, "ann": args.ann, "index": args.index, "generation": snapshot.generation,
                    "provider": embedder.provider, "model_sha256": embedder.model_sha256, **caveat(random_weights),
                    "embeddings": stored, "warnings": warnings, **account,
                    "results": rows})
    else:
        for r in rows:
            print(display_path(r["query"]))
            for m in r["matches"]:
                print(f"  {m['score']:.6f}  {display_path(m['path'])}")
    return 0

