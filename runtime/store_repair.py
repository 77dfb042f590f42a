"""Checking every committed byte of a store, and repairing one whose shards are damaged."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import StoreError
from .store_format import (COMMIT, IDENTITY, CommitRecord, Shard, check_shard_cheaply, fsync_dir, npy_layout, pyarrow,
                           sha256_file, shard_name, write_commit, writing)
from .store_journal import journal_ids
from .store_reader import has_data, read_commit, read_identity, read_meta
from .store_writer import SHARD_FILE, lock_store


@dataclass
class VerifyReport:
    """``ok`` when every committed shard checks out; ``problems`` name the damaged files."""

    ok: bool
    shards: int
    rows: int
    problems: list[str] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)  # ids of the damaged shards


@dataclass
class RepairReport:
    dropped_shards: list[int]      # shards taken out of the commit record
    records_dropped: int           # their records: those files count as never embedded
    moved: list[str]               # files moved to STORE/damaged/
    rebuilt_commit: bool           # the commit record was missing or garbled and was rebuilt
    generation: int                # the commit generation after the repair
    problems: list[str] = field(default_factory=list)


def _shard_problems(root: Path, shard: Shard, dim: int) -> list[str]:
    problems = []
    for name, entry in shard.files.items():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, the commit record says {entry['size']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from the commit record (the file was damaged or replaced)")
    if problems:
        return problems
    try:
        check_shard_cheaply(root, shard, dim)
        read_meta(root, shard)
    except StoreError as exc:
        problems.append(str(exc).split("; run `vggsim")[0])
    return problems


def verify_shards(root: Path, dim: int, commit: CommitRecord) -> VerifyReport:
    """Check every shard of ``commit`` in full: files, sizes, sha256, header, rows, meta."""
    report = VerifyReport(True, len(commit.shards), 0)
    for shard in commit.shards:
        problems = _shard_problems(root, shard, dim)
        if problems:
            report.problems += problems
            report.damaged.append(shard.id)
        else:
            report.rows += shard.rows
    report.ok = not report.problems
    return report


def verify_store(root: str | os.PathLike[str]) -> VerifyReport:
    """Like :meth:`Store.verify`, but also for a store too damaged to open.

    A folder that is missing, or holds nothing a writer made, is no store at all (nothing to
    repair): StoreError "no store at PATH", not a report of damage.
    """
    path = Path(root)
    if not path.is_dir():
        raise StoreError(f"no store at {path} (no such folder)")
    if not (path / IDENTITY).exists() and not has_data(path):
        raise StoreError(f"no store at {path} (no store.json, no embeddings): not a vggsim store")
    try:
        identity = read_identity(path)
        commit, _ = read_commit(path)
    except StoreError as exc:
        return VerifyReport(False, 0, 0, [str(exc)])
    return verify_shards(path, identity.dim, commit)


def _rebuild_commit(root: Path, dim: int) -> CommitRecord:
    """A commit record of the shards on disk that check out, for a store that lost its own.

    Shards that still have a journal are left out: the next writer recovers that journal.
    """
    journals = journal_ids(root / "journal")
    ids = sorted({int(m.group(1)) for p in (root / "vectors").iterdir() if (m := SHARD_FILE.match(p.name))} - journals)
    shards = []
    for shard_id in ids:
        files = {}
        for kind in ("vectors", "meta"):
            path = root / shard_name(shard_id, kind)
            if path.is_file():
                files[shard_name(shard_id, kind)] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        if len(files) != 2:
            continue
        try:
            shape, dtype = npy_layout(root / shard_name(shard_id, "vectors"))
            table = pyarrow().parquet.read_table(root / shard_name(shard_id, "meta"))
            shard = Shard(shard_id, table.num_rows, int(shape[0]), dtype.str, files)
            check_shard_cheaply(root, shard, dim)
            read_meta(root, shard)
        except Exception:  # noqa: BLE001 - anything unreadable is simply not adopted
            continue
        shards.append(shard)
    return CommitRecord(1, max([*ids, *journals, 0]) + 1, tuple(shards))


def repair(root: str | os.PathLike[str]) -> RepairReport:
    """Drop damaged shards from the commit record (their files go to STORE/damaged/).

    The files those shards held then count as never embedded (or fall back to an older
    record of theirs), so the next ``vggsim embed`` of the same inputs re-embeds them.
    """
    path = Path(root)
    identity = read_identity(path)  # without it nothing says which model made the vectors
    lock = lock_store(path)
    try:
        damaged_dir = path / "damaged"
        moved: list[str] = []
        rebuilt = False
        try:
            commit, _ = read_commit(path)
        except StoreError:
            rebuilt = True
            commit = _rebuild_commit(path, identity.dim)
            if (path / COMMIT).exists():
                with writing(damaged_dir):
                    damaged_dir.mkdir(exist_ok=True)
                    target = damaged_dir / f"commit.json.{time.strftime('%Y%m%dT%H%M%S')}"
                    os.replace(path / COMMIT, target)
                moved.append(str(target))
        report = verify_shards(path, identity.dim, commit)
        dropped = [s for s in commit.shards if s.id in report.damaged]
        if dropped or rebuilt:  # first the commit record: readers never see a committed file go missing
            kept = tuple(s for s in commit.shards if s.id not in report.damaged)
            commit = CommitRecord(commit.generation + 1, commit.next_id, kept)
            write_commit(path, commit)
        with writing(damaged_dir):
            for shard in dropped:
                damaged_dir.mkdir(exist_ok=True)
                for name in shard.files:
                    if (path / name).exists():
                        os.replace(path / name, damaged_dir / Path(name).name)
                        moved.append(str(damaged_dir / Path(name).name))
            if moved:
                fsync_dir(damaged_dir)
        return RepairReport([s.id for s in dropped], int(np.sum([s.records for s in dropped])), moved, rebuilt,
                            commit.generation, report.problems)
    finally:
        lock.close()
