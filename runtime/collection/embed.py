"""Embedding inputs into a store: incremental, prunable, committed as it goes."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any
from collections.abc import Callable, Iterable, Iterator

from vggsim.errors import require_list, short_name
from vggsim.ingest.pipeline import EmbedResult, iter_embeddings
from vggsim.ingest.sources import iter_inputs
from vggsim import validate
from vggsim.store import Record, Store, StoreIdentity, StoreWriter
from vggsim.collection.incremental import latest_by_path, plan
from vggsim.collection.results import EmbedProgress, EmbedSummary, Failure

ProgressCallback = Callable[[EmbedProgress], None]


class _Committer:
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


def _record(result: EmbedResult) -> Record:
    """The store record of one pipeline result. An error keeps the stat taken when the file was
    read (``result.info``), never a later one: a file rewritten since must not look unchanged."""
    info = result.info
    if result.error is None:
        assert info is not None  # the pipeline sets info on every ok result
        return Record(result.path, "ok", info.size, info.mtime_ns, info.sha256, info.width, info.height)
    size = getattr(info, "size", None) if info is not None else None
    mtime_ns = getattr(info, "mtime_ns", None) if info is not None else None
    return Record(result.path, "error", size, mtime_ns, None, None, None, result.error.kind, result.error.reason)


def _prune(committer: _Committer, paths: Iterable[str]) -> int:
    pruned = 0
    for path in paths:
        if not os.path.lexists(path):
            committer.add(Record(path, "deleted"))
            pruned += 1
    return pruned


def _path_inputs(inputs: Iterable[Any], failures: list[Failure]) -> Iterator[str]:
    """Each input as a str path (bytes decoded losslessly, as the file system does); an item
    that is not a path at all is a ``bad_input`` failure of the run, and the run goes on."""
    for item in inputs:
        try:
            raw = os.fspath(item)
        except TypeError:
            name = f"<{type(item).__name__} {short_name(repr(item))}>"
            failures.append(Failure(name, "bad_input", f"expected a path (str, bytes or os.PathLike), "
                                    f"got {type(item).__name__}"))
            continue
        yield os.fsdecode(raw)


def embed_into_store(
    embedder: Any,
    inputs: Iterable[str | bytes | os.PathLike[str]],
    store: str | os.PathLike[str],
    *,
    list_file: str | None = None,
    all_files: bool = False,
    prune: bool = False,
    retry_errors: bool = False,
    batch_size: int = 8,
    workers: int | None = None,
    decode_timeout: float = 60.0,
    memory_budget: int | None = None,
    float16: bool = False,
    commit_rows: int = 1024,
    commit_seconds: float = 30.0,
    progress: ProgressCallback | None = None,
) -> EmbedSummary:
    """Embed files, folders, globs (and the paths in ``list_file``) into the store at ``store``.

    Incremental: a file whose size and mtime match its latest record is skipped when that
    record is ok, or an error of a kind retrying cannot fix (see
    :mod:`vggsim.collection.incremental`; ``retry_errors`` retries those too). ``prune``
    marks stored files that no longer exist as deleted. The store must have been made by
    the same model, preprocessing and dim (``StoreIdentity.of(embedder)``); ``float16``
    stores vectors as float16 (a new store only).

    The inputs are listed completely before embedding starts, so ``progress`` gets a
    known ``total`` and an ETA. The listing holds every path still to embed as a string
    (roughly 100-200 bytes each: about 150 MB per million files) next to the store's latest
    record per path; image data stays bounded by the pipeline (a few batches, and
    ``memory_budget`` bytes of decoding when given, else the pipeline's default).

    Records are flushed every ``batch_size`` files and committed every ``commit_rows``
    rows or ``commit_seconds`` seconds, whichever comes first: readers see a consistent,
    growing store during a long run, and an interrupted run keeps what it committed.

    ``inputs`` is a list (or other iterable) of paths, never one path: a str would be
    iterated character by character (ArgumentError). Items may be str, bytes (names that
    are not valid UTF-8 stay exact) or os.PathLike; any other item is a ``bad_input``
    failure of the run, not recorded in the store (it names no file).
    """
    require_list("inputs", inputs, "paths")
    batch_size = validate.positive_int("batch_size", batch_size)
    commit_rows = validate.positive_int("commit_rows", commit_rows)
    commit_seconds = validate.positive_float("commit_seconds", commit_seconds)
    decode_timeout = validate.positive_float("decode_timeout", decode_timeout)
    if workers is not None:
        workers = validate.positive_int("workers", workers)
    if memory_budget is not None:
        memory_budget = validate.positive_int("memory_budget", memory_budget)
    started = time.perf_counter()
    identity = StoreIdentity.of(embedder, "float16" if float16 else "float32")
    writer = Store.open_for_writing(store, identity)
    notes = list(getattr(writer, "recovery_notes", []))
    if float16 and writer.store.identity.dtype != "float16":  # the dtype is chosen once, when the store is made
        notes.append(f"float16 applies to new stores only: this store keeps {writer.store.identity.dtype} "
                     "vectors (chosen when it was made); re-create it to store float16")
    failures: list[Failure] = []
    embedded = pruned = 0
    try:
        known = latest_by_path(writer.store.records())
        listed = plan(iter_inputs(list(_path_inputs(inputs, failures)), list_file, all_files, skip=[store]),
                      known, retry_errors)
        seen = listed.seen + len(failures)  # items that are not paths count as seen and failed
        committer = _Committer(writer, batch_size, commit_rows, commit_seconds)
        if prune:
            pruned = _prune(committer, list(known))
        options: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "decode_timeout": decode_timeout}
        if memory_budget is not None:
            options["memory_budget"] = memory_budget
        report = _Reporter(progress, seen, listed.unchanged)
        report.update(0, 0)
        for result in iter_embeddings(embedder, listed.todo, **options):
            committer.add(_record(result), result.vector if result.error is None else None)
            if result.error is None:
                embedded += 1
            else:
                failures.append(Failure(result.path, result.error.kind, result.error.reason))
            report.update(embedded, len(failures))
    finally:
        final = writer.close()
    return EmbedSummary(
        store=os.fspath(store), seen=seen, embedded=embedded, unchanged=listed.unchanged,
        failed=len(failures), pruned=pruned, still_failing=listed.still_failing, failures=failures,
        failed_by_kind=dict(Counter(f.kind for f in failures)), seconds=round(time.perf_counter() - started, 2),
        provider=str(embedder.provider), random_weights=bool(embedder.manifest.random_weights),
        generation=final.generation, notes=notes)


class _Reporter:
    """Builds :class:`EmbedProgress`; the rate counts only files actually processed this run."""

    def __init__(self, callback: ProgressCallback | None, total: int, unchanged: int) -> None:
        self.callback, self.total, self.unchanged = callback, total, unchanged
        self.started = time.monotonic()

    def update(self, embedded: int, failed: int) -> None:
        if self.callback is None:
            return
        processed = embedded + failed
        elapsed = time.monotonic() - self.started
        remaining = self.total - self.unchanged - processed
        eta = remaining * elapsed / processed if processed else None
        self.callback(EmbedProgress(self.unchanged + processed, self.total, embedded, failed, self.unchanged,
                                    round(elapsed, 3), None if eta is None else round(eta, 3)))
