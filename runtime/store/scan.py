"""The store's current view, streamed shard by shard, without building its tables.

:meth:`Store.table` builds the current view as pyarrow tables of every column (about
0.5 GB at 1M files, growing with the store); a job that only needs the vectors, in
blocks, with their ids (an index build, an export) pays for that. The scan here reads
the committed meta files one at a time, only their ``path_bytes``, ``status`` and ``row``
columns, and keeps per record a 16-byte digest of its name until it knows which record
is the latest of each name (peak measured: 45-60 bytes per committed record, 237 MB at 1M
records with the interpreter). What it keeps afterwards is about 9 bytes per current
record (its position in its shard's meta file, its vector row).

Ids are the same as :meth:`Store.records` positions: the current view is the latest
record per name (in commit order), deleted ones left out, ordered by commit order. Two
names are taken as one only if their 128-bit BLAKE2b digests are equal (a chance below
1e-20 for 10^9 names in one store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.checksum import require_intact
from vggsim.store.format import CommitRecord, Shard, pyarrow, remedy, shard_name
from vggsim.store.journal import conform_meta
from vggsim.store.rows import ShardFile

SCANNED = ("path_bytes", "status", "row")


@dataclass(frozen=True, eq=False)
class ShardView:
    """The current records of one committed shard, in meta order (ascending ids from ``first_id``)."""

    shard: Shard
    positions: np.ndarray  # int32: the records' positions in the shard's meta file
    rows: np.ndarray       # int32: their vector rows, -1 where they have none (status error)
    first_id: int          # the id of positions[0]

    @property
    def ids(self) -> np.ndarray:
        return np.arange(self.first_id, self.first_id + len(self.positions), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class CurrentView:
    """The layout of a snapshot's current view: which record of which shard each id is."""

    shards: tuple[ShardView, ...]
    records: int  # ids 0 .. records-1
    vectors: int  # of which have a vector


def read_meta_columns(root: Path, shard: Shard, columns: tuple[str, ...] | list[str]) -> Any:
    """Some columns of a committed shard's meta file (checked against its sha256 first)."""
    pa = pyarrow()
    path = root / shard_name(shard.id, "meta")
    require_intact(path, shard.files[shard_name(shard.id, "meta")], root)
    try:
        present = set(pa.parquet.read_schema(path).names)
        table = conform_meta(pa.parquet.read_table(path, columns=[c for c in columns if c in present]), list(columns))
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in the parser in any way
        raise StoreError(f"{path}: cannot read the committed meta file ({str(exc)[:100]}); {remedy(root)}") from None
    if table.num_rows != shard.records:
        raise StoreError(f"{path} holds {table.num_rows} records, its commit record says {shard.records}; "
                         f"{remedy(root)}")
    return table


def _digests(names: Any) -> np.ndarray:
    """(n, 2) uint64: a 128-bit digest per name (binary column)."""
    joined = b"".join(hashlib.blake2b(name, digest_size=16).digest() for name in names.to_pylist())
    return np.frombuffer(joined, np.uint64).reshape(-1, 2)


