"""The threaded host-side helpers: the finite check and the checked copy into staging must find
exactly the first bad image, whatever thread handles it, and copy every row exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggsim import Embedder, ImageError
from vggsim.model.host_copy import PARALLEL_MIN_BYTES, copy_rows, first_non_finite


def _batch(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).uniform(0, 255, (rows, 224, 224, 3)).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 3, 13])  # 13 images (7.8 MB) go over the threads
def test_first_non_finite_names_the_first_bad_image(rows: int) -> None:
    batch = _batch(rows)
    assert (batch.nbytes >= PARALLEL_MIN_BYTES) == (rows == 13)
    assert first_non_finite(batch) is None
    for bad_rows, value in (([rows - 1], np.inf), ([rows // 2, rows - 1], np.nan), ([0], -np.inf)):
        broken = batch.copy()
        for row in bad_rows:
            broken[row, 100, 7, 2] = value
        assert first_non_finite(broken) == min(bad_rows)


@pytest.mark.parametrize("rows", [1, 13])
def test_copy_rows_copies_exactly_and_reports_the_first_bad_image(rows: int) -> None:
    batch = _batch(rows)
    staging = np.zeros((16, 224, 224, 3), np.float32)
    assert copy_rows(staging, batch, check=True) is None
    assert np.array_equal(staging[:rows], batch) and not staging[rows:].any()
    batch[rows - 1, 0, 0, 0] = np.nan
    assert copy_rows(staging, batch, check=True) == rows - 1
    assert copy_rows(staging, batch, check=False) is None


def test_a_bad_image_in_a_later_fixed_batch_chunk_is_named_by_its_place(model_dir: Path) -> None:
    batch = np.zeros((7, 224, 224, 3), np.float32)
    batch[5, 1, 1, 1] = np.inf
    for embedder in (Embedder(model_dir, providers="cpu", fixed_batch=2), Embedder(model_dir, providers="cpu")):
        with pytest.raises(ImageError, match=r"image 5 of the batch"):
            embedder.run(batch)
