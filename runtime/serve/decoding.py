"""Decoding uploads: a bounded pool of threads, each decode admitted by the library's memory budget and
bounded in time.

The same path as ``Embedder.load`` (``preprocess.decode_and_prepare``: the allowlist, the
pixel limit, the preprocessing), so an upload's array is the one ``Embedder.embed`` makes of
the same bytes. The header is read first to size the decode (``budget.decode_need``), and
the decode waits for that many bytes of the shared budget, as the pipeline's decodes do.

A decode that runs past ``timeout_s`` (``--decode-timeout``, as ``vggsim embed`` has) is answered
as a ``timeout`` ImageError (422) and its thread abandoned, as the embed pipeline abandons one:
the clock starts once the decode has its memory, the reservation is given back, and a new
thread takes the abandoned one's place (at most ``workers`` abandoned threads at a time:
past that the pool shrinks until one finishes, so a flood of pathological images cannot
spawn threads without end). With every thread held that way, image requests get 503 at once
and /health/ready says not ready until one ends (:attr:`Decoder.blocked`). The threads are
daemons: a stuck decode never holds up shutdown past ``--drain-timeout``. Decoding never runs in
the inference thread (vggsim.serve.embedding).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggsim.errors import ImageError
from vggsim.images.budget import MemoryBudget, decode_need, return_freed_buffers_to_the_os
from vggsim.images.decode import probe_bytes
from vggsim.images.preprocess import decode_and_prepare, decode_prepare_and_hash
from vggsim.model.embedder import Embedder

# Decode threads run at normal priority. They used to be niced below inference (on a 2-core
# box a decode preempting one of onnxruntime's intra-op threads stalls the whole operator),
# but niced threads starve behind anything else at normal priority: on an H200 machine 8
# clients waited 0.5 s a request (14 images/s against 83 for one client), and on a 2-core
# box shared with other work 8 clients got 22 images/s niced against 97 not niced (a fast
# stand-in model, same run). Slower under contention beats starved.

DEFAULT_DECODE_TIMEOUT = 60.0


class DecodersBlocked(Exception):
    """Every decode thread is held by a decode past its time limit (the message says so)."""


@dataclass
class _Task:
    data: bytes
    name: str
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[np.ndarray]
    started: asyncio.Event
    given_up: bool = False  # the request left, or the decode was abandoned: nobody waits for it
    replaced: bool | None = None  # set when abandoned: whether a new thread took this one's place
    finished: bool = False  # the thread is done with it
    reservation: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Decoder:
    """Decodes image bytes into model arrays in ``workers`` threads under ``memory_budget`` bytes,
    each decode within ``timeout_s`` seconds (see the module docstring)."""

    def __init__(self, embedder: Embedder, workers: int, memory_budget: int,
                 timeout_s: float = DEFAULT_DECODE_TIMEOUT) -> None:
        self._embedder = embedder
        self.workers, self.timeout_s = max(1, workers), timeout_s
        self.budget = MemoryBudget(memory_budget)
        self._tasks: queue.Queue[_Task | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.abandoned = 0  # threads still running a decode that timed out
        self.unreplaced = 0  # of those, the ones no new thread replaced: the pool is that much smaller
        for _ in range(self.workers):
            self._spawn()
        return_freed_buffers_to_the_os()

    def _spawn(self) -> None:
        threading.Thread(target=self._work, name="vggsim-decode", daemon=True).start()

    def decode_sync(self, data: bytes, name: str, task: _Task | None = None) -> np.ndarray:
        """Decode one upload in this thread (budget-admitted); ImageError if it is not a usable image."""
        embedder = self._embedder
        need = decode_need(probe_bytes(data, name, embedder.max_pixels), len(data), embedder.spec)
        reservation = self.budget.acquire(need, lambda: self._stop.is_set() or (task is not None and task.given_up))
        if reservation is None:
            raise ImageError(name, "timeout", "the service is shutting down or the request left")
        if task is not None:
            with task.lock:
                task.reservation = reservation
            task.loop.call_soon_threadsafe(task.started.set)  # the timeout clock starts now
        try:
            return decode_and_prepare(data, embedder.spec, embedder.max_pixels, name)[0]
        finally:
            reservation.release()

    def pixel_digest(self, data: bytes, name: str) -> str | None:
        """The pixel sha256 of an upload (the duplicate check's pixel tier), decoded again within the memory
        budget; None when it cannot be decoded or the budget is not free within the decode timeout."""
        embedder = self._embedder
        try:
            need = decode_need(probe_bytes(data, name, embedder.max_pixels), len(data), embedder.spec)
        except ImageError:
            return None
        deadline = time.monotonic() + self.timeout_s
        reservation = self.budget.acquire(need, lambda: self._stop.is_set() or time.monotonic() > deadline)
        if reservation is None:
            return None
        try:
            return decode_prepare_and_hash(data, embedder.spec, embedder.max_pixels, name)[2]
        except ImageError:
            return None
        finally:
            reservation.release()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                task = self._tasks.get(timeout=0.25)
            except queue.Empty:
                continue
            if task is None or task.given_up:
                continue
            try:
                outcome: Any = self.decode_sync(task.data, task.name, task)
            except Exception as exc:  # ImageError, or a bug: the request gets it, not this thread
                outcome = exc
            with task.lock:
                replaced, given_up, task.finished = task.replaced, task.given_up, True
            if not given_up:
                task.loop.call_soon_threadsafe(_settle, task.done, outcome)
            if replaced is not None:  # this decode was abandoned, and has ended now
                with self._lock:
                    self.abandoned -= 1
                    self.unreplaced -= 0 if replaced else 1  # unreplaced: this thread serves again
                if replaced:  # a new thread serves in this one's place
                    return

    @property
    def blocked(self) -> str | None:
        """Why no decode can start now (every thread holds a decode past its time limit), or None.

        Threads cannot be stopped: until one of those decodes ends, the service answers image
        requests 503 at once and /health/ready says not ready, so a load balancer routes around it."""
        with self._lock:
            if self.unreplaced < self.workers:
                return None
            return (f"all {self.workers} decode threads are held by decodes past the {self.timeout_s:g} s "
                    f"--decode-timeout ({self.abandoned} still running); retry later")

    async def decode(self, data: bytes, name: str) -> np.ndarray:
        reason = self.blocked
        if reason is not None:
            raise DecodersBlocked(reason)
        loop = asyncio.get_running_loop()
        task = _Task(data, name, loop, loop.create_future(), asyncio.Event())
        self._tasks.put(task)
        started_wait = asyncio.ensure_future(task.started.wait())
        try:  # waiting for a thread and for memory is bounded by the request's deadline, not by this timeout
            first: set[asyncio.Future[Any]] = {task.done, started_wait}
            while not (await asyncio.wait(first, timeout=0.5, return_when=asyncio.FIRST_COMPLETED))[0]:
                reason = self.blocked  # queued when the last thread was taken: no thread will come for it
                if reason is not None:
                    raise DecodersBlocked(reason)
            if not task.done.done():
                started = time.monotonic()
                done, _ = await asyncio.wait({task.done}, timeout=self.timeout_s)
                if not done:
                    self._abandon(task)
                    raise ImageError(name, "timeout", f"decoding took longer than {self.timeout_s:g} s "
                                     f"(--decode-timeout); skipped after {time.monotonic() - started:.1f} s")
            return task.done.result()
        finally:
            started_wait.cancel()
            with task.lock:
                task.given_up = True  # a request that left (or timed out) leaves its queued decode undone

    def _abandon(self, task: _Task) -> None:
        """The decode ran too long: give its memory back and let a new thread take its place."""
        with task.lock:
            task.given_up = True
            if task.finished:  # it ended just now: its thread is back in the pool
                return
            with self._lock:
                self.abandoned += 1
                replace = self.abandoned <= self.workers
                self.unreplaced += 0 if replace else 1
            task.replaced = replace
            reservation, task.reservation = task.reservation, None
        if reservation is not None:
            reservation.release()
        if replace:
            self._spawn()

    def close(self) -> None:
        """Stop the threads; a stuck decode is not waited for (its thread is a daemon)."""
        self._stop.set()


def _settle(future: asyncio.Future[np.ndarray], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
