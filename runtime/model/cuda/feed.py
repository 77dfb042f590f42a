"""The Embedder's fixed-batch path: every run padded to one batch shape, fed through buffers
that never move (what the ``cuda-graph`` and ``cuda-overlap`` settings need).

Why a fixed shape: a captured CUDA graph replays the exact kernels and addresses it was
captured with, so one session serves one batch shape; and on an H200 a session reused
across shapes ran later shapes at a seventh of the speed a fresh one gives (docs: GPU
benchmarks). Padding a short batch costs the padded images'
compute, never correctness: VGG16 computes each image on its own, so the rows that come back
are the same whatever the padding rows hold. The staging buffer is page-locked (pinned) on
CUDA, so the host-to-device copy runs at full bus speed instead of through a pageable bounce.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from vggsim.model.cuda.runner import CudaRunner
from vggsim.model.host_copy import copy_rows

class NonFiniteRow(ValueError):
    """An image of the batch holds NaN or infinity (``index`` in the whole batch)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"image {index} of the batch holds NaN or infinite values")
        self.index = index


#: The batch every run is padded to when a fixed-buffer setting names none (the CLI's default batch).
DEFAULT_FIXED_BATCH = 8


class FixedBatchFeed:
    """Runs (N, H, W, 3) float32 batches of any N as chunks of exactly ``batch_size`` images."""

    def __init__(self, session: Any, batch_size: int, image_shape: tuple[int, int, int], overlap: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"fixed_batch must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.overlap = overlap
        self.runner = CudaRunner(session, batch_size, image_shape)
        # Page-locked staging buffers, zeroed once: a padding row is whatever an earlier batch
        # left there (finite, and its output is dropped), so a short batch needs no memset.
        self._staging = [self.runner.pinned() for _ in range(2)]
        for buffer in self._staging:
            buffer.fill(0.0)
        # The device buffers are shared by every caller: one run at a time (onnxruntime's own
        # run is thread-safe, these buffers are not).
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray, check_finite: bool = True) -> np.ndarray:
        """Embeddings of every image in ``batch``, in order; with ``check_finite``, raise
        :class:`NonFiniteRow` for the first image holding NaN or infinity (checked while it is
        copied into the staging buffer, so the check costs no extra pass over memory)."""
        size = self.batch_size
        chunks = [batch[start : start + size] for start in range(0, len(batch), size)]
        starts = range(0, len(batch), size)
        with self._lock:
            if self.overlap and len(chunks) > 1:
                outputs = self._run_overlapped(chunks, starts, check_finite)
            else:
                outputs = [self._run_one(chunk, start, check_finite) for chunk, start in zip(chunks, starts)]
        return np.concatenate(outputs) if outputs else np.zeros((0, self._dim()), np.float32)

    def _stage(self, slot: int, chunk: np.ndarray, start: int, check: bool) -> np.ndarray:
        """Copy ``chunk`` (rows ``start``... of the whole batch) into staging buffer ``slot``."""
        bad = copy_rows(self._staging[slot], chunk, check)
        if bad is not None:
            raise NonFiniteRow(start + bad)
        return self._staging[slot]

    def _run_one(self, chunk: np.ndarray, start: int, check: bool) -> np.ndarray:
        return self.runner.run_host(self._stage(0, chunk, start, check))[: len(chunk)]

    def _run_overlapped(self, chunks: Sequence[np.ndarray], starts: Sequence[int], check: bool) -> list[np.ndarray]:
        """The copy of chunk N+1 on a second stream while chunk N computes (two pinned buffers
        in turn, each filled just before its copy is queued)."""
        results: list[np.ndarray] = []
        for first in range(0, len(chunks), 2):
            pair = chunks[first : first + 2]
            staged = [self._stage(slot, chunk, starts[first + slot], check) for slot, chunk in enumerate(pair)]
            for chunk, output in zip(pair, self.runner.run_stream(staged)):
                results.append(output[: len(chunk)])
        return results

    def _dim(self) -> int:
        return int(self.runner.output.shape()[-1])

