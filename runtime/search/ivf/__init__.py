"""An on-disk IVF index of a store (faiss IVF-PQ or IVF-SQ8), searched memory-mapped with exact re-ranking.

``build_index(store)`` writes ``STORE/index/<key>/``; ``update_index(store)`` grows it with the
store's new commits without training it again (update.py); ``OnDiskIndex.open(store)`` opens it
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
from vggsim.search.ivf.update import DRIFT_LIMIT, GROWTH_LIMIT, UpdateSummary, update_index

__all__ = ["BuildSummary", "DEFAULT_RERANK", "DRIFT_LIMIT", "GROWTH_LIMIT", "IndexAnswer", "IndexDamaged", "IndexMissing",
           "IndexParams", "IndexProblem", "IndexStale", "OnDiskIndex", "UpdateSummary", "build_index", "choose",
           "update_index"]
