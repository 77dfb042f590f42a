"""``vggsim dedup``: groups of near-duplicate images in a store."""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import (
    RANDOM_WEIGHTS_NOTE,
    add_parser,
    caveat,
    display_path,
    int_range,
    json_safe,
    log,
    output_path,
    plot_title,
    print_json,
    threshold_type,
    write_output,
)


LINKAGE_NOTE = ("linked: members join a group through a chain of pairs at or above the threshold, so two members "
                "of one group may score below it")


def register(sub: Any) -> None:
    p = add_parser(sub, "dedup", help="groups of duplicate images in a store, with a keeper each",
                   description="Group stored images that are byte-identical (same content), pixel-identical (same "
                   "decoded pixels, only metadata or encoding differ) or near-duplicates (cosine similarity at or "
                   "above the threshold); each member names its tier and each group a suggested keeper with the "
                   "reason. Decisions recorded with --not-duplicates and --keep are kept in the store and honoured "
                   "here, by the API and by the service. A group links "
                   "images through chains of such pairs (single linkage), so two members of a group may score "
                   "below it. The default "
                   "threshold is the one calibrated for the store's model at export (`vggsim doctor` shows it); "
                   "the model named by --model must be the one that made the store.")
    p.add_argument("--store", required=True, metavar="STORE", help="store folder made by `vggsim embed`")
    p.add_argument("--threshold", type=threshold_type, default=None, metavar="T",
                   help="cosine score in (0, 1] at or above which images are near-duplicates "
                   "(default: the one calibrated for this model at export)")
    p.add_argument("--model", metavar="DIR", help="the model that made the store, whose calibrated threshold "
                   "is the default (default: $VGGSIM_MODEL or models/vgg16)")
    p.add_argument("--json", action="store_true", help="print the groups as JSON on stdout")
    p.add_argument("--out", metavar="OUT.json", help="write the groups as JSON to this file "
                   "(folders are created; default: none)")
    p.add_argument("--csv", metavar="OUT.csv", help="write group, path, score (to the group's first member) "
                   "as CSV (folders are created; default: none)")
    p.add_argument("--plot", metavar="OUT.png", help="draw the largest groups (folders are created; default: none)")
    p.add_argument("--page", type=int_range(1), default=None, metavar="N",
                   help="print only page N of the groups (largest first), --page-size groups a page (default: all)")
    p.add_argument("--page-size", type=int_range(1, 100_000), default=100, metavar="S", help="groups per --page")
    decide = p.add_mutually_exclusive_group()
    decide.add_argument("--not-duplicates", nargs="+", metavar="PATH", default=None,
                        help="record that these stored files are not duplicates of each other (kept in the store, "
                        "honoured by every later dedup, the API and the service), then list the groups (default: none)")
    decide.add_argument("--keep", nargs="+", metavar="PATH", default=None,
                        help="record that these stored files are the ones to keep in their groups (default: none)")
    decide.add_argument("--forget", nargs="+", metavar="PATH", default=None,
                        help="take back every decision about these stored files (default: none)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim dedup")
    out, csv_out, plot = (output_path(args.out, "--out"), output_path(args.csv, "--csv"),
                          output_path(args.plot, "--plot"))
    from vggsim.collection import StoreReader, find_duplicates

    from vggsim.collection import page_of
    from vggsim.collection.decisions import record

    store = StoreReader(args.store).snapshot()
    choice = choose_threshold(args.threshold, args.model, store.identity, str(store.root))
    for kind, paths in (("not_duplicates", args.not_duplicates), ("keep", args.keep), ("forget", args.forget)):
        if paths:
            decided = record(store, kind, [_stored_path(p) for p in paths])
            log(f"recorded: {kind.replace('_', ' ')}: {len(paths)} file(s); the store now holds "
                f"{len(decided.not_duplicates)} not-duplicate pair(s) and {len(decided.keep)} file(s) to keep")
    groups = find_duplicates(store, choice.threshold)
    total = len(groups)
    if args.page is not None:
        groups = page_of(groups, args.page, args.page_size).groups
    rows: list[dict[str, Any]] = [{"group": g.number, "path": m.path, "score": round(float(m.score), 6),
                                   "tier": m.tier, "keeper": m.id == g.keeper,
                                   "keeper_reason": g.keeper_reason if m.id == g.keeper else ""}
                                  for g in groups for m in g.members]
    # Union-find links a group through any chain of pairs at or above the threshold (single linkage),
    # so a member may score below it against the group's first member: counted and said.
    chained = sum(row["score"] < choice.threshold for row in rows)
    report = {"store": args.store, "threshold": choice.threshold, "threshold_source": choice.source,
              **caveat(choice.random_weights), "linkage": LINKAGE_NOTE, "chained": chained, "total_groups": total,
              **({"page": args.page, "page_size": args.page_size} if args.page is not None else {}), "groups": rows}
    if out is not None:
        import json

        write_output(out, lambda p: p.write_text(json.dumps(json_safe(report), indent=2) + "\n"), "--out")
    if csv_out is not None:
        write_output(csv_out, lambda p: _write_csv(p, rows), "--csv")
    if plot is not None:
        from vggsim.tools.plot import contact_sheet, duplicate_rows

        sheet = duplicate_rows(groups)
        title = plot_title(f"near-duplicate groups at threshold {choice.threshold}", choice.random_weights)
        write_output(plot, lambda p: contact_sheet(sheet, p, title=title), "--plot")
    if choice.note:
        log(f"warning: {choice.note}")
    shown = f"page {args.page} of {max(1, -(-total // args.page_size))}: " if args.page is not None else ""
    log(f"{shown}{len(groups)} of {total} groups, {len(rows)} images at threshold {choice.threshold} ({choice.source})")
    if chained:
        images = f"{chained} image{'' if chained == 1 else 's'}"
        log(f"note: {images} scored below the threshold against the first member of {'its' if chained == 1 else 'their'} "
            f"group; {LINKAGE_NOTE}")
    if choice.random_weights:
        log(f"warning: {RANDOM_WEIGHTS_NOTE}")
    elif choice.random_weights is None:
        log("note: the store's model was not found, so whether its weights are real is unknown")
    if args.json:
        print_json(report)
    elif not (out or csv_out):
        for row in rows:
            mark = f"\tkeep: {row['keeper_reason']}" if row["keeper"] else ""
            print(f"{row['group']}\t{row['tier']}\t{row['score']:.6f}\t{display_path(row['path'])}{mark}")
    return 0


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    source: str                  # "--threshold" or the manifest it came from
    random_weights: bool | None  # None: the store's model was not found, so unknown
    note: str | None = None      # the store used an embed-time option the calibration did not


