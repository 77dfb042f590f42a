"""Writing a store: one writer at a time (a lock), records journaled, shards published by commits."""

from __future__ import annotations

import fcntl
import json
import os
import re
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.format import (IDENTITY, STORE_FORMAT, CommitRecord, Record, Shard, StoreIdentity,
                           atomic_write, check_shard_cheaply, write_commit, writing)
from vggsim.store.journal import JournalWriter, check_vector, journal_ids, seal
from vggsim.store.layout import commit_stamp, has_data, read_commit, read_identity
from vggsim.store.snapshot import Store

SHARD_FILE = re.compile(r"^(\d{6})\.(npy|parquet)$")


def lock_store(root: Path) -> IO[str]:
    """The store's exclusive lock (released when the returned file is closed)."""
    with writing(root / ".lock"):
        lock = open(root / ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise StoreError(f"{root} is being written by another process; wait for it to finish.") from None
    return lock


def fresh_id(root: Path, commit: CommitRecord) -> int:
    """An id above every id a journal, shard or damaged shard ever had in this store."""
    used = {commit.next_id - 1, *(s.id for s in commit.shards), *journal_ids(root / "journal")}
    for sub in ("vectors", "meta", "damaged"):
        used |= journal_ids(root / sub)
    return max(used) + 1


#: What an interrupted store creation can leave in a folder (made before store.json is written).
_CREATION_LEFTOVERS = frozenset({"vectors", "meta", "journal", ".lock"})


def refuse_foreign_folder(root: Path) -> None:
    """Refuse to turn a user's non-empty folder into a store (``--store photos`` typed by mistake
    would mix store files into the photo folder). An empty folder, a store, or the empty
    skeleton an interrupted creation left is fine; a store that lost store.json is refused
    later by read_identity with its own advice."""
    if not root.is_dir() or (root / IDENTITY).exists() or has_data(root):
        return
    entries = {entry.name for entry in root.iterdir()}
    if entries - _CREATION_LEFTOVERS or any(any((root / sub).iterdir()) for sub in entries & {"vectors", "meta", "journal"}):
        raise StoreError(f"{root} exists and is not a vggsim store (no store.json); choose a new or empty folder")


def open_writer(root: Path, identity: StoreIdentity) -> StoreWriter:
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} exists and is not a folder.")
    refuse_foreign_folder(root)
    with writing(root):
        for sub in ("vectors", "meta", "journal"):
            (root / sub).mkdir(parents=True, exist_ok=True)
    lock = lock_store(root)
    try:
        if (root / IDENTITY).exists() or has_data(root):
            existing = read_identity(root)  # refuses a store whose identity it cannot read
            existing.require_compatible(identity, str(root))
            identity = existing  # its storage dtype wins: it was chosen when the store was made
        else:
            body = json.dumps({"format": STORE_FORMAT, **identity.to_dict()}, indent=2).encode()
            atomic_write(root / IDENTITY, lambda fp: fp.write(body))
            write_commit(root, CommitRecord(0, 1, ()))
        commit, _ = read_commit(root)
        for shard in commit.shards:
            check_shard_cheaply(root, shard, identity.dim)
        commit, notes = recover(root, identity, commit)
        store = Store(root, identity, commit, commit_stamp(root))
        return StoreWriter(store, lock, notes)
    except BaseException:
        lock.close()
        raise


