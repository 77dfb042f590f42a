"""Embedding a stream of files: threaded decoding overlapped with batched inference.

Memory is bounded by a budget, not by the worker count: each decode is admitted by the
memory it will need (see :mod:`vggsim.images.budget`, ``memory_budget``), and at most
``2 * workers + batch_size`` small model-sized arrays wait for inference. Every item comes
out exactly once, as a vector or as an error (an item that is not a path is a ``bad_input``
error); a decode that runs past ``decode_timeout`` is reported as a timeout and its thread
abandoned (threads are daemons, so a stuck decoder never keeps the process alive). Every wait
is bounded, so nothing here can hang on a bad item.
"""

from __future__ import annotations

import os
import queue
import reprlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.images.budget import DEFAULT_MEMORY_BUDGET, MemoryBudget, Reservation, return_freed_buffers_to_the_os
from vggsim.images.warnings import decode_warnings, install as install_warning_routing
from vggsim.model.embedder import Embedder
from vggsim.errors import ImageError, require_list
from vggsim.ingest.reading import DEFAULT_MAX_BYTES, Admit, FileError, FileInfo, read_file
from vggsim.model.session import usable_cpus

__all__ = ["DEFAULT_MEMORY_BUDGET", "DEFAULT_MAX_BYTES", "DEFAULT_DECODE_TIMEOUT", "EmbedResult", "FileError",
           "FileInfo", "iter_embeddings", "read_file"]

DEFAULT_DECODE_TIMEOUT = 60.0


@dataclass
class EmbedResult:
    """One item's outcome: ``vector`` set and ``error`` None, or the other way round.

    ``info`` is the file's FileInfo; for an error, what was stat'ed before the read, or None
    when the file could not be stat'ed (missing, or not a path at all).
    """

    path: str
    vector: np.ndarray | None = None
    error: ImageError | None = None
    info: FileInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _as_path(item: object) -> Path | EmbedResult:
    """A path item as a Path (bytes decoded as the file system does, losslessly); anything
    else as a ``bad_input`` error result."""
    if isinstance(item, (str, bytes, os.PathLike)):
        try:
            raw = os.fspath(item)
        except TypeError as exc:
            raw = None
            reason = f"os.fspath failed: {exc}"
        if isinstance(raw, bytes):
            raw = os.fsdecode(raw)
        if isinstance(raw, str):
            if "\0" not in raw:
                return Path(raw)
            reason = "the path contains a NUL byte"
        name = raw if isinstance(raw, str) else f"<{type(item).__name__}>"
    else:
        name = f"<{type(item).__name__} {reprlib.repr(item)}>"
        reason = f"expected a path (str, bytes or os.PathLike), got {type(item).__name__}"
    return EmbedResult(name, error=ImageError(name, "bad_input", reason))


