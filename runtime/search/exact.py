"""Top-k cosine search: exact and blockwise over memory-mapped shards, or approximate with faiss."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Iterable

import numpy as np

from vggsim.errors import require
from vggsim.similarity import l2_normalize
from vggsim.store import Block
from vggsim.store.npyio import load_npy

QUERY_CHUNK = 256


def exact_topk(queries: np.ndarray, blocks: Iterable[Block], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores) per query row, best first, by cosine similarity.

    Streams the blocks once: memory is O(queries x (k + block rows)) whatever the store size.
    Where fewer than k vectors exist, missing places have id -1 and score -inf.
    """
    normalized = l2_normalize(queries, np.float32)
    chunks = [slice(start, start + QUERY_CHUNK) for start in range(0, len(normalized), QUERY_CHUNK)]
    best = [(np.zeros((len(normalized[c]), 0), np.int64), np.zeros((len(normalized[c]), 0), np.float32))
            for c in chunks]
    for block in blocks:
        matrix = l2_normalize(block.vectors, np.float32)
        for n, chunk in enumerate(chunks):
            scores = np.hstack([best[n][1], normalized[chunk] @ matrix.T])
            ids = np.hstack([best[n][0], np.broadcast_to(block.ids, (len(scores), len(block.ids)))])
            if scores.shape[1] > k:
                keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores, ids = np.take_along_axis(scores, keep, axis=1), np.take_along_axis(ids, keep, axis=1)
            best[n] = (ids, scores)
    ids = np.vstack([b[0] for b in best]) if best else np.zeros((0, 0), np.int64)
    scores = np.vstack([b[1] for b in best]) if best else np.zeros((0, 0), np.float32)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.hstack([scores, np.full((len(scores), pad), -np.inf, np.float32)])
        ids = np.hstack([ids, np.full((len(ids), pad), -1, np.int64)])
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


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
