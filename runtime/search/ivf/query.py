"""Searching a store through its on-disk index: memory-mapped IVF candidates, exact re-ranking.

The inverted lists are memory-mapped (``IO_FLAG_ONDISK_SAME_DIR``), so resident memory is
the coarse quantiser (nlist x dim floats), the pages of the lists a query scans, and the
float32 vectors of its candidates, read back from the store's shards. Candidates are
re-scored exactly (cosine on the stored vectors), so the scores returned are the same as
exact search gives for those vectors; only a true neighbour the codes ranked below the
candidate cut can be missed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import StoreError, require
from vggsim.similarity import l2_normalize
from vggsim.store import Store
from vggsim.store.format import pyarrow, shard_name
from vggsim.search.ivf.rows import RowReader
from vggsim.search.ivf.files import CODES, LOCATIONS, PATHS, current_folder, quiet_stdout, read_info, rebuild_hint
from vggsim.store.npyio import load_npy

#: Candidates per wanted match. 10 (k*10) found only 0.34 of the true top-10 on the 1M
#: benchmark store (PQ64 cannot order a cluster's members); 100 found 0.999, and re-scoring
#: 1,000 stored vectors per query costs about a millisecond.
DEFAULT_RERANK = 100
QUERY_CHUNK = 16


def read_rows(path: Path, rows: np.ndarray, dim: int) -> np.ndarray:
    """Rows of a C-order (n, dim) .npy file as float32 (one pread per row; see rows.py)."""
    reader = RowReader(path.parent, dim)
    try:
        out = np.empty((len(rows), dim), np.float32)
        reader.read(path, 0, np.asarray(rows, np.int64), out)
        return out
    finally:
        reader.close()


class OnDiskIndex:
    """A store snapshot's IVF index, opened memory-mapped. Thread-safe for searching."""

    def __init__(self, store: Store, folder: Path, info: dict[str, Any], index: Any, locations: np.ndarray,
                 names: Any) -> None:
        self.store, self.folder, self.info, self.index = store, folder, info, index
        self.locations, self.names = locations, names  # the ids mapping, memory-mapped
        self.vectors = int(info["vectors"])
        self.nprobe = int(info["params"]["nprobe"])
        self.rows = RowReader(store.root, store.identity.dim)  # shard files stay open across queries

    def close(self) -> None:
        """Close the shard files kept open for re-ranking (also done when the index is collected)."""
        self.rows.close()

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
            if index.d != store.identity.dim or index.ntotal != int(info["vectors"]):
                raise ValueError(f"it holds {index.ntotal} vectors of dim {index.d}")
            locations = load_npy(folder / LOCATIONS, "r")
            pa = pyarrow()
            names = pa.ipc.open_file(pa.memory_map(str(folder / PATHS))).read_all().column("path_bytes")
            if locations.shape != (len(names),) or int((locations >= 0).sum()) != index.ntotal:
                raise ValueError("its ids mapping does not match its vectors")
        except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
            raise StoreError(f"{folder}: the index is damaged ({(str(exc).splitlines() or ['?'])[0][:120]}); "
                             f"rebuild it with {rebuild_hint(store.root)}") from None
        return cls(store, folder, info, index, locations, names)

    def paths(self, ids: np.ndarray) -> list[str]:
        """The lossless file names of these ids."""
        return [os.fsdecode(name) for name in self.names.take(np.asarray(ids, np.int64)).to_pylist()]

    def stored(self, ids: np.ndarray) -> np.ndarray:
        """The float32 vectors of these ids, read from the committed shards, one pread per row in
        (shard, row) order from files kept open (see rows.py: a memory map would fault in a large
        folio around each row; pread keeps nothing resident)."""
        where = np.asarray(self.locations[ids], np.int64)
        if len(where) and where.min() < 0:
            raise StoreError(f"{self.folder}: the index returned ids without vectors; "
                             f"rebuild it with {rebuild_hint(self.store.root)}")
        order = np.argsort(where, kind="stable")
        ordered = where[order]
        buffer = np.empty((len(where), self.store.identity.dim), np.float32)
        shards = ordered >> 32
        bounds = np.flatnonzero(np.diff(shards)) + 1
        for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(ordered)]):
            if lo == hi:
                continue
            shard = int(shards[lo])
            path = self.store.root / shard_name(shard, "vectors")
            try:
                self.rows.read(path, shard, ordered[lo:hi] & 0xFFFFFFFF, buffer[lo:hi])
            except (OSError, ValueError) as exc:
                raise StoreError(f"{path}: cannot read committed vectors ({str(exc)[:100]}); "
                                 f"`vggsim store verify {self.store.root}` says more") from None
        out = np.empty_like(buffer)
        out[order] = buffer
        return out

    def candidates(self, queries: np.ndarray, count: int, nprobe: int | None = None) -> np.ndarray:
        """The ids of ``count`` approximate best matches per query row (-1 where there are fewer)."""
        faiss: Any = require("faiss", "ann", "The on-disk index")
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
        _, ids = self.index.search(l2_normalize(queries, np.float32), int(count), params=params)
        ids = np.asarray(ids, np.int64)
        if ids.size and ids.max() >= len(self.locations):
            raise StoreError(f"{self.folder}: the index returned ids the store does not have; "
                             f"rebuild it with {rebuild_hint(self.store.root)}")
        return ids

    def search(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
               rerank: int = DEFAULT_RERANK) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`search_chunk`; queries go QUERY_CHUNK at a time so candidates stay ~32 MB."""
        parts = [self.search_chunk(queries[start:start + QUERY_CHUNK], k, nprobe=nprobe, rerank=rerank)
                 for start in range(0, len(queries), QUERY_CHUNK)]
        if not parts:
            width = min(k, self.vectors)
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def search_chunk(self, queries: np.ndarray, k: int = 10, *, nprobe: int | None = None,
                     rerank: int = DEFAULT_RERANK) -> tuple[np.ndarray, np.ndarray]:
        """The k best (ids, scores) per query row, best first, like :func:`vggsim.search.exact.exact_topk`:
        ``k * rerank`` candidates from the index, re-scored exactly from the stored vectors."""
        k = min(k, self.vectors)
        ids = self.candidates(queries, min(self.vectors, k * max(1, rerank)), nprobe)
        wanted = np.unique(ids[ids >= 0])
        stored = self.stored(wanted)
        norms = np.sqrt(np.einsum("ij,ij->i", stored, stored))
        norms[norms == 0] = 1.0  # a zero vector scores 0, as in exact search
        normalized = l2_normalize(queries, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        for row, found in enumerate(ids):
            found = found[found >= 0]
            at = np.searchsorted(wanted, found)
            # einsum, not BLAS: a 1,000 x 512 product is ~0.1 ms either way, but BLAS wakes its
            # threads for it, which on a busy machine cost milliseconds (measured: 2.4 ms median)
            scores = (np.einsum("ij,j->i", stored[at], normalized[row]) / norms[at]).astype(np.float32)
            order = np.lexsort((found, -scores))[:k]  # best first; ties by id, as exact search
            out_ids[row, : len(order)], out_scores[row, : len(order)] = found[order], scores[order]
        return out_ids, out_scores
