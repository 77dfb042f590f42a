"""Top-k cosine search: exact and blockwise over a store's shards, or approximate with faiss (HNSW)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Iterable

import numpy as np

from vggsim.errors import require
from vggsim.search.scores import pair_scores, score_margin, unit_rows
from vggsim.similarity import l2_normalize
from vggsim.store import Block
from vggsim.store.npyio import load_npy

QUERY_CHUNK = 256
#: Vectors kept per query beyond k while scanning, for those whose fast score lies within
#: score_margin of the k-th (near-ties the fast product cannot order): with more near-ties than this
#: (thousands of copies of one image around the k-th place) the last places may not be the ones
#: with the highest exact scores; the scores reported are still the exact ones.
POOL_EXTRA = 1024


def exact_topk(queries: np.ndarray, blocks: Iterable[Block], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores) per query row, best first (ties by id), by cosine similarity.

    Streams the blocks once: memory is O(queries x (k + block rows)) whatever the store size.
    Each block is ranked with the fast float32 matrix product; the vectors that can reach the
    top k (a fast score within :func:`~vggsim.search.scores.score_margin` of the k-th) are
    re-scored with :func:`~vggsim.search.scores.cosine_scores`' formula, the score reported: the
    same, to the bit, as the on-disk index and the duplicate checks report for that vector.
    Where fewer than k vectors exist, missing places have id -1 and score -inf.
    """
    query_units = unit_rows(queries)
    fast_queries = query_units.astype(np.float32)
    margin = np.float32(score_margin(query_units.shape[1]))
    chunks = [slice(start, start + QUERY_CHUNK) for start in range(0, len(query_units), QUERY_CHUNK)]
    pools = [(np.zeros((len(query_units[c]), 0), np.int64), np.zeros((len(query_units[c]), 0), np.float32),
              np.zeros((len(query_units[c]), 0), np.float32)) for c in chunks]
    if not pools:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    for block in blocks:
        matrix = l2_normalize(block.vectors, np.float32)
        for n, chunk in enumerate(chunks):
            ids, fast, exact = pools[n]
            fast = np.hstack([fast, fast_queries[chunk] @ matrix.T])
            ids = np.hstack([ids, np.broadcast_to(block.ids, (len(fast), len(block.ids)))])
            exact = np.hstack([exact, np.zeros((len(fast), len(block.ids)), np.float32)])
            local = np.hstack([np.full((len(fast), fast.shape[1] - len(block.ids)), -1, np.int64),  # -1: from the pool
                               np.broadcast_to(np.arange(len(block.ids)), (len(fast), len(block.ids)))])
            width = fast.shape[1]
            if width > k:
                kth = np.partition(fast, width - k, axis=1)[:, width - k]
                near = int((fast >= (kth - margin)[:, None]).sum(axis=1).max())
                kept = min(width, max(k, min(near, k + POOL_EXTRA)))
                if kept < width:
                    keep = np.argpartition(-fast, kept - 1, axis=1)[:, :kept]
                    fast, ids, exact, local = (np.take_along_axis(a, keep, axis=1) for a in (fast, ids, exact, local))
            rows, cols = np.nonzero(local >= 0)  # kept from this block: score them exactly
            if len(rows):
                needed, at = np.unique(local[rows, cols], return_inverse=True)
                exact[rows, cols] = pair_scores(unit_rows(block.vectors[needed])[at], query_units[chunk][rows])
            pools[n] = (ids, fast, exact)
    best = [_best(ids, exact, k) for ids, _, exact in pools]  # each chunk's pool has its own width
    return np.vstack([b[0] for b in best]), np.vstack([b[1] for b in best])


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first, ties by id; padded with id -1, score -inf."""
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.hstack([scores, np.full((len(scores), pad), -np.inf, np.float32)])
        ids = np.hstack([ids, np.full((len(ids), pad), -1, np.int64)])
    return ids, scores


class AnnIndex:
    """An HNSW index (faiss, inner product on unit vectors) over a store's current vectors."""

    def __init__(self, index: Any, ids: np.ndarray) -> None:
        self.index, self.ids = index, ids

    @classmethod
    def build(cls, blocks: Iterable[Block], dim: int, neighbours: int = 32, ef_search: int = 128) -> AnnIndex:
        faiss: Any = require("faiss", "ann", "Approximate search")
        index = faiss.IndexHNSWFlat(dim, neighbours, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = ef_search
        ids = []
        for block in blocks:
            index.add(l2_normalize(block.vectors, np.float32))
            ids.append(block.ids)
        return cls(index, np.concatenate(ids) if ids else np.zeros(0, np.int64))

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self.index.search(l2_normalize(queries, np.float32), k)
        ids = np.where(positions >= 0, self.ids[np.clip(positions, 0, None)], -1)
        return ids, np.where(positions >= 0, scores, -np.inf).astype(np.float32)

    def save(self, folder: Path, key: str) -> None:
        faiss: Any = require("faiss", "ann", "Approximate search")
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "hnsw.faiss"))
        np.save(folder / "ids.npy", self.ids, allow_pickle=False)
        (folder / "key.txt").write_text(key)

    @classmethod
    def load(cls, folder: Path, key: str) -> AnnIndex | None:
        """The saved index if it was built for the same store state (``key``), else None."""
        faiss: Any = require("faiss", "ann", "Approximate search")
        if not (folder / "key.txt").is_file() or (folder / "key.txt").read_text() != key:
            return None
        return cls(faiss.read_index(str(folder / "hnsw.faiss")), load_npy(folder / "ids.npy"))


def recall_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k that the approximate top-k found."""
    hits = [len(set(e[e >= 0]) & set(a[a >= 0])) / max(1, int((e >= 0).sum())) for e, a in zip(exact_ids, approx_ids)]
    return float(np.mean(hits)) if hits else 1.0
