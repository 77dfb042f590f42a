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
    p = add_parser(sub, "dedup", help="groups of near-duplicate images in a store",
                   description="Group stored images whose cosine similarity reaches the threshold; a group links "
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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim dedup")
    out, csv_out, plot = (output_path(args.out, "--out"), output_path(args.csv, "--csv"),
                          output_path(args.plot, "--plot"))
    from vggsim.collection import StoreReader, find_duplicates

    store = StoreReader(args.store).snapshot()
    choice = choose_threshold(args.threshold, args.model, store.identity, str(store.root))
    groups = find_duplicates(store, choice.threshold)
    rows: list[dict[str, Any]] = [{"group": g.number, "path": m.path, "score": round(float(m.score), 6)}
                                  for g in groups for m in g.members]
    # Union-find links a group through any chain of pairs at or above the threshold (single linkage),
    # so a member may score below it against the group's first member: counted and said.
    chained = sum(row["score"] < choice.threshold for row in rows)
    report = {"store": args.store, "threshold": choice.threshold, "threshold_source": choice.source,
              **caveat(choice.random_weights), "linkage": LINKAGE_NOTE, "chained": chained, "groups": rows}
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
    log(f"{len(groups)} groups, {len(rows)} images at threshold {choice.threshold} ({choice.source})")
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
            print(f"{row['group']}\t{row['score']:.6f}\t{display_path(row['path'])}")
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
        writer = csv.DictWriter(fp, fieldnames=["group", "path", "score"])
        writer.writeheader()
        writer.writerows(rows)
