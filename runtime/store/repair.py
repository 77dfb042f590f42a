"""Checking every committed byte of a store, and repairing one whose shards are damaged."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.format import (COMMIT, IDENTITY, CommitRecord, Shard, check_shard_cheaply, fsync_dir, npy_layout, pyarrow,
                           sha256_file, shard_name, write_commit, writing)
from vggsim.store.journal import SHARD_TAG, journal_ids
from vggsim.store.layout import has_data, read_commit, read_identity, read_meta
from vggsim.store.verify import VerifyReport, verify_shards
from vggsim.store.writer import SHARD_FILE, lock_store


@dataclass
class RepairReport:
    dropped_shards: list[int]      # shards taken out of the commit record
    records_dropped: int           # their records: those files count as never embedded
    moved: list[str]               # files moved to STORE/damaged/
    rebuilt_commit: bool           # the commit record was missing or garbled and was rebuilt
    generation: int                # the commit generation after the repair
    problems: list[str] = field(default_factory=list)
    not_adopted: list[str] = field(default_factory=list)  # shards a lost commit record cannot prove, and why


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


def _shard_tag(meta: Path) -> dict[str, object]:
    """The shard id and vectors checksum ``seal`` wrote into the meta file's schema ({} if none)."""
    metadata = pyarrow().parquet.read_schema(meta).metadata or {}
    tag = json.loads(metadata.get(SHARD_TAG, b"{}"))
    return tag if isinstance(tag, dict) else {}


def _rebuild_commit(root: Path, dim: int) -> tuple[CommitRecord, list[int], list[str]]:
    """A commit record of the shards on disk provably committed, for a store that lost its own.

    Returns the record, the ids of the shard files not adopted, and why. See :func:`repair`.
    """
    journals = journal_ids(root / "journal")
    ids = sorted({int(m.group(1)) for sub in ("vectors", "meta") for p in (root / sub).iterdir()
                  if (m := SHARD_FILE.match(p.name))})
    shards, refused, why = [], [], []
    for shard_id in ids:
        names = (shard_name(shard_id, "vectors"), shard_name(shard_id, "meta"))
        if shard_id in journals:  # sealed, never committed: the next writer recovers its journal
            continue
        try:
            if not all((root / name).is_file() for name in names):
                raise StoreError("its vectors or meta file is missing")
            files = {name: {"size": (root / name).stat().st_size, "sha256": sha256_file(root / name)} for name in names}
            tag = _shard_tag(root / names[1])
            if tag.get("id") != shard_id or tag.get("vectors_sha256") != files[names[0]]["sha256"]:
                raise StoreError("its meta file does not name it as this shard with these vectors (a copy, "
                                 "a backup or a shard from an older vggsim)")
            shape, dtype = npy_layout(root / names[0])
            table = pyarrow().parquet.read_table(root / names[1])
            shard = Shard(shard_id, table.num_rows, int(shape[0]), dtype.str, files)
            check_shard_cheaply(root, shard, dim)
            read_meta(root, shard)
        except Exception as exc:  # noqa: BLE001 - anything unreadable or unproven is simply not adopted
            refused.append(shard_id)
            why.append(f"shard {shard_id:06d} not adopted: {str(exc).split('; run `vggsim')[0]}")
            continue
        shards.append(shard)
    return CommitRecord(1, max([*ids, *journals, 0]) + 1, tuple(shards)), refused, why


def repair(root: str | os.PathLike[str]) -> RepairReport:
    """Drop damaged shards from the commit record (their files go to STORE/damaged/).

    The files those shards held then count as never embedded (or fall back to an older
    record of theirs), so the next ``vggsim embed`` of the same inputs re-embeds them.

    A missing or garbled ``commit.json`` is rebuilt from the shards that are provably
    committed, and only those. The rule: ``seal`` writes each shard's id and its vectors'
    sha256 into the meta file's parquet metadata; shard ids are never reused and shards
    are never rewritten, and a shard sealed but not committed still has its journal. So a
    shard N is adopted when its meta file names id N and the sha256 of the vectors beside
    it, both files read back consistently (rows, dim, meta), and no journal N exists. A
    copy under another number, a vectors/meta pair from different shards, and shards
    written by a vggsim older than this rule are not adopted: their files move to
    STORE/damaged/ and are listed in ``not_adopted``; the files they held count as not
    embedded and the next ``vggsim embed`` re-embeds them (or re-create the store).
    """
    path = Path(root)
    identity = read_identity(path)  # without it nothing says which model made the vectors
    lock = lock_store(path)
    try:
        damaged_dir = path / "damaged"
        moved: list[str] = []
        rebuilt = False
        refused: list[int] = []
        not_adopted: list[str] = []
        try:
            commit, _ = read_commit(path)
        except StoreError:
            rebuilt = True
            commit, refused, not_adopted = _rebuild_commit(path, identity.dim)
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
            names = [name for shard in dropped for name in shard.files]
            names += [shard_name(i, kind) for i in refused for kind in ("vectors", "meta")]
            for name in names:
                damaged_dir.mkdir(exist_ok=True)
                if (path / name).exists():
                    os.replace(path / name, damaged_dir / Path(name).name)
                    moved.append(str(damaged_dir / Path(name).name))
            if moved:
                fsync_dir(damaged_dir)
        return RepairReport([s.id for s in dropped], int(np.sum([s.records for s in dropped])), moved, rebuilt,
                            commit.generation, report.problems, not_adopted)
    finally:
        lock.close()
