"""CUDA parity: runs where onnxruntime-gpu and a GPU are present, skips cleanly elsewhere.
What needs no GPU (the named CUDA settings, the fp16 graph edit, the fixed-buffer runner on
the CPU provider) runs everywhere.

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
from vggsim.model.cuda.runner import CudaRunner
from vggsim.model.session import CUDA_SETTINGS, create_session, cuda_setting

REQUIRE_CUDA = os.environ.get("VGGSIM_REQUIRE_CUDA") == "1"
needs_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers() and not REQUIRE_CUDA,
    reason="needs onnxruntime-gpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def test_cuda_settings_resolve_to_provider_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.model import session

    monkeypatch.setattr(session, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    for name, setting in CUDA_SETTINGS.items():
        resolved = session.resolve_providers(name, fixed_buffers=True)
        assert resolved == [("CUDAExecutionProvider", setting.options), "CPUExecutionProvider"]
        assert setting.options["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert CUDA_SETTINGS["cuda"].options["use_tf32"] == "0" and "prefer_nhwc" not in CUDA_SETTINGS["cuda"].options
    graph, overlap = cuda_setting("CUDA-GRAPH"), cuda_setting("cuda-overlap")
    assert graph.cuda_graph and not graph.overlap and graph.options["enable_cuda_graph"] == "1"
    assert overlap.overlap and not overlap.cuda_graph and "enable_cuda_graph" not in overlap.options
    assert cuda_setting("cuda-graph-overlap").cuda_graph and cuda_setting("cuda-graph-overlap").overlap
    with pytest.raises(session.ProviderError):
        cuda_setting("cuda-warp")
    for name in ("cuda-graph", "cuda-graph-overlap"):  # Embedder feeds host arrays: no CUDA graph there
        with pytest.raises(session.ProviderError, match="fixed device buffers"):
            session.resolve_providers(name)


def test_first_convolution_padding_changes_no_output(model_dir: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="needs onnx (the export or fp16 extra)")

    from vggsim.export.variants import graph_op_counts, pad_first_conv_channels

    model = onnx.load(str(model_dir / "model.onnx"))
    assert pad_first_conv_channels(model) == 1
    assert graph_op_counts(model)["Pad"] == 1
    onnx.save(model, str(tmp_path / "padded.onnx"))
    batch = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    plain, _ = create_session(model_dir / "model.onnx", "cpu")
    padded, _ = create_session(tmp_path / "padded.onnx", "cpu")
    assert np.array_equal(plain.run(None, {"image": batch})[0], padded.run(None, {"image": batch})[0])


def test_fixed_buffer_runner_on_the_cpu(model_dir: Path) -> None:
    session, _ = create_session(model_dir / "model.onnx", "cpu")
    runner = CudaRunner(session, 1)
    batches = [np.random.default_rng(i).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32) for i in range(3)]
    expected = [session.run(None, {"image": b})[0] for b in batches]
    assert np.array_equal(runner.run_host(batches[1]), expected[1])
    for got, want in zip(runner.run_stream([runner.pinned(b) for b in batches]), expected):
        assert np.array_equal(got, want)


@pytest.fixture(scope="module")
def cuda_embedder(model_dir: Path) -> Embedder:
    embedder = Embedder(model_dir, providers="auto")
    if embedder.provider != "CUDAExecutionProvider":
        message = f"onnxruntime-gpu is installed but CUDA did not start ({embedder.provider} runs)"
        if REQUIRE_CUDA:
            pytest.fail(message)
        pytest.skip(message)
    return embedder


@needs_cuda
def test_cuda_matches_cpu_on_real_photos(cuda_embedder: Embedder, model_dir: Path, photos: list[Path]) -> None:
    cpu = Embedder(model_dir, providers="cpu").embed(photos)
    gpu = cuda_embedder.embed(photos)
    assert np.sum(l2_normalize(cpu) * l2_normalize(gpu), axis=1).min() >= 0.9999
    strict = Embedder(model_dir, providers="cuda", strict=True)
    assert strict.provider == "CUDAExecutionProvider" and strict.io_binding


@needs_cuda
def test_cuda_session_gets_vggsim_options(cuda_embedder: Embedder) -> None:
    options = cuda_embedder.session.get_provider_options()["CUDAExecutionProvider"]
    assert options["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert options["use_tf32"] == "0"  # the fp32 model stays float32 on the GPU


@needs_cuda
def test_cuda_batch_does_not_change_an_embedding(cuda_embedder: Embedder, photos: list[Path]) -> None:
    alone = cuda_embedder.embed(photos[:1])
    batch = cuda_embedder.embed(photos[:1] * 3 + photos[1:6], batch_size=8)
    assert np.sum(l2_normalize(alone) * l2_normalize(batch[:3]), axis=1).min() >= 0.99999
    without_binding = Embedder(cuda_embedder.manifest.model_path.parent, providers="cuda", io_binding=False)
    plain, bound = without_binding.embed(photos[:2]), cuda_embedder.embed(photos[:2])
    assert np.sum(l2_normalize(plain) * l2_normalize(bound), axis=1).min() >= 0.99999


@needs_cuda
def test_fp16_on_cuda_against_fp32(cuda_embedder: Embedder, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxconverter_common")
    from vggsim.export.variants import export_variant

    folder = export_variant(model_dir, tmp_path / "fp16", "fp16")
    reference = Embedder(model_dir, providers="cpu").embed(photos)
    for setting in ("cuda", "cuda-tf32"):  # NCHW and NHWC: the GPU target is >= 0.999 against exact fp32
        fp16 = Embedder(folder, providers=setting, strict=True)
        assert _cosines(reference, fp16.embed(photos)).min() >= 0.999, setting
    # cuda-graph: one captured graph, fed through fixed device buffers; every replay must
    # read the new input (a stale input would repeat the first batch's embeddings).
    session, provider = create_session(folder / "model.onnx", "cuda-graph", strict=True, fixed_buffers=True)
    assert provider == "CUDAExecutionProvider"
    runner = CudaRunner(session, 4)
    inputs = np.stack([fp16.load(p) for p in photos[:8]])
    first, second = runner.run_host(inputs[:4].copy()), runner.run_host(inputs[4:8].copy())
    assert _cosines(reference[:4], first).min() >= 0.999 and _cosines(reference[4:8], second).min() >= 0.999
    streamed = runner.run_stream([runner.pinned(inputs[:4]), runner.pinned(inputs[4:8]), runner.pinned(inputs[:4])])
    assert min(_cosines(reference[k:k + 4], out).min() for k, out in zip((0, 4, 0), streamed)) >= 0.999


def test_fixed_batch_embedder_equals_the_plain_one_on_the_cpu(model_dir: Path, photos: list[Path]) -> None:
    # The fixed-batch feed (padding to one shape, pinned staging) is what cuda-graph runs
    # through; on the CPU provider the same code runs with plain copies and must give the
    # very same vectors, whatever the padding rows hold (a full batch first, then a short one).
    plain = Embedder(model_dir, providers="cpu").embed(photos)
    fixed = Embedder(model_dir, providers="cpu", fixed_batch=4)
    assert fixed.fixed_batch == 4
    assert np.array_equal(fixed.embed(photos, batch_size=5), plain)
    assert np.array_equal(fixed.embed(photos[:1]), plain[:1])
    arrays = np.stack([fixed.load(p) for p in photos])
    assert np.array_equal(fixed.embed(arrays), plain)
    assert np.array_equal(fixed.run(arrays[2:3]), plain[2:3])
    assert Embedder(model_dir, providers="cpu").fixed_batch is None


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8"])
def test_fixed_batch_must_be_a_positive_integer(model_dir: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="fixed_batch must be a positive integer"):
        Embedder(model_dir, providers="cpu", fixed_batch=bad)  # type: ignore[arg-type]


def test_fixed_batch_still_refuses_non_finite_arrays(model_dir: Path) -> None:
    from vggsim import ImageError

    fixed = Embedder(model_dir, providers="cpu", fixed_batch=2)
    batch = np.zeros((3, 224, 224, 3), np.float32)
    batch[1, 5, 5, 0] = np.nan
    with pytest.raises(ImageError, match="NaN or infinite"):
        fixed.run(batch)
    with pytest.raises(ImageError, match="NaN or infinite"):
        fixed.embed([batch[0], batch[1]])


@needs_cuda
@pytest.mark.parametrize("setting", ["cuda-graph", "cuda-overlap", "cuda-graph-overlap"])
def test_embedder_runs_every_fixed_buffer_setting(model_dir: Path, photos: list[Path], setting: str) -> None:
    # Embedder itself used neither pinned buffers nor CUDA graphs (cuda-graph was
    # refused); now it feeds them through fixed buffers. A stale graph input would repeat
    # the first batch's embeddings, so batches of different images are compared one by one.
    reference = Embedder(model_dir, providers="cpu").embed(photos)
    for fixed_batch in (1, 4):
        embedder = Embedder(model_dir, providers=setting, strict=True, fixed_batch=fixed_batch)
        assert embedder.provider == "CUDAExecutionProvider" and embedder.fixed_batch == fixed_batch
        got = embedder.embed(photos, batch_size=3)
        assert _cosines(reference, got).min() >= 0.999, (setting, fixed_batch)
        again = embedder.embed(photos[::-1], batch_size=3)[::-1]
        assert _cosines(got, again).min() >= 0.99999, (setting, fixed_batch)
    assert Embedder(model_dir, providers=setting).fixed_batch == 8
