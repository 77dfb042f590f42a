"""Reading a store: an immutable snapshot of one commit, safe to share between threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.format import (Block, CommitRecord, Record, StoreIdentity, check_shard_cheaply, content_digest,
                                 pyarrow)
from vggsim.store.journal import meta_schema
from vggsim.store.rows import ShardFile, ShardFiles
from vggsim.store.scan import CurrentView, record_blocks, sample_rows, scan, vector_blocks
from vggsim.store.layout import Stamp, commit_stamp, read_commit, read_identity, read_meta
from vggsim.store.verify import VerifyReport, verify_shards

class Store:
    """An immutable, consistent snapshot of what was committed to a store folder."""

    def __init__(self, root: Path, identity: StoreIdentity, commit: CommitRecord, stamp: Stamp) -> None:
        self.root, self.identity, self.generation = root, identity, commit.generation
        self.dim = identity.dim
        self.commit_record, self._stamp = commit, stamp
        self._lock = threading.Lock()
        self._history: Any = None
        self._current: Any = None
        self._records: list[Record] | None = None
        self._paths: list[str] | None = None
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._view: CurrentView | None = None
        self._shards = {s.id: s for s in commit.shards}
        #: what this snapshot holds (see :func:`vggsim.store.format.content_digest`): another store at
        #: the same generation, in the same folder, has another digest
        self.digest = content_digest(identity, commit)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Store:
        """Open a store for reading; StoreError naming the file and what to do if it is damaged."""
        path = Path(root)
        if not path.is_dir():
            raise StoreError(f"{path} is not a vggsim store (no such folder); create it with `vggsim embed`.")
        identity = read_identity(path)
        commit, stamp = read_commit(path)
        for shard in commit.shards:
            check_shard_cheaply(path, shard, identity.dim)
        return cls(path, identity, commit, stamp)

    @property
    def snapshot_id(self) -> str:
        """``g<generation>-<16 hex digits of the digest>``: names this snapshot by its content, not
        only its generation (which another store in the same folder can share)."""
        return f"g{self.generation}-{self.digest[:16]}"

    def require_compatible(self, identity: StoreIdentity) -> None:
        self.identity.require_compatible(identity, str(self.root))

    def is_stale(self) -> bool:
        """Whether a newer commit exists on disk (one stat call)."""
        return commit_stamp(self.root) != self._stamp

    def history(self) -> Any:
        """Every committed record, oldest first, with ``shard`` and ``seq`` columns (a pyarrow Table)."""
        with self._lock:
            if self._history is None:
                pa = pyarrow()
                tables = [read_meta(self.root, shard) for shard in self.commit_record.shards]
                if not tables:
                    empty = meta_schema().append(pa.field("shard", pa.int64()))
                    tables = [empty.empty_table()]
                history = pa.concat_tables(tables)
                self._history = history.append_column("seq", pa.array(np.arange(history.num_rows, dtype=np.int64)))
            return self._history

    def table(self) -> Any:
        """The current view: the latest record per path (by its bytes), deleted files left out."""
        history = self.history()
        with self._lock:
            if self._current is None:
                pa = pyarrow()
                latest = history.group_by("path_bytes").aggregate([("seq", "max")]).column("seq_max")
                current = history.take(np.sort(latest.to_numpy()))  # seq is the row number in history
                self._current = current.filter(pa.compute.not_equal(current.column("status"), "deleted"))
            return self._current

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per id of the current view: has a vector, its shard, its row there."""
        table = self.table()
        with self._lock:
            if self._arrays is None:
                ok = pyarrow().compute.equal(table.column("status"), "ok").to_numpy(zero_copy_only=False)
                self._arrays = (ok.astype(bool), table.column("shard").to_numpy(), table.column("row").to_numpy())
            return self._arrays

    def records(self) -> list[Record]:
        """The current view as Records; ``ids`` in blocks index this list."""
        table = self.table()
        with self._lock:
            if self._records is None:
                columns = [table.column(c).to_pylist() for c in ("path_bytes", "status", "size", "mtime_ns",
                                                                  "sha256", "width", "height", "error_kind", "error",
                                                                  "pixel_sha256")]
                self._records = [Record(os.fsdecode(values[0]), *values[1:]) for values in zip(*columns)]
            return self._records

    def paths(self) -> list[str]:
        """The lossless paths of :meth:`records`, without building the records."""
        table = self.table()
        with self._lock:
            if self._paths is None:
                self._paths = [os.fsdecode(name) for name in table.column("path_bytes").to_pylist()]
            return self._paths

    def count_ok(self) -> int:
        return int(self._layout()[0].sum())

    def vector_file(self, shard: int) -> ShardFile:
        """The committed vectors file of ``shard``, open and checked against its sha256 in the commit
        record (see :mod:`vggsim.store.rows`: read with pread, never memory-mapped); close it after use."""
        return ShardFile(self.root, self._shards[shard], self.dim)

    def vector_files(self) -> ShardFiles:
        """This snapshot's vectors files, each opened (and checked) on first use and kept open until
        ``close()``, every read checked again (one fstat while unchanged): for many small reads."""
        return ShardFiles(self.root, self._shards, self.dim)

    def blocks(self, block_rows: int = 16384) -> Iterator[Block]:
        """The current ok vectors in blocks of at most ``block_rows``, as C-order float32.

        Each window of a shard is read with one pread of its span (never a memory map), so
        resident memory stays at a block or two whatever the size of the store.
        """
        ok, shards, rows = self._layout()
        for shard in self.commit_record.shards:
            ids = np.flatnonzero(ok & (shards == shard.id))
            if not len(ids):
                continue
            ids = ids[np.argsort(rows[ids], kind="stable")]
            shard_rows = rows[ids]
            with self.vector_file(shard.id) as file:
                for start in range(0, shard.rows, block_rows):
                    lo, hi = np.searchsorted(shard_rows, [start, start + block_rows])
                    if lo == hi:
                        continue
                    first = int(shard_rows[lo])
                    span = file.span(first, int(shard_rows[hi - 1]) - first + 1)
                    picked = shard_rows[lo:hi] - first
                    yield Block(ids[lo:hi], span if len(picked) == len(span) else np.ascontiguousarray(span[picked]))

    def current_view(self) -> CurrentView:
        """The current view's layout, read shard by shard without building :meth:`table` (about
        9 bytes per record kept; see :mod:`vggsim.store.scan`). Ids as in :meth:`records`."""
        with self._lock:
            if self._view is None:
                self._view = scan(self.root, self.commit_record)
            return self._view

    def iter_vector_blocks(self, block_rows: int = 16384) -> Iterator[Block]:
        """The current ok vectors as :meth:`blocks` gives them (each id once, C-order float32, at
        most ``block_rows`` per block), but streamed from this snapshot's shards without building
        the current view's tables: memory is :meth:`current_view` plus a block."""
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        for ids, vectors in vector_blocks(self.current_view(), self.vector_file, block_rows):
            yield Block(ids, vectors)

    def sample_vectors(self, count: int, seed: int = 0) -> Block:
        """``count`` (at most all) current vectors drawn uniformly without replacement, reading only
        those rows (see :meth:`iter_vector_blocks`); ids ascend within each shard."""
        ids, vectors = sample_rows(self.current_view(), self.vector_file, count, seed)
        return Block(ids, vectors.reshape(len(ids), self.dim))

    def iter_record_blocks(self, columns: Sequence[str]) -> Iterator[tuple[np.ndarray, Any]]:
        """(ids, pyarrow Table of ``columns`` of the meta schema) for the current view, one shard
        at a time, ids ascending and each once; the streaming counterpart of :meth:`table`."""
        unknown = sorted(set(columns) - set(meta_schema().names))
        if unknown:
            raise ValueError(f"unknown meta columns {unknown}; known: {meta_schema().names}")
        yield from record_blocks(self.root, self.current_view(), list(columns))

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The float32 vectors of these ids (indexes into :meth:`records`), in the order given."""
        ok, shards, rows = self._layout()
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= len(ok) or not ok[wanted].all()):
            raise StoreError(f"{self.root}: some ids have no vector (out of range or not 'ok')")
        out = np.empty((len(wanted), self.dim), np.float32)
        for shard in np.unique(shards[wanted]) if len(wanted) else []:
            where = np.flatnonzero(shards[wanted] == shard)
            with self.vector_file(int(shard)) as file:
                out[where] = file.take(rows[wanted[where]])
        return out

    def verify(self) -> VerifyReport:
        """Check every committed shard of this snapshot in full (sizes, sha256, rows, dim, dtype)."""
        return verify_shards(self.root, self.identity.dim, self.commit_record)
