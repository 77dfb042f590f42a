"""Searching a store through its on-disk index: memory-mapped IVF candidates, exact re-ranking.

The inverted lists are memory-mapped (``IO_FLAG_ONDISK_SAME_DIR``), so resident memory is
the coarse quantiser (nlist x dim floats), the pages of the lists a query scans, and the
float32 vectors of its candidates, read back from the store's shards. Candidates are
re-scored exactly (cosine on the stored vectors), so the scores returned are the same as
exact search gives for those vectors; only a true neighbour the codes ranked below the
candidate cut can be missed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError, require
from ..similarity import l2_normalize
from ..store import Store
from .files import CODES, current_folder, quiet_stdout, read_info, rebuild_hint

DEFAULT_RERANK = 10


class OnDiskIndex:
    """A store snapshot's IVF index, opened memory-mapped. Thread-safe for searching."""

    def __init__(self, store: Store, folder: Path, info: dict[str, Any], index: Any) -> None:
        self.store, self.folder, self.info, self.index = store, folder, info, index
        self.vectors = int(info["vectors"])
        self.nprobe = int(info["params"]["nprobe"])
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store: Store) -> OnDiskIndex:
        """The index of ``store``; StoreError naming the command to rebuild when it is missing,
        damaged or built before the store's latest commit."""
        faiss: Any = require("faiss", "ann", "The on-disk index")
        folder = current_folder(store)
        info = read_info(folder, store.root)
        try:
            with quiet_stdout():
                index = faiss.read_index(str(folder / CODES), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
            if index.d != store.identity.dim or index.ntotal != int(info["vectors"]) or \
                    index.ntotal != store.count_ok():
                raise ValueError(f"it holds {index.ntotal} vectors of dim {index.d}")
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{folder / CODES}: the index is damaged ({str(exc).splitlines()[0][:120]}); "
                             f"rebuild it with {rebuild_hint(store.root)}") from None
        return cls(store, folder, info, index)

    def candidates(self, queries: np.ndarray, count: int, nprobe: int | None = None) -> np.ndarray:
        """The ids of ``count`` approximate best matches per query row (-1 where there are fewer)."""
        faiss: Any = require("faiss", "ann", "The on-disk index")
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
        _, ids = self.index.search(l2_normalize(queries, np.float32), int(count), params=params)
        ids = np.asarray(ids, np.int64)
        if ids.size and ids.max() >= len(self.store.table()):
            raise StoreError(f"{self.folder}: the index returned ids the store does not have; "
                             f"rebuild it with {rebuild_hint(self.store.root)}")
        return ids

    def search(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
               rerank: int = DEFAULT_RERANK) -> tuple[np.ndarray, np.ndarray]:
        """The k best (ids, scores) per query row, best first, like :func:`vggsim.search.exact_topk`:
        ``k * rerank`` candidates from the index, re-scored exactly from the stored vectors."""
        k = min(k, self.vectors)
        ids = self.candidates(queries, min(self.vectors, k * max(1, rerank)), nprobe)
        wanted = np.unique(ids[ids >= 0])
        stored = l2_normalize(self.store.vectors(wanted), np.float32)
        normalized = l2_normalize(queries, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        for row, found in enumerate(ids):
            found = found[found >= 0]
            scores = stored[np.searchsorted(wanted, found)] @ normalized[row]
            order = np.lexsort((found, -scores))[:k]  # best first; ties by id, as exact search
            out_ids[row, : len(order)], out_scores[row, : len(order)] = found[order], scores[order]
        return out_ids, out_scores
