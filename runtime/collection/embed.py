"""Embedding inputs into a store: incremental, prunable, committed as it goes."""

from __future__ import annotations

import os
from typing import Any
from collections.abc import Iterable, Iterator

from vggsim.errors import require_list, short_name
from vggsim.ingest.pipeline import EmbedResult, iter_embeddings
from vggsim.ingest.sources import iter_inputs
from vggsim import validate
from vggsim.model.embedder import Embedder
from vggsim.store import Record, StoreIdentity
from vggsim.collection.incremental import plan
from vggsim.collection.run import EmbedRun, ProgressCallback
from vggsim.collection.results import EmbedSummary, Failure



def _record(result: EmbedResult) -> Record:
    """The store record of one pipeline result. An error keeps the stat taken when the file was
    read (``result.info``), never a later one: a file rewritten since must not look unchanged."""
    info = result.info
    if result.error is None:
        assert info is not None  # the pipeline sets info on every ok result
        return Record(result.path, "ok", info.size, info.mtime_ns, info.sha256, info.width, info.height,
                      pixel_sha256=info.pixel_sha256 or None)
    size = getattr(info, "size", None) if info is not None else None
    mtime_ns = getattr(info, "mtime_ns", None) if info is not None else None
    return Record(result.path, "error", size, mtime_ns, None, None, None, result.error.kind, result.error.reason)


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
    embedder: Embedder,
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
    identity = StoreIdentity.of(embedder, "float16" if float16 else "float32")
    run = EmbedRun(store, identity, flush_rows=batch_size, commit_rows=commit_rows, commit_seconds=commit_seconds,
                   progress=progress)
    if float16 and run.writer.store.identity.dtype != "float16":  # the dtype is chosen once, when the store is made
        run.notes.append(f"float16 applies to new stores only: this store keeps {run.writer.store.identity.dtype} "
                         "vectors (chosen when it was made); re-create it to store float16")
    failures: list[Failure] = []
    try:
        paths = list(_path_inputs(inputs, failures))
        listed = plan(iter_inputs(paths, list_file, all_files, skip=[store], on_error=run.unreadable_folder),
                      run.known, retry_errors)
        for failure in failures:  # items that are not paths count as seen and failed
            run.fail(failure)
        if prune:
            run.prune(inputs=paths)
        # not paths, folders that could not be listed, records prune could not check: seen and failed
        failed_early = len(run.failures)
        options: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "decode_timeout": decode_timeout}
        if memory_budget is not None:
            options["memory_budget"] = memory_budget
        run.begin(listed.seen + failed_early, listed.unchanged, listed.still_failing)
        for result in iter_embeddings(embedder, listed.todo, **options):
            run.add(_record(result), result.vector)
    finally:
        run.close()
    return run.summary(seen=listed.seen + failed_early, unchanged=listed.unchanged,
                       still_failing=listed.still_failing, provider=str(embedder.provider),
                       random_weights=bool(embedder.manifest.random_weights))

