"""Searching a store by vectors or by images: exact top-k, approximate (faiss HNSW) or the on-disk IVF index."""

from __future__ import annotations

import os
from typing import Any, Union
from collections.abc import Iterable

import numpy as np

from vggsim.errors import require_list
from vggsim import validate
from vggsim.model.embedder import Embedder
from vggsim.store import Store, StoreIdentity
from vggsim.collection.results import Match
from vggsim.collection.queries import search_snapshot
from vggsim.collection.reader import StoreReader, as_store

StoreLike = Union[Store, StoreReader, str, bytes, "os.PathLike[str]"]


def search_store(store: StoreLike, queries: Any, k: int = 10, ann: bool = False, *, index: bool = False,
                 rebuild_index: bool = False) -> list[list[Match]]:
    """The ``k`` stored vectors most similar (cosine) to each query row, best first.

    ``store`` is a :class:`Store` snapshot, a :class:`StoreReader` (its current snapshot
    and its in-memory ANN index are used) or a store folder path (opened for this call).
    ``k`` must be >= 1 and is clamped to the number
    of stored vectors; an empty store gives an empty list per query. ``ann`` uses a faiss
    HNSW index cached in the store folder for the store's commit generation. ``index`` uses
    the on-disk IVF index that ``vggsim index build`` wrote (memory-mapped, re-ranked exactly);
    a missing, damaged or stale one is a StoreError naming the rebuild command, or is rebuilt
    first with ``rebuild_index``.
    """
    store = as_store(store)
    if index:
        snapshot = store.snapshot() if isinstance(store, StoreReader) else store
        return search_snapshot(snapshot, queries, k, ondisk=True, rebuild_index=rebuild_index)
    if isinstance(store, StoreReader):
        return store.search(queries, k, ann).matches
    return search_snapshot(store, queries, k, ann)


def search_images(embedder: Embedder, store: StoreLike, images: Iterable[Any], k: int = 10,
                  ann: bool = False, *, index: bool = False, rebuild_index: bool = False) -> list[list[Match]]:
    """Embed ``images`` and search the store with them, after checking that the embedder's
    model, effective preprocessing and dim are the ones the store was made with: a store made
    without ``exif_transpose`` (say) would otherwise return confident, wrong scores.

    ``images`` is a list of images (paths, bytes, file objects, PIL images, or preprocessed
    (224, 224, 3) arrays), never one image on its own (ArgumentError); a preprocessed
    (N, 224, 224, 3) array is taken as N images. ``store`` as in :func:`search_store`."""
    if not isinstance(images, np.ndarray):
        require_list("images", images, "images")
    store = as_store(store)
    snapshot = store.snapshot() if isinstance(store, StoreReader) else store
    snapshot.require_compatible(StoreIdentity.of(embedder))
    k = validate.positive_int("k", k)  # before the images are embedded, not after
    queries = embedder.embed(images if isinstance(images, np.ndarray) else list(images))
    if index:
        return search_snapshot(snapshot, queries, k, ondisk=True, rebuild_index=rebuild_index)
    if isinstance(store, StoreReader):
        return store.search(queries, k, ann, snapshot=snapshot).matches
    return search_snapshot(snapshot, queries, k, ann)
