"""The journal: where a writer appends records between commits, and how a shard is sealed from it.

A journal is two files named by an id no other journal or shard ever had:
``journal/ID.vec`` (raw float32 vectors, one row each) and ``journal/ID.jsonl`` (one line per
record: ``CRC32 JSON``, the CRC over the JSON, which carries the record's row in ``.vec``
and the CRC32 of that row's bytes). Vectors are written before their line, so a line whose
row and checksum verify can always be trusted; a torn last line or a vector cut short by a
kill is dropped, never shifted onto another record. Sealing turns the verified records
into a shard with the same id: ``vectors/ID.npy`` and ``meta/ID.parquet``.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from vggsim.errors import StoreError
from vggsim.store.format import STATUSES, Record, Shard, atomic_write, display, pyarrow, shard_name, writing

READ_ROWS = 4096  # vectors copied per read while sealing: 8 MB at 512 float32


def meta_schema() -> Any:
    pa = pyarrow()
    return pa.schema([
        ("path", pa.string()), ("path_bytes", pa.binary()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
        ("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("status", pa.string()),
        ("error_kind", pa.string()), ("error", pa.string()), ("row", pa.int64()),
        ("pixel_sha256", pa.string())])  # added after format 2 shipped: older shards lack it (read as null)


def conform_meta(table: Any, columns: list[str] | None = None) -> Any:
    """``table`` (a meta file's, or some of its ``columns``) with every column of :func:`meta_schema` asked for,
    in its order and types: a column that shards written before it existed lack is all null."""
    pa = pyarrow()
    schema = meta_schema()
    wanted = schema.names if columns is None else list(columns)
    for name in wanted:
        if name not in table.column_names:
            table = table.append_column(schema.field(name), pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(wanted).cast(pa.schema([schema.field(name) for name in wanted]))


def journal_ids(folder: Path) -> set[int]:
    """Ids of every journal part in ``folder``, complete or not."""
    ids = set()
    for part in folder.glob("*"):
        stem = part.name.split(".")[0]
        if stem.isdigit():
            ids.add(int(stem))
    return ids


class JournalWriter:
    """Appends records to a fresh journal; ``flush`` makes them survive a kill -9."""

    def __init__(self, folder: Path, journal_id: int, dim: int) -> None:
        self.id, self.dim, self.rows, self.records = journal_id, dim, 0, 0
        self.lines: list[dict[str, Any]] = []  # what was written, so a live commit need not parse it back
        self.vec_path, self.meta_path = folder / f"{journal_id:06d}.vec", folder / f"{journal_id:06d}.jsonl"
        with writing(self.vec_path):
            # O_EXCL: a journal is never appended to after the writer that made it is gone
            self._vec: IO[bytes] = os.fdopen(os.open(self.vec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")
        try:
            with writing(self.meta_path):
                self._meta: IO[bytes] = os.fdopen(
                    os.open(self.meta_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")
        except BaseException:
            self._vec.close()
            raise

    def add(self, record: Record, vector: np.ndarray | None) -> None:
        line: dict[str, Any] = {"p": base64.b64encode(os.fsencode(record.path)).decode("ascii"),
                                "status": record.status, "size": record.size, "mtime_ns": record.mtime_ns,
                                "sha256": display(record.sha256), "width": record.width, "height": record.height,
                                "error_kind": display(record.error_kind), "error": display(record.error), "row": -1,
                                "pixel_sha256": display(record.pixel_sha256)}
        if vector is not None:
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            with writing(self.vec_path):
                self._vec.write(data)
            line.update(row=self.rows, vcrc=zlib.crc32(data))
            self.rows += 1
        body = json.dumps(line, ensure_ascii=True).encode("ascii")
        with writing(self.meta_path):
            self._meta.write(b"%08x %s\n" % (zlib.crc32(body), body))
        line["path"] = record.path
        self.lines.append(line)
        self.records += 1

    def flush(self) -> None:
        with writing(self.vec_path):
            self._vec.flush()
        with writing(self.meta_path):
            self._meta.flush()

    def close(self) -> None:
        for fp in (self._vec, self._meta):
            try:
                fp.close()
            except OSError:
                pass  # a full disk: what did reach the file is recovered by the next writer

    def remove(self) -> None:
        self.close()
        self.vec_path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def _parse_line(line: bytes) -> dict[str, Any] | None:
    """The record of one journal line, or None if its checksum or content does not verify."""
    try:
        crc, body = line[:8], line[9:]
        if line[8:9] != b" " or int(crc, 16) != zlib.crc32(body):
            return None
        data = json.loads(body.decode("ascii"))
        path = os.fsdecode(base64.b64decode(data["p"], validate=True))
        if data["status"] not in STATUSES or not isinstance(data["row"], int):
            return None
        if (data["row"] >= 0) != (data["status"] == "ok") or (data["row"] >= 0 and not isinstance(data.get("vcrc"), int)):
            return None
        data["path"] = path
        return data  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def read_journal(meta_path: Path, vec_path: Path, dim: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a journal whose line and vector verify, and notes on what was dropped."""
    notes: list[str] = []
    try:
        raw = meta_path.read_bytes()
    except FileNotFoundError:
        return [], ([f"{vec_path.name}: vectors without records dropped"] if vec_path.exists() else [])
    lines = raw.split(b"\n")
    if lines[-1]:
        notes.append(f"{meta_path.name}: torn last line dropped (a kill while writing it)")
    row_bytes = dim * 4
    kept, last_row = [], -1
    vec = open(vec_path, "rb") if vec_path.exists() else None
    try:
        vec_rows = os.fstat(vec.fileno()).st_size // row_bytes if vec else 0
        for number, line in enumerate(lines[:-1], 1):
            record = _parse_line(line)
            if record is None:
                notes.append(f"{meta_path.name}:{number}: garbled line dropped")
                continue
            row = record["row"]
            if row >= 0:
                if vec is None or row >= vec_rows or row <= last_row:
                    notes.append(f"{meta_path.name}:{number}: vector missing, record dropped")
                    continue
                if zlib.crc32(os.pread(vec.fileno(), row_bytes, row * row_bytes)) != record["vcrc"]:
                    notes.append(f"{meta_path.name}:{number}: vector checksum mismatch, record dropped")
                    continue
                last_row = row
            kept.append(record)
    finally:
        if vec:
            vec.close()
    return kept, notes


#: Key of the parquet schema metadata naming the shard a meta file belongs to (see seal).
SHARD_TAG = b"vggsim_shard"


def seal(root: Path, journal_id: int, dim: int, dtype: str,
         written: list[dict[str, Any]] | None = None) -> tuple[Shard | None, list[str]]:
    """Write the verified records of journal ``journal_id`` as shard ``journal_id``.

    ``written`` are the records of a live writer's own journal (no need to read them back);
    otherwise the journal is read and verified. Returns the shard's commit entry (None if no
    record verified) and notes on what was dropped. Vectors are copied window by window, so
    memory stays flat for any journal.
    """
    folder = root / "journal"
    if written is None:
        records, notes = read_journal(folder / f"{journal_id:06d}.jsonl", folder / f"{journal_id:06d}.vec", dim)
    else:
        records, notes = written, []
    if not records:
        return None, notes
    pa = pyarrow()
    old_rows = np.array([r["row"] for r in records if r["row"] >= 0], np.int64)
    row = 0
    for record in records:
        if record["row"] >= 0:
            record["row"], row = row, row + 1
    storage = np.dtype(dtype)
    vectors_path = root / shard_name(journal_id, "vectors")

    def write_vectors(fp: IO[bytes]) -> None:
        np.lib.format.write_array_header_1_0(
            fp, {"descr": np.lib.format.dtype_to_descr(storage), "fortran_order": False, "shape": (len(old_rows), dim)})
        with open(folder / f"{journal_id:06d}.vec", "rb") as vec:
            for start in range(0, len(old_rows), READ_ROWS):
                wanted = old_rows[start:start + READ_ROWS]
                lo = int(wanted[0])
                span = int(wanted[-1]) + 1 - lo
                window = np.frombuffer(os.pread(vec.fileno(), span * dim * 4, lo * dim * 4), np.float32)
                fp.write(window.reshape(span, dim)[wanted - lo].astype(storage).tobytes())

    vectors_entry = atomic_write(vectors_path, write_vectors)
    columns = {name: [r.get(name) for r in records] for name in meta_schema().names}
    columns["path_bytes"] = [os.fsencode(r["path"]) for r in records]
    columns["path"] = [display(r["path"]) for r in records]
    # The shard's own id and its vectors' checksum, inside its meta file: if commit.json is
    # lost, repair adopts only files that say which shard they are and whose pair agrees
    # (ids are never reused and shards never rewritten), never a stray copy or a backup.
    tag = {SHARD_TAG: json.dumps({"id": journal_id, "vectors_sha256": vectors_entry["sha256"]}).encode()}
    table = pa.table(columns, schema=meta_schema().with_metadata(tag))
    buffer = pa.BufferOutputStream()
    pa.parquet.write_table(table, buffer)
    data = buffer.getvalue().to_pybytes()
    meta_entry = atomic_write(root / shard_name(journal_id, "meta"), lambda fp: fp.write(data))
    shard = Shard(journal_id, len(records), len(old_rows), storage.str,
                  {shard_name(journal_id, "vectors"): vectors_entry, shard_name(journal_id, "meta"): meta_entry})
    return shard, notes


def check_vector(vector: np.ndarray | None, record: Record, dim: int) -> np.ndarray | None:
    """The vector as float32, checked against the record's status and the store's width."""
    if record.status not in STATUSES:
        raise StoreError(f"{record.path!r}: status must be one of {STATUSES}, got {record.status!r}")
    if (vector is None) != (record.status != "ok"):
        raise StoreError(f"{record.path!r}: a record has a vector exactly when its status is 'ok'")
    if vector is None:
        return None
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise StoreError(f"{record.path!r}: vector shape {array.shape}, this store holds ({dim},)")
    if not np.isfinite(array).all():
        raise StoreError(f"{record.path!r}: the vector holds NaN or infinity; refusing to store it")
    return array
