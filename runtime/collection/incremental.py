"""Which listed files an embed can skip: the incremental rules, in one place.

A file is *unchanged* when its size and mtime_ns equal those of its latest record and that
record is either ok, or an error that retrying cannot fix: its kind is not in
:data:`~vggsim.errors.RETRYABLE_ERROR_KINDS` and ``retry_errors`` is off. Unchanged files
whose latest record is an error are *still failing*: the run reports them and exits 1.
An error recorded without a size (the file could not be stat'ed when read) never matches,
so it is retried every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Iterable

from vggsim.errors import RETRYABLE_ERROR_KINDS
from vggsim.store import Record


@dataclass(frozen=True)
class Plan:
    """The listed inputs split into what to embed and what to skip."""

    todo: list[str]  # absolute paths, in listing order
    seen: int
    unchanged: int
    still_failing: int


def latest_by_path(records: Iterable[Record]) -> dict[str, Record]:
    """The store's current view keyed by path (``records()`` already holds one per path)."""
    return {r.path: r for r in records}


def skippable(record: Record | None, size: int, mtime_ns: int, retry_errors: bool) -> bool:
    """Whether a file of this size and mtime can be skipped given its latest ``record``."""
    if record is None or record.size is None or (record.size, record.mtime_ns) != (size, mtime_ns):
        return False
    if record.status == "ok":
        return True
    return record.status == "error" and not retry_errors and record.error_kind not in RETRYABLE_ERROR_KINDS


def plan(paths: Iterable[os.PathLike[str] | str], known: dict[str, Record], retry_errors: bool) -> Plan:
    """List every input once (so the total is known before embedding) and apply the rules.

    The stat here only decides skipping; a file's recorded size and mtime always come from
    the stat taken when it was read.
    """
    todo: list[str] = []
    seen = unchanged = still_failing = 0
    for path in paths:
        key = os.path.abspath(path)
        seen += 1
        record = known.get(key)
        if record is not None:
            try:
                stat = os.stat(key)
            except OSError:
                stat = None
            if stat is not None and skippable(record, stat.st_size, stat.st_mtime_ns, retry_errors):
                unchanged += 1
                still_failing += record.status == "error"
                continue
        todo.append(key)
    return Plan(todo, seen, unchanged, still_failing)
