"""Reading scattered rows of a store's committed vector files, for re-ranking.

A query's candidates (about 1,000 rows of 2 KB) lie anywhere in the store, so they are
read with one ``preadv`` per row straight into the output array, from files opened once
per searcher: about 2 us a row with the pages cached. A memory map would be one
vectorised gather, but on kernels that cache files in large folios (ext4 on Linux 6.x)
each faulted row maps its whole folio: measured here, 1,000 random rows of a 1M store
took the process from 40 MB to over 1 GB resident.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _File:
    fd: int
    offset: int       # of row 0
    rows: int
    dtype: np.dtype[Any]


class RowReader:
    """Rows of the (n, dim) ``.npy`` files of one snapshot's shards; files stay open until :meth:`close`."""

    def __init__(self, root: Path, dim: int) -> None:
        self.root, self.dim = root, dim
        self._files: dict[int, _File] = {}
        self._lock = threading.Lock()

    def _open(self, path: Path, shard: int) -> _File:
        with self._lock:
            found = self._files.get(shard)
            if found is not None:
                return found
            fd = os.open(path, os.O_RDONLY)
            try:
                with os.fdopen(os.dup(fd), "rb") as fp:
                    version = np.lib.format.read_magic(fp)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = header(fp)
                    offset = fp.tell()
                if fortran or len(shape) != 2 or shape[1] != self.dim or dtype.kind != "f":
                    raise ValueError(f"unexpected layout {shape} {dtype} (fortran order: {fortran})")
                if os.fstat(fd).st_size < offset + shape[0] * self.dim * dtype.itemsize:
                    raise ValueError("the file is shorter than its header says")
            except BaseException:
                os.close(fd)
                raise
            found = self._files[shard] = _File(fd, offset, int(shape[0]), dtype)
            return found

    def read(self, path: Path, shard: int, rows: np.ndarray, out: np.ndarray) -> None:
        """Rows ``rows`` of shard ``shard`` (file ``path``) into ``out`` (len(rows), dim) float32.
        OSError or ValueError when the file cannot be read as committed."""
        file = self._open(path, shard)
        if len(rows) and (int(rows.max()) >= file.rows or int(rows.min()) < 0):
            raise ValueError(f"row {int(rows.max())} beyond its {file.rows} rows")
        width = self.dim * file.dtype.itemsize
        native = file.dtype == np.dtype(np.float32) and out.flags.c_contiguous
        target = out if native else np.empty((len(rows), self.dim), file.dtype)
        view = target.reshape(-1).view(np.uint8).data
        order = np.argsort(rows, kind="stable")  # ascending offsets: kinder to the disk
        offsets = (file.offset + rows[order].astype(np.int64) * width).tolist()
        fd = file.fd
        for slot, offset in zip(order.tolist(), offsets):
            if os.preadv(fd, [view[slot * width:(slot + 1) * width]], offset) != width:
                raise ValueError("the file is shorter than its header says")
        if not native:
            out[:] = target.astype(np.float32)

    def close(self) -> None:
        with self._lock:
            files, self._files = self._files, {}
        for file in files.values():
            os.close(file.fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to do
            pass
