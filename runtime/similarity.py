"""Cosine similarity in NumPy alone, matching scikit-learn's ``cosine_similarity``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def l2_normalize(vectors: ArrayLike, dtype: type = np.float32) -> np.ndarray:
    """Rows scaled to unit length. A zero row stays zero (as in scikit-learn's ``normalize``)."""
    matrix: np.ndarray = np.atleast_2d(np.asarray(vectors, dtype=dtype))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalized: np.ndarray = matrix / norms
    return normalized


def cosine_similarity(x: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
    """Pairwise cosine similarity between the rows of ``x`` and of ``y`` (default: ``x``).

    Returns an (n, m) float64 array. A zero vector has similarity 0 with every vector,
    itself included: the result is never NaN. This is scikit-learn's definition, and its
    ``cosine_similarity`` agrees with this one within 1e-6. A NaN or infinite value in
    ``x`` or ``y`` raises ValueError naming the input and row (the similarity is undefined).
    """
    a = l2_normalize(_finite(x, "x"), np.float64)
    b = a if y is None else l2_normalize(_finite(y, "y"), np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"vectors differ in length: {a.shape[1]} and {b.shape[1]}")
    result: np.ndarray = a @ b.T
    np.clip(result, -1.0, 1.0, out=result)
    return result


def _finite(vectors: ArrayLike, name: str) -> np.ndarray:
    matrix: np.ndarray = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a vector or a 2-d array of row vectors, got shape {matrix.shape}")
    finite = np.isfinite(matrix)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(f"{name} holds NaN or infinite values (row {row}): cosine similarity is undefined for them")
    # Scale rows whose squared norm would overflow float64, so they normalise instead of going to 0.
    peak = np.abs(matrix).max(axis=1, keepdims=True) if matrix.size else np.zeros((len(matrix), 1))
    huge = peak > 1e150
    if huge.any():
        matrix = np.where(huge, matrix / np.where(huge, peak, 1.0), matrix)
    return matrix


def cosine(a: ArrayLike, b: ArrayLike) -> float:
    """Cosine similarity of two single vectors, as a float (0.0 when either is zero)."""
    return float(cosine_similarity(np.ravel(a)[None, :], np.ravel(b)[None, :])[0, 0])