class _Worker(threading.Thread):
    def __init__(self, tasks: queue.Queue[Any], results: queue.Queue[Any], embedder: Embedder,
                 max_bytes: int, budget: MemoryBudget, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="vggsim-decode")
        self.tasks, self.results, self.embedder, self.max_bytes = tasks, results, embedder, max_bytes
        self.budget, self.stop = budget, stop
        self.lock = threading.Lock()
        self.current: tuple[Path, float] | None = None  # None while idle or waiting for memory
        self.reservation: Reservation | None = None
        self.abandoned = False

    def _admit(self, path: Path) -> Admit:
        return lambda need: _Admission(self, path, need)

    def _put(self, outcome: object) -> None:
        while not self.stop.is_set():
            try:
                self.results.put(outcome, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                task = self.tasks.get(timeout=0.2)
            except queue.Empty:
                continue
            if task is None:
                self.tasks.put(None)  # pass the stop signal on to the next worker
                return
            if isinstance(task, EmbedResult):  # a bad item, already an error
                self._put(task)
                continue
            with self.lock:
                self.current = (task, time.monotonic())
            outcome: EmbedResult | tuple[str, np.ndarray, FileInfo]
            try:
                with decode_warnings() as caught:  # Pillow's warnings belong to this file, not stderr
                    try:
                        array, info = read_file(task, self.embedder, self.max_bytes, self._admit(task))
                    except ImageError as exc:
                        attach_warnings(exc, caught)
                        raise
                outcome = (str(task), array, info)
            except ImageError as exc:  # kept without its traceback, whose frames hold big buffers
                outcome = EmbedResult(str(task), error=exc.with_traceback(None), info=getattr(exc, "info", None))
            except Exception as exc:  # a bug or an exotic failure must not lose the path
                outcome = EmbedResult(str(task), error=ImageError(
                    str(task), "internal", f"unexpected {type(exc).__name__}: {exc}"))
            with self.lock:
                if self.abandoned:
                    return
                self.current = None
            self._put(outcome)

    def abandon_if_stuck(self, timeout: float) -> Path | None:
        """Mark this worker abandoned if its current file has run past ``timeout``.

        Its memory reservation is given back, so no later file can wait on it forever.
        """
        with self.lock:
            if self.current and time.monotonic() - self.current[1] > timeout and not self.abandoned:
                self.abandoned = True
                reservation, self.reservation = self.reservation, None
                stuck = self.current[0]
            else:
                return None
        if reservation is not None:
            reservation.release()
        return stuck


class _Admission:
    """Entered around a worker's read and decode: waits for memory, then starts the timeout clock."""

    def __init__(self, worker: _Worker, path: Path, need: int) -> None:
        self.worker, self.path, self.need = worker, path, need

    def __enter__(self) -> None:
        worker = self.worker
        with worker.lock:
            worker.current = None  # waiting for memory is not decoding: no timeout meanwhile
        reservation = worker.budget.acquire(self.need, lambda: worker.stop.is_set() or worker.abandoned)
        if reservation is None:
            raise ImageError(str(self.path), "internal", "the run stopped before this file was read")
        with worker.lock:
            worker.reservation = reservation
            worker.current = (self.path, time.monotonic())

    def __exit__(self, *exc: object) -> None:
        with self.worker.lock:
            reservation, self.worker.reservation = self.worker.reservation, None
        if reservation is not None:
            reservation.release()


def attach_warnings(error: ImageError, caught: list[str]) -> None:
    """Add what the decoder warned about a failed file to its reason (the first three)."""
    if caught:
        error.reason = f"{error.reason} (decoder warnings: {'; '.join(caught[:3])})"
        error.args = (f"{error.source}: {error.reason}",)


def iter_embeddings(
    embedder: Embedder,
    items: Iterable[str | bytes | os.PathLike[str]],
    batch_size: int = 8,
    workers: int | None = None,
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Iterator[EmbedResult]:
    """Yield an :class:`EmbedResult` for every item, in completion order, never raising for bad files.

    A caller can stream a collection of any size: nothing is held beyond a few batches, and
    decodes together hold at most ``memory_budget`` bytes (an image that needs more than the
    whole budget is decoded alone). An item that is not a path gives a ``bad_input`` error
    result; an exception raised by ``items`` itself is re-raised here, after the items before
    it have come out. ``items`` itself must be a list or other iterable of paths: one path
    (a str, bytes or PathLike) raises :class:`~vggsim.errors.ArgumentError` at once.
    """
    require_list("items", items, "paths")
    return _iter_embeddings(embedder, items, batch_size, workers, decode_timeout, max_bytes, memory_budget)


def _iter_embeddings(embedder: Embedder, items: Iterable[Any], batch_size: int, workers: int | None,
                     decode_timeout: float, max_bytes: int, memory_budget: int) -> Iterator[EmbedResult]:
    workers = max(1, workers or min(8, usable_cpus()))
    budget = MemoryBudget(memory_budget)
    return_freed_buffers_to_the_os()
    install_warning_routing()  # before the workers start: their warnings go to their file
    stop = threading.Event()
    tasks: queue.Queue[Path | EmbedResult | None] = queue.Queue(maxsize=2 * workers)
    results: queue.Queue[Any] = queue.Queue(maxsize=2 * workers + batch_size)
    counts = {"submitted": 0}
    feeder_state: dict[str, Any] = {"done": False, "error": None}

    def put_task(task: Path | EmbedResult | None) -> bool:
        while not stop.is_set():
            try:
                tasks.put(task, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for item in items:
                task = _as_path(item)
                counts["submitted"] += 1
                if not put_task(task):
                    return
        except BaseException as exc:  # re-raised in the caller's thread
            feeder_state["error"] = exc
        finally:
            feeder_state["done"] = True
            put_task(None)

    def new_worker() -> _Worker:
        worker = _Worker(tasks, results, embedder, max_bytes, budget, stop)
        worker.start()
        return worker

    threading.Thread(target=feed, daemon=True, name="vggsim-feed").start()
    pool = [new_worker() for _ in range(workers)]
    batch: list[tuple[str, np.ndarray, FileInfo]] = []
    finished = 0

    def run_batch() -> Iterator[EmbedResult]:
        vectors = embedder.run(np.stack([array for _, array, _ in batch]))
        done = list(batch)
        batch.clear()
        for (path, _, info), vector in zip(done, vectors):
            yield EmbedResult(path, vector=vector, info=info)

    try:
        while not (feeder_state["done"] and finished == counts["submitted"]):
            try:
                item = results.get(timeout=0.2)
            except queue.Empty:
                if batch:  # nothing else is ready: run what we have rather than wait
                    finished += len(batch)
                    yield from run_batch()
                for worker in list(pool):
                    stuck = worker.abandon_if_stuck(decode_timeout)
                    if stuck is not None:
                        pool.remove(worker)
                        pool.append(new_worker())
                        finished += 1
                        yield EmbedResult(str(stuck), error=ImageError(
                            str(stuck), "timeout", f"decoding took longer than {decode_timeout:g} s; skipped"))
                continue
            if isinstance(item, EmbedResult):
                finished += 1
                yield item
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                finished += len(batch)
                yield from run_batch()
        if batch:
            finished += len(batch)
            yield from run_batch()
    finally:
        stop.set()  # also when the caller stops early: feeder and workers wind down
    if feeder_state["error"] is not None:
        raise feeder_state["error"]