def recover(root: Path, identity: StoreIdentity, commit: CommitRecord) -> tuple[CommitRecord, list[str]]:
    """Seal what killed writers left in journals, commit it, and remove every uncommitted part.

    A journal whose id is already a committed shard was sealed before the kill: it is only
    removed. Shard files the commit record does not list are never adopted.
    """
    committed = {s.id for s in commit.shards}
    leftovers = sorted(journal_ids(root / "journal"))
    notes: list[str] = []
    recovered: list[Shard] = []
    for journal in leftovers:
        if journal in committed:
            continue
        shard, dropped = seal(root, journal, identity.dim, identity.dtype)
        notes += dropped
        damaged = [note for note in dropped if "garbled" in note or "checksum" in note]
        if damaged:  # not what a kill leaves: say so, once per journal (the files are embedded again)
            warnings.warn(f"{root / 'journal'}: {len(damaged)} damaged journal records dropped ({damaged[0]}); "
                          "their files count as not embedded and the next `vggsim embed` embeds them",
                          RuntimeWarning, stacklevel=3)
        if shard is not None:
            recovered.append(shard)
            notes.append(f"recovered {shard.records} records of an interrupted run")
    if recovered:
        commit = CommitRecord(commit.generation + 1, max(commit.next_id, max(s.id for s in recovered) + 1),
                              commit.shards + tuple(recovered))
        write_commit(root, commit)
    committed = {s.id for s in commit.shards}
    with writing(root / "journal"):
        for part in (root / "journal").iterdir():
            part.unlink(missing_ok=True)
        for sub in ("vectors", "meta"):
            for part in (root / sub).iterdir():
                match = SHARD_FILE.match(part.name)
                if (match and int(match.group(1)) not in committed) or (part.name.startswith(".") and part.name.endswith(".tmp")):
                    part.unlink(missing_ok=True)
        for tmp in root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    return commit, notes


class StoreWriter:
    """Adds records to a store; :meth:`commit` publishes them, :meth:`close` commits and unlocks.

    After any failed write (a full disk...) the writer refuses further work: what it had
    flushed stays in its journal and is recovered by the next writer.
    """

    @classmethod
    def open(cls, root: str | os.PathLike[str], identity: StoreIdentity) -> StoreWriter:
        """Create or reopen the store at ``root`` for ``identity`` and take its exclusive lock."""
        return open_writer(Path(root), identity)

    def __init__(self, store: Store, lock: IO[str], recovery_notes: list[str]) -> None:
        self.store = store
        self.recovery_notes = recovery_notes  # what was recovered or dropped from killed runs
        self._lock: IO[str] | None = lock
        self._failed: str | None = None
        self._journal: JournalWriter | None = None
        self._journal = self._guard(lambda: JournalWriter(
            store.root / "journal", fresh_id(store.root, store.commit_record), store.identity.dim))

    def _guard(self, action: Any) -> Any:
        if self._failed is not None:
            raise StoreError(f"{self.store.root}: this writer stopped after an earlier error ({self._failed})")
        if self._lock is None:
            raise StoreError(f"{self.store.root}: the writer is closed")
        try:
            return action()
        except StoreError as exc:
            self._failed = str(exc)
            raise

    @property
    def pending(self) -> int:
        """Records added since the last commit."""
        return self._journal.records if self._journal is not None else 0

    def add(self, record: Record, vector: np.ndarray | None = None) -> None:
        """Append one record (its vector exactly when status is 'ok')."""
        checked = check_vector(vector, record, self.store.identity.dim)
        journal = self._journal
        assert journal is not None
        self._guard(lambda: journal.add(record, checked))

    def flush(self) -> None:
        """Push what was added to the OS: after this a kill -9 loses none of it."""
        journal = self._journal
        assert journal is not None
        self._guard(journal.flush)

    def commit(self) -> Store:
        """Publish what was added as a new shard (readers see it from now on); the new snapshot."""
        return self._guard(self._commit)  # type: ignore[no-any-return]

    def _commit(self) -> Store:
        journal, store = self._journal, self.store
        assert journal is not None
        if journal.records == 0:
            return store
        journal.flush()
        journal.close()
        shard, _ = seal(store.root, journal.id, store.identity.dim, store.identity.dtype, journal.lines)
        old = store.commit_record
        commit = CommitRecord(old.generation + 1, max(old.next_id, journal.id + 1),
                              old.shards + ((shard,) if shard is not None else ()))
        write_commit(store.root, commit)
        journal.remove()
        self._journal = None
        self.store = Store(store.root, store.identity, commit, commit_stamp(store.root))
        self._journal = JournalWriter(store.root / "journal", fresh_id(store.root, commit), store.identity.dim)
        return self.store

    def close(self) -> Store:
        """Commit what was added and release the lock (only the lock after an earlier failure)."""
        if self._lock is None:
            return self.store
        try:
            if self._failed is None:
                self.commit()
        finally:
            if self._journal is not None:
                if self._failed is None and self._journal.records == 0:
                    self._journal.remove()
                else:
                    self._journal.close()
            self._lock.close()
            self._lock = None
        return self.store

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
