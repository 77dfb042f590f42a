"""``vggsim store verify|repair STORE``: check every committed shard; drop damaged ones for re-embedding."""

from __future__ import annotations

import argparse
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import HelpFormatter, add_parser, display_path, log, print_json


def register(sub: Any) -> None:
    p = add_parser(sub, "store", help="check or repair a store", description="Check or repair a store made by "
                   "`vggsim embed`. Exit 0 when the store is sound, 1 when it is damaged.")
    actions = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    v = actions.add_parser("verify", formatter_class=HelpFormatter, help="check every committed shard "
                           "(exists, size, checksum, rows); exit 1 and name each damaged file",
                           description="Read every shard the store committed and check its size, checksum and "
                           "rows. Exit 0 when all are sound, 1 when any is damaged (each is named).")
    v.add_argument("store", metavar="STORE", help="store folder")
    v.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    v.set_defaults(handler=verify)
    r = actions.add_parser("repair", formatter_class=HelpFormatter, help="drop damaged shards; the next "
                           "`vggsim embed` re-embeds their files",
                           description="Remove damaged shards from the store's commit record, so it opens again. "
                           "The files they held are re-embedded by the next `vggsim embed` over the same inputs.")
    r.add_argument("store", metavar="STORE", help="store folder")
    r.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    r.set_defaults(handler=repair)


def _as_dict(report: Any) -> dict[str, Any]:
    import dataclasses

    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dataclasses.asdict(report)


def verify(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim store verify")
    from vggsim.store import verify_store

    report = verify_store(args.store)  # also reports on a store too damaged to open
    if args.json:
        print_json({"store": args.store, **_as_dict(report)})
    else:
        for problem in report.problems:
            print(f"damaged: {display_path(problem)}")
        state = "ok" if report.ok else f"DAMAGED ({len(report.problems)} problem(s)); run `vggsim store repair {args.store}`"
        log(f"{args.store}: {report.shards} shards, {report.rows} sound rows: {state}")
    return 0 if report.ok else 1


def repair(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim store repair")
    from vggsim.store import repair as repair_store

    report = repair_store(args.store)
    if args.json:
        print_json({"store": args.store, **_as_dict(report)})
        return 0
    for problem in report.problems:
        print(f"damaged: {display_path(problem)}")
    if report.rebuilt_commit:
        log("the commit record was missing or garbled: rebuilt from the shards provably committed")
        for line in report.not_adopted:
            log(f"  {line}; its files were moved aside and count as not embedded: the next `vggsim embed` "
                "over the same inputs re-embeds them")
    if not report.dropped_shards and not report.rebuilt_commit:
        log(f"{args.store}: nothing to repair")
        return 0
    log(f"dropped {len(report.dropped_shards)} damaged shard(s) holding {report.records_dropped} file record(s); "
        f"the next `vggsim embed` over the same inputs re-embeds those files")
    for moved in report.moved:
        log(f"  moved aside: {display_path(moved)}")
    return 0
