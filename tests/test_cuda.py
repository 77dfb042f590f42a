"""CUDA parity: runs where onnxruntime-gpu and a GPU are present, skips cleanly elsewhere.

On a GPU machine: pip install 'vggsim[gpu]' (see the README), then pytest tests/test_cuda.py.
With VGGSIM_REQUIRE_CUDA=1 (set by scripts/device/gpu_check.sh) a missing GPU fails
instead of skipping, so a run meant for the GPU cannot pass on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import onnxruntime

from vggsim import Embedder, l2_normalize

REQUIRE_CUDA = os.environ.get("VGGSIM_REQUIRE_CUDA") == "1"
pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers() and not REQUIRE_CUDA,
    reason="needs onnxruntime-gpu")


@pytest.fixture(scope="module")
def cuda_embedder(model_dir: Path) -> Embedder:
    embedder = Embedder(model_dir, providers="auto")
    if embedder.provider != "CUDAExecutionProvider":
        message = f"onnxruntime-gpu is installed but CUDA did not start ({embedder.provider} runs)"
        if REQUIRE_CUDA:
            pytest.fail(message)
        pytest.skip(message)
    return embedder


def test_cuda_matches_cpu_on_real_photos(cuda_embedder: Embedder, model_dir: Path, photos: list[Path]) -> None:
    cpu = Embedder(model_dir, providers="cpu").embed(photos)
    gpu = cuda_embedder.embed(photos)
    assert np.sum(l2_normalize(cpu) * l2_normalize(gpu), axis=1).min() >= 0.9999
    strict = Embedder(model_dir, providers="cuda", strict=True)
    assert strict.provider == "CUDAExecutionProvider" and strict.io_binding


def test_cuda_session_gets_vggsim_options(cuda_embedder: Embedder) -> None:
    options = cuda_embedder.session.get_provider_options()["CUDAExecutionProvider"]
    assert options["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert options["use_tf32"] == "0"  # the fp32 model stays float32 on the GPU


def test_cuda_batch_does_not_change_an_embedding(cuda_embedder: Embedder, photos: list[Path]) -> None:
    alone = cuda_embedder.embed(photos[:1])
    batch = cuda_embedder.embed(photos[:1] * 3 + photos[1:6], batch_size=8)
    assert np.sum(l2_normalize(alone) * l2_normalize(batch[:3]), axis=1).min() >= 0.99999
    without_binding = Embedder(cuda_embedder.manifest.model_path.parent, providers="cuda", io_binding=False)
    plain, bound = without_binding.embed(photos[:2]), cuda_embedder.embed(photos[:2])
    assert np.sum(l2_normalize(plain) * l2_normalize(bound), axis=1).min() >= 0.99999


def test_fp16_on_cuda_against_fp32(cuda_embedder: Embedder, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxconverter_common")
    from vggsim.export.variants import export_variant

    fp16 = Embedder(export_variant(model_dir, tmp_path / "fp16", "fp16"), providers="cuda", strict=True)
    cosines = np.sum(l2_normalize(cuda_embedder.embed(photos)) * l2_normalize(fp16.embed(photos)), axis=1)
    assert cosines.min() >= 0.99
