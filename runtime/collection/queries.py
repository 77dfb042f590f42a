"""Queries on one store snapshot: top-k search (exact, HNSW or the on-disk index) and the duplicates of one vector.

The layer below :class:`~vggsim.collection.reader.StoreReader` and the functions that take a path or a
reader: everything here takes a :class:`~vggsim.store.Store` snapshot and reads nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from vggsim import validate
from vggsim.collection.results import IndexDuplicates, IndexSearch, Match
from vggsim.errors import StoreError
from vggsim.search import hnsw_cache as ann_cache
from vggsim.search import policy
from vggsim.search.exact import AnnIndex, exact_topk
from vggsim.search.scores import cosine_scores, score_margin, unit_rows
from vggsim.similarity import l2_normalize
from vggsim.store import Store

if TYPE_CHECKING:
    from vggsim.search.ivf import OnDiskIndex


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
    if ondisk:  # before count_ok(): the index answers without the store's tables
        return search_index(store, queries, k, rebuild=rebuild_index).matches
    k = validate.positive_int("k", k)
    matrix = query_matrix(queries, store.identity.dim)
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


def search_index(store: Store, queries: Any, k: int = 10, *, rebuild: bool = False,
                 progress: Callable[[str], None] | None = None, index: OnDiskIndex | None = None) -> IndexSearch:
    """Top-k matches per query row through the store's on-disk IVF index (``vggsim index build``), re-ranked
    with the exact scan's formula (the same scores, to the bit), with the account of how (see
    :class:`~vggsim.collection.results.IndexSearch`): k matches whenever the store holds k vectors.

    Vectors and paths come through the index's ids mapping, never the store's tables (~0.5 GB at 1M).
    A missing, stale or damaged index is refused (an IndexProblem naming the rebuild command; see
    :mod:`vggsim.search.policy`), or rebuilt first with ``rebuild``; ``index``: one opened already."""
    k = validate.positive_int("k", k)
    matrix = query_matrix(queries, store.identity.dim)
    found = index or policy.open_or_rebuild(store, rebuild, progress).index
    if found is None or len(matrix) == 0:  # an empty store: nothing to find
        return IndexSearch([[] for _ in range(len(matrix))], 0, 0)
    answer = found.answer(matrix, k)
    ids = answer.ids
    names = found.paths(np.clip(ids, 0, None).reshape(-1))
    width = ids.shape[1]
    matches = [[Match(names[row * width + col], float(answer.scores[row, col]), int(ids[row, col]))
                for col in range(width) if ids[row, col] >= 0] for row in range(len(ids))]
    return IndexSearch(matches, answer.nprobe, answer.widened)


#: Duplicates through the index: ask it for this many matches first, four times as many while all of
#: them reach the threshold, and list them by an exact scan past DUPLICATE_INDEX_LIMIT
DUPLICATE_INDEX_FIRST = 16
DUPLICATE_INDEX_LIMIT = 4096
#: candidates per match wanted, re-scored exactly (search's 100 is for recall@k at k = 10). Measured on
#: a 1M-vector store (IVF1024,PQ64; 6 queries, thresholds 0.99 and 0.95, up to 991 duplicates each):
#: 1 missed most duplicates at 0.95, 4 and more found every one; 10 keeps a margin, at 5 ms (0.99)
#: and 0.2 s (0.95) a query where 100 took 10 ms and 1.1 s (benchmarks/duplicates_check.py reruns
#: the sweep)
DUPLICATE_RERANK = 10


def identical_ids(store: Store, sha256: str | None) -> np.ndarray:
    """Ids (as in :meth:`Store.records`) of the stored ok files whose content sha256 is ``sha256``."""
    if not sha256:
        return np.zeros(0, np.int64)
    import pyarrow.compute as pc  # the store extra, which a Store needs anyway

    table = store.table()
    mask = pc.and_(pc.equal(table.column("sha256"), sha256), pc.equal(table.column("status"), "ok"))
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False).astype(bool))


def _one_query(vector: Any, dim: int) -> np.ndarray:
    query = query_matrix(vector, dim)
    if len(query) != 1:
        raise validate.ArgumentError(f"duplicates_of takes one vector, got {len(query)}")
    return query


def _passing(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The one threshold rule of every duplicate check: a float32 score at or above the threshold in float32."""
    passing: np.ndarray = scores >= np.float32(threshold)
    return passing


