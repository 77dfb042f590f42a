"""Host-side batch work spread over threads: the finite check on a caller's array, and the copy
into a page-locked staging buffer with the check done on each row while it is still in cache.

Why: on the H200 machine (16 cores) ``Embedder.run`` of a 64-image array spent more time on
the host than on the GPU: one thread checked 38 MB for NaN and another pass copied it into
pinned memory, 19.3 ms a batch against 6.3 ms for the copy and the model.
NumPy's ufuncs and copies release the GIL, so rows split over a few threads run in parallel;
small batches stay on the calling thread (a thread hop costs more than it saves there).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vggsim.model.session import usable_cpus

#: Below this many bytes a batch is handled on the calling thread.
PARALLEL_MIN_BYTES = 4 << 20
MAX_WORKERS = 8


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(MAX_WORKERS, usable_cpus()), thread_name_prefix="vggsim-host")


def _spans(rows: int, parts: int) -> list[tuple[int, int]]:
    step = -(-rows // parts)
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def _first_bad(rows: np.ndarray, offset: int) -> int | None:
    for index in range(len(rows)):
        if not np.isfinite(rows[index]).all():
            return offset + index
    return None


def _copy_span(destination: np.ndarray, source: np.ndarray, start: int, stop: int, check: bool) -> int | None:
    for index in range(start, stop):  # row by row: each row (0.6 MB) is checked while in cache
        destination[index] = source[index]
        if check and not np.isfinite(destination[index]).all():
            return index
    return None


def _workers(batch: np.ndarray) -> int:
    if batch.nbytes < PARALLEL_MIN_BYTES or len(batch) < 2:
        return 1
    return min(len(batch), MAX_WORKERS, usable_cpus())


def first_non_finite(batch: np.ndarray) -> int | None:
    """Index of the first image in ``batch`` holding NaN or infinity, or None."""
    workers = _workers(batch)
    if workers == 1:
        return None if np.isfinite(batch).all() else _first_bad(batch, 0)
    spans = _spans(len(batch), workers)
    found = _pool().map(lambda span: _first_bad(batch[span[0] : span[1]], span[0]), spans)
    return min((index for index in found if index is not None), default=None)


def copy_rows(destination: np.ndarray, source: np.ndarray, check: bool) -> int | None:
    """Copy ``source`` into ``destination[:len(source)]``; with ``check``, return the index of the
    first image holding NaN or infinity (None if all are finite)."""
    workers = _workers(source)
    if workers == 1:
        destination[: len(source)] = source
        if check and not np.isfinite(destination[: len(source)]).all():
            return _first_bad(source, 0)
        return None
    spans = _spans(len(source), workers)
    found = _pool().map(lambda span: _copy_span(destination, source, span[0], span[1], check), spans)
    return min((index for index in found if index is not None), default=None)
