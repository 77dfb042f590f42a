"""An on-disk IVF index of a store (faiss IVF-PQ or IVF-SQ8), searched memory-mapped with exact re-ranking.

``build_index(store)`` writes ``STORE/index/<key>/``; ``OnDiskIndex.open(store)`` opens it
for that snapshot or refuses (StoreError naming the rebuild command) when the store has
changed since. Importing this package does not import faiss; using it needs ``vggsim[ann]``.
"""

from __future__ import annotations

from .build import BuildSummary, build_index
from .params import IndexParams, choose
from .search import DEFAULT_RERANK, OnDiskIndex

__all__ = ["BuildSummary", "DEFAULT_RERANK", "IndexParams", "OnDiskIndex", "build_index", "choose"]