def duplicates_of(store: Store, vector: Any, threshold: float, *, index: bool = False,
                  rebuild_index: bool = False, sha256: str | None = None) -> list[Match]:
    """Stored vectors with cosine >= ``threshold`` to ``vector``, best first (ties by id): the check a
    server makes before ingesting an image. Exactly: one streaming pass, memory one block. With
    ``index``: through the store's on-disk index (:func:`duplicates_through_index`; refused, or rebuilt
    with ``rebuild_index``, when it is missing, stale or damaged). Either way every score is the
    exact scan's, to the bit (:func:`vggsim.search.scores.cosine_scores`), so both decide alike.

    ``sha256``, the content hash of the image ``vector`` was made from: stored files with that
    hash are matches with score 1.0 whatever their cosine (float rounding can leave a
    byte-identical copy just under a threshold of 1)."""
    threshold = validate.threshold(threshold)
    query = _one_query(vector, store.identity.dim)
    if index:
        found = policy.open_or_rebuild(store, rebuild_index).index
        return [] if found is None else duplicates_through_index(store, found, query[0], threshold,
                                                                 sha256=sha256).matches
    query_units = unit_rows(query)
    fast_query = query_units[0].astype(np.float32)
    floor = np.float32(threshold) - np.float32(score_margin(store.identity.dim))
    records = store.records()
    found_ids: list[np.ndarray] = []
    found_scores: list[np.ndarray] = []
    for block in store.blocks():
        near = np.flatnonzero(l2_normalize(block.vectors, np.float32) @ fast_query >= floor)  # fast, then exact
        if len(near):
            scores = cosine_scores(block.vectors[near], query[0])
            keep = _passing(scores, threshold)
            found_ids.append(block.ids[near[keep]])
            found_scores.append(scores[keep])
    return _matches(np.concatenate(found_ids) if found_ids else np.zeros(0, np.int64),
                    np.concatenate(found_scores) if found_scores else np.zeros(0, np.float32),
                    lambda ids: [records[int(i)].path for i in ids], identical_ids(store, sha256))


def _matches(ids: np.ndarray, scores: np.ndarray, names: Callable[[np.ndarray], list[str]],
             identical: np.ndarray | None = None) -> list[Match]:
    """Matches best first, ties by id; ``identical`` ids (byte-identical files) with score 1.0, found or not."""
    if identical is not None and len(identical):
        others = ~np.isin(ids, identical)
        ids = np.concatenate([identical.astype(np.int64), ids[others].astype(np.int64)])
        scores = np.concatenate([np.ones(len(identical), np.float32), scores[others].astype(np.float32)])
    order = np.lexsort((ids, -scores))  # best first, ties by id
    ids, scores = ids[order], scores[order]
    return [Match(name, float(score), int(i)) for name, score, i in zip(names(ids), scores, ids)]


def duplicates_through_index(store: Store, index: OnDiskIndex, vector: Any, threshold: float, *,
                             sha256: str | None = None) -> IndexDuplicates:
    """Every stored vector with cosine >= ``threshold`` to ``vector``, best first, through ``index``.

    The index's best matches are taken in growing batches (:data:`DUPLICATE_INDEX_FIRST`, then four
    times as many, ...) until one holds a match under the threshold, so every match at or above it
    is among the index's candidates; :data:`DUPLICATE_INDEX_LIMIT` or more such matches (a store full
    of copies of one image) are listed by an exact scan instead (``used_index`` False, ``note`` says
    why). A near-duplicate lies in the query's own IVF list or next to it, so the ``nprobe`` lists
    searched hold it; what the index cannot promise is every match just above a low threshold.
    Candidates are scored with the exact scan's formula, so both agree to the bit at any threshold;
    ``sha256`` as in :func:`duplicates_of`."""
    threshold = validate.threshold(threshold)
    query = _one_query(vector, store.identity.dim)
    wanted = DUPLICATE_INDEX_FIRST
    while True:
        asked = min(index.vectors, wanted * DUPLICATE_RERANK)
        found = index.candidates(query, asked)[0]
        ids = np.unique(found[found >= 0])
        scores = cosine_scores(index.stored(ids), query[0])
        passing = _passing(scores, threshold)
        if int(passing.sum()) < wanted or asked >= index.vectors:
            break  # a match under the threshold among the best `wanted`: every one above it is here
        exhausted = len(ids) < asked  # the probed lists hold no more vectors, and all of them match
        if exhausted or wanted >= DUPLICATE_INDEX_LIMIT:
            why = ("every vector in the index lists searched reaches the threshold" if exhausted else
                   f"at least {DUPLICATE_INDEX_LIMIT} stored images reach the threshold")
            return IndexDuplicates(duplicates_of(store, query[0], threshold, sha256=sha256), False,
                                   why + ": listed by an exact scan of the store")
        wanted *= 4
    return IndexDuplicates(_matches(ids[passing], scores[passing], index.paths, identical_ids(store, sha256)), True)
