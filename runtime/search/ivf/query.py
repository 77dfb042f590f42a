"""Searching a store through its on-disk index: memory-mapped IVF candidates, exact re-ranking.

The inverted lists are memory-mapped (``IO_FLAG_ONDISK_SAME_DIR``), so resident memory is
the coarse quantiser (nlist x dim floats), the pages of the lists a query scans, and the
float32 vectors of its candidates, read back from the store's shards. Candidates are
re-scored with the exact scan's own formula (:func:`vggsim.search.scores.cosine_scores`), so
every score returned equals, to the bit, what exact search gives for that vector; only a true
neighbour the codes ranked below the candidate cut can be missed.

Each search first checks the index's files against ``index.json`` (a stat each while they are
unchanged: see files.py), and every shard it reads against the commit record (see
:mod:`vggsim.store.rows`): a file damaged or cut since the index was opened is an
:class:`IndexDamaged` (the index) or a StoreError (the store), never a wrong answer or SIGBUS.

A search returns ``k`` matches whenever the store holds ``k`` vectors: a query whose ``nprobe``
lists hold fewer candidates is searched again with four times as many lists, up to all of them
(every vector then is a candidate), and the answer says how many queries needed it
(:attr:`IndexAnswer.widened`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import require
from vggsim.search.scores import pair_scores, unit_rows
from vggsim.store import Store
from vggsim.store.format import pyarrow
from vggsim.store.npyio import load_npy
from vggsim.search.ivf.files import (CODES, LOCATIONS, PATHS, IndexDamaged, current_folder, damaged, quiet_stdout,
                                     rebuild_hint, require_files)

#: Candidates per wanted match. 10 (k*10) found only 0.34 of the true top-10 on the 1M
#: benchmark store (PQ64 cannot order a cluster's members); 100 found 0.999, and re-scoring
#: 1,000 stored vectors per query costs about a millisecond.
DEFAULT_RERANK = 100
QUERY_CHUNK = 16
#: nprobe grows by this factor while some query's lists hold fewer than k candidates
WIDEN = 4


@dataclass(frozen=True)
class IndexAnswer:
    """What an index search found: per query the k best (ids, scores), best first (ties by id, id -1
    and score -inf only where the store holds fewer than k vectors), and how it got there."""

    ids: np.ndarray
    scores: np.ndarray
    nprobe: int   # the lists searched per query (the widest, when some queries were widened)
    widened: int  # queries searched again with more lists because theirs held fewer than k candidates


class OnDiskIndex:
    """A store snapshot's IVF index, opened memory-mapped. Thread-safe for searching."""

    def __init__(self, store: Store, folder: Path, info: dict[str, Any], index: Any, locations: np.ndarray,
                 names: Any) -> None:
        self.store, self.folder, self.info, self.index = store, folder, info, index
        self.locations, self.names = locations, names  # the ids mapping: in memory, and memory-mapped
        self.vectors = int(info["vectors"])
        self.nprobe = int(info["params"]["nprobe"])
        self.nlist = int(info["params"]["nlist"])
        self.rows = store.vector_files()  # shard files stay open across queries, each read checked

    def close(self) -> None:
        """Close the shard files kept open for re-ranking (also done when the index is collected)."""
        self.rows.close()

    @classmethod
    def open(cls, store: Store) -> OnDiskIndex:
        """The index of ``store``; an IndexProblem (a StoreError naming the command to rebuild) when it is
        missing (IndexMissing), built for another snapshot (IndexStale) or damaged (IndexDamaged)."""
        faiss: Any = require("faiss", "ann", "The on-disk index")
        folder, info = current_folder(store)  # every file checked against its sha256 in index.json
        try:
            with quiet_stdout():
                index = faiss.read_index(str(folder / CODES), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
            if index.d != store.identity.dim or index.ntotal != int(info["vectors"]):
                raise ValueError(f"it holds {index.ntotal} vectors of dim {index.d}")
            locations = np.asarray(load_npy(folder / LOCATIONS), np.int64)  # read, not mapped: 8 bytes an id
            pa = pyarrow()
            names = pa.ipc.open_file(pa.memory_map(str(folder / PATHS))).read_all().column("path_bytes")
            if locations.shape != (len(names),) or int((locations >= 0).sum()) != index.ntotal:
                raise ValueError("its ids mapping does not match its vectors")
        except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
            raise damaged(folder, store.root, exc) from None
        require_files(folder, info, store.root)  # what was read and mapped is what was checked
        return cls(store, folder, info, index, locations, names)

    def check(self) -> None:
        """IndexDamaged unless the index's files still hold what ``index.json`` lists: before every access
        to the memory-mapped lists and names (a file cut under a map is a SIGBUS when touched)."""
        require_files(self.folder, self.info, self.store.root)

    def paths(self, ids: np.ndarray) -> list[str]:
        """The lossless file names of these ids."""
        self.check()
        return [os.fsdecode(name) for name in self.names.take(np.asarray(ids, np.int64)).to_pylist()]

    def stored(self, ids: np.ndarray) -> np.ndarray:
        """The float32 vectors of these ids, read from the committed shards (each checked against the commit
        record), one pread per row in (shard, row) order from files kept open (see vggsim.store.rows: a
        memory map would fault in a large folio around each row; pread keeps nothing resident)."""
        where = np.asarray(self.locations[np.asarray(ids, np.int64)], np.int64)
        if len(where) and where.min() < 0:
            raise IndexDamaged(f"{self.folder}: the index returned ids without vectors; "
                               f"rebuild it with {rebuild_hint(self.store.root)}")
        order = np.argsort(where, kind="stable")
        ordered = where[order]
        buffer = np.empty((len(where), self.store.identity.dim), np.float32)
        shards = ordered >> 32
        bounds = np.flatnonzero(np.diff(shards)) + 1
        for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(ordered)]):
            if lo < hi:
                self.rows.get(int(shards[lo])).take(ordered[lo:hi] & 0xFFFFFFFF, buffer[lo:hi])
        out = np.empty_like(buffer)
        out[order] = buffer
        return out

    def candidates(self, queries: np.ndarray, count: int, nprobe: int | None = None) -> np.ndarray:
        """The ids of ``count`` approximate best matches per query row (-1 where there are fewer)."""
        faiss: Any = require("faiss", "ann", "The on-disk index")
        self.check()
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
        _, ids = self.index.search(np.ascontiguousarray(unit_rows(queries), np.float32), int(count), params=params)
        ids = np.asarray(ids, np.int64)
        if ids.size and ids.max() >= len(self.locations):
            raise IndexDamaged(f"{self.folder}: the index returned ids the store does not have; "
                               f"rebuild it with {rebuild_hint(self.store.root)}")
        return ids

    def search(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
               rerank: int = DEFAULT_RERANK) -> tuple[np.ndarray, np.ndarray]:
        """The k best (ids, scores) per query row, best first: :meth:`answer` without its account."""
        found = self.answer(queries, k, nprobe=nprobe, rerank=rerank)
        return found.ids, found.scores

    def answer(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
               rerank: int = DEFAULT_RERANK) -> IndexAnswer:
        """The k best matches per query row (see :class:`IndexAnswer`), like
        :func:`vggsim.search.exact.exact_topk`: ``k * rerank`` candidates from the index, re-scored
        exactly from the stored vectors; queries go QUERY_CHUNK at a time so candidates stay ~32 MB."""
        k = min(k, self.vectors)
        probe = max(1, min(int(nprobe or self.nprobe), self.nlist))
        parts = [self._chunk(queries[start:start + QUERY_CHUNK], k, probe, rerank)
                 for start in range(0, len(queries), QUERY_CHUNK)]
        if not parts:
            return IndexAnswer(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32), probe, 0)
        return IndexAnswer(np.vstack([p.ids for p in parts]), np.vstack([p.scores for p in parts]),
                           max(p.nprobe for p in parts), sum(p.widened for p in parts))

    def search_chunk(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
                     rerank: int = DEFAULT_RERANK) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of at most QUERY_CHUNK queries."""
        found = self._chunk(queries, min(k, self.vectors), max(1, min(int(nprobe or self.nprobe), self.nlist)), rerank)
        return found.ids, found.scores

    def _chunk(self, queries: np.ndarray, k: int, probe: int, rerank: int) -> IndexAnswer:
        count = min(self.vectors, k * max(1, rerank))
        ids = self.candidates(queries, count, probe)
        short = (ids >= 0).sum(axis=1) < k
        widened, widest = int(short.sum()), probe
        while short.any() and widest < self.nlist:  # fewer than k in the lists searched: search more of them
            widest = min(self.nlist, widest * WIDEN)
            ids[short] = self.candidates(queries[short], count, widest)
            short = (ids >= 0).sum(axis=1) < k
        if short.any():  # every list searched: the index holds fewer vectors than it says
            raise IndexDamaged(f"{self.folder}: the index lists hold fewer than {k} vectors; "
                               f"rebuild it with {rebuild_hint(self.store.root)}")
        wanted = np.unique(ids[ids >= 0])
        units = unit_rows(self.stored(wanted))
        query_units = unit_rows(queries)
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        for row, found in enumerate(ids):
            found = found[found >= 0]
            at = np.searchsorted(wanted, found)
            scores = pair_scores(units[at], np.ascontiguousarray(np.broadcast_to(query_units[row], (len(at), units.shape[1]))))
            order = np.lexsort((found, -scores))[:k]  # best first; ties by id, as exact search
            out_ids[row, : len(order)], out_scores[row, : len(order)] = found[order], scores[order]
        return IndexAnswer(out_ids, out_scores, widest, widened)

