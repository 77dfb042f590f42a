"""``vggsim index``: build, update (or inspect) a store's on-disk IVF index for ``vggsim search --index``."""

from __future__ import annotations

import argparse
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import add_parser, int_range, log, positive_float, print_json


def register(sub: Any) -> None:
    p = add_parser(sub, "index", help="build or inspect a store's on-disk IVF index",
                   description="An approximate index for large stores (faiss IVF-PQ or IVF-SQ8, needs vggsim[ann]), "
                   "written into the store and searched memory-mapped by `vggsim search --index`, with the "
                   "candidates re-ranked exactly from the stored vectors.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = add_parser(actions, "build", help="build the index of the store's current vectors",
                       description="Train on a sample, encode the vectors block by block (bounded memory) and put "
                       "the index in STORE/index/, replacing an older one. Unset parameters come from the store's "
                       "size: nlist ~ sqrt(n) as a power of two, PQ with dim/8 bytes per vector from 20,000 "
                       "vectors (SQ8 below), nprobe nlist/64 (at least 8); k*100 candidates are re-ranked exactly.")
    build.add_argument("--store", required=True, metavar="STORE", help="store folder made by `vggsim embed`")
    build.add_argument("--nlist", type=int_range(1, 1 << 20), default=None,
                       help="inverted lists (default: from the store's size)")
    codes = build.add_mutually_exclusive_group()
    codes.add_argument("--pq", type=int_range(1, 4096), default=None, metavar="M",
                       help="product quantisation with M bytes per vector; M must divide the dim "
                       "(default: dim/8 from 20,000 vectors)")
    codes.add_argument("--sq8", action="store_true", help="8-bit scalar quantisation, dim bytes per vector")
    build.add_argument("--sample", type=int_range(1, 10_000_000), default=None,
                       help="training vectors (default: 64 per list, 20,000 to 100,000)")
    build.add_argument("--nprobe", type=int_range(1, 1 << 20), default=None,
                       help="lists scanned per query, saved with the index (default: nlist/64, at least 8)")
    build.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    build.set_defaults(handler=run_build)
    update = add_parser(actions, "update", help="grow the index with the store's new commits, without training it "
                        "again",
                        description="Keep the codes of the records still current, encode only the vectors added or "
                        "replaced since, leave out the deleted, and put the grown index in place of the old one (a "
                        "running `vggsim serve` picks it up at its next request). Trains anew, saying why, when there "
                        "is no index to grow (missing, damaged, another model), when the store outgrew the size the "
                        "index was trained for, or when the added vectors drifted from its lists.")
    update.add_argument("--store", required=True, metavar="STORE", help="store folder made by `vggsim embed`")
    update.add_argument("--no-retrain", action="store_true",
                        help="never train anew for growth or drift; grow the index and report them (default: retrain)")
    update.add_argument("--drift-limit", type=positive_float(), default=None, metavar="RATIO",
                        help="train anew when the vectors added since training lie more than RATIO times as far from "
                        "their lists' centroids (mean squared distance) as the training sample (default: 1.5)")
    update.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    update.set_defaults(handler=run_update)
    info = add_parser(actions, "info", help="say whether the store's index is current and sound (every file's "
                      "sha256 checked), and its shape; exit 1 when it is missing, stale or damaged")
    info.add_argument("--store", required=True, metavar="STORE", help="store folder made by `vggsim embed`")
    info.add_argument("--json", action="store_true", help="print the index record as JSON on stdout")
    info.set_defaults(handler=run_info)


def run_build(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim index")
    require("faiss", "ann", "vggsim index")
    from vggsim.search.ivf import build_index, choose
    from vggsim.store import Store

    store = Store.open(args.store)
    params = choose(store.current_view().vectors, store.identity.dim, nlist=args.nlist, pq=args.pq, sq8=args.sq8,
                    sample=args.sample, nprobe=args.nprobe)
    summary = build_index(store, params, progress=None if args.json else log)
    out = {"store": args.store, "generation": store.generation, "folder": str(summary.folder),
           "vectors": summary.vectors, "bytes": summary.bytes, "seconds": round(summary.seconds, 2),
           **params.to_dict()}
    if args.json:
        print_json(out)
    else:
        print(f"{summary.folder}: {params.factory}, {summary.vectors:,} vectors, {summary.bytes / 1e6:.1f} MB, "
              f"nprobe {params.nprobe}, built in {summary.seconds:.1f} s (generation {store.generation})")
    return 0


def run_update(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim index")
    require("faiss", "ann", "vggsim index")
    from vggsim.search.ivf import DRIFT_LIMIT, GROWTH_LIMIT, update_index
    from vggsim.store import Store

    store = Store.open(args.store)
    limit = args.drift_limit or DRIFT_LIMIT
    summary = update_index(store, retrain=not args.no_retrain, drift_limit=limit, progress=None if args.json else log)
    drift = None if summary.drift is None else round(summary.drift, 3)
    if summary.current:
        said = "index current: nothing to add"
    elif summary.retrained:
        said = f"index trained anew ({summary.retrained})"
    else:
        said = (f"index updated: +{summary.added:,} encoded, {summary.kept:,} kept, {summary.dropped:,} dropped"
                + (f", drift {drift:g}" if drift is not None else ""))
    log(f"{said}; {summary.vectors:,} vectors in {summary.seconds:.1f} s (generation {store.generation})")
    if args.json:
        print_json({"store": args.store, "generation": store.generation, "folder": str(summary.folder),
                    "vectors": summary.vectors, "added": summary.added, "kept": summary.kept,
                    "dropped": summary.dropped, "drift": drift, "retrained": summary.retrained,
                    "current": summary.current, "growth": None if summary.growth is None else round(summary.growth, 3),
                    "seconds": round(summary.seconds, 2)})
    if summary.retrained is None and not summary.current:  # --no-retrain: say how far it went
        if summary.drift is not None and summary.drift > limit:
            log(f"warning: drift {drift:g} is over the limit; `vggsim index build --store {args.store}` trains anew")
        if summary.growth is not None and summary.growth > GROWTH_LIMIT:
            log(f"warning: the store holds {summary.growth:.1f} times the vectors the index was trained for; "
                f"`vggsim index build --store {args.store}` trains anew")
    return 0


def run_info(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim index")
    from pathlib import Path

    from vggsim.errors import StoreError
    from vggsim.search.policy import IndexState, check_index
    from vggsim.store import Store

    store = Store.open(args.store)
    check = check_index(Path(args.store), store)  # every file hashed again, whatever this process checked before
    if check.state is not IndexState.CURRENT:  # missing, stale or damaged: exit 1, one line naming the rebuild command
        raise StoreError(check.message or f"the index is {check.state.value}")
    info = check.info or {}
    if args.json:
        print_json({"store": args.store, "folder": check.folder, "current": True, **info})
        return 0
    params = info.get("params", {})
    size = sum(int(entry["size"]) for entry in info.get("files", {}).values())
    print(f"{check.folder}: current and sound (generation {info.get('generation')}), {params.get('factory', '?')}, "
          f"{info.get('vectors', 0):,} vectors, {size / 1e6:.1f} MB, nprobe {params.get('nprobe', '?')}, "
          f"built in {info.get('built_seconds', 0):.1f} s")
    return 0
