"""Duplicate decisions kept in the store: "these are not duplicates" and "keep this one".

A person reviewing duplicate groups decides; every later answer (``vggsim dedup``,
:func:`~vggsim.collection.find_duplicates`, the service's routes and review page) honours it.
"Not duplicates" names files by their content (the sha256 the store records): a file renamed or
moved keeps it, a file whose bytes change is a new file and has none. "Keep" names one file by
its path and content: byte-identical copies have one content, and which copy to keep is a
choice of location; a kept file that is moved or changed is no longer marked.

``STORE/decisions.jsonl``: one decision per line, ``<crc32 hex> <JSON>`` like the store's
journal, appended under an exclusive lock, flushed and fsynced before the call returns. A line
whose checksum does not verify (a write cut by a crash, an edit by hand) is skipped and
counted, never guessed at. Later lines win: ``forget`` takes back what earlier lines said
about a file. The store's shards and commit record are never touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from vggsim.errors import ArgumentError, StoreError, short_name
from vggsim.store import Store

FILE = "decisions.jsonl"
#: files one decision may name (a "not duplicates" of n files marks n*(n-1)/2 pairs, read on every check)
MAX_FILES = 100
KINDS = ("not_duplicates", "keep", "forget")


@dataclass(frozen=True)
class Decisions:
    """The decisions in force: pairs of contents that are not duplicates, contents to keep."""

    not_duplicates: frozenset[frozenset[str]] = frozenset()
    keep: frozenset[tuple[str, str]] = frozenset()  # (path, content sha256)
    skipped_lines: int = 0  # lines that did not verify
    lines: int = 0
    #: identifies this set of decisions (the file's size and mtime): a cache of groups keys on it
    version: str = "none"

    def apart(self, a: str | None, b: str | None) -> bool:
        """Whether the files with contents ``a`` and ``b`` were marked as not duplicates of each other."""
        return bool(a and b) and frozenset((a, b)) in self.not_duplicates

    def kept(self, path: str, sha256: str | None) -> bool:
        """Whether a person chose to keep the file at ``path`` with content ``sha256``."""
        return bool(sha256) and (path, sha256) in self.keep

    def to_dict(self) -> dict[str, Any]:
        return {"not_duplicates": len(self.not_duplicates), "keep": len(self.keep), "lines": self.lines,
                "skipped_lines": self.skipped_lines}


def _path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / FILE


def load(root: str | os.PathLike[str]) -> Decisions:
    """The decisions recorded in the store at ``root`` (none when it has no decisions file)."""
    path = _path(root)
    try:
        stat = path.stat()
        if not S_ISREG(stat.st_mode):  # a FIFO would block the reader for ever, a folder fail every check
            raise StoreError(f"{path}: the duplicate decisions are not a regular file: move it away (the store "
                             "then holds no decisions)")
        data = path.read_bytes()
    except FileNotFoundError:
        return Decisions()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the duplicate decisions ({exc.strerror or exc})") from None
    apart: set[frozenset[str]] = set()
    keep: set[tuple[str, str]] = set()
    skipped = lines = 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        lines += 1
        entry = _parse(raw)
        if entry is None:
            skipped += 1
            continue
        files = sorted({f for f in entry.get("files", []) if isinstance(f, str) and f})[:MAX_FILES]
        paths = [p for p in entry.get("paths", []) if isinstance(p, str)]
        kind = entry.get("decision")
        if kind == "not_duplicates":
            apart.update(frozenset((a, b)) for i, a in enumerate(files) for b in files[i + 1:] if a != b)
        elif kind == "keep":
            keep.update(zip(paths, files))
        elif kind == "forget":
            gone = set(files) | set(paths)
            keep = {k for k in keep if not set(k) & gone}
            apart = {pair for pair in apart if not pair & gone}
    return Decisions(frozenset(apart), frozenset(keep), skipped, lines, f"{stat.st_size}:{stat.st_mtime_ns}")


def _parse(raw: bytes) -> dict[str, Any] | None:
    crc, _, body = raw.partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        entry = json.loads(body)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and entry.get("decision") in KINDS else None


def contents_of(store: Store, paths: Iterable[str]) -> list[tuple[str, str]]:
    """(path, content sha256) of each path, looked up among ``store``'s current ok files; StoreError
    naming the first path that is not one (a decision about a file the store does not hold means nothing)."""
    wanted = list(dict.fromkeys(paths))  # repeats named once
    if len(wanted) > MAX_FILES:
        raise ArgumentError(f"one decision names at most {MAX_FILES} files, got {len(wanted)}")
    names = set(wanted)
    found = {r.path: r.sha256 for r in store.records() if r.status == "ok" and r.sha256 and r.path in names}
    for path in wanted:
        if path not in found:
            raise StoreError(f"{short_name(path)}: not a file with a vector in the store {store.root} "
                             "(paths as `vggsim dedup` prints them)")
    return [(path, found[path]) for path in wanted]


def record(store: Store, decision: str, paths: Iterable[str]) -> Decisions:
    """Append one decision about the files ``paths`` (current files of ``store``) and return the decisions
    now in force. ``not_duplicates`` needs two or more files (every pair among them is marked);
    ``keep`` marks each file as one to keep; ``forget`` takes back every decision about them."""
    if decision not in KINDS:
        raise ArgumentError(f"decision must be one of {', '.join(KINDS)}, got {decision!r}")
    named = contents_of(store, paths)
    if decision == "not_duplicates" and len({sha for _, sha in named}) < 2:
        raise ArgumentError("not_duplicates needs at least two files with different contents (byte-identical files "
                         "are always duplicates)")
    if not named:
        raise ArgumentError(f"{decision} needs at least one file")
    entry = {"decision": decision, "files": [sha for _, sha in named], "paths": [p for p, _ in named],
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    body = json.dumps(entry, ensure_ascii=True).encode("ascii")
    path = _path(store.root)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = os.lseek(fd, 0, os.SEEK_END)
            # a line a crash cut short must not swallow this one: start on a line of its own
            torn = end > 0 and os.pread(fd, 1, end - 1) != b"\n"
            os.write(fd, (b"\n" if torn else b"") + b"%08x %s\n" % (zlib.crc32(body), body))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"{path}: cannot record the decision ({exc.strerror or exc})") from None
    return load(store.root)
