"""The store's folder on disk: what is in it, its identity, its commit record and a shard's meta table.

Shared by the snapshot (reading), the writer and repair, none of which imports another for these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.checksum import require_intact
from vggsim.store.format import (COMMIT, IDENTITY, STORE_FORMAT, CommitRecord, Shard, StoreIdentity, parse_commit,
                                 pyarrow, read_json, remedy, shard_name)
from vggsim.store.journal import conform_meta


Stamp = tuple[int, int, int, int] | None


def has_data(root: Path) -> bool:
    """Whether ``root`` holds anything a writer made (so it must not be treated as new)."""
    return (root / COMMIT).exists() or any(
        any((root / sub).glob(pattern)) for sub, pattern in (("vectors", "*.npy"), ("meta", "*.parquet"), ("journal", "*")))


def read_identity(root: Path) -> StoreIdentity:
    """The identity in ``store.json``; StoreError saying what to do if it is missing or bad."""
    path = root / IDENTITY
    # `store repair` cannot rebuild store.json (nothing else records which model and
    # preprocessing made the vectors), so it must not be the advice here: it would refuse too.
    advice = (f"`vggsim store repair` cannot rebuild it: restore {path} from a backup, or re-create the store "
              f"(`vggsim embed SAME INPUTS --store NEW`, then delete {root})")
    try:
        data = read_json(path, "store identity", advice)
    except FileNotFoundError:
        if has_data(root):
            raise StoreError(f"{path} is missing, but {root} holds embeddings: nothing can tell which model made "
                             "them, so the store cannot be used. Restore store.json from a backup, or re-create "
                             f"the store (`vggsim embed ... --store NEW`).") from None
        raise StoreError(f"{root} is not a vggsim store (no store.json); create it with `vggsim embed`.") from None
    if isinstance(data, dict) and data.get("format") == 1:
        raise StoreError(f"{root} is a format-1 store from an older vggsim, which could lose or misalign "
                         "records; it is not read. Re-create it: `vggsim embed SAME INPUTS --store NEW` "
                         "(then delete the old folder).")
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: unknown store format {data.get('format') if isinstance(data, dict) else '?'!r}; "
                         f"a newer vggsim made it (use that version), or the file is garbled: {advice}")
    try:
        return StoreIdentity.from_dict(data, str(path))
    except StoreError as exc:
        raise StoreError(f"{exc}; {advice}") from None


def commit_stamp(root: Path) -> Stamp:
    try:
        stat = os.stat(root / COMMIT)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size  # ctime: also a copy that kept the mtime


def read_commit(root: Path) -> tuple[CommitRecord, Stamp]:
    """The commit record (read once) and a stamp to tell later whether it was replaced."""
    stamp = commit_stamp(root)
    try:
        data = read_json(root / COMMIT, "commit record")
    except FileNotFoundError:
        if any((root / "vectors").glob("*.npy")) or any((root / "meta").glob("*.parquet")):
            raise StoreError(f"{root / COMMIT} is missing, so no shard in {root} can be trusted; "
                             f"`vggsim store repair {root}` rebuilds it from the shards that check out") from None
        return CommitRecord(0, 1, ()), stamp
    return parse_commit(data, root / COMMIT), stamp


def read_meta(root: Path, shard: Shard) -> Any:
    """A committed shard's meta table with a ``shard`` column; StoreError if it does not check out."""
    pa = pyarrow()
    path = root / shard_name(shard.id, "meta")
    require_intact(path, shard.files[shard_name(shard.id, "meta")], root)  # same size is not same bytes
    try:
        table = conform_meta(pa.parquet.read_table(path))
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in the parser in any way
        raise StoreError(f"{path}: cannot read the committed meta file ({str(exc)[:100]}); {remedy(root)}") from None
    ok = pa.compute.equal(table.column("status"), "ok").to_numpy(zero_copy_only=False)
    rows = table.column("row").to_numpy(zero_copy_only=False)
    ok_rows = np.sort(rows[ok.astype(bool)])
    if table.num_rows != shard.records or not np.array_equal(ok_rows, np.arange(shard.rows)):
        raise StoreError(f"{path} does not match its commit record ({table.num_rows} records, "
                         f"{len(ok_rows)} vectors; expected {shard.records}, {shard.rows}); {remedy(root)}")
    return table.append_column("shard", pa.array(np.full(table.num_rows, shard.id, np.int64)))
