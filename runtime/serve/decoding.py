"""Decoding uploads: a bounded pool of threads, each decode admitted by the library's memory budget.

The same path as ``Embedder.load`` (``preprocess.decode_and_prepare``: the allowlist, the
pixel limit, the preprocessing), so an upload's array is the one ``Embedder.embed`` makes of
the same bytes. The header is read first to size the decode (``budget.decode_need``), and
the decode waits for that many bytes of the shared budget, as the pipeline's decodes do.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vggsim.images.budget import MemoryBudget, decode_need, return_freed_buffers_to_the_os
from vggsim.images.decode import probe_bytes
from vggsim.model.embedder import Embedder
from vggsim.errors import ImageError
from vggsim.images.preprocess import decode_and_prepare


# Decode threads run at normal priority. They used to be niced below inference (on a 2-core
# box a decode preempting one of onnxruntime's intra-op threads stalls the whole operator),
# but niced threads starve behind anything else at normal priority: on an H200 machine 8
# clients waited 0.5 s a request (14 images/s against 83 for one client), and on a 2-core
# box shared with other work 8 clients got 22 images/s niced against 97 not niced (a fast
# stand-in model, same run). Slower under contention beats starved.


class Decoder:
    """Decodes image bytes into model arrays in ``workers`` threads under ``memory_budget`` bytes."""

    def __init__(self, embedder: Embedder, workers: int, memory_budget: int) -> None:
        self._embedder = embedder
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="vggsim-decode")
        self.budget = MemoryBudget(memory_budget)
        self._stop = threading.Event()
        return_freed_buffers_to_the_os()

    def decode_sync(self, data: bytes, name: str) -> np.ndarray:
        """Decode one upload in this thread (budget-admitted); ImageError if it is not a usable image."""
        embedder = self._embedder
        need = decode_need(probe_bytes(data, name, embedder.max_pixels), len(data), embedder.spec)
        reservation = self.budget.acquire(need, self._stop.is_set)
        if reservation is None:
            raise ImageError(name, "timeout", "the service is shutting down")
        try:
            return decode_and_prepare(data, embedder.spec, embedder.max_pixels, name)[0]
        finally:
            reservation.release()

    async def decode(self, data: bytes, name: str) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.decode_sync, data, name)

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True)
