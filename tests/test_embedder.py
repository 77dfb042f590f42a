"""Embedder: shapes, batching, providers, and the manifest guard."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from vggsim import Embedder, ImageError, ModelError, ProviderError, RandomWeightsWarning, load_image
from vggsim.model.session import resolve_providers, usable_cpus


def test_embed_shapes_dtype_and_order(embedder: Embedder, photos: list[Path]) -> None:
    vectors = embedder.embed(photos[:3], batch_size=2)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    one = embedder.embed_one(photos[2])
    assert np.allclose(one, vectors[2], rtol=1e-5, atol=1e-4)


def test_batch_size_does_not_change_results(embedder: Embedder, photos: list[Path]) -> None:
    a = embedder.embed(photos[:4], batch_size=1)
    b = embedder.embed(photos[:4], batch_size=4)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_arrays_in_and_wrong_shapes_out(embedder: Embedder, photos: list[Path]) -> None:
    array = load_image(photos[0])
    assert np.allclose(embedder.embed(array), embedder.embed([photos[0]]), rtol=1e-5, atol=1e-4)
    with pytest.raises(ImageError, match=r"\(N, 224, 224, 3\)") as info:
        embedder.embed(np.zeros((2, 100, 100, 3), np.float32))
    assert info.value.kind == "bad_array"


def test_similarity_is_symmetric_and_self_is_one(embedder: Embedder, photos: list[Path]) -> None:
    assert embedder.similarity(photos[0], photos[0]) == pytest.approx(1.0, abs=1e-6)
    assert embedder.similarity(photos[0], photos[1]) == pytest.approx(
        embedder.similarity(photos[1], photos[0]), abs=1e-6)


def test_bad_input_names_the_file(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    with pytest.raises(ImageError, match="missing.jpg"):
        embedder.embed([photos[0], tmp_path / "missing.jpg"])


def _copy_model(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def test_tampered_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_dir, tmp_path)
    with open(copy / "model.onnx", "ab") as fp:
        fp.write(b"\0")
    with pytest.raises(ModelError, match="does not match its manifest"):
        Embedder(copy)


def test_missing_manifest_and_missing_folder(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_dir, tmp_path)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelError, match="no manifest.json"):
        Embedder(copy)
    with pytest.raises(ModelError, match="vggsim export"):
        Embedder(tmp_path / "nowhere")


def test_random_weights_warn(model_dir: Path) -> None:
    assert json.loads((model_dir / "manifest.json").read_text())["weights"]["source"] == "random"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Embedder(model_dir, providers="cpu")
    assert any(issubclass(w.category, RandomWeightsWarning) for w in caught)


def test_provider_reporting_and_strict_mode(model_dir: Path) -> None:
    assert Embedder(model_dir, providers="cpu", strict=True).provider == "CPUExecutionProvider"
    assert Embedder(model_dir, providers="auto").provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ProviderError, match="vggsim\\[gpu\\]"):
            Embedder(model_dir, providers="cuda", strict=True)
    with pytest.raises(ProviderError, match="Unknown provider"):
        resolve_providers("warp-drive")


def test_threads_follow_usable_cpus(model_dir: Path) -> None:
    assert usable_cpus() >= 1
    embedder = Embedder(model_dir, providers="cpu", threads=1)
    assert embedder.session.get_session_options().intra_op_num_threads == 1


def test_optimized_graph_cache_and_io_binding(model_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    copy = _copy_model(model_dir, tmp_path)
    plain = Embedder(copy, providers="cpu").embed(photos[:2])
    first = Embedder(copy, providers="cpu", cache_optimized=True)
    cached = list(copy.glob("model.optimized-*.onnx"))
    assert len(cached) == 1 and not list(copy.glob(".*.tmp"))
    second = Embedder(copy, providers="cpu", cache_optimized=True)
    assert list(copy.glob("model.optimized-*.onnx")) == cached
    for embedder in (first, second, Embedder(copy, providers="cpu", io_binding=True)):
        assert np.allclose(embedder.embed(photos[:2]), plain, rtol=1e-4, atol=1e-3)
    assert Embedder(copy, providers="cpu").io_binding is False


def test_provider_resolution_on_a_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.model import session

    monkeypatch.setattr(session, "available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0"})
    assert resolve_providers("auto") == [cuda, "CPUExecutionProvider"]
    assert resolve_providers("cuda") == [cuda, "CPUExecutionProvider"]
    assert resolve_providers("tensorrt") == ["TensorrtExecutionProvider", cuda, "CPUExecutionProvider"]
    assert resolve_providers(["cuda", "cpu"]) == [cuda, "CPUExecutionProvider"]
    fast = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1", "prefer_nhwc": "1"})
    assert resolve_providers("cuda-tf32") == [fast, "CPUExecutionProvider"]
    tf32 = ("CUDAExecutionProvider", {"use_tf32": "1"})
    assert resolve_providers([tf32]) == [tf32, "CPUExecutionProvider"]


def test_cgroup_quota_caps_the_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.model import session

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert session._cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert session._cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert session._cgroup_cpu_quota(v1) == 3.0
    monkeypatch.setattr(session, "_cgroup_cpu_quota", lambda: 1.5)
    monkeypatch.setattr(session.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert session.usable_cpus() == 2  # 1.5 CPUs of quota round up; affinity alone would say 4


@pytest.mark.parametrize("name", ["spec", "max_pixels", "provider", "dim", "io_binding", "manifest", "session",
                                  "input_size"])
def test_embedder_is_not_changed_after_construction(embedder: Embedder, name: str) -> None:
    before = getattr(embedder, name)
    with pytest.raises(AttributeError):
        setattr(embedder, name, before)
    assert getattr(embedder, name) is before


def test_spec_and_max_pixels_are_given_to_the_constructor(model_dir: Path) -> None:
    import dataclasses

    from vggsim.model.manifest import read_manifest

    spec = dataclasses.replace(read_manifest(model_dir).preprocess, exif_transpose=True)
    embedder = Embedder(model_dir, providers="cpu", spec=spec, max_pixels=1000)
    assert embedder.spec.exif_transpose and embedder.max_pixels == 1000
    with pytest.raises(ImageError, match="decompression-bomb"):
        embedder.load(_png(40, 40))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="max_pixels"):
            Embedder(model_dir, providers="cpu", max_pixels=bad)  # type: ignore[arg-type]


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_onnxruntime_session_is_made_by_session_py() -> None:
    root = Path(__file__).resolve().parents[1]
    makers = [str(p.relative_to(root)) for folder in ("runtime", "export") for p in sorted((root / folder).rglob("*.py"))
              if "InferenceSession(" in p.read_text(encoding="utf-8")]
    assert makers == ["runtime/model/session.py"]


def test_session_from_model_bytes_without_optimisation() -> None:
    import onnxruntime

    from vggsim.model.session import create_session

    model = (Path(__file__).resolve().parents[1] / "runtime" / "tools" / "bench_matmul.onnx").read_bytes()
    session, provider = create_session(model, "cpu", threads=1, optimize=False)
    assert provider == "CPUExecutionProvider"
    options = session.get_session_options()
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(session.run(None, {"a": a, "b": a.T.copy()})[0], a @ a.T)
