"""Embedding a request's uploads: admission, the deadline, decoding in the pool, batching, and a client that left.

Every route that embeds images comes here (:func:`embed_uploads`; :func:`embed_pixels` for pixels
sent already decoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import Request
from starlette.requests import ClientDisconnect

from vggsim.serve.batcher import ShuttingDown
from vggsim.serve.decoding import DecodersBlocked
from vggsim.serve.inputs import Upload
from vggsim.serve.problems import ApiError
from vggsim.serve.state import ServiceState


async def embed_uploads(state: ServiceState, uploads: list[Upload], request: Request | None = None) -> np.ndarray:
    """Decode (bounded pool, memory budget) and embed (batched) within the request deadline.

    With ``request``, a client that disconnects meanwhile costs nothing more: its decodes not yet
    started and its images still queued are dropped before inference (counted in
    ``vggsim_images_dropped``), and the request ends as a 499."""
    if not uploads:
        raise ApiError(400, "no_image", "the request holds no image")
    return await _admitted(state, len(uploads), request, lambda: _decode_and_embed(state, uploads))


async def embed_pixels(state: ServiceState, pixels: np.ndarray, request: Request | None = None) -> np.ndarray:
    """Embeddings of decoded pixels ``[n, height, width, 3]`` (the Open Inference Protocol's FP32
    input): the same admission, batching, deadline and disconnect handling as images, no decode."""
    return await _admitted(state, len(pixels), request, lambda: state.embed_arrays(list(pixels)))


async def _admitted(state: ServiceState, count: int, request: Request | None,
                    work: Callable[[], Coroutine[Any, Any, np.ndarray]]) -> np.ndarray:
    state.admit(count)
    try:
        if request is None:
            return await _within_deadline(state, work)
        return await _unless_gone(request, _within_deadline(state, work))
    except ShuttingDown:
        raise ApiError(503, "shutting_down", "the service is shutting down", {"Retry-After": "1"}) from None
    except DecodersBlocked as exc:
        raise ApiError(503, "decoders_blocked", str(exc),
                       {"Retry-After": str(max(1, int(state.config.decode_timeout_s)))}) from None
    finally:
        state.release(count)


async def _within_deadline(state: ServiceState, work: Callable[[], Coroutine[Any, Any, np.ndarray]]) -> np.ndarray:
    try:
        if sys.version_info >= (3, 11):  # a timeout scope: wait_for would wrap the work in one more task
            async with asyncio.timeout(state.config.deadline_s):
                return await work()
        return await asyncio.wait_for(work(), state.config.deadline_s)
    except asyncio.TimeoutError:
        state.metrics.rejected.labels("deadline").inc()
        raise ApiError(503, "deadline", f"the request took longer than the {state.config.deadline_s:g} s deadline",
                       {"Retry-After": str(state.retry_after())}) from None


async def _unless_gone(request: Request, work: Coroutine[Any, Any, np.ndarray]) -> np.ndarray:
    """``work``'s result, or ClientDisconnect as soon as the client has gone (its body is in by now, so the
    next receive waits for the disconnect); the work is cancelled then, which drops its queued images."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientDisconnect()
    return task.result()


async def _decode_and_embed(state: ServiceState, uploads: list[Upload]) -> np.ndarray:
    if len(uploads) == 1 and state.admitted == 1 and state.batcher.idle:  # a lone image: no queue
        # decoded in the decode pool like any other (bounded in time, never in the inference thread:
        # one pathological image there would hold up every client's inference)
        started = time.perf_counter()
        array = await state.decoder.decode(uploads[0].data, uploads[0].name)
        state.metrics.observe_stage("decode", time.perf_counter() - started)
        return (await state.batcher.run_alone(lambda: array))[None]

    async def one(upload: Upload) -> np.ndarray:
        started = time.perf_counter()
        array = await state.decoder.decode(upload.data, upload.name)
        state.metrics.observe_stage("decode", time.perf_counter() - started)
        return array

    arrays = [await one(uploads[0])] if len(uploads) == 1 else list(await asyncio.gather(*(one(u) for u in uploads)))
    return await state.embed_arrays(arrays)
