"""``np.load`` of the store's and the index's .npy files, and their headers, safe to call from many threads at once.

``np.load`` reads a .npy header with ``ast.literal_eval``. On CPython before 3.12, building ASTs
in several threads at once can fail with ``SystemError: AST constructor recursion depth
mismatch`` (CPython gh-106905): the service's search threads then saw an intact shard as
damaged (a 409 telling the operator to repair a sound store, about 1 request in 1,500 under
concurrent search load). Loads and header parses here take one process-wide lock (a header
parse: microseconds) and retry once on SystemError, which no damaged file raises.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_LOCK = threading.Lock()


def load_npy(path: Path | str, mmap_mode: Any = None) -> Any:
    """``np.load(path, mmap_mode=mmap_mode, allow_pickle=False)``, serialised; errors as np.load raises them."""
    with _LOCK:
        try:
            return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except SystemError:  # gh-106905 from an ast use outside this lock: the file itself was not the cause
            return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


@dataclass(frozen=True)
class NpyHeader:
    """What a .npy file's header says: where the data starts and how it is laid out."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    offset: int  # of the first data byte

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_header(fd: int) -> NpyHeader:
    """The header of the .npy file open as ``fd`` (read with pread: the file offset is left alone).

    ValueError (or OSError) when it is not a .npy header; never a memory map, so a file cut
    short can only fail here, never kill the process when its pages are touched."""
    head = os.pread(fd, 65536 + 16, 0)  # numpy refuses headers over 10,000 bytes unless told otherwise
    with _LOCK:
        for attempt in (0, 1):
            fp = io.BytesIO(head)
            try:
                version = np.lib.format.read_magic(fp)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = reader(fp)
                return NpyHeader(tuple(int(n) for n in shape), bool(fortran), dtype, fp.tell())
            except SystemError:  # gh-106905, as in load_npy
                if attempt:
                    raise
    raise AssertionError("unreachable")
