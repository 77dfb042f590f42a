"""Timing a model run: what ``vggsim bench`` and the Keras side of ``bench --keras`` both measure with."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], rounds: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def timed_within(fn: Callable[[], Any], rounds: int, budget_s: float = 3.0) -> list[float]:
    """Up to ``rounds`` timed runs after one warm-up, stopping once ``budget_s`` is spent
    (at least two): a slow CPU batch gets a few rounds, a fast GPU batch all of them."""
    fn()
    times: list[float] = []
    while len(times) < max(2, rounds) and (len(times) < 2 or sum(times) < budget_s):
        times.extend(timed(fn, 1, warmup=0))
    return times
