"""Writing an index's inverted lists from several sources, list by list, with ordinary writes.

A build merges the parts it encoded; an update (update.py) merges the previous index's lists,
less the records deleted or replaced since and with their ids renumbered, and the parts it
encoded from the new vectors. Either way the result is one ``lists.ivfdata`` file in faiss's
``OnDiskInvertedLists`` layout (codes, then ids, per list) written with ordinary writes and
hashed as it is written (faiss's own merge writes through a memory map of a sparse file:
SIGBUS when the disk fills), and the ``index.faiss`` that points at it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from vggsim.search.ivf.files import CODES, LISTS
from vggsim.store.format import atomic_write

#: one list of one source: its codes (size, code_size) uint8 and its ids (size,) int64
ListSource = Callable[[int], tuple[np.ndarray, np.ndarray]]


def invlists_source(faiss: Any, invlists: Any, code_size: int, renumber: np.ndarray | None = None) -> ListSource:
    """The lists of a faiss index (read where they lie: memory-mapped for a part or an on-disk index).
    With ``renumber`` (old id -> new id, -1 for a record gone), ids are renumbered and the gone left out."""

    def read(number: int) -> tuple[np.ndarray, np.ndarray]:
        size = int(invlists.list_size(number))
        if not size:
            return np.zeros((0, code_size), np.uint8), np.zeros(0, np.int64)
        codes = faiss.rev_swig_ptr(invlists.get_codes(number), size * code_size).reshape(size, code_size)
        ids = np.asarray(faiss.rev_swig_ptr(invlists.get_ids(number), size), np.int64)
        if renumber is None:
            return codes, ids
        if ids.min() < 0 or ids.max() >= len(renumber):
            raise ValueError(f"list {number} holds ids outside the index's {len(renumber)} records")
        new = renumber[ids]
        keep = new >= 0
        return codes[keep], new[keep]

    return read


def write_faiss(faiss: Any, index: Any, path: Path) -> dict[str, Any]:
    """faiss.write_index through Python's own writes (atomic_write: fsync, "disk full ..." as a StoreError,
    an error keeps its errno, which faiss's writer loses); the file's size and sha256."""
    return atomic_write(path, lambda fp: faiss.write_index(index, faiss.PyCallbackIOWriter(fp.write)))


def write_lists(faiss: Any, template: Any, sources: Sequence[ListSource], staging: Path,
                files: dict[str, dict[str, Any]]) -> int:
    """Write ``LISTS`` (every source's list ``n`` one after another, for each list ``n``) and ``CODES``
    (``template``, the serialized trained index, pointing at it) into ``staging``; record both files'
    size and sha256 in ``files``; return the number of vectors written."""
    index = faiss.deserialize_index(template)
    ivf = faiss.extract_index_ivf(index)
    code_size, nlist = int(ivf.code_size), int(ivf.nlist)
    ondisk = faiss.OnDiskInvertedLists(nlist, code_size, str(staging / LISTS))
    ondisk.lists.clear()
    layout: list[tuple[int, int]] = []  # per list: (size, offset)

    def write(fp: IO[bytes]) -> None:
        offset = 0
        for number in range(nlist):
            pieces = [piece for piece in (source(number) for source in sources) if len(piece[1])]
            for codes, _ in pieces:
                fp.write(np.ascontiguousarray(codes, np.uint8).data)
            for _, ids in pieces:
                fp.write(np.ascontiguousarray(ids, np.int64).data)
            size = sum(len(ids) for _, ids in pieces)
            layout.append((size, offset))
            offset += size * (code_size + 8)

    files[LISTS] = atomic_write(staging / LISTS, write)
    for size, offset in layout:  # OnDiskInvertedLists' own bookkeeping: each list full (capacity == size)
        entry = faiss.OnDiskOneList()
        entry.size, entry.capacity, entry.offset = size, size, offset
        ondisk.lists.push_back(entry)
    ondisk.totsize = int(files[LISTS]["size"])
    added = sum(size for size, _ in layout)
    ivf.replace_invlists(ondisk, True)
    ondisk.this.disown()  # the index owns it now
    ivf.ntotal = index.ntotal = added
    files[CODES] = write_faiss(faiss, index, staging / CODES)
    return added


def residuals(centroids: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Each unit vector's squared distance to the centroid the coarse quantiser assigns it (inner product):
    how well the trained lists fit these vectors (see update.py's drift)."""
    if not len(unit):
        return np.zeros(0, np.float64)
    nearest = np.argmax(unit @ centroids.T, axis=1)
    return np.asarray(np.sum((unit.astype(np.float64) - centroids[nearest]) ** 2, axis=1), np.float64)
