"""Argument checks shared by the library's entry points: each says what to pass instead.

The error is a ValueError (what a library caller expects) and a VggsimError (what the CLI
turns into a one-line message and exit 2).
"""

from __future__ import annotations

import math
import numbers

from vggsim.errors import ArgumentError

__all__ = ["ArgumentError", "positive_float", "positive_int", "threshold"]


def positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1 (bools and floats refused: ``k=True`` is a bug, not 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ArgumentError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def positive_float(name: str, value: object) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise ArgumentError(f"{name} must be a finite number above 0, got {value!r}")
    return float(value)


def threshold(value: object) -> float:
    """A cosine threshold: finite and in (0, 1]. Below 0 every pair matches (quadratic output),
    above 1 none can, and NaN compares false with everything."""
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int of 400 digits (valid JSON)
            pass
    if not (math.isfinite(number) and 0 < number <= 1):
        raise ArgumentError(
            f"threshold must be a finite cosine score in (0, 1], such as 0.95, got {repr(value)[:40]}")
    return number
