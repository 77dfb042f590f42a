"""Near-duplicates: all pairs above a threshold in bounded memory, grouped by union-find.

The threshold itself is measured at export (``vggsim.export.calibrate``) and read from the
manifest's ``dedup`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from vggsim.similarity import l2_normalize
from vggsim.store import Block

Blocks = Callable[[], Iterable[Block]]


def similar_pairs(blocks: Blocks, threshold: float) -> Iterator[tuple[int, int, float]]:
    """Every pair (i, j, score) with i < j and cosine score >= ``threshold``.

    ``blocks`` is called once per outer block to stream the inner ones again, so only two
    blocks (and one score block) are in memory at a time.
    """
    buffer = np.empty(0, np.float32)  # one score block, reused: a fresh 64 MB array per pair of blocks costs page faults
    for a_index, outer in enumerate(blocks()):
        a = l2_normalize(outer.vectors, np.float32)
        for b_index, inner in enumerate(blocks()):
            if b_index < a_index:
                continue
            b = a if b_index == a_index else l2_normalize(inner.vectors, np.float32)
            if not len(a) or not len(b):
                continue
            if buffer.size < len(a) * len(b):
                buffer = np.empty(len(a) * len(b), np.float32)
            scores = buffer[:len(a) * len(b)].reshape(len(a), len(b))
            np.matmul(a, b.T, out=scores)
            # Most pairs of blocks hold no duplicate: one max() settles them, and a flat nonzero is
            # several times faster than a 2-d one where there are hits. The max stays an array so it is
            # compared as the hit mask is (NumPy 1.x compares two scalars in float64, and float32(t) < t
            # would skip a pair scoring exactly t). NaN scores fall through and match nothing.
            if (scores.max(keepdims=True) < threshold).all():
                continue
            hits = np.flatnonzero(scores >= threshold)
            rows, cols = np.divmod(hits, len(b))
            if b_index == a_index:  # each pair once, no self-pairs: the upper triangle of a symmetric block
                upper = rows < cols
                rows, cols, hits = rows[upper], cols[upper], hits[upper]
            values = scores.ravel()[hits]  # copied: the buffer is reused by the next pair of blocks
            for r, c, value in zip(rows.tolist(), cols.tolist(), values.tolist()):
                i, j = int(outer.ids[r]), int(inner.ids[c])
                yield (min(i, j), max(i, j), value)


def identical_pairs(hashes: Iterable[tuple[int, str | None]]) -> Iterator[tuple[int, int, float]]:
    """Pairs (first, other, 1.0) of ids with the same content hash (None: unknown, never paired).

    Byte-identical files are duplicates whatever their vectors say: two embeddings of one file
    made in different batches or runs can differ in the last bits, and their cosine then falls
    just under 1, so a threshold of 1 would miss them. Each id is paired with the first id of its hash.
    """
    first: dict[str, int] = {}
    for identifier, digest in hashes:
        if not digest:
            continue
        seen = first.setdefault(digest, identifier)
        if seen != identifier:
            yield (min(seen, identifier), max(seen, identifier), 1.0)


def group_pairs(pairs: Iterable[tuple[int, int, float]]) -> list[list[int]]:
    """Connected groups of ids (union-find, path halving); each sorted, groups by first id."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])