def scan(root: Path, commit: CommitRecord) -> CurrentView:
    """Read the committed shards' meta files one by one and lay out the current view."""
    pa = pyarrow()
    total = sum(shard.records for shard in commit.shards)
    key = np.empty((total, 2), np.uint64)  # filled shard by shard: no list of parts to concatenate
    kinds, rows, start = [], [], 0
    for shard in commit.shards:
        table = read_meta_columns(root, shard, SCANNED)
        status = table.column("status")
        kind = np.where(pa.compute.equal(status, "ok").to_numpy(zero_copy_only=False), 1,
                        np.where(pa.compute.equal(status, "deleted").to_numpy(zero_copy_only=False), 2, 0))
        row = pa.compute.fill_null(table.column("row"), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if not np.array_equal(np.sort(row[kind == 1]), np.arange(shard.rows)):
            raise StoreError(f"{root / shard_name(shard.id, 'meta')} does not match its commit record "
                             f"({int((kind == 1).sum())} vectors, expected {shard.rows}); {remedy(root)}")
        key[start:start + shard.records] = _digests(table.column("path_bytes"))
        kinds.append(kind.astype(np.int8))
        rows.append(np.where(kind == 1, row, -1).astype(np.int32))
        start += shard.records
        del table, status, row
    latest = np.zeros(total, bool)
    if total:
        order = np.lexsort((key[:, 1], key[:, 0]))  # stable: commit order within a name
        last = np.ones(total, bool)  # the last of each run of equal names is its latest record
        for column in (0, 1):  # one 8-byte column at a time: no sorted copy of the whole key
            ordered = key[order, column]
            last[:-1] &= ordered[1:] == ordered[:-1]
            del ordered
        last[:-1] = ~last[:-1]
        latest[order[last]] = True
        del order, last
    del key
    views, start, next_id, with_vectors = [], 0, 0, 0
    for shard, kind, row in zip(commit.shards, kinds, rows):
        keep = latest[start:start + len(kind)] & (kind != 2)
        positions = np.flatnonzero(keep).astype(np.int32)
        views.append(ShardView(shard, positions, row[positions], next_id))
        with_vectors += int((row[positions] >= 0).sum())
        next_id += len(positions)
        start += len(kind)
    return CurrentView(tuple(views), next_id, with_vectors)


def vector_blocks(view: CurrentView, open_file: Callable[[int], ShardFile],
                  block_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, float32 vectors) of the current view's vectors, at most ``block_rows`` at a time, each
    id once, in row order. ``open_file(shard_id)`` opens a shard's checked vectors file (see
    :mod:`vggsim.store.rows`); a block whose rows lie close together is read with one pread of their
    span, others one pread per row."""
    for part in view.shards:
        has = part.rows >= 0
        ids, rows = part.ids[has], part.rows[has].astype(np.int64)
        if not len(ids):
            continue
        order = np.argsort(rows, kind="stable")
        ids, rows = ids[order], rows[order]
        with open_file(part.shard.id) as file:
            for start in range(0, len(ids), block_rows):
                picked = rows[start:start + block_rows]
                span = int(picked[-1] - picked[0]) + 1
                if span <= 2 * len(picked):
                    vectors = file.span(int(picked[0]), span)
                    vectors = vectors if span == len(picked) else np.ascontiguousarray(vectors[picked - picked[0]])
                else:
                    vectors = file.take(picked)
                yield ids[start:start + block_rows], vectors


def record_blocks(root: Path, view: CurrentView, columns: list[str]) -> Iterator[tuple[np.ndarray, Any]]:
    """(ids, pyarrow table of ``columns``) of the current view, one shard at a time, ids ascending."""
    for part in view.shards:
        if len(part.positions):
            table = read_meta_columns(root, part.shard, columns)
            yield part.ids, table.take(part.positions)


def sample_rows(view: CurrentView, open_file: Callable[[int], ShardFile], count: int,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of ``min(count, view.vectors)`` vectors drawn uniformly without
    replacement, read shard by shard in row order (one pass over only the rows drawn)."""
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.choice(view.vectors, min(count, view.vectors), replace=False))
    ids_out, vectors_out, start = [], [], 0
    for part in view.shards:
        has = part.rows >= 0
        here = drawn[(drawn >= start) & (drawn < start + int(has.sum()))] - start
        start += int(has.sum())
        if not len(here):
            continue
        ids, rows = part.ids[has][here], part.rows[has][here].astype(np.int64)
        order = np.argsort(rows)
        with open_file(part.shard.id) as file:
            vectors_out.append(file.take(rows[order]))
        ids_out.append(ids[order])
    if not ids_out:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate(ids_out), np.concatenate(vectors_out)
