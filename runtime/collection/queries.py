"""Queries on one store snapshot: top-k search (exact, HNSW or the on-disk index) and the duplicates of one vector.

The layer below :class:`~vggsim.collection.reader.StoreReader` and the functions that take a path or a
reader: everything here takes a :class:`~vggsim.store.Store` snapshot and reads nothing else.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vggsim import validate
from vggsim.collection.results import Match
from vggsim.errors import StoreError
from vggsim.search import hnsw_cache as ann_cache
from vggsim.search.exact import AnnIndex, exact_topk
from vggsim.similarity import l2_normalize
from vggsim.store import Store


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


def duplicate_scores(vectors: np.ndarray, normalized_query: np.ndarray) -> np.ndarray:
    """Cosines of stored ``vectors`` (rows, any norm) to a unit-length query, float32: the one formula of
    :func:`duplicates_of` and of the service's index path, so both decide a threshold alike to the bit."""
    scores: np.ndarray = l2_normalize(vectors, np.float32) @ normalized_query
    return scores


def identical_ids(store: Store, sha256: str | None) -> np.ndarray:
    """Ids (as in :meth:`Store.records`) of the stored ok files whose content sha256 is ``sha256``."""
    if not sha256:
        return np.zeros(0, np.int64)
    import pyarrow.compute as pc  # the store extra, which a Store needs anyway

    table = store.table()
    mask = pc.and_(pc.equal(table.column("sha256"), sha256), pc.equal(table.column("status"), "ok"))
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False).astype(bool))


def duplicates_of(store: Store, vector: Any, threshold: float, *, sha256: str | None = None) -> list[Match]:
    """Stored vectors with cosine >= ``threshold`` to ``vector``, best first: the check a server
    makes before ingesting an image. One streaming pass; memory is one block.

    ``sha256``, the content hash of the image ``vector`` was made from: stored files with that
    hash are matches with score 1.0 whatever their cosine (float rounding can leave a
    byte-identical copy just under a threshold of 1)."""
    threshold = validate.threshold(threshold)
    query = l2_normalize(query_matrix(vector, store.identity.dim), np.float32)
    if len(query) != 1:
        raise validate.ArgumentError(f"duplicates_of takes one vector, got {len(query)}")
    records = store.records()
    identical = {int(i) for i in identical_ids(store, sha256)}
    found = [Match(records[i].path, 1.0, i) for i in identical]
    for block in store.blocks():
        scores = duplicate_scores(block.vectors, query[0])
        for position in np.flatnonzero(scores >= threshold):
            identifier = int(block.ids[position])
            if identifier not in identical:
                found.append(Match(records[identifier].path, float(scores[position]), identifier))
    return sorted(found, key=lambda m: (-m.score, m.id))
