"""Searching a store by vectors or by images: exact top-k, approximate (faiss HNSW) or the on-disk IVF index."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union
from collections.abc import Iterable

import numpy as np

from vggsim.errors import StoreError, require_list
from vggsim.search.exact import AnnIndex, exact_topk
from vggsim import validate
from vggsim.search import hnsw_cache as ann_cache
from vggsim.store import Store, StoreIdentity
from vggsim.collection.results import Match

if TYPE_CHECKING:
    from vggsim.collection.reader import StoreReader

StoreLike = Union[Store, "StoreReader", str, bytes, "os.PathLike[str]"]


def as_store(store: Any) -> Store | StoreReader:
    """``store`` as a snapshot or a reader: a folder path (str, bytes, PathLike) is opened."""
    from vggsim.collection.reader import StoreReader

    if isinstance(store, (Store, StoreReader)):
        return store
    if isinstance(store, (str, bytes, os.PathLike)):
        return Store.open(os.fsdecode(store))
    raise validate.ArgumentError(f"store must be a Store, a StoreReader or a store folder path, "
                                 f"got {type(store).__name__}")


def query_matrix(queries: Any, dim: int) -> np.ndarray:
    """``queries`` as a float32 (n, dim) matrix; one vector may be passed as (dim,)."""
    if isinstance(queries, (str, bytes, os.PathLike)):
        raise validate.ArgumentError("queries are embedding vectors (an (n, dim) array); to search by image "
                                     "files, use search_images(embedder, store, [paths])")
    try:
        matrix = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise validate.ArgumentError(f"queries must be an (n, {dim}) array of numbers, got "
                                     f"{type(queries).__name__} ({str(exc)[:80]})") from None
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise StoreError(f"query vectors have shape {tuple(np.shape(queries))}, but the store holds "
                         f"{dim}-dimensional vectors: pass an (n, {dim}) array from the model that made it.")
    if not np.all(np.isfinite(matrix)):
        raise validate.ArgumentError("query vectors contain NaN or infinite values: they cannot be compared.")
    return matrix


def search_snapshot(store: Store, queries: Any, k: int = 10, ann: bool = False,
                    index: AnnIndex | None = None, *, ondisk: bool = False,
                    rebuild_index: bool = False) -> list[list[Match]]:
    """Top-k matches per query row on one snapshot (see :func:`search_store`)."""
    k = validate.positive_int("k", k)
    matrix = query_matrix(queries, store.identity.dim)
    if ondisk:  # before count_ok(): the index answers without the store's tables
        if len(matrix) == 0 or not any(shard.rows for shard in store.commit_record.shards):
            return [[] for _ in range(len(matrix))]
        return _search_ondisk(store, matrix, k, rebuild_index)
    available = store.count_ok()
    if available == 0 or len(matrix) == 0:
        return [[] for _ in range(len(matrix))]
    k = min(k, available)  # k beyond the store adds nothing and must not size an allocation
    if ann:
        ids, scores = (index or ann_cache.load_or_build(store)).search(matrix, k)
    else:
        ids, scores = exact_topk(matrix, store.blocks(), k)
    records = store.records()  # cached by the snapshot; paths() would build a new list per call
    return [[Match(records[int(i)].path, float(s), int(i)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)]


def _search_ondisk(store: Store, matrix: np.ndarray, k: int, rebuild: bool) -> list[list[Match]]:
    """Through the store's on-disk IVF index (``vggsim index build``), re-ranked exactly; vectors and
    paths come through the index's memory-mapped ids mapping, never the store's tables (~0.5 GB at 1M)."""
    from vggsim.search.ivf import OnDiskIndex, build_index

    try:
        found = OnDiskIndex.open(store)
    except StoreError:
        if not rebuild:
            raise
        build_index(store)
        found = OnDiskIndex.open(store)
    ids, scores = found.search(matrix, k)
    names = found.paths(np.clip(ids, 0, None).reshape(-1))
    width = ids.shape[1]
    return [[Match(names[row * width + col], float(scores[row, col]), int(ids[row, col]))
             for col in range(width) if ids[row, col] >= 0] for row in range(len(ids))]


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
    from vggsim.collection.reader import StoreReader

    store = as_store(store)
    if index:
        snapshot = store.snapshot() if isinstance(store, StoreReader) else store
        return search_snapshot(snapshot, queries, k, ondisk=True, rebuild_index=rebuild_index)
    if isinstance(store, StoreReader):
        return store.search(queries, k, ann).matches
    return search_snapshot(store, queries, k, ann)


def search_images(embedder: Any, store: StoreLike, images: Iterable[Any], k: int = 10,
                  ann: bool = False, *, index: bool = False, rebuild_index: bool = False) -> list[list[Match]]:
    """Embed ``images`` and search the store with them, after checking that the embedder's
    model, effective preprocessing and dim are the ones the store was made with: a store made
    without ``exif_transpose`` (say) would otherwise return confident, wrong scores.

    ``images`` is a list of images (paths, bytes, file objects, PIL images, or preprocessed
    (224, 224, 3) arrays), never one image on its own (ArgumentError); a preprocessed
    (N, 224, 224, 3) array is taken as N images. ``store`` as in :func:`search_store`."""
    from vggsim.collection.reader import StoreReader

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
