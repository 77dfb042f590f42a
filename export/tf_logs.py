"""Importing TensorFlow without its C++ start-up lines on vggsim's stderr.

TensorFlow 2.16+ logs through absl before absl is initialised, so TF_CPP_MIN_LOG_LEVEL does not
hold back "WARNING: All log messages before absl::InitializeLog() ..." and the INFO line "oneDNN
custom operations are on ..." (each printed twice, by C++ straight to file descriptor 2). The
import runs with descriptor 2 caught; INFO lines and absl's preamble are dropped, the rest passed on.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: absl's preamble, and its INFO lines ("I0000 00:00:1796486602.414654   10767 port.cc:153] ...").
DROPPED = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                     r"|I\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.]+:\d+\] )")


def kept_lines(text: str) -> list[str]:
    """The lines of what TensorFlow printed that are worth showing (warnings and errors)."""
    return [line for line in text.splitlines() if line.strip() and not DROPPED.match(line)]


@contextmanager
def quiet_tensorflow_start() -> Iterator[None]:
    """Run the block (the first ``import tensorflow``) with its INFO start-up lines kept off stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # still holds back what goes through TF's own logger
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in kept_lines(sink.read().decode("utf-8", "replace")):
                print(line, file=sys.stderr)
