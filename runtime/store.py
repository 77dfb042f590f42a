"""An embedding store: a folder that pandas and pyarrow read, safe against kill -9.

Layout::

    STORE/store.json            identity: model sha256, preprocessing spec, dim, dtype
    STORE/vectors/000001.npy    vectors of shard 1 (float32, or float16 by choice)
    STORE/meta/000001.parquet   one row per file: path, size, mtime_ns, sha256, width,
                                height, status (ok|error|deleted), error_kind, error, row
    STORE/journal/              the shard being written: raw vectors + JSON lines

A run appends to a journal, flushed after every batch. Whoever opens the store for
writing next (the same command, rerun) seals leftover journals into shards, keeping every
complete record, so a kill loses at most the batch in flight. The latest record for a
path wins; ``pd.read_parquet("STORE/meta")`` shows the full history.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np

from .errors import StoreError, require

STORE_FORMAT = 1
COLUMNS = ("path", "size", "mtime_ns", "sha256", "width", "height", "status", "error_kind", "error", "row")


def _pyarrow() -> Any:
    require("pyarrow", "store", "An embedding store")
    import pyarrow
    import pyarrow.parquet

    return pyarrow


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fp:
        write(fp)
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Block:
    """A slice of a store's current vectors: ``ids`` index :meth:`Store.table` rows."""

    ids: np.ndarray
    vectors: np.ndarray


