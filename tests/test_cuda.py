"""CUDA parity: runs where onnxruntime-gpu and a GPU are present, skips cleanly elsewhere.

On a GPU machine: pip install 'vggsim[gpu]' (see the README), then pytest tests/test_cuda.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxruntime

from vggsim import Embedder, l2_normalize

pytestmark = pytest.mark.skipif("CUDAExecutionProvider" not in onnxruntime.get_available_providers(),
                                reason="needs onnxruntime-gpu")


@pytest.fixture(scope="module")
def cuda_embedder(model_dir: Path) -> Embedder:
    embedder = Embedder(model_dir, providers="auto")
    if embedder.provider != "CUDAExecutionProvider":
        pytest.skip("onnxruntime-gpu is installed but no usable GPU was found")
    return embedder


def test_cuda_matches_cpu_on_real_photos(cuda_embedder: Embedder, model_dir: Path, photos: list[Path]) -> None:
    cpu = Embedder(model_dir, providers="cpu").embed(photos)
    gpu = cuda_embedder.embed(photos)
    assert np.sum(l2_normalize(cpu) * l2_normalize(gpu), axis=1).min() >= 0.9999
    strict = Embedder(model_dir, providers="cuda", strict=True)
    assert strict.provider == "CUDAExecutionProvider" and strict.io_binding


def test_fp16_on_cuda_against_fp32(cuda_embedder: Embedder, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxconverter_common")
    from vggsim.export.variants import export_variant

    fp16 = Embedder(export_variant(model_dir, tmp_path / "fp16", "fp16"), providers="cuda", strict=True)
    cosines = np.sum(l2_normalize(cuda_embedder.embed(photos)) * l2_normalize(fp16.embed(photos)), axis=1)
    assert cosines.min() >= 0.99
