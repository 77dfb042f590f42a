"""Precision variants and `vggsim bench`: measured against fp32, refused when they drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import needs_tensorflow
from vggsim import Embedder
from vggsim.tools.bench import VGG16_GFLOP
from vggsim.model.manifest import read_manifest


def test_vgg16_flop_count() -> None:
    assert round(VGG16_GFLOP, 1) == 30.7  # 15.35 GMAC of 3x3 convolutions at 224x224


@pytest.mark.slow
@needs_tensorflow
def test_export_int8_from_the_command_line(tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "int8"
    result = subprocess.run([sys.executable, "-m", "vggsim", "export", "--weights", "random", "--precision", "int8",
                             "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    accuracy = manifest["accuracy_vs_fp32"]
    assert manifest["precision"] == "int8" and manifest["quantization"]["format"] == "QDQ"
    assert manifest["quantization"]["calibration_method"] and manifest["quantization"]["per_channel"]
    assert accuracy["min_cosine"] >= 0.99 and 0 <= accuracy["top10_agreement"] <= 1
    assert not set(accuracy["held_out_photos"]) & set(manifest["quantization"]["calibration_images"])
    assert manifest["fp32_parity"]["passed"]
    typed = read_manifest(out)
    assert typed.precision == "int8" and typed.fp32_parity is not None and typed.parity is None
    assert typed.accuracy_vs_fp32 is not None and typed.accuracy_vs_fp32.held_out_photos
    assert (out / "model.onnx").stat().st_size < manifest["model"]["bytes"] * 1.01 < 20_000_000
    vectors = Embedder(out, providers="cpu").embed(photos[:2])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert not list(tmp_path.glob(".fp32-*"))  # the intermediate fp32 export is cleaned up


@pytest.mark.slow  # fp16 on the CPU is emulated: minutes
def test_fp16_variant_and_the_accuracy_bound(model_dir: Path, tmp_path: Path, photos: list[Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxconverter_common")
    pytest.importorskip("onnx")
    from vggsim.export import AccuracyError, ExportError
    from vggsim.export import variants

    out = variants.export_variant(model_dir, tmp_path / "fp16", "fp16")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["accuracy_vs_fp32"]["min_cosine"] >= 0.99
    # the variant's manifest is the fp32 one, derived through the schema and read back by it
    base, typed = read_manifest(model_dir), read_manifest(out)
    assert typed.to_dict() == manifest and "parity" not in manifest
    assert typed.variant_of is not None and typed.variant_of.sha256 == base.model_sha256
    assert typed.accuracy_vs_fp32 is not None and typed.accuracy_vs_fp32.top_k == 10
    assert typed.fp32_parity == base.parity and typed.dedup == base.dedup and typed.preprocess == base.preprocess
    assert typed.quantization is not None and typed.quantization["keep_io_types"] is True
    with pytest.raises(ExportError, match="variants are made from the fp32 export"):
        variants.export_variant(out, tmp_path / "fp16-of-fp16", "fp16")
    fp32 = Embedder(model_dir, providers="cpu").embed(photos[:2])
    fp16 = Embedder(out, providers="cpu").embed(photos[:2])
    cosines = np.sum(fp32 * fp16, axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(fp16, axis=1)
    assert cosines.min() >= 0.99
    monkeypatch.setattr(variants, "MIN_COSINE_BOUND", 1.0 + 1e-9)
    with pytest.raises(AccuracyError, match="drifts from fp32"):
        variants.export_variant(model_dir, tmp_path / "refused", "fp16")
    assert not (tmp_path / "refused" / "model.onnx").exists()


def test_jpeg_draft_keeps_the_embedding(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    from vggsim import PreprocessSpec, load_image

    path = tmp_path / "large.jpg"
    Image.open(photos[0]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
    exact = embedder.run(load_image(path)[None])[0]
    draft = embedder.run(load_image(path, PreprocessSpec(jpeg_draft=True))[None])[0]
    assert float(exact @ draft / np.linalg.norm(exact) / np.linalg.norm(draft)) >= 0.99


def test_bench_writes_json_and_plot(model_dir: Path, tmp_path: Path) -> None:
    out_json, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run([sys.executable, "-m", "vggsim", "bench", "--model", str(model_dir), "--rounds", "2",
                             "--batch-sizes", "1,2", "--threads", "1", "--providers", "cpu",
                             "--json", "--out", str(out_json), "--plot", str(plot)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert json.loads(result.stdout) == report  # --json is stdout, --out the file: the same report
    model = report["models"][0]
    assert model["provider"] == "CPUExecutionProvider" and set(model["batch"]) == {"1", "2"}
    assert set(model["stages_ms"]) == {"decode", "resize", "inference"}
    assert all(set(v) == {"p50", "p95", "p99"} for v in model["stages_ms"].values())
    assert report["matmul_peak_gflops"] > 0 and model["batch"]["1"]["gflops"] > 0
    assert model["cold_start"]["seconds"] > 0 and report["hardware"]["usable_cpus"] >= 1
    assert Image.open(plot).format == "PNG" and "GFLOP/s" in result.stderr  # with --json the table goes to stderr
