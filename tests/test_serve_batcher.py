"""The batcher's lone-image path (Batcher.run_alone): one trip, the same run, and the accounting batches rely on."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="vggsim.serve needs the serve extra")

from vggsim.serve.batcher import Batcher, ShuttingDown  # noqa: E402


def fake_run(calls: list[tuple[int, str]]):  # type: ignore[no-untyped-def]
    def run(batch: np.ndarray) -> np.ndarray:
        calls.append((len(batch), threading.current_thread().name))
        time.sleep(0.05)
        return batch.reshape(len(batch), -1)[:, :4] * 2.0
    return run


def test_run_alone_prepares_and_runs_in_the_inference_thread_once() -> None:
    calls: list[tuple[int, str]] = []
    prepared: list[str] = []
    image = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)

    def prepare() -> np.ndarray:
        prepared.append(threading.current_thread().name)
        return image

    async def main() -> tuple[np.ndarray, np.ndarray]:
        batcher = Batcher(fake_run(calls), max_batch=4, max_wait_s=0.0)
        batcher.start()
        assert batcher.idle
        alone = await batcher.run_alone(prepare)
        assert batcher.idle and batcher.in_flight == 0
        queued = await batcher.submit([image])
        await batcher.drain(5)
        with pytest.raises(ShuttingDown):
            await batcher.run_alone(prepare)
        return alone, queued

    alone, queued = asyncio.run(main())
    assert np.array_equal(alone, queued[0]) and alone.dtype == queued.dtype
    assert [size for size, _ in calls] == [1, 1]
    assert prepared[0].startswith("vggsim-inference") and calls[0][1].startswith("vggsim-inference")


def test_a_batch_submitted_during_a_lone_run_waits_and_is_counted() -> None:
    calls: list[tuple[int, str]] = []
    images = [np.full((2, 2, 3), i, np.float32) for i in range(3)]

    async def main() -> tuple[np.ndarray, np.ndarray, int]:
        batcher = Batcher(fake_run(calls), max_batch=4, max_wait_s=0.0)
        batcher.start()
        alone = asyncio.ensure_future(batcher.run_alone(lambda: images[0]))
        await asyncio.sleep(0.01)
        busy = int(batcher.in_flight)  # the lone image counts as running: batches do not wait for it as coming
        assert not batcher.idle
        rest = await batcher.submit(images[1:])
        first = await alone
        await batcher.drain(5)
        return first, rest, busy

    first, rest, busy = asyncio.run(main())
    assert busy == 1
    assert np.array_equal(first, images[0].reshape(-1)[:4] * 2.0)
    assert np.array_equal(rest, np.stack([i.reshape(-1)[:4] * 2.0 for i in images[1:]]))
    assert [size for size, _ in calls] == [1, 2]
