"""Dynamic batching: images from concurrent requests go through one ``Embedder.run`` together.

Each image is one queue item with its own future. One worker task takes the first waiting
image, waits up to ``max_wait_s`` for more (never past ``max_batch``), and runs the batch in
the single inference thread, off the event loop; while it runs, the next batch gathers. The
queue is bounded in images: a request that would overflow it is refused at once
(:class:`QueueFull`, a 429), never parked. A request that gives up (deadline, client gone)
cancels its futures, and the worker drops cancelled images before running a batch.

Waiting only while images are coming keeps a lone request from paying ``max_wait_s``: at
low load a batch runs at once, and under load the batch fills from the decodes in flight
and from what queued while the previous batch ran.

A lone image (nothing queued, decoding or running) skips the queue altogether:
:meth:`Batcher.run_alone` embeds it in one trip to the inference thread, without the queue's
wait for company. It used to decode there too, saving a trip to the decode pool, but a
pathological image (thousands of progressive JPEG scans) then held the inference thread for
every client, beyond any decode time limit: the service decodes in its decode pool only
(vggsim.serve.decoding).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QueueFull(Exception):
    """The batch queue has no room for the request's images."""


class ShuttingDown(Exception):
    """The service is draining: no new work is accepted."""


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued: float = field(default_factory=time.perf_counter)


class BatchObserver:
    """Hooks for metrics; the default does nothing."""

    def batch(self, size: int, seconds: float) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def depth(self, images: int) -> None: ...
    def dropped(self, images: int) -> None: ...


class Batcher:
    """Batches (H, W, 3) float32 arrays into calls of ``run`` (see the module docstring)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 8, max_wait_s: float = 0.005,
                 queue_size: int = 64, observer: BatchObserver | None = None,
                 coming: Callable[[], int] = lambda: 1) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch, self.max_wait_s, self.queue_size = max_batch, max_wait_s, queue_size
        self._observer = observer or BatchObserver()
        self._coming = coming
        self._items: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vggsim-inference")
        self._closing = False
        self.in_flight = 0  # images taken from the queue and not yet answered

    @property
    def depth(self) -> int:
        """Images waiting for inference (not counting the batch running now)."""
        return len(self._items)

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="vggsim-batcher")

    async def run_direct(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch in the inference thread, bypassing the queue (warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, batch)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self._items and self.in_flight == 0

    async def run_alone(self, prepare: Callable[[], np.ndarray]) -> np.ndarray:
        """``prepare()`` (cheap: the service passes an array decoded already) and its embedding as a batch
        of one, in the inference thread,
        in one trip there and back (see the module docstring); the same ``run`` on the same array as
        :meth:`submit` would make. For when :attr:`idle`: a batch submitted meanwhile waits its turn."""
        if self._closing or self._wakeup is None:
            raise ShuttingDown("the service is shutting down")
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._prepare_and_run, prepare)
        finally:
            self.in_flight -= 1

    def _prepare_and_run(self, prepare: Callable[[], np.ndarray]) -> np.ndarray:
        array = prepare()
        self._observer.waited(0.0)
        started = time.perf_counter()
        row: np.ndarray = self._run(array[None])[0]
        self._observer.batch(1, time.perf_counter() - started)  # prometheus is thread-safe
        return row

    async def submit(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The embeddings of ``arrays`` (in order) as an (N, dim) float32 array."""
        if self._closing or self._wakeup is None:
            raise ShuttingDown("the service is shutting down")
        if len(self._items) + len(arrays) > self.queue_size:
            raise QueueFull(f"{len(self._items)} images are queued (limit {self.queue_size})")
        loop = asyncio.get_running_loop()
        items = [_Item(a, loop.create_future()) for a in arrays]
        self._items.extend(items)
        self._observer.depth(len(self._items))
        self._wakeup.set()
        try:
            rows = [await items[0].future] if len(items) == 1 else await asyncio.gather(*(i.future for i in items))
        except BaseException:
            for item in items:  # a deadline or a gone client: the worker skips these
                item.future.cancel()
            raise
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        dropped = 0
        while self._items and len(batch) < self.max_batch:
            item = self._items.popleft()
            if not item.future.done():
                batch.append(item)
            else:  # its request gave up (client gone, deadline): never inferred
                dropped += 1
        self._observer.depth(len(self._items))
        if dropped:
            self._observer.dropped(dropped)
        return batch

    async def _gather(self) -> list[_Item]:
        """Wait for a first image, then up to max_wait_s for a full batch."""
        assert self._wakeup is not None
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = time.perf_counter() + self.max_wait_s
        while len(self._items) < self.max_batch and not self._closing and self._coming() > 0:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except asyncio.TimeoutError:
                break
        return self._take()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            now = time.perf_counter()
            for item in batch:
                self._observer.waited(now - item.queued)
            self.in_flight += len(batch)
            try:
                result = await loop.run_in_executor(self._executor, self._run, np.stack([i.array for i in batch]))
            except Exception as exc:  # the model failed: every image of the batch gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            else:
                self._observer.batch(len(batch), time.perf_counter() - now)
                for item, row in zip(batch, result):
                    if not item.future.done():
                        item.future.set_result(row)
            finally:
                self.in_flight -= len(batch)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, let queued and running images finish (up to ``timeout_s``), then stop."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        give_up = time.perf_counter() + timeout_s
        while (self._items or self.in_flight) and time.perf_counter() < give_up:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for item in self._items:
            item.future.cancel()
        self._items.clear()
        self._executor.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        return {"queued": len(self._items), "in_flight": self.in_flight, "max_batch": self.max_batch,
                "queue_size": self.queue_size}
