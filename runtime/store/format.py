"""The store's building blocks: identity, records, the commit record and safe file writes.

Everything here either reads what a writer committed and checks it, or writes so that a
kill or a full disk at any moment leaves the last commit intact (tmp file, fsync, rename,
fsync of the folder).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from vggsim.errors import StoreError, display_name, require
from vggsim.store.npyio import read_header

from vggsim.images.preprocess import PreprocessSpec

STORE_FORMAT = 2
STATUSES = ("ok", "error", "deleted")
DTYPES = ("float32", "float16")
COMMIT = "commit.json"
IDENTITY = "store.json"
#: What a reader is told to do about a damaged store.
REMEDY = ("run `vggsim store verify {root}` to list the damage, then `vggsim store repair {root}` "
          "(the files of a damaged shard are re-embedded by the next `vggsim embed`)")


def remedy(root: Path) -> str:
    return REMEDY.format(root=root)


def pyarrow() -> Any:
    require("pyarrow", "store", "An embedding store")
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.parquet

    return pa


def display(text: str | None) -> str | None:
    """``text`` as valid UTF-8 for parquet: surrogate-escaped bytes shown as ``\\xNN``."""
    return None if text is None else display_name(text)


def shard_name(shard: int, kind: str) -> str:
    return f"vectors/{shard:06d}.npy" if kind == "vectors" else f"meta/{shard:06d}.parquet"


class ModelIdentity(Protocol):
    """What makes a model's vectors comparable: an Embedder has it, and so has a manifest read without
    loading the model (a Ray driver)."""

    @property
    def model_sha256(self) -> str: ...
    @property
    def spec(self) -> PreprocessSpec: ...
    @property
    def dim(self) -> int: ...


@dataclass(frozen=True)
class StoreIdentity:
    """What makes two embeddings comparable: the model, its effective preprocessing, the width.

    ``dtype`` is how vectors are stored and plays no part in compatibility.
    """

    model_sha256: str
    preprocess: dict[str, Any]
    dim: int
    dtype: str = "float32"

    @classmethod
    def of(cls, model: ModelIdentity, dtype: str = "float32") -> StoreIdentity:
        """The identity of the vectors ``model`` (an Embedder, or what a manifest says) makes."""
        return cls.from_dict({"model_sha256": model.model_sha256, "preprocess": model.spec.to_dict(),
                              "dim": model.dim, "dtype": dtype})

    def to_dict(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "preprocess": self.preprocess, "dim": self.dim, "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Any, where: str = "store identity") -> StoreIdentity:
        if not isinstance(data, dict):
            raise StoreError(f"{where}: expected a JSON object with model_sha256, preprocess, dim")
        sha, spec, dim, dtype = (data.get(k) for k in ("model_sha256", "preprocess", "dim", "dtype"))
        dtype = "float32" if dtype is None else dtype
        if not isinstance(sha, str) or not sha:
            raise StoreError(f"{where}: model_sha256 is missing or not a string")
        if not isinstance(spec, dict):
            raise StoreError(f"{where}: preprocess is missing or not an object")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise StoreError(f"{where}: dim must be a positive integer, got {dim!r}")
        if dtype not in DTYPES:
            raise StoreError(f"{where}: dtype must be one of {DTYPES}, got {dtype!r}")
        # a JSON round trip makes tuples lists, so a spec compares equal to what is on disk
        return cls(sha, json.loads(json.dumps(spec)), dim, dtype)

    def require_compatible(self, other: StoreIdentity, where: str) -> None:
        """StoreError naming the first field in which ``other`` differs from this identity."""
        for key in ("model_sha256", "preprocess", "dim"):
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine == theirs:
                continue
            if key == "preprocess":
                keys = sorted(set(mine) | set(theirs), key=str)
                differing = [k for k in keys if mine.get(k) != theirs.get(k)]
                mine = ", ".join(f"{k}={mine.get(k)!r}" for k in differing[:3])
                theirs = ", ".join(f"{k}={theirs.get(k)!r}" for k in differing[:3])
            raise StoreError(
                f"{where} holds embeddings from a different {key.replace('_', ' ')} ({str(mine)[:80]}) "
                f"than this model ({str(theirs)[:80]}). Mixing them would make scores meaningless: "
                "use another --store, or the model and options that made it.")


@dataclass(frozen=True)
class Record:
    """One file's state. ``path`` is lossless: ``os.fsdecode`` of the raw name bytes."""

    path: str
    status: str
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    error_kind: str | None = None
    error: str | None = None
    pixel_sha256: str | None = None  # of the decoded pixels: the pixel-identical duplicate tier (None: unknown)


@dataclass(frozen=True)
class Block:
    """A slice of a store's current vectors: ``ids`` index :meth:`Store.records` rows."""

    ids: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class Shard:
    """A committed shard as the commit record lists it."""

    id: int
    records: int
    rows: int
    dtype: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"size", "sha256"}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "records": self.records, "rows": self.rows, "dtype": self.dtype, "files": self.files}


