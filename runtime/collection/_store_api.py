"""INTERIM adapter: the contract's store API (StoreIdentity, Record, Store, StoreWriter) over
today's store.py, until the ``store`` branch lands. Then this module becomes a re-export of
:mod:`vggsim.store` and nothing else in the collection package changes.

It is deliberately thin: no second store, only the names the library codes against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

import numpy as np

from .. import store as _legacy
from ..errors import StoreError

Block = _legacy.Block


@dataclass(frozen=True)
class StoreIdentity:
    model_sha256: str
    preprocess: dict[str, Any] = field(hash=False)
    dim: int
    dtype: str = "float32"

    @classmethod
    def of(cls, embedder: Any, dtype: str = "float32") -> StoreIdentity:
        return cls(embedder.model_sha256, embedder.spec.to_dict(), int(embedder.dim), dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "preprocess": self.preprocess, "dim": self.dim,
                "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreIdentity:
        try:
            return cls(str(data["model_sha256"]), dict(data["preprocess"]), int(data["dim"]),
                       str(data.get("dtype", "float32")))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"store.json is not a valid store identity ({exc}).") from None

    def require_compatible(self, other: StoreIdentity, where: str) -> None:
        for name in ("model_sha256", "preprocess", "dim"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "preprocess":
                    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                    mine = {k: mine.get(k) for k in diff}
                    theirs = {k: theirs.get(k) for k in diff}
                raise StoreError(
                    f"{where} holds embeddings from a different {name.replace('_', ' ')} ({str(mine)[:80]}) "
                    f"than this model ({str(theirs)[:80]}). Mixing them would make scores meaningless: "
                    "use another store, or the model and options that made it.")


@dataclass(frozen=True)
class Record:
    path: str
    status: str
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    error_kind: str | None = None
    error: str | None = None


class Store:
    """A snapshot of the legacy store; ``generation`` is its highest shard number."""

    def __init__(self, legacy: Any) -> None:
        self._legacy = legacy
        self.root: Path = legacy.root
        self.identity = StoreIdentity.from_dict(legacy.identity)
        self.generation: int = max(legacy.shard_ids() + [0])
        self._records: list[Record] | None = None

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Store:
        return cls(_legacy.Store.open(root))

    @classmethod
    def open_for_writing(cls, root: str | os.PathLike[str], identity: StoreIdentity) -> StoreWriter:
        wanted = {k: v for k, v in identity.to_dict().items() if k != "dtype"}
        return StoreWriter(_legacy.Store.open_for_writing(root, wanted, identity.dtype))

    def records(self) -> list[Record]:
        if self._records is None:
            table = self._legacy.table()
            names = [f for f in Record.__dataclass_fields__]
            columns = [table.column(n).to_pylist() for n in names]
            self._records = [Record(*row) for row in zip(*columns)]
        return self._records

    def paths(self) -> list[str]:
        return [r.path for r in self.records()]

    def blocks(self, block_rows: int = 16384) -> Iterator[Block]:
        return self._legacy.blocks(block_rows)  # type: ignore[no-any-return]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        wanted = {int(i): n for n, i in enumerate(ids)}
        out = np.zeros((len(ids), self.identity.dim), np.float32)
        for block in self.blocks():
            for position, identifier in enumerate(block.ids):
                if int(identifier) in wanted:
                    out[wanted[int(identifier)]] = block.vectors[position]
        return out

    def count_ok(self) -> int:
        return sum(r.status == "ok" for r in self.records())

    def is_stale(self) -> bool:
        return bool(max(self._legacy.shard_ids() + [0]) != self.generation)

    def require_compatible(self, identity: StoreIdentity) -> None:
        self.identity.require_compatible(identity, str(self.root))


class StoreWriter:
    def __init__(self, legacy_writer: Any) -> None:
        self._writer = legacy_writer
        self.store = Store(legacy_writer.store)

    def add(self, record: Record, vector: np.ndarray | None = None) -> None:
        # size None stays None: the legacy writer would stat the file again, which the library must not do
        info = _Info(record)
        self._writer.add(record.path, record.status, vector, info if record.status != "deleted" else None,
                         error_kind=record.error_kind, error=record.error)

    def flush(self) -> None:
        self._writer.flush()

    def commit(self) -> Store:
        old = self._writer
        old.flush()
        old._vec.close()
        old._meta.close()
        old.store.seal_journals()
        old.store._table = None
        self._writer = _legacy.StoreWriter(old.store, old._lock)
        self.store = Store(old.store)
        return self.store

    def close(self) -> Store:
        legacy = self._writer.close()
        self.store = Store(legacy)
        return self.store

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Info:
    record: Record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)
