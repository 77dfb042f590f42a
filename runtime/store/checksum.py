"""Readers check a file's sha256 against the record that lists it before trusting its bytes.

``Store.open`` checks sizes and headers only (cheap); a file damaged in place keeps its size,
so without this a search would return confident, wrong scores. A committed shard (checked
against the commit record) and an index file (against its ``index.json``) are hashed on
their first read in a process, and the result is cached under (path, size, mtime_ns,
ctime_ns, inode, expected sha256). Every later read looks the file up again (one ``fstat``):
a write in place changes its mtime and ctime (ctime even when the writer puts the mtime
back), a replacement its inode, so damage done while a service runs is seen on the next read,
without waiting for a new commit. A cached verification also expires after
:data:`REVERIFY_S` seconds (``$VGGSIM_REVERIFY_S``, default an hour): bytes that change
without any stat changing (a raw write to the device, a failing disk) are caught within that
bound, not trusted for ever because their first read passed. A long-lived reader (a server,
a ``StoreReader``) pays the hash once per file per interval.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from vggsim import config
from vggsim.errors import StoreError

_CHUNK = 1 << 22
_MAX_ENTRIES = 1 << 16  # a cache this size holds ~65k files (65 billion rows at 1M per shard)

#: The longest a verification is trusted before the file is hashed again, in seconds ($VGGSIM_REVERIFY_S).
REVERIFY_S = config.reverify_s()
_Key = tuple[str, int, int, int, int, str]
_verified: dict[_Key, float] = {}  # key -> time.monotonic() of the hash
_lock = threading.Lock()


def _key(path: Path, stat: os.stat_result, sha256: str) -> _Key:
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, sha256


def _sha256(fd: int, size: int) -> str:
    sha = hashlib.sha256()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not block:
            break
        sha.update(block)
        offset += len(block)
    return sha.hexdigest()


def file_problem(path: Path, size: int, sha256: str, *, fd: int | None = None,
                 record: str = "the commit record", fresh: bool = False) -> str | None:
    """None when ``path`` (or the file open as ``fd``: what will be read, whatever the name
    points to now) holds ``size`` bytes with this ``sha256``; else the cause, as a phrase.

    Hashed when not verified before with the same stat, or longer than :data:`REVERIFY_S` ago,
    or always with ``fresh`` (a verify command). ``record`` names what lists the expected values."""
    own = None
    try:
        if fd is None:
            fd = own = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        stat = os.fstat(fd)
        key = _key(path, stat, sha256)
        with _lock:
            when = _verified.get(key)
        if when is not None and not fresh and time.monotonic() - when < REVERIFY_S:
            return None
        if stat.st_size != size:
            return f"{stat.st_size} bytes, {record} says {size} (truncated or replaced)"
        actual = _sha256(fd, size)
    except OSError as exc:
        return f"cannot read a committed file ({exc.strerror or exc})"
    finally:
        if own is not None:
            os.close(own)
    if actual != sha256:
        return f"sha256 differs from {record} (the file was damaged or replaced)"
    with _lock:
        if len(_verified) >= _MAX_ENTRIES:
            _verified.clear()
        _verified[key] = time.monotonic()
    return None


def require_intact(path: Path, entry: dict[str, Any], root: Path, *, fd: int | None = None) -> None:
    """StoreError (the one ``vggsim store verify`` reports) unless ``path`` (or the file open as
    ``fd``) holds the bytes the commit record lists in ``entry`` ({"size", "sha256"}); see
    :func:`file_problem` for when it is hashed."""
    from vggsim.store.format import remedy

    problem = file_problem(path, int(entry["size"]), str(entry["sha256"]), fd=fd)
    if problem is not None:
        raise StoreError(f"{path}: {problem}; {remedy(root)}")


def forget() -> None:
    """Drop every cached verification (tests; a caller that distrusts its page cache)."""
    with _lock:
        _verified.clear()
