"""Store search for the service: through the store's on-disk index when it is current, else exact.

``--index auto`` (the default) searches the on-disk IVF index that ``vggsim index build``
wrote when it covers the snapshot being searched (memory-mapped lists, candidates re-ranked
exactly from the stored vectors: a few MB resident at 1M vectors), and falls back to exact
search when there is none, when the store has changed since it was built (a running
``embed``), or when faiss is not installed; every response says which it was and why.
``off`` always searches exactly; ``require`` refuses (409) instead of falling back, and
refuses to start without a current index.

``/v1/duplicates`` goes the same way: the index's best matches are taken in growing batches
(:data:`DUPLICATE_INDEX_FIRST`, then four times as many, ...) until one holds a match under the
threshold, so every match at or above it is among the index's candidates;
:data:`DUPLICATE_INDEX_LIMIT` or more such matches (a store full of copies of one image) are
listed by an exact scan instead, and the response says so. A near-duplicate lies in the query's
own IVF list or next to it, so the ``nprobe`` lists searched hold it; what the index cannot
promise is every match just above a low threshold.

The opened index is kept for as long as the snapshot and the index folder stay the same:
opening costs a read of the coarse quantiser, far more than one query. A new commit or a new
build is seen on the next request (a directory listing per request, no file reads).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggsim.collection import Match, StoreReader
from vggsim.collection.queries import duplicate_scores, duplicates_of, identical_ids
from vggsim.similarity import l2_normalize
from vggsim.errors import StoreError
from vggsim.store import Store
from vggsim.serve.problems import ApiError

MODES = ("auto", "off", "require")
#: /v1/duplicates asks the index for this many matches first, four times as many while all of them
#: reach the threshold, and lists them by an exact scan past DUPLICATE_INDEX_LIMIT
DUPLICATE_INDEX_FIRST = 16
DUPLICATE_INDEX_LIMIT = 4096
#: candidates per match wanted, re-scored exactly (search's 100 is for recall@k at k = 10). Measured on
#: a 1M-vector store (IVF1024,PQ64; 6 queries, thresholds 0.99 and 0.95, up to 991 duplicates each):
#: 1 missed most duplicates at 0.95, 4 and more found every one; 10 keeps a margin, at 5 ms (0.99)
#: and 0.2 s (0.95) a query where 100 took 10 ms and 1.1 s (README, "Duplicate checks on a large
#: store"; benchmarks/duplicates_check.py reruns the sweep)
DUPLICATE_RERANK = 10


@dataclass(frozen=True)
class IndexState:
    """What a search used: ``state`` is current, missing, stale (or damaged), unavailable (no faiss) or off."""

    mode: str
    state: str
    used: bool
    message: str | None = None
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "used": self.used, "state": self.state}
        if self.message:
            out["message"] = self.message
        if self.info:
            out.update(self.info)
        return out


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class StoreSearch:
    """Top-k search of a :class:`StoreReader`'s snapshots, by index or exactly (see the module docstring)."""

    def __init__(self, reader: StoreReader, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"index mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.reader, self.mode = reader, mode
        self._faiss = mode != "off" and _faiss_available()
        self._lock = threading.Lock()
        self._cached: tuple[Store, tuple[str, ...], Any, IndexState] | None = None

    def _folders(self, store: Store) -> tuple[str, ...]:
        try:
            return tuple(sorted(e.name + ":" + str(e.stat().st_mtime_ns) for e in os.scandir(store.root / "index")
                                if e.is_dir()))
        except OSError:
            return ()

    def index_for(self, store: Store) -> tuple[Any, IndexState]:
        """The opened index of ``store`` (or None) and what to report about it."""
        if self.mode == "off":
            return None, IndexState(self.mode, "off", False)
        if not self._faiss:
            return None, IndexState(self.mode, "unavailable", False, "faiss is not installed (pip install 'vggsim[ann]')"
                                    + ("; searching exactly" if self.mode == "auto" else ""))
        folders = self._folders(store)
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is store and cached[1] == folders:
                return cached[2], cached[3]
            index, state = self._open(store)
            self._cached = (store, folders, index, state)
            return index, state

    def _open(self, store: Store) -> tuple[Any, IndexState]:
        from vggsim.search.ivf import OnDiskIndex

        if not any(shard.rows for shard in store.commit_record.shards):
            return None, IndexState(self.mode, "empty", False, "the store holds no vectors yet")
        try:
            index = OnDiskIndex.open(store)
        except StoreError as exc:
            text = str(exc).splitlines()[0] if str(exc) else "no usable index"
            state = "missing" if "has no index" in text else "stale"
            return None, IndexState(self.mode, state, False, text + ("; searching exactly" if self.mode == "auto" else ""))
        params = index.info.get("params", {})
        info = {"vectors": index.vectors, "nprobe": index.nprobe, "factory": params.get("factory"),
                "generation": index.info.get("generation")}
        return index, IndexState(self.mode, "current", True, None, info)

    def check_startup(self) -> None:
        """For ``require``: a StoreError (naming the command to build it) unless the store has a current index."""
        if self.mode != "require":
            return
        if not self._faiss:
            raise StoreError("--index require needs faiss: pip install 'vggsim[ann]' (or use --index auto)")
        store = self.reader.snapshot()
        from vggsim.search.ivf import OnDiskIndex

        OnDiskIndex.open(store)  # StoreError naming the rebuild command when missing, stale or damaged

    def search(self, store: Store, query: np.ndarray, k: int) -> tuple[list[Match], IndexState]:
        """The top ``k`` matches of one query vector in snapshot ``store``, and how they were found."""
        index, state = self.index_for(store)
        if index is None and self.mode == "require" and state.state not in ("empty",):
            raise ApiError(409, "index", f"--index require: {state.message or 'no current index'}")
        if index is None:
            return self.reader.search(query[None, :], k, False, snapshot=store).matches[0], state
        ids, scores = index.search(query[None, :], k)
        row_ids, row_scores = ids[0], scores[0]
        keep = row_ids >= 0
        names = index.paths(row_ids[keep])
        return [Match(name, float(score), int(i)) for name, score, i in
                zip(names, row_scores[keep], row_ids[keep])], state

    def duplicates(self, store: Store, query: np.ndarray, threshold: float,
                   sha256: str | None = None) -> tuple[list[Match], IndexState]:
        """Every stored vector with cosine >= ``threshold`` to ``query`` in ``store``, best first, and how
        they were found (see the module docstring); stored files whose content is ``sha256`` first of all,
        with score 1.0 (:func:`vggsim.collection.queries.duplicates_of`)."""
        index, state = self.index_for(store)
        if index is None and self.mode == "require" and state.state not in ("empty",):
            raise ApiError(409, "index", f"--index require: {state.message or 'no current index'}")
        if index is None:
            return duplicates_of(store, query, threshold, sha256=sha256), state
        normalized = l2_normalize(query[None, :], np.float32)[0]
        wanted = DUPLICATE_INDEX_FIRST
        while True:
            asked = min(index.vectors, wanted * DUPLICATE_RERANK)
            found = index.candidates(query[None, :], asked)[0]
            ids = np.unique(found[found >= 0])
            # scored as the exact scan scores (duplicate_scores), so both agree to the bit at any threshold
            scores = duplicate_scores(index.stored(ids), normalized)
            passing = scores >= np.float32(threshold)
            if int(passing.sum()) < wanted or asked >= index.vectors:
                break  # a match under the threshold among the best `wanted`: every one above it is here
            exhausted = len(ids) < asked  # the probed lists hold no more vectors, and all of them match
            if exhausted or wanted >= DUPLICATE_INDEX_LIMIT:
                why = ("every vector in the index lists searched reaches the threshold" if exhausted else
                       f"at least {DUPLICATE_INDEX_LIMIT} stored images reach the threshold")
                return duplicates_of(store, query, threshold, sha256=sha256), IndexState(
                    state.mode, state.state, False, why + ": listed by an exact scan of the store", state.info)
            wanted *= 4
        chosen, values = ids[passing], scores[passing]
        identical = identical_ids(store, sha256)  # byte-identical copies match whatever their cosine
        if len(identical):
            values = np.concatenate([np.ones(len(identical), np.float32), values[~np.isin(chosen, identical)]])
            chosen = np.concatenate([identical.astype(chosen.dtype), chosen[~np.isin(chosen, identical)]])
        order = np.lexsort((chosen, -values))  # best first, ties by id: as duplicates_of
        chosen, values = chosen[order], values[order]
        return [Match(name, float(score), int(i)) for name, score, i in
                zip(index.paths(chosen), values, chosen)], state
