"""Reading a committed shard's vectors: ``pread`` into arrays, each read checked against the commit record.

Never a memory map: a file cut short under a map kills the reading process with SIGBUS when a
page past the new end is touched (a service would die instead of answering), where a short
``pread`` is an error this module turns into a StoreError. Reads are also what a memory map
would not be on kernels that cache files in large folios (ext4 on Linux 6.x): a faulted row maps
its whole folio (measured: 1,000 random rows of a 1M store took a process from 40 MB to over
1 GB resident), where ``pread`` keeps nothing.

Every :class:`ShardFile` is checked against the commit record's sha256 when it is opened and
again before every read (:func:`vggsim.store.checksum.require_intact` on the open file: one
``fstat`` while the file is unchanged, a new hash when its stat changed or the last one is
older than ``checksum.REVERIFY_S``), so bytes changed under a long-lived reader are refused on
the next read, not trusted for ever.

Any .npy layout a store may hold is read: header versions 1-3, any float width and byte order,
C or Fortran order (Fortran: one pread per column of the rows wanted).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
import numpy as np

from vggsim.errors import StoreError
from vggsim.store.checksum import require_intact
from vggsim.store.format import Shard, remedy, shard_name
from vggsim.store.npyio import read_header


class ShardFile:
    """One committed vectors file, open for reading; see the module docstring."""

    def __init__(self, root: Path, shard: Shard, dim: int) -> None:
        self.root, self.shard, self.dim = root, shard, dim
        self.path = root / shard_name(shard.id, "vectors")
        self._entry = shard.files[shard_name(shard.id, "vectors")]
        try:
            self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read a committed file ({exc.strerror or exc}); "
                             f"{remedy(root)}") from None
        try:
            self.check()
            try:
                header = read_header(self.fd)
            except Exception as exc:  # noqa: BLE001 - a damaged header can fail in the parser in any way
                raise self._damaged(f"not a readable .npy header ({str(exc)[:100]})") from None
            if header.shape != (shard.rows, dim) or header.dtype.kind != "f":
                raise self._damaged(f"holds {header.shape} {header.dtype}, the commit record says ({shard.rows}, {dim})")
            if os.fstat(self.fd).st_size < header.offset + header.data_bytes:
                raise self._damaged("shorter than its header says")
        except BaseException:
            os.close(self.fd)
            raise
        self.offset, self.dtype, self.fortran = header.offset, header.dtype, header.fortran
        self.rows = shard.rows

    def _damaged(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}; {remedy(self.root)}")

    def check(self) -> None:
        """StoreError unless the open file still holds the committed bytes (see the module docstring)."""
        require_intact(self.path, self._entry, self.root, fd=self.fd)

    def _pread(self, out: np.ndarray, offset: int) -> None:
        view = out.reshape(-1).view(np.uint8).data  # any dtype (a big-endian one too), as bytes
        try:
            got = os.preadv(self.fd, [view], offset)
        except OSError as exc:
            raise self._damaged(f"cannot read committed vectors ({exc.strerror or exc})") from None
        if got != len(view):
            raise self._damaged("shorter than its header says (cut while it was read?)")

    def span(self, first: int, count: int) -> np.ndarray:
        """Rows ``first`` .. ``first + count - 1`` as a C-order float32 (count, dim) array."""
        if first < 0 or count < 0 or first + count > self.rows:
            raise self._damaged(f"rows {first}..{first + count - 1} asked of its {self.rows}")
        raw = np.empty((count, self.dim), self.dtype)
        if count:
            if self.fortran:  # column j holds rows 0..n-1 of element j
                column = np.empty(count, self.dtype)
                for j in range(self.dim):
                    self._pread(column, self.offset + (j * self.rows + first) * self.dtype.itemsize)
                    raw[:, j] = column
            else:
                self._pread(raw, self.offset + first * self.dim * self.dtype.itemsize)
        return np.ascontiguousarray(raw, dtype=np.float32)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) as float32 (len(rows), dim), into ``out`` if given.

        One pread per row in ascending row order (C order), or one span per column (Fortran)."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        if out is None:
            out = np.empty((len(rows), self.dim), np.float32)
        if not len(rows):
            return out
        if int(rows.min()) < 0 or int(rows.max()) >= self.rows:
            raise self._damaged(f"row {int(rows.max())} asked of its {self.rows}")
        if self.fortran:
            low = int(rows.min())
            out[:] = self.span(low, int(rows.max()) - low + 1)[rows - low]
            return out
        width = self.dim * self.dtype.itemsize
        native = self.dtype == np.dtype(np.float32) and out.flags.c_contiguous
        target = out if native else np.empty((len(rows), self.dim), self.dtype)
        flat = target.reshape(-1).view(np.uint8)
        order = np.argsort(rows, kind="stable")  # ascending offsets: kinder to the disk
        for slot, row in zip(order.tolist(), rows[order].tolist()):
            self._pread(flat[slot * width:(slot + 1) * width], self.offset + row * width)
        if not native:
            out[:] = target.astype(np.float32)
        return out

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to do
            pass


class ShardFiles:
    """The vectors files of one snapshot's shards, opened on first use and kept open until
    :meth:`close` (a searcher that reads a few rows of many shards per query); thread-safe."""

    def __init__(self, root: Path, shards: dict[int, Shard], dim: int) -> None:
        self.root, self.shards, self.dim = root, shards, dim
        self._files: dict[int, ShardFile] = {}
        self._lock = threading.Lock()

    def get(self, shard: int) -> ShardFile:
        """The open, checked file of ``shard`` (StoreError when it is not a committed shard of the snapshot)."""
        with self._lock:
            found = self._files.get(shard)
            if found is None:
                if shard not in self.shards:
                    raise StoreError(f"{self.root}: shard {shard} is not committed in this snapshot; "
                                     f"{remedy(self.root)}")
                found = self._files[shard] = ShardFile(self.root, self.shards[shard], self.dim)
                return found  # checked when opened
        found.check()
        return found

    def close(self) -> None:
        with self._lock:
            files, self._files = self._files, {}
        for file in files.values():
            file.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to do
            pass
