"""An on-disk IVF index of a store (faiss IVF-PQ or IVF-SQ8), searched memory-mapped with exact re-ranking.

``build_index(store)`` writes ``STORE/index/<key>/``; ``OnDiskIndex.open(store)`` opens it
for that snapshot or refuses (StoreError naming the rebuild command) when the store has
changed since. Importing this package does not import faiss; using it needs ``vggsim[ann]``.
"""

from __future__ import annotations

from vggsim.search.ivf.build import BuildSummary, build_index
from vggsim.search.ivf.params import IndexParams, choose
from vggsim.search.ivf.query import DEFAULT_RERANK, OnDiskIndex

__all__ = ["BuildSummary", "DEFAULT_RERANK", "IndexParams", "OnDiskIndex", "build_index", "choose"]
