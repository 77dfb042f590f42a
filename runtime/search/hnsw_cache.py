"""The on-disk HNSW index of a store, keyed by the store's commit generation and identity.

Each key gets its own folder ``STORE/ann/<key>/``, written under a temporary name and
renamed into place, so a reader never loads an index half written by another process and
never pairs one generation's graph with another's ids. Older folders are removed after a
new one is in place. A store folder that is not writable just goes without a cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vggsim.search.exact import AnnIndex
from vggsim.store import Store

CACHE_DIR = "ann"


def cache_key(store: Store) -> str:
    """The snapshot's id: its generation plus the digest of its identity and committed shards with their
    files' checksums, so a new commit, a repaired commit record or another store put in the same
    folder (even at the same generation, with the same shard numbers) all invalidate it."""
    return store.snapshot_id


def load_or_build(store: Store) -> AnnIndex:
    """The store's ANN index: loaded when a current one is cached, else built (and cached)."""
    key = cache_key(store)
    folder = store.root / CACHE_DIR
    cached = _load(folder / key, key)
    if cached is not None:
        return cached
    index = AnnIndex.build(store.blocks(), store.identity.dim)
    _save(index, folder, key)
    return index


def _load(path: Path, key: str) -> AnnIndex | None:
    if not path.is_dir():
        return None
    try:
        return AnnIndex.load(path, key)
    except (OSError, RuntimeError, ValueError):
        return None  # a damaged cache is rebuilt, never trusted


def _save(index: AnnIndex, folder: Path, key: str) -> None:
    try:
        folder.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
        index.save(staging, key)
        try:
            os.rename(staging, folder / key)
        except OSError:  # another process put the same key in place first
            shutil.rmtree(staging, ignore_errors=True)
            return
        for old in folder.iterdir():
            if old.name != key and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    except OSError:
        return  # read-only store folder: search works, only without a cache
