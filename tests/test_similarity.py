"""cosine_similarity matches scikit-learn and never returns NaN."""

from __future__ import annotations

import numpy as np
import pytest

from vggsim import cosine, cosine_similarity


def test_matches_scikit_learn() -> None:
    pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 512)).astype(np.float32)
    y = np.abs(rng.standard_normal((7, 512))).astype(np.float32) * 300
    assert np.abs(cosine_similarity(x, y) - pairwise.cosine_similarity(x, y)).max() <= 1e-6
    assert np.abs(cosine_similarity(x) - pairwise.cosine_similarity(x)).max() <= 1e-6


def test_zero_vectors_score_zero_not_nan() -> None:
    x = np.zeros((2, 4), np.float32)
    x[1] = [1, 2, 3, 4]
    scores = cosine_similarity(x)
    assert not np.isnan(scores).any()
    assert scores[0, 0] == 0.0 and scores[0, 1] == 0.0 and scores[1, 1] == pytest.approx(1.0)
    assert cosine(np.zeros(3), np.ones(3)) == 0.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        cosine_similarity(np.ones((1, 3)), np.ones((1, 4)))