def choose_threshold(given: float | None, model: str | None, identity: Any, where: str) -> ThresholdChoice:
    """--threshold, else the calibration in the manifest of the model that made the store.

    The manifest must be the store's model (a threshold calibrated for one model means
    nothing for another's vectors, nor for another preprocessing's: the store's whole identity
    is checked); with --threshold and no --model, the default model is consulted only to say
    whether the weights are random.
    """
    from vggsim.collection import dedup_threshold, require_threshold_model
    from vggsim.errors import StoreError, VggsimError
    from vggsim.model.manifest import read_manifest

    try:
        manifest = read_manifest(model, verify=True)
    except VggsimError as exc:
        if given is not None and model is None:
            return ThresholdChoice(given, "--threshold", None)
        if given is None and model is None:
            raise VggsimError(f"the default threshold is calibrated in the manifest of the model that made the "
                              f"store: pass --model DIR or --threshold T ({exc})") from None
        raise
    store_sha256 = identity.model_sha256
    if manifest.model_sha256 != store_sha256:
        if given is not None and model is None:
            return ThresholdChoice(given, "--threshold", None)
        raise StoreError(f"the store was made by model {store_sha256[:12]}..., but {manifest.model_path} is "
                         f"{manifest.model_sha256[:12]}...: pass the --model that made the store, or --threshold T.")
    if given is not None:
        if model is not None:  # the model named must be the store's, preprocessing included
            require_threshold_model(identity, manifest, where)
        return ThresholdChoice(given, "--threshold", manifest.random_weights)
    note = require_threshold_model(identity, manifest, where)
    return ThresholdChoice(dedup_threshold(manifest), f"calibrated at export, {manifest.path}", manifest.random_weights,
                           note)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fp:
        writer = csv.DictWriter(fp, fieldnames=["group", "path", "score", "tier", "keeper", "keeper_reason"])
        writer.writeheader()
        writer.writerows(rows)


def _stored_path(path: str) -> str:
    """A path as the store records it: absolute, as `vggsim embed` resolved it (a relative one is taken from here)."""
    import os

    return path if os.path.isabs(path) else os.path.abspath(path)
