"""Where an on-disk index lives in a store, what its ``index.json`` says, and how it is checked.

``STORE/index/<key>/`` holds ``index.faiss`` (the trained coarse quantiser and codec),
``lists.ivfdata`` (the inverted lists, memory-mapped when searching) and ``index.json``,
written last. The folder is built under ``STORE/index/.build-*`` and renamed into place,
so a reader sees a whole index or none. ``<key>`` is the commit generation plus a digest of
the identity and the committed shards (ids, counts, file checksums) the index covers: a new
commit, a repair or a store re-created in the same folder all make it stale.

The faiss ids of the index are the store's current-view ids at that generation (the
positions in ``Store.records()``), stored inside the lists by ``add_with_ids``. The ids
mapping sits beside them, memory-mapped when searching: ``locations.npy`` (per id,
``shard << 32 | row`` of its vector, -1 where it has none) and ``paths.arrow`` (per id,
the file name's bytes). With them a search re-ranks and names its matches without building
the store's current view (about 0.5 GB of tables at 1M files). Both are valid exactly as long
as the generation and shards match, which is what opening the index checks.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vggsim.errors import StoreError
from vggsim.store import Store
from vggsim.store.format import atomic_write

INDEX_DIR = "index"
INDEX_FORMAT = 1
INFO, CODES, LISTS = "index.json", "index.faiss", "lists.ivfdata"
LOCATIONS, PATHS = "locations.npy", "paths.arrow"


def coverage(store: Store) -> str:
    """A digest of the identity and the committed shards (with their files' checksums)."""
    shards = [[s.id, s.records, s.rows, sorted((name, f.get("sha256")) for name, f in s.files.items())]
              for s in store.commit_record.shards]
    return hashlib.sha256(json.dumps([store.identity.to_dict(), shards], sort_keys=True).encode()).hexdigest()


def index_key(store: Store) -> str:
    return f"g{store.generation}-{coverage(store)[:16]}"


def rebuild_hint(root: Path) -> str:
    return f"`vggsim index build --store {root}` (or pass --rebuild to `vggsim search --index`)"


def write_info(folder: Path, info: dict[str, Any]) -> None:
    text = json.dumps(info, indent=2, sort_keys=True).encode()
    atomic_write(folder / INFO, lambda fp: fp.write(text))


def current_folder(store: Store) -> Path:
    """The folder of the store's index if it covers this snapshot; StoreError saying what to do if not."""
    root = store.root / INDEX_DIR
    built = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime_ns) if root.is_dir() else []
    if not built:
        raise StoreError(f"{store.root} has no index; build it with {rebuild_hint(store.root)}")
    folder = built[-1]
    info = read_info(folder, store.root)
    if info.get("generation") != store.generation or info.get("coverage") != coverage(store):
        raise StoreError(f"{folder / INFO}: the index covers generation {info.get('generation')}, but the store "
                         f"is at generation {store.generation} (it changed since the index was built); "
                         f"rebuild it with {rebuild_hint(store.root)}")
    return folder


def read_info(folder: Path, root: Path) -> dict[str, Any]:
    """``index.json``, with the sizes of the files it lists checked (a cut file would crash a mmap)."""
    path = folder / INFO
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT or not isinstance(info.get("files"), dict):
            raise ValueError("not an index record of a known format")
        for name, size in info["files"].items():
            actual = (folder / name).stat().st_size
            if actual != size:
                raise ValueError(f"{name} has {actual} bytes, expected {size}")
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StoreError(f"{path}: the index is damaged ({detail}); rebuild it with {rebuild_hint(root)}") from None
    return info


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Keep faiss's C-level progress lines ("resizing ...") off stdout, which may carry JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what faiss printed is still in C's buffer: drop it here
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Catch what C code (faiss's k-means) writes to stderr; the list holds it, line by line, after the block."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
