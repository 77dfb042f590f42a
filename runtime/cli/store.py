"""``vggsim store verify|repair|sync STORE``: check every committed shard; drop damaged ones for re-embedding;
mirror the vectors into PostgreSQL."""

from __future__ import annotations

import argparse
from typing import Any

from vggsim.errors import require
from vggsim.cli.common import HelpFormatter, add_parser, display_path, log, postgres_table, print_json


def register(sub: Any) -> None:
    p = add_parser(sub, "store", help="check or repair a store", description="Check or repair a store made by "
                   "`vggsim embed`. Exit 0 when the store is sound, 1 when it is damaged.")
    actions = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    v = actions.add_parser("verify", formatter_class=HelpFormatter, help="check every committed shard "
                           "(exists, size, checksum, rows) and the index's files; exit 1 and name each damaged file",
                           description="Read every shard the store committed and check its size, checksum and "
                           "rows, and every file of the store's on-disk index against the checksums written when "
                           "it was built. Exit 0 when all are sound, 1 when any is damaged (each is named; a damaged "
                           "index is rebuilt with `vggsim index build`, not repaired).")
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
    s = actions.add_parser("sync", formatter_class=HelpFormatter, help="mirror the store's vectors into a "
                           "PostgreSQL table with pgvector (incremental, resumable)",
                           description="Copy the store's current vectors into a pgvector table, with an HNSW index "
                           "for cosine distance: only files new or re-embedded since the last sync are written, files "
                           "the store no longer holds are deleted, a sync killed anywhere is finished by the next. "
                           "`vggsim serve --search-backend postgres` searches the table; its columns are documented "
                           "for other tools (docs/guide/postgres.md). Needs vggsim[postgres].")
    s.add_argument("store", metavar="STORE", help="store folder")
    s.add_argument("--postgres", metavar="URI", required=True,
                   help="PostgreSQL connection URI, as libpq reads it (postgresql://user@host/db; keep the "
                   "password in ~/.pgpass or $PGPASSWORD: command lines show in `ps`)")
    s.add_argument("--postgres-table", metavar="NAME", default="vggsim_images", type=postgres_table,
                   help="the images table (created if missing)")
    s.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    s.set_defaults(handler=sync)


def _as_dict(report: Any) -> dict[str, Any]:
    import dataclasses

    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dataclasses.asdict(report)


def verify(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim store verify")
    from pathlib import Path

    from vggsim.search.policy import IndexState, check_index
    from vggsim.store import Store, verify_store

    report = verify_store(args.store)  # also reports on a store too damaged to open
    # the index inside the store: every file hashed against its index.json (a damaged one is rebuilt, not repaired)
    index = check_index(Path(args.store), Store.open(args.store) if report.ok else None)
    index_damaged = index.state is IndexState.DAMAGED
    if args.json:
        print_json({"store": args.store, **_as_dict(report), "index": index.to_dict()})
    else:
        for problem in report.problems + index.problems:
            print(f"damaged: {display_path(problem)}")
        state = "ok" if report.ok else f"DAMAGED ({len(report.problems)} problem(s)); run `vggsim store repair {args.store}`"
        log(f"{args.store}: {report.shards} shard{'' if report.shards == 1 else 's'}, {report.rows} sound "
            f"row{'' if report.rows == 1 else 's'}: {state}")
        if index_damaged:
            log(f"{args.store}: index DAMAGED ({len(index.problems)} problem(s)): {index.message}")
        elif index.state is IndexState.STALE:
            log(f"note: the index is stale: {index.message}")
    return 0 if report.ok and not index_damaged else 1


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


def sync(args: argparse.Namespace) -> int:
    require("pyarrow", "store", "vggsim store sync")
    for module in ("psycopg", "pgvector"):
        require(module, "postgres", "vggsim store sync --postgres")
    from vggsim.postgres import sync_store

    report = sync_store(args.store, args.postgres, args.postgres_table)
    if args.json:
        print_json(report.to_dict())
    elif report.up_to_date:
        log(f"{args.store}: postgres table {report.table} already holds snapshot {report.snapshot} "
            f"({report.rows} rows): {'its HNSW index was missing and is built' if report.index_built else 'nothing to do'}")
    else:
        log(f"{args.store}: postgres table {report.table} now holds snapshot {report.snapshot}: {report.rows} rows "
            f"({report.written} written, {report.deleted} deleted, {report.unchanged} unchanged"
            f"{', HNSW index built' if report.index_built else ''}) in {report.seconds:.1f} s")
    return 0
