"""One run that embeds into a store, whoever does the decoding and inference.

The local pipeline (:func:`vggsim.collection.embed_into_store`) and Ray
(:func:`vggsim.ray.embed.embed_dataset`) differ only in where images are decoded and embedded;
everything around that is this class, once: opening the store for writing, the latest record per
path (for the incremental rules), a flush per batch and a commit every N rows or T seconds,
pruning, counting, progress, and the summary.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from vggsim.collection.incremental import latest_by_path
from vggsim.collection.results import EmbedProgress, EmbedSummary, Failure
from vggsim.store import Record, Store, StoreIdentity, StoreWriter

ProgressCallback = Callable[[EmbedProgress], None]


class Committer:
    """Flush every batch (a kill loses at most one), commit every N rows or T seconds (a long
    embed becomes searchable as it goes: each commit is a new snapshot readers pick up)."""

    def __init__(self, writer: StoreWriter, flush_rows: int, commit_rows: int, commit_seconds: float) -> None:
        self.writer, self.flush_rows = writer, flush_rows
        self.commit_rows, self.commit_seconds = commit_rows, commit_seconds
        self.unflushed = self.uncommitted = 0
        self.last_commit = time.monotonic()

    def add(self, record: Record, vector: Any = None) -> None:
        self.writer.add(record, vector)
        self.unflushed += 1
        self.uncommitted += 1
        if self.uncommitted >= self.commit_rows or time.monotonic() - self.last_commit >= self.commit_seconds:
            self.writer.commit()
            self.unflushed = self.uncommitted = 0
            self.last_commit = time.monotonic()
        elif self.unflushed >= self.flush_rows:
            self.writer.flush()
            self.unflushed = 0


class Reporter:
    """Builds :class:`EmbedProgress`; the rate counts only files actually processed this run."""

    def __init__(self, callback: ProgressCallback | None, total: int, unchanged: int, still_failing: int = 0) -> None:
        self.callback, self.total, self.unchanged, self.still_failing = callback, total, unchanged, still_failing
        self.started = time.monotonic()

    def update(self, embedded: int, failed: int) -> None:
        if self.callback is None:
            return
        processed = embedded + failed
        elapsed = time.monotonic() - self.started
        remaining = self.total - self.unchanged - processed
        eta = remaining * elapsed / processed if processed else None
        self.callback(EmbedProgress(self.unchanged + processed, self.total, embedded, failed, self.unchanged,
                                    round(elapsed, 3), None if eta is None else round(eta, 3), self.still_failing))


class EmbedRun:
    """The store side of one embedding run: ``add`` each result, ``close`` once, then ``summary``."""

    def __init__(self, store: str | os.PathLike[str], identity: StoreIdentity, *, flush_rows: int,
                 commit_rows: int, commit_seconds: float, progress: ProgressCallback | None) -> None:
        self.store = os.fspath(store)
        self.started = time.perf_counter()
        self.writer = StoreWriter.open(store, identity)
        self.notes: list[str] = list(getattr(self.writer, "recovery_notes", []))
        #: the store's latest record per path when the run began (what the incremental rules compare with)
        self.known: dict[str, Record] = latest_by_path(self.writer.store.records())
        self.failures: list[Failure] = []
        self.embedded = self.pruned = 0
        self.unseen: list[str] = []  # folders a walk could not list: nothing under them is pruned
        self._committer = Committer(self.writer, flush_rows, commit_rows, commit_seconds)
        self._progress = progress
        self._reporter = Reporter(None, 0, 0)
        self._final: Store | None = None

    def begin(self, total: int, unchanged: int, still_failing: int = 0) -> None:
        """Start reporting progress: ``total`` inputs seen, ``unchanged`` of them skipped, ``still_failing``
        of those skipped because they failed before and would again (the bar counts them as failed)."""
        self._reporter = Reporter(self._progress, total, unchanged, still_failing)
        self._reporter.update(0, 0)

    def prune(self, paths: Iterable[str] | None = None, inputs: Iterable[str] = ()) -> int:
        """Mark stored files that no longer exist as deleted (default: every path the store knows).

        Gone means the OS said so (ENOENT, ENOTDIR). Any other error (permissions, I/O, a name too
        long, a symlink loop) says nothing about the file: it is a failure of the run, and the
        record stays. Nothing under a folder in :attr:`unseen` (a walk could not list it) is pruned.

        A drive that is not mounted looks like files gone, so: nothing is pruned under a named input
        (``inputs``) that is missing or an empty folder, and a file whose own folder is gone too, or
        holds nothing (hidden entries and ``lost+found`` aside: an empty mount point), is pruned only
        under a named input folder that is there and not empty (the user named the tree it was deleted
        from). What is kept that way is said in :attr:`notes`.
        """
        roots, shielded = _input_roots(inputs)
        self.notes += [f"{folder}: {why}; nothing under it was pruned (a drive that is not mounted looks like this)"
                       for folder, why in shielded.items()]
        hidden = tuple(os.path.join(folder, "") for folder in [*map(os.path.abspath, self.unseen), *shielded])
        roots_prefixes = tuple(os.path.join(root, "") for root in roots)
        kept: set[str] = set()
        looks_unmounted: dict[str, bool] = {}  # folder -> gone, or there with nothing a walk would list
        for path in list(self.known) if paths is None else paths:
            if hidden and path.startswith(hidden):
                continue
            try:
                os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                folder = os.path.dirname(path)
                if not path.startswith(roots_prefixes):
                    if folder not in looks_unmounted:
                        looks_unmounted[folder] = _holds_nothing(folder)
                    if looks_unmounted[folder]:
                        kept.add(folder)
                        continue
                self._committer.add(Record(path, "deleted"))
                self.pruned += 1
            except (OSError, ValueError) as exc:
                cause = getattr(exc, "strerror", None) or str(exc)
                self.fail(Failure(path, "unreadable", f"cannot tell whether it still exists ({cause}): not pruned"))
        if kept:
            self.notes.append(f"not pruned: files in {len(kept)} missing or empty folder(s) such as {sorted(kept)[0]} "
                              "(a drive that is not mounted looks like this); to prune them, name a folder "
                              "above them that is there: vggsim embed FOLDER --prune")
        return self.pruned

    def unreadable_folder(self, folder: str, error: OSError) -> None:
        """The ``on_error`` of :func:`~vggsim.ingest.sources.iter_inputs`: a folder a walk could not list is a
        failure of the run (its path and cause), remembered in :attr:`unseen` so that prune leaves it alone."""
        if folder in self.unseen:  # a glob may try one folder twice ("**" lists it, then "*.png" in it)
            return
        self.unseen.append(folder)
        self.fail(Failure(folder, "unreadable", f"cannot list this folder ({error.strerror or error}); "
                          "its files were not embedded, and none of them is pruned"))

    def add(self, record: Record, vector: Any = None) -> None:
        """Write one file's result: an ok record with its vector, or an error record (a failure of the run)."""
        self._committer.add(record, vector if record.status == "ok" else None)
        if record.status == "ok":
            self.embedded += 1
        else:
            self.failures.append(Failure(record.path, record.error_kind or "internal", record.error or ""))
        self._reporter.update(self.embedded, len(self.failures))

    def fail(self, failure: Failure) -> None:
        """A failure with no file to record (an input that is not a path at all)."""
        self.failures.append(failure)

    def close(self) -> Store:
        """Commit what is left and release the store's lock; the final snapshot."""
        if self._final is None:
            self._final = self.writer.close()
        return self._final

    def summary(self, *, seen: int, unchanged: int, still_failing: int, provider: str,
                random_weights: bool) -> EmbedSummary:
        final = self.close()
        return EmbedSummary(
            store=self.store, seen=seen, embedded=self.embedded, unchanged=unchanged,
            failed=len(self.failures), pruned=self.pruned, still_failing=still_failing, failures=self.failures,
            failed_by_kind=dict(Counter(f.kind for f in self.failures)),
            seconds=round(time.perf_counter() - self.started, 2), provider=provider,
            random_weights=random_weights, generation=final.generation, notes=self.notes)


def _input_roots(inputs: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The named inputs that are folders with entries (absolute), and those missing or empty, with why."""
    roots: list[str] = []
    shielded: dict[str, str] = {}
    for name in inputs:
        if any(c in name for c in "*?["):  # a glob names no one folder
            continue
        folder = os.path.abspath(name)
        try:
            empty = _holds_nothing(folder, missing_ok=False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if not isinstance(exc, NotADirectoryError) or not os.path.exists(folder):
                shielded[folder] = "this input is missing"
            continue  # a file: it is its own record
        except OSError:
            continue  # unreadable: the walk reports it and unseen shields it
        if empty:
            shielded[folder] = "this input is an empty folder"
        else:
            roots.append(folder)
    return roots, shielded


def _holds_nothing(folder: str, missing_ok: bool = True) -> bool:
    """Whether ``folder`` is gone (when ``missing_ok``) or holds nothing a walk would list: only hidden
    entries and ``lost+found``, as an empty mount point does. An unreadable folder holds something."""
    try:
        with os.scandir(folder) as entries:
            return all(e.name.startswith(".") or e.name == "lost+found" for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        if missing_ok:
            return True
        raise
    except OSError:
        return False