@dataclass(frozen=True)
class CommitRecord:
    generation: int
    next_id: int
    shards: tuple[Shard, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"format": STORE_FORMAT, "generation": self.generation, "next_id": self.next_id,
                "shards": [s.to_dict() for s in self.shards]}


def content_digest(identity: StoreIdentity, commit: CommitRecord) -> str:
    """The sha256 of what a snapshot holds: the identity and every committed shard with its files'
    checksums. Two snapshots with the same digest hold the same records and vectors; a store
    replaced by another (re-created, restored, repaired) at the same generation has another one."""
    shards = [[s.id, s.records, s.rows, sorted((name, f.get("sha256")) for name, f in s.files.items())]
              for s in commit.shards]
    return hashlib.sha256(json.dumps([identity.to_dict(), shards], sort_keys=True).encode()).hexdigest()


def parse_commit(data: Any, where: Path) -> CommitRecord:
    """A validated commit record; StoreError naming ``where`` if anything is off."""
    bad = StoreError(f"{where} is garbled (not a vggsim commit record): {remedy(where.parent)}")
    try:
        shards = []
        for item in data["shards"]:
            files = item["files"]
            for name in (shard_name(item["id"], "vectors"), shard_name(item["id"], "meta")):
                entry = files[name]
                if not isinstance(entry["size"], int) or not isinstance(entry["sha256"], str):
                    raise bad
            shard = Shard(int(item["id"]), int(item["records"]), int(item["rows"]), str(item["dtype"]), files)
            if shard.records < 0 or shard.rows < 0 or shard.rows > shard.records:
                raise bad
            shards.append(shard)
        record = CommitRecord(int(data["generation"]), int(data["next_id"]), tuple(shards))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise bad from None
    if len({s.id for s in shards}) != len(shards):
        raise bad
    return record


def read_json(path: Path, what: str, advice: str | None = None) -> Any:
    """A JSON file's content; StoreError naming it, and ``advice`` (default: verify and
    repair), if it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON (truncated or garbled)"
        raise StoreError(f"{path}: cannot read the {what}: {reason}; {advice or remedy(path.parent)}") from None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn any OSError while writing ``path`` into a StoreError that says what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"disk full writing {path}: nothing committed was lost; "
                             "free space and run the same command again") from None
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; nothing committed was lost") from None


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> dict[str, Any]:
    """Write ``path`` via a tmp file (fsync, rename, fsync the folder); its size and sha256."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with writing(path):
            with open(tmp, "wb") as fp:
                hashing = _HashingWriter(fp)
                write(hashing)  # type: ignore[arg-type]
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk stays as full as it was before
        raise
    return {"size": hashing.size, "sha256": hashing.sha.hexdigest()}


class _HashingWriter:
    """A write-only file object that hashes what goes through it (np.save and parquet use it)."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp, self.sha, self.size = fp, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        return self.fp.write(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.fp.flush()

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.fp.closed

    def close(self) -> None:
        """Closed by :func:`atomic_write`, not by the library that wrote into it."""


def write_commit(root: Path, record: CommitRecord) -> None:
    atomic_write(root / COMMIT, lambda fp: fp.write(json.dumps(record.to_dict(), indent=1).encode()))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fp:
        while block := fp.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype in a .npy header (any version, order or byte order); StoreError if bad.
    The header is read, never mapped (a memory map of a file cut meanwhile would be a SIGBUS)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            header = read_header(fd)
            if os.fstat(fd).st_size < header.offset + header.data_bytes:
                raise ValueError("the file is shorter than its header says")
        finally:
            os.close(fd)
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail in the parser in any way
        raise StoreError(f"{path}: not a readable .npy file ({str(exc)[:100]}); {remedy(path.parent.parent)}") from None
    return header.shape, header.dtype


def check_shard_cheaply(root: Path, shard: Shard, dim: int) -> None:
    """Sizes of both files and the vectors' header against the commit record (no full read)."""
    for name, entry in shard.files.items():
        path = root / name
        try:
            size = path.stat().st_size
        except OSError:
            raise StoreError(f"{path} is missing (committed shard {shard.id}); {remedy(root)}") from None
        if size != entry["size"]:
            raise StoreError(f"{path} has {size} bytes, the commit record says {entry['size']} "
                             f"(truncated or replaced); {remedy(root)}")
    shape, dtype = npy_layout(root / shard_name(shard.id, "vectors"))
    if shape != (shard.rows, dim) or dtype.kind != "f" or np.dtype(shard.dtype) != dtype:
        raise StoreError(f"{root / shard_name(shard.id, 'vectors')} holds {shape} {dtype}, the commit record says "
                         f"({shard.rows}, {dim}) {shard.dtype}; {remedy(root)}")
