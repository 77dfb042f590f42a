"""Warnings raised while one file is decoded are that file's, not anonymous stderr noise.

Pillow warns about damaged files (``Tag data larger than file. Skipping tag 42112``,
``Truncated File Read``...) through :mod:`warnings`, which would print them on stderr
without saying which file they concern. :func:`decode_warnings` collects the warnings a
thread raises while it decodes one file; the pipeline adds them to that file's error reason
when the file fails, and drops them when it decodes (the image is fine as far as the model
is concerned). ``warnings.catch_warnings`` cannot do this: it swaps process-wide state, so
decode threads running at once would steal or lose each other's warnings. Instead one
``showwarning`` hook routes a warning to the collecting thread's list, and passes every
other thread's warnings on unchanged.

libtiff's own messages (``TIFFFetchNormalTag: ...``, ``Fax4Decode: Bad code word``) are
not Python warnings: libtiff prints them on file descriptor 2 from C, and Pillow offers no
setting for its handlers. :func:`silence_libtiff` clears libtiff's warning and error
handlers in Pillow's bundled libtiff through ctypes (the errors still reach Pillow as
return codes, so the file is still reported, with its name); where that library cannot be
found the messages remain, as redirecting fd 2 would also swallow vggsim's own lines.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image

_local = threading.local()
_lock = threading.Lock()
_passed_on: Any = None
_libtiff_done = False


def _route(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sink: list[str] | None = getattr(_local, "sink", None)
    if sink is None:
        _passed_on(message, category, filename, lineno, file, line)
    elif not issubclass(category, Image.DecompressionBombWarning):  # vggsim checks its own pixel limit
        text = str(message)
        if text not in sink:
            sink.append(text)


def install() -> None:
    """Put the routing hook in front of whatever ``warnings.showwarning`` is now (idempotent)."""
    global _passed_on
    with _lock:
        if warnings.showwarning is not _route:
            _passed_on = warnings.showwarning
            warnings.showwarning = _route
    silence_libtiff()


def silence_libtiff() -> None:
    """Clear the C-level warning/error handlers of Pillow's libtiff (see the module docstring)."""
    global _libtiff_done
    if _libtiff_done:
        return
    _libtiff_done = True
    import PIL

    folder = os.path.dirname(os.path.dirname(PIL.__file__))
    for path in glob.glob(os.path.join(folder, "pillow.libs", "libtiff*.so*")) or ["libtiff.so.6"]:
        try:
            library = ctypes.CDLL(path)  # already loaded by Pillow: the same instance
            library.TIFFSetWarningHandler.restype = library.TIFFSetErrorHandler.restype = ctypes.c_void_p
            library.TIFFSetWarningHandler.argtypes = library.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            library.TIFFSetWarningHandler(None)
            library.TIFFSetErrorHandler(None)
        except (OSError, AttributeError):
            continue


@contextmanager
def decode_warnings() -> Iterator[list[str]]:
    """Collect the warnings this thread raises inside the block (each text once)."""
    install()
    caught: list[str] = []
    previous = getattr(_local, "sink", None)
    _local.sink = caught
    try:
        yield caught
    finally:
        _local.sink = previous
