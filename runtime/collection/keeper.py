"""Which file of a duplicate group to keep, and why: one rule, said in words.

A person's ``keep`` decision (:mod:`vggsim.collection.decisions`) wins. Otherwise the members
are compared on, in order: resolution (more pixels), format (lossless before lossy, by the file
name's extension: the store does not record the decoder's format), file size (larger: less
compressed), age (older modification time: the original rather than a copy), and last the path
(so the choice never depends on the order files were embedded). The reason names the first
of these that told the keeper apart, with the figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vggsim.store import Record

#: by extension, higher is better: lossless, then the lossy formats that keep the most
FORMAT_RANK = {".png": 3, ".tif": 3, ".tiff": 3, ".bmp": 3, ".ppm": 3, ".heic": 2, ".heif": 2, ".jpg": 2,
               ".jpeg": 2, ".jp2": 2, ".webp": 1, ".avif": 1, ".gif": 0}


@dataclass(frozen=True)
class Keeper:
    """The member to keep (its index in the group), why, and whether a person chose it."""

    index: int
    reason: str
    chosen: bool = False


def _format(record: Record) -> tuple[int, str]:
    ext = os.path.splitext(record.path)[1].lower()
    return FORMAT_RANK.get(ext, 1), ext.lstrip(".").upper() or "no extension"


def _pixels(record: Record) -> int:
    return (record.width or 0) * (record.height or 0)


def _size(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _date(ns: int | None) -> str:
    return "unknown" if ns is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ns / 1e9))


def suggest_keeper(members: Sequence[Record], kept: Sequence[bool] = ()) -> Keeper:
    """The member of ``members`` to keep (see the module docstring); ``kept[i]``: a person chose member i."""
    if not members:
        raise ValueError("a group has members")
    chosen = [i for i, k in enumerate(kept) if k]
    if chosen:
        best = min(chosen, key=lambda i: members[i].path)
        return Keeper(best, "you chose to keep it", True)
    criteria: list[tuple[str, Callable[[Record], int], Callable[[Record], str]]] = [
        ("the highest resolution", lambda r: _pixels(r),
         lambda r: f"{r.width}x{r.height}" if r.width and r.height else "unknown"),
        ("a lossless or better format", lambda r: _format(r)[0], lambda r: _format(r)[1]),
        ("the largest file", lambda r: r.size or 0, lambda r: _size(r.size)),
        ("the oldest file", lambda r: -(r.mtime_ns if r.mtime_ns is not None else 2**63), lambda r: _date(r.mtime_ns)),
    ]
    candidates, reasons = list(range(len(members))), []
    for words, value, shown in criteria:  # each narrows the candidates left by the ones before
        best_value = max(value(members[i]) for i in candidates)
        winners = [i for i in candidates if value(members[i]) == best_value]
        if len(winners) < len(candidates):
            others = sorted({shown(members[i]) for i in candidates if i not in winners})
            reasons.append(f"{words} ({shown(members[winners[0]])}; others: {', '.join(others[:3])})")
            candidates = winners
        if len(candidates) == 1:
            break
    first = min(candidates, key=lambda i: members[i].path)
    if not reasons:
        return Keeper(first, "all alike in resolution, format, size and age: the first by path")
    tie = "" if len(candidates) == 1 else ", then the first by path"
    return Keeper(first, ", then ".join(reasons) + tie)
