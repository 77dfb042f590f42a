"""The one score of a stored vector against a query: every store search reports this one, to the bit.

A float32 matrix product (BLAS) rounds each score differently depending on the shapes around
it: the same vector scored against the same query gives another last bit in a block of 16,384
rows than among 1,000 candidates, or when the query comes alone rather than with others
(measured here: ``(V @ q)[5] != (V[5:6] @ q)[0]``). So the exact scan, the on-disk index's
re-ranking and both duplicate checks all report :func:`cosine_scores`: each vector and the query
made unit length in float64, their dot product summed in float64 row by row (``einsum`` over two
C-order (n, dim) operands: the same loop, the same order, whatever the batch), rounded to
float32 once. A score then depends on the vector and the query alone, and the index's answers
equal the exact scan's bit for bit.

The exact scan still ranks its blocks with the fast float32 product and re-scores only the
vectors that can reach the top (or the threshold): :func:`score_margin` bounds how far the fast
score can be from this one, so every vector whose score here could place it is re-scored.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def unit_rows(vectors: ArrayLike) -> np.ndarray:
    """``vectors`` (n, dim) as float64 rows of unit length, C order; a zero row stays zero (scores 0)."""
    rows = np.array(vectors, dtype=np.float64, order="C", ndmin=2)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1.0
    rows /= norms[:, None]
    return rows


def pair_scores(units: np.ndarray, query_units: np.ndarray) -> np.ndarray:
    """float32 cosines of row i of ``units`` with row i of ``query_units`` (both from :func:`unit_rows`)."""
    scores: np.ndarray = np.einsum("ij,ij->i", units, query_units).astype(np.float32)
    return scores


def cosine_scores(vectors: ArrayLike, query: ArrayLike) -> np.ndarray:
    """float32 cosine of each row of ``vectors`` (n, dim) with one ``query`` (dim,): the score every
    store search reports (see the module docstring)."""
    units = unit_rows(vectors)
    query_units = np.ascontiguousarray(np.broadcast_to(unit_rows(np.ravel(query))[0], units.shape))
    return pair_scores(units, query_units)


def score_margin(dim: int) -> float:
    """A bound, with room to spare, on |fast - exact| for unit vectors of ``dim``: the float32 matrix
    product's rounding (at most ``dim`` ulps of 1) plus the float32 normalisations before it."""
    return 8.0 * dim * 2.0 ** -24
