"""Embedding a stream of files: threaded decoding overlapped with batched inference.

Memory stays flat: at most ``2 * workers + batch_size`` decoded images exist at once.
Every path comes out exactly once, as a vector or as an error; a decode that runs past
``decode_timeout`` is reported as a timeout and its thread abandoned (threads are daemons,
so a stuck decoder never keeps the process alive).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator

import numpy as np

from .decode import check_path, open_image
from .embedder import Embedder
from .errors import ImageError
from .preprocess import jpeg_draft_hook, prepare
from .session import usable_cpus

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_DECODE_TIMEOUT = 60.0


@dataclass(frozen=True)
class FileInfo:
    """What the store records about a file besides its vector."""

    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int


@dataclass
class EmbedResult:
    """One path's outcome: ``vector`` set and ``error`` None, or the other way round."""

    path: str
    vector: np.ndarray | None = None
    error: ImageError | None = None
    info: FileInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_file(path: Path, embedder: Embedder, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, FileInfo]:
    """Read, hash, decode and preprocess one file; raise ImageError naming it."""
    name = str(path)
    check_path(path, name)
    stat = path.stat()
    if stat.st_size > max_bytes:
        raise ImageError(name, "too_large", f"file is {stat.st_size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(name, "unreadable", f"cannot read the file ({exc.strerror or exc})") from None
    before_load = jpeg_draft_hook(embedder.spec) if embedder.spec.jpeg_draft else None
    try:
        image = open_image(data, embedder.max_pixels, before_load)
    except ImageError as exc:
        raise ImageError(name, exc.kind, exc.reason) from None
    info = FileInfo(stat.st_size, stat.st_mtime_ns, hashlib.sha256(data).hexdigest(), *image.size)
    return prepare(image, embedder.spec, name), info


class _Worker(threading.Thread):
    def __init__(self, tasks: queue.Queue[Any], results: queue.Queue[Any], embedder: Embedder,
                 max_bytes: int) -> None:
        super().__init__(daemon=True, name="vggsim-decode")
        self.tasks, self.results, self.embedder, self.max_bytes = tasks, results, embedder, max_bytes
        self.lock = threading.Lock()
        self.current: tuple[Path, float] | None = None
        self.abandoned = False

    def run(self) -> None:
        while True:
            path = self.tasks.get()
            if path is None:
                self.tasks.put(None)  # pass the stop signal on to the next worker
                return
            with self.lock:
                self.current = (path, time.monotonic())
            try:
                array, info = read_file(path, self.embedder, self.max_bytes)
                outcome: EmbedResult | tuple[str, np.ndarray, FileInfo] = (str(path), array, info)
            except ImageError as exc:
                outcome = EmbedResult(str(path), error=exc)
            except Exception as exc:  # a bug or an exotic failure must not lose the path
                outcome = EmbedResult(str(path), error=ImageError(
                    str(path), "internal", f"unexpected {type(exc).__name__}: {exc}"))
            with self.lock:
                if self.abandoned:
                    return
                self.current = None
            self.results.put(outcome)

    def abandon_if_stuck(self, timeout: float) -> Path | None:
        """Mark this worker abandoned if its current file has run past ``timeout``."""
        with self.lock:
            if self.current and time.monotonic() - self.current[1] > timeout and not self.abandoned:
                self.abandoned = True
                return self.current[0]
        return None


def iter_embeddings(
    embedder: Embedder,
    paths: Iterable[str | os.PathLike[str]],
    batch_size: int = 8,
    workers: int | None = None,
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[EmbedResult]:
    """Yield an :class:`EmbedResult` for every path, in completion order, never raising for bad files.

    A caller can stream a collection of any size: nothing is held beyond a few batches.
    """
    workers = max(1, workers or min(8, usable_cpus()))
    tasks: queue.Queue[Path | None] = queue.Queue(maxsize=2 * workers)
    results: queue.Queue[Any] = queue.Queue(maxsize=2 * workers + batch_size)
    counts = {"submitted": 0}
    feeder_state: dict[str, Any] = {"done": False, "error": None}

    def feed() -> None:
        try:
            for path in paths:
                counts["submitted"] += 1
                tasks.put(Path(path))
        except BaseException as exc:  # re-raised in the caller's thread
            feeder_state["error"] = exc
        finally:
            feeder_state["done"] = True
            tasks.put(None)

    pool = [_Worker(tasks, results, embedder, max_bytes) for _ in range(workers)]
    threading.Thread(target=feed, daemon=True, name="vggsim-feed").start()
    for worker in pool:
        worker.start()
    batch: list[tuple[str, np.ndarray, FileInfo]] = []
    finished = 0

    def run_batch() -> Iterator[EmbedResult]:
        vectors = embedder.run(np.stack([array for _, array, _ in batch]))
        for (path, _, info), vector in zip(batch, vectors):
            yield EmbedResult(path, vector=vector, info=info)
        batch.clear()

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
                    replacement = _Worker(tasks, results, embedder, max_bytes)
                    pool.append(replacement)
                    replacement.start()
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
    if feeder_state["error"] is not None:
        raise feeder_state["error"]
