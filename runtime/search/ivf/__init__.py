"""An on-disk IVF index of a store (faiss IVF-PQ or IVF-SQ8), searched memory-mapped with exact re-ranking.

``build_index(store)`` writes ``STORE/index/<key>/``; ``OnDiskIndex.open(store)`` opens it
for that snapshot or refuses with an :class:`IndexProblem` (a StoreError naming the rebuild
command): :class:`IndexMissing`, :class:`IndexStale` (built for another snapshot) or
:class:`IndexDamaged` (a file that does not hold what ``index.json`` lists). What a front end
does about each is decided in :mod:`vggsim.search.policy`. Importing this package does not
import faiss; using it needs ``vggsim[ann]``.
"""

from __future__ import annotations

from vggsim.search.ivf.build import BuildSummary, build_index
from vggsim.search.ivf.files import IndexDamaged, IndexMissing, IndexProblem, IndexStale
from vggsim.search.ivf.params import IndexParams, choose
from vggsim.search.ivf.query import DEFAULT_RERANK, IndexAnswer, OnDiskIndex

__all__ = ["BuildSummary", "DEFAULT_RERANK", "IndexAnswer", "IndexDamaged", "IndexMissing", "IndexParams",
           "IndexProblem", "IndexStale", "OnDiskIndex", "build_index", "choose"]
