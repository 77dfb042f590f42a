"""Readers check a committed shard file's sha256 before trusting it, once per file per process.

``Store.open`` checks sizes and headers only (cheap); a file damaged in place keeps its size,
so without this a search would return confident, wrong scores. Each committed file is hashed
on its first read in a process and the result cached under (path, size, mtime_ns, inode,
expected sha256): shards are immutable (a writer or ``repair`` replaces a file, which gives
it a new inode), so a long-lived reader (a server, a ``StoreReader``) pays once per shard,
and every snapshot after a new commit reuses what earlier ones verified.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from vggsim.errors import StoreError

_CHUNK = 1 << 22
_MAX_ENTRIES = 1 << 16  # a cache this size holds ~65k shards (65 billion rows at 1M per shard)
_verified: set[tuple[str, int, int, int, str]] = set()
_lock = threading.Lock()


def _key(path: Path, stat: os.stat_result, sha256: str) -> tuple[str, int, int, int, str]:
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, sha256


def require_intact(path: Path, entry: dict[str, Any], root: Path) -> None:
    """StoreError (the one ``vggsim store verify`` reports) unless ``path`` holds the bytes
    the commit record lists in ``entry`` ({"size", "sha256"}); hashed once per process."""
    from vggsim.store.format import remedy

    expected = str(entry["sha256"])
    try:
        with open(path, "rb") as fp:
            stat = os.fstat(fp.fileno())
            key = _key(path, stat, expected)
            with _lock:
                if key in _verified:
                    return
            if stat.st_size != entry["size"]:
                raise StoreError(f"{path}: {stat.st_size} bytes, the commit record says {entry['size']} "
                                 f"(truncated or replaced); {remedy(root)}")
            sha = hashlib.sha256()
            while block := fp.read(_CHUNK):
                sha.update(block)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read a committed file ({exc.strerror or exc}); {remedy(root)}") from None
    if sha.hexdigest() != expected:
        raise StoreError(f"{path}: sha256 differs from the commit record (the file was damaged or replaced); "
                         f"{remedy(root)}")
    with _lock:
        if len(_verified) >= _MAX_ENTRIES:
            _verified.clear()
        _verified.add(key)


def forget() -> None:
    """Drop every cached verification (tests; a caller that distrusts its page cache)."""
    with _lock:
        _verified.clear()
