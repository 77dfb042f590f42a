"""Admitting decodes by the memory they will need, against one shared budget.

A worker count does not bound memory: eight 81-megapixel images decoded at once need
gigabytes, while eight phone photos need a few hundred megabytes. So each decode first
reads the image header, works out the bytes it will hold (the file's bytes, the decoded
pixels at the mode's bytes per pixel, and the full-size copies its conversion makes) and
waits until that fits in the budget. Admission is first come, first served, so a large
image is never starved by small ones; an image larger than the whole budget runs alone
(never refused for its size: the pixel limit ``max_pixels`` does that).
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from collections.abc import Callable

from vggsim.images.convert import STRIP_PIXELS, WIDE_MODES, pass_order, pillow13_rule
from vggsim.images.decode import ImageHeader
from vggsim.images.preprocess import RESAMPLE_FILTERS, PreprocessSpec

#: Default memory budget of the decoders, in bytes (512 MiB): about one 81-megapixel RGBA
#: image at a time, or eight 12-megapixel photos. Not the process's whole footprint: the model,
#: the inference batch and the store come on top (see benchmarks/suites/test_bench_memory.py).
DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024

# Decoders written in Python (BLP) build the pixels in Python buffers, and a BLP's embedded
# JPEG may be larger than the size it declares: measured up to 9x the declared pixels.
_DECODER_COPIES = {"BLP": 9}
# Bytes per pixel of Pillow's in-memory modes (RGB is stored in 4 bytes); anything else is 4.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decode_need(header: ImageHeader, file_size: int, spec: PreprocessSpec) -> int:
    """Bytes a decode of this image holds at its peak, from its header alone."""
    width, height = header.width, header.height
    pixels = width * height
    decoded = pixels * _BYTES_PER_PIXEL.get(header.mode, 4) * _DECODER_COPIES.get(header.format, 1)
    copies = decoded if spec.exif_transpose else 0  # a transposed copy of the decoded image
    if header.mode != "RGB" and spec.resample == "nearest":  # converted whole: RGB (and grey)
        copies += pixels * (5 if header.mode in WIDE_MODES else 4)
    elif spec.resample != "nearest":  # the half-resized image between the two resize passes
        out_w, out_h = spec.size
        horizontal_first = (pass_order(RESAMPLE_FILTERS[spec.resample], spec.size) or pillow13_rule)(
            width, height, out_w, out_h)
        copies += 4 * (out_w * height if horizontal_first else width * out_h)
        if header.mode != "RGB":  # one strip's float64 and RGBA/RGB working set
            copies += STRIP_PIXELS * 8 * 3
    return file_size + decoded + copies


_malloc_tuned = False


def return_freed_buffers_to_the_os() -> None:
    """Make glibc give buffers of 1 MiB or more straight back to the OS when they are freed.

    Decodes free big buffers in several threads, and by default glibc keeps such memory in a
    pool per thread: the resident size then grows with the number of workers although the
    memory in use is bounded by the budget (measured: 1.56 GB with 4 workers against 0.86 GB
    with 1). Process-wide, once, and only where the C library has ``mallopt`` (glibc).
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): nothing to tune
        return
    m_mmap_threshold = -3  # from malloc.h; setting it also stops glibc raising it on its own
    mallopt(m_mmap_threshold, 1 << 20)


class MemoryBudget:
    """A byte budget shared by decode threads. Thread-safe; waits are bounded and cancellable."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"memory_budget must be at least 1 byte, got {limit}")
        self.limit = limit
        self.in_use = 0
        self.peak = 0  # the most ever admitted at once (for tests and reports)
        self._cond = threading.Condition()
        self._queue: deque[int] = deque()
        self._tickets = 0

    def acquire(self, need: int, cancelled: Callable[[], bool] = lambda: False) -> Reservation | None:
        """Wait for ``need`` bytes (in arrival order); None if ``cancelled()`` turned true first."""
        with self._cond:
            ticket = self._tickets
            self._tickets += 1
            self._queue.append(ticket)
            try:
                while not (self._queue[0] == ticket and (self.in_use == 0 or self.in_use + need <= self.limit)):
                    if cancelled():
                        return None
                    self._cond.wait(0.25)
                self.in_use += need
                self.peak = max(self.peak, self.in_use)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit too
            return Reservation(self, need)

    def _release(self, amount: int) -> None:
        with self._cond:
            self.in_use -= amount
            self._cond.notify_all()


class Reservation:
    """Bytes admitted by a :class:`MemoryBudget`; released once, however many times asked."""

    def __init__(self, budget: MemoryBudget, amount: int) -> None:
        self._budget, self.amount = budget, amount
        self._lock = threading.Lock()
        self._released = False

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._budget._release(self.amount)
