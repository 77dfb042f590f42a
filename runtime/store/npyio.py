"""``np.load`` of the store's and the index's .npy files, safe to call from many threads at once.

``np.load`` reads a .npy header with ``ast.literal_eval``. On CPython before 3.12, building ASTs
in several threads at once can fail with ``SystemError: AST constructor recursion depth
mismatch`` (CPython gh-106905): the service's search threads then saw an intact shard as
damaged (a 409 telling the operator to repair a sound store, about 1 request in 1,500 under
concurrent search load). Loads here take one process-wide lock (a header parse and an mmap:
microseconds) and retry once on SystemError, which no damaged file raises.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

_LOCK = threading.Lock()


def load_npy(path: Path | str, mmap_mode: Any = None) -> Any:
    """``np.load(path, mmap_mode=mmap_mode, allow_pickle=False)``, serialised; errors as np.load raises them."""
    with _LOCK:
        try:
            return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except SystemError:  # gh-106905 from an ast use outside this lock: the file itself was not the cause
            return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