class Store:
    """An embedding store folder. Open with :meth:`open` (read) or :meth:`open_for_writing`."""

    def __init__(self, root: Path, identity: dict[str, Any]) -> None:
        self.root, self.identity = root, identity
        self.dim: int = int(identity["dim"])
        self.dtype = np.dtype(identity["dtype"])
        self._table: Any = None

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Store:
        """Open an existing store for reading."""
        path = Path(root)
        if not (path / "store.json").is_file():
            raise StoreError(f"{path} is not a vggsim store (no store.json); create it with `vggsim embed`.")
        return cls(path, json.loads((path / "store.json").read_text(encoding="utf-8")))

    @classmethod
    def open_for_writing(cls, root: str | os.PathLike[str], identity: dict[str, Any],
                         dtype: str = "float32") -> StoreWriter:
        """Create or reopen a store for ``identity`` (model sha256 + preprocessing) and lock it."""
        _pyarrow()
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} exists and is not a folder.")
        for sub in ("vectors", "meta", "journal"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        lock = open(path / ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StoreError(f"{path} is being written by another process; wait for it to finish.") from None
        wanted = {"format": STORE_FORMAT, **identity, "dtype": dtype}
        meta = path / "store.json"
        if meta.is_file():
            existing = json.loads(meta.read_text(encoding="utf-8"))
            for key in ("model_sha256", "preprocess", "dim"):
                if existing.get(key) != wanted.get(key):
                    lock.close()
                    raise StoreError(
                        f"{path} holds embeddings from a different {key.replace('_', ' ')} "
                        f"({str(existing.get(key))[:80]}) than this model ({str(wanted.get(key))[:80]}). "
                        "Mixing them would make scores meaningless: use another --store, or the model that made it.")
            wanted = existing
        else:
            _atomic_write(meta, lambda fp: fp.write(json.dumps(wanted, indent=2).encode()))
        store = cls(path, wanted)
        store.seal_journals()
        return StoreWriter(store, lock)

    def shard_ids(self) -> list[int]:
        return sorted(int(p.stem) for p in (self.root / "meta").glob("*.parquet"))

    def seal_journals(self) -> None:
        """Turn leftover journals (from a killed run) into shards, keeping complete records."""
        for journal in sorted((self.root / "journal").glob("*.jsonl")):
            shard = int(journal.stem)
            vec = journal.with_suffix(".vec")
            if (self.root / "meta" / f"{shard:06d}.parquet").exists():
                journal.unlink()  # sealed already; the kill came before the cleanup
                vec.unlink(missing_ok=True)
                continue
            row_bytes = self.dim * 4
            rows = (vec.stat().st_size // row_bytes) if vec.exists() else 0
            vectors = np.fromfile(vec, dtype=np.float32, count=rows * self.dim).reshape(rows, self.dim) \
                if rows else np.zeros((0, self.dim), np.float32)
            records = []
            with open(journal, encoding="utf-8") as fp:
                for line in fp:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break  # the torn last line of a killed run
                    if record["row"] < rows:
                        records.append(record)
            if records:
                self._write_shard(shard, vectors, records)
            journal.unlink()
            vec.unlink(missing_ok=True)

    def _write_shard(self, shard: int, vectors: np.ndarray, records: list[dict[str, Any]]) -> None:
        pa = _pyarrow()
        _atomic_write(self.root / "vectors" / f"{shard:06d}.npy",
                      lambda fp: np.save(fp, vectors.astype(self.dtype), allow_pickle=False))
        columns = {c: [r.get(c) for r in records] for c in COLUMNS}
        table = pa.table(columns, schema=pa.schema([
            ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("sha256", pa.string()),
            ("width", pa.int32()), ("height", pa.int32()), ("status", pa.string()),
            ("error_kind", pa.string()), ("error", pa.string()), ("row", pa.int64())]))
        _atomic_write(self.root / "meta" / f"{shard:06d}.parquet", lambda fp: pa.parquet.write_table(table, fp))

    def history(self) -> Any:
        """Every record of every shard, oldest first, with ``shard`` and ``seq`` columns."""
        pa = _pyarrow()
        tables = []
        for shard in self.shard_ids():
            table = pa.parquet.read_table(self.root / "meta" / f"{shard:06d}.parquet")
            tables.append(table.append_column("shard", pa.array([shard] * table.num_rows, pa.int64())))
        if not tables:
            empty = {c: pa.array([], pa.string() if c in ("path", "sha256", "status", "error_kind", "error")
                                 else pa.int64()) for c in (*COLUMNS, "shard")}
            tables.append(pa.table(empty))
        history = pa.concat_tables(tables, promote_options="permissive")
        return history.append_column("seq", pa.array(np.arange(history.num_rows), pa.int64()))

    def table(self) -> Any:
        """The current view: the latest record per path, files deleted by prune left out."""
        if self._table is None:
            _pyarrow()
            import pyarrow.compute as pc

            history = self.history()
            latest = history.group_by("path").aggregate([("seq", "max")]).column("seq_max")
            current = history.take(np.sort(latest.to_numpy()))  # seq is the row number in history
            self._table = current.filter(pc.not_equal(current.column("status"), "deleted"))
        return self._table

    def blocks(self, block_rows: int = 16384) -> Iterator[Block]:
        """The current ok vectors in blocks of at most ``block_rows``, as float32.

        Shards are read window by window with plain reads, not memory-mapped, so resident
        memory stays at a block or two whatever the size of the store.
        """
        import pyarrow.compute as pc

        table = self.table()
        status = pc.equal(table.column("status"), "ok").to_numpy(zero_copy_only=False)
        shards = table.column("shard").to_numpy()
        rows = table.column("row").to_numpy()
        for shard in np.unique(shards[status]):
            ids = np.flatnonzero(status & (shards == shard))
            ids = ids[np.argsort(rows[ids], kind="stable")]
            shard_rows = rows[ids]
            with open(self.root / "vectors" / f"{shard:06d}.npy", "rb") as fp:
                version = np.lib.format.read_magic(fp)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(fp)
                header, width = fp.tell(), int(shape[1])
                for start in range(0, int(shape[0]), block_rows):
                    lo, hi = np.searchsorted(shard_rows, [start, start + block_rows])
                    if lo == hi:
                        continue
                    fp.seek(header + start * width * dtype.itemsize)
                    window = np.fromfile(fp, dtype=dtype, count=min(block_rows, int(shape[0]) - start) * width)
                    window = window.reshape(-1, width)
                    yield Block(ids[lo:hi], np.asarray(window[shard_rows[lo:hi] - start], dtype=np.float32))

    def next_shard_id(self) -> int:
        journals = [int(p.stem) for p in (self.root / "journal").glob("*.jsonl")]
        return max(self.shard_ids() + journals + [0]) + 1


class StoreWriter:
    """Appends records to a journal; :meth:`close` seals it into a shard and releases the lock."""

    def __init__(self, store: Store, lock: Any) -> None:
        self.store, self._lock = store, lock
        shard = store.next_shard_id()
        journal = store.root / "journal" / f"{shard:06d}"
        self._vec = open(journal.with_suffix(".vec"), "ab")
        self._meta = open(journal.with_suffix(".jsonl"), "a", encoding="utf-8")
        self._rows = 0

    def add(self, path: str, status: str, vector: np.ndarray | None = None, info: Any = None,
            error_kind: str | None = None, error: str | None = None) -> None:
        """Append one record; vectors go to the journal before their metadata line.

        ``info`` is a :class:`~vggsim.pipeline.FileInfo`; for a failed file the size and
        mtime are taken from the file itself (if it exists), so an unchanged bad file is
        not retried on every run.
        """
        row = -1
        if vector is not None:
            self._vec.write(np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            row, self._rows = self._rows, self._rows + 1
        record = {"path": path, "status": status, "row": row, "error_kind": error_kind, "error": error}
        if info is not None:
            record.update(size=info.size, mtime_ns=info.mtime_ns, sha256=info.sha256,
                          width=info.width, height=info.height)
        elif status == "error":
            try:
                stat = os.stat(path)
                record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            except OSError:
                pass
        self._meta.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Push what was added to the OS: after this a kill -9 loses none of it."""
        self._vec.flush()
        self._meta.flush()

    def close(self) -> Store:
        self.flush()
        self._vec.close()
        self._meta.close()
        self.store.seal_journals()
        self._lock.close()
        self.store._table = None
        return self.store

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
