"""``vggsim eval``: near-duplicate and search accuracy of a store against ground truth (imagededup's metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import RANDOM_WEIGHTS_NOTE, UsageError, add_parser, caveat, log, print_json, threshold_type


def register(sub: Any) -> None:
    p = add_parser(sub, "eval", help="accuracy of a store against ground truth (MAP, NDCG, Jaccard, P/R/F1)",
                   description="Score what vggsim retrieves for the store's files against a ground-truth map "
                   "(imagededup's format: each file, relative to --root, to the list of its duplicates): near-"
                   "duplicates at the threshold and the k nearest neighbours, with the metrics imagededup "
                   "reports. --make-set DIR writes an evaluation set from the sample photos (named edits of "
                   "each, the others as distractors) with its truth.json, to embed and score.")
    p.add_argument("--make-set", metavar="DIR", help="write the evaluation set and its truth.json into DIR, then stop "
                   "(default: none; with it, --store and --truth are not needed)")
    p.add_argument("--store", metavar="STORE", help="store folder made by `vggsim embed` of the files "
                   "(required unless --make-set)")
    p.add_argument("--truth", metavar="TRUTH.json", help="ground truth: file name -> list of its duplicates "
                   "(required unless --make-set)")
    p.add_argument("--root", metavar="DIR", help="the folder the truth's names are relative to "
                   "(default: the truth file's folder)")
    p.add_argument("--threshold", type=threshold_type, default=None, metavar="T",
                   help="near-duplicate threshold (default: the one calibrated for the store's model)")
    p.add_argument("--model", metavar="DIR", help="the model that made the store, whose calibrated threshold "
                   "is the default (default: $VGGSIM_MODEL or models/vgg16)")
    p.add_argument("-k", type=int, default=10, help="neighbours per file for the search metrics (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.make_set:
        from vggsim.images.samples import sample_photos
        from vggsim.tools.evalset import make_evaluation_set

        photos = sample_photos()
        if len(photos) < 2:
            log("the evaluation set is made from the sample photos scikit-learn and scikit-image ship: "
                "pip install scikit-learn scikit-image")
            return 2
        written = make_evaluation_set(photos, args.make_set)
        log(f"wrote {len(photos)} photos with their edited copies and {written}; next: vggsim embed {args.make_set} "
            f"--store STORE, then vggsim eval --store STORE --truth {written}")
        return 0
    if not args.store or not args.truth:
        raise UsageError("eval: pass --store STORE and --truth TRUTH.json (or --make-set DIR)")
    require("pyarrow", "store", "vggsim eval")
    from vggsim.cli.dedup import choose_threshold
    from vggsim.collection import StoreReader
    from vggsim.collection.evaluation import evaluate_store, load_truth

    store = StoreReader(args.store).snapshot()
    choice = choose_threshold(args.threshold, args.model, store.identity, str(store.root))
    truth = load_truth(args.truth)
    report: dict[str, Any] = evaluate_store(store, truth, args.root or Path(args.truth).parent, choice.threshold,
                                            args.k)
    report.update(caveat(choice.random_weights))
    if args.json:
        print_json(report)
    else:
        dedup, search = report["dedup"], report["search"]
        print(f"{report['files']} files, {report['duplicate_pairs']} duplicate pairs in the truth")
        print(f"dedup at {dedup['threshold']:g} ({choice.source}): MAP {dedup['map']:.4f}  NDCG {dedup['ndcg']:.4f}  "
              f"Jaccard {dedup['jaccard']:.4f}  duplicate pairs: precision {dedup['precision'][1]:.4f} "
              f"recall {dedup['recall'][1]:.4f} F1 {dedup['f1_score'][1]:.4f}")
        print(f"search, k={search['k']}: MAP {search['map']:.4f}  NDCG {search['ndcg']:.4f}  "
              f"Jaccard {search['jaccard']:.4f}")
        if dedup["per_edit"]:
            print("dedup recall per edit: " + "  ".join(f"{e} {r:.2f}" for e, r in dedup["per_edit"].items()))
    if choice.random_weights:
        log(f"warning: {RANDOM_WEIGHTS_NOTE}")
    return 0
