"""StoreReader: one shared, thread-safe view of a store for long-lived readers (a server).

Each call works on an immutable :class:`Store` snapshot. ``snapshot()`` reopens the store
only when a newer commit exists (``Store.is_stale()``, a cheap check), so concurrent
requests share one snapshot and the ANN index built for it, and a writer's commits show
up on the next call. A request keeps the snapshot it started with: its results are
consistent even if a commit lands meanwhile.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from vggsim import validate
from vggsim.errors import ArgumentError
from vggsim.search.exact import AnnIndex
from vggsim.search import hnsw_cache as ann_cache
from vggsim.store import Store
from vggsim.collection.results import DuplicateCheck, SearchResult
from vggsim.collection.queries import duplicates_of, search_snapshot


class StoreReader:
    """Thread-safe reads of the store at ``root``; see the module docstring."""

    def __init__(self, root: str | bytes | os.PathLike[str]) -> None:
        if not isinstance(root, (str, bytes, os.PathLike)):
            raise ArgumentError(f"StoreReader takes a store folder path, got {type(root).__name__}")
        self.root = Path(os.fsdecode(root))
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._ann: tuple[str, AnnIndex] | None = None  # keyed by snapshot id: content, not only generation
        self._ann_lock = threading.Lock()  # one build at a time; searches of other kinds go on

    def snapshot(self) -> Store:
        """The current snapshot, reopened only when a newer commit exists."""
        with self._lock:
            if self._store is None or self._store.is_stale():
                self._store = Store.open(self.root)
            return self._store

    @property
    def generation(self) -> int:
        return self.snapshot().generation

    def _index(self, store: Store) -> AnnIndex:
        with self._ann_lock:
            if self._ann is None or self._ann[0] != store.snapshot_id:
                self._ann = (store.snapshot_id, ann_cache.load_or_build(store))
            return self._ann[1]

    def search(self, queries: Any, k: int = 10, ann: bool = False, *, snapshot: Store | None = None) -> SearchResult:
        """Top-k matches per query row on the current snapshot (or ``snapshot``), with its generation."""
        store = snapshot or self.snapshot()
        index = self._index(store) if ann and store.count_ok() else None
        return SearchResult(store.generation, search_snapshot(store, queries, k, ann, index=index))

    def duplicates_of(self, vector: Any, threshold: float, *, index: bool = False) -> DuplicateCheck:
        """Is ``vector`` a near-duplicate (cosine >= ``threshold``) of anything stored? ``index``: through the
        store's on-disk index (see :func:`~vggsim.collection.queries.duplicates_of`)."""
        store = self.snapshot()
        return DuplicateCheck(store.generation, float(threshold), duplicates_of(store, vector, threshold, index=index))


def as_store(store: Any) -> Store | StoreReader:
    """``store`` as a snapshot or a reader: a folder path (str, bytes, PathLike) is opened."""
    if isinstance(store, (Store, StoreReader)):
        return store
    if isinstance(store, (str, bytes, os.PathLike)):
        return Store.open(os.fsdecode(store))
    raise validate.ArgumentError(f"store must be a Store, a StoreReader or a store folder path, "
                                 f"got {type(store).__name__}")
