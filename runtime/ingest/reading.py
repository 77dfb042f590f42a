"""Reading one file for the pipeline: stat, read, check it did not change, decode, preprocess.

The file is stat'ed before it is read and again after: a file that changed meanwhile (still
being written, replaced) is an error of kind ``changed``, which a later embed retries, and
every error carries what was stat'ed BEFORE the read, so a store never records a later state
of the file than the one that failed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.images.budget import decode_need
from vggsim.images.decode import check_stat, probe, stat_file
from vggsim.model.embedder import Embedder
from vggsim.errors import ImageError
from vggsim.images.preprocess import decode_prepare_and_hash

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FileInfo:
    """What the store records about a file besides its vector.

    For a failed file: the size and mtime stat'ed before it was read, ``sha256`` "" and
    ``width``/``height`` 0 (unknown).
    """

    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    pixel_sha256: str = ""  # of the decoded pixels (vggsim.images.preprocess.pixel_sha256); "" when unknown


class FileError(ImageError):
    """An ImageError that carries what was stat'ed before the read (or None)."""

    def __init__(self, error: ImageError, info: FileInfo | None) -> None:
        super().__init__(error.source, error.kind, error.reason)
        self.info = info


Admit = Callable[[int], AbstractContextManager[Any]]


def _changed(name: str) -> ImageError:
    return ImageError(name, "changed", "the file changed while it was read (still being written?); "
                      "a later embed retries it")


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) == (
        after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns)


def _changed_since(path: Path, before: os.stat_result) -> bool:
    try:
        return not _same_file(before, os.stat(path))
    except (OSError, ValueError):
        return True


def read_file(path: Path, embedder: Embedder, max_bytes: int = DEFAULT_MAX_BYTES,
              admit: Admit | None = None) -> tuple[np.ndarray, FileInfo]:
    """Stat, read, hash, decode and preprocess one file; raise FileError naming it.

    The file is stat'ed before it is read and again after: if it changed meanwhile (or fewer
    bytes came than stat'ed), the error kind is ``changed``, which a later embed retries.
    ``admit(bytes)`` is entered around the read and decode once the header says how much
    memory they need (the pipeline's memory budget).
    """
    name = str(path)
    try:
        before = stat_file(path, name)
    except ImageError as exc:
        raise FileError(exc, None) from None
    known = FileInfo(before.st_size, before.st_mtime_ns, "", 0, 0)
    try:
        check_stat(before, name)
        if before.st_size > max_bytes:
            raise ImageError(name, "too_large", f"file is {before.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        need = decode_need(probe(path, name, embedder.max_pixels), before.st_size, embedder.spec)
        with admit(need) if admit is not None else nullcontext():
            try:
                with path.open("rb") as fp:
                    data = fp.read(before.st_size + 1)  # one byte more shows a file that grew
            except OSError as exc:
                raise ImageError(name, "unreadable", f"cannot read the file ({exc.strerror or exc})") from None
            if len(data) != before.st_size or _changed_since(path, before):
                raise _changed(name)
            digest = hashlib.sha256(data).hexdigest()
            array, (width, height), pixels = decode_prepare_and_hash(data, embedder.spec, embedder.max_pixels, name)
            del data
    except ImageError as exc:
        failure = exc.with_traceback(None)  # its frames hold the file's bytes and pixels
    else:
        return array, FileInfo(before.st_size, before.st_mtime_ns, digest, width, height, pixels)
    error = failure if failure.kind == "changed" or not _changed_since(path, before) else _changed(name)
    raise FileError(error, known)


