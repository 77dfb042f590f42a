"""benchmarks/runtime_parity.py: other runtimes read the exported model and agree with onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import runtime_parity  # noqa: E402


def _needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed (pip install 'vggsim[edge-bench]')")


def _agrees_with_onnxruntime(loader: runtime_parity.Loader, model_dir: Path) -> str:
    from vggsim.model.manifest import read_manifest

    path = read_manifest(model_dir).model_path
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    _, reference = runtime_parity.onnxruntime_loader(path, 1)
    expected = reference(1)(image)
    label, other = loader(path, 1)
    got = other(1)(image)
    assert got.shape == expected.shape == (1, 512)
    assert float(np.abs(got - expected).max() / np.abs(expected).max()) < 1e-3
    return label


@_needs("openvino")
def test_openvino_reads_the_model_and_agrees(model_dir: Path) -> None:
    # f32 by name: OpenVINO's default is bf16 on CPUs with AVX512_BF16 or AMX, which misses 1e-3
    label = _agrees_with_onnxruntime(runtime_parity.openvino_loader, model_dir)
    assert label.startswith("OpenVINO ") and label.endswith("precision hint f32)"), label


@_needs("tract")
def test_tract_reads_the_model_and_agrees(model_dir: Path) -> None:
    assert _agrees_with_onnxruntime(runtime_parity.tract_loader, model_dir).startswith("tract ")


def test_a_runtime_that_cannot_run_is_a_row(model_dir: Path, tmp_path: Path) -> None:
    """An unknown runtime and a model file no runtime can read: rows saying why, no crash."""
    out = tmp_path / "parity.json"
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    # the sha256 check would refuse the folder before any runtime sees it; a runtime's own
    # refusal is what is tested, so the manifest is made to match the broken file
    from vggsim.model.manifest import sha256_file

    manifest["model"].update(sha256=sha256_file(broken / "model.onnx"), bytes=17)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run([sys.executable, str(BENCHMARKS / "runtime_parity.py"), "--model", str(model_dir),
                             "--int8", str(broken), "--runtimes", "nosuch,onnxruntime", "--repeats", "1",
                             "--batch8-repeats", "1", "--photos", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["runtime"].split()[0], r["model"]) for r in rows] == [
        ("nosuch", "fp32"), ("nosuch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    assert rows[0]["error"].startswith("unknown runtime") and "error" in rows[3] and "\n" not in rows[3]["error"]
    assert rows[2]["max_rel_error"] < 1e-6 and rows[2]["min_cosine"] > 0.9999 and rows[2]["b1_ms"] > 0
    assert "| could not run: " in result.stdout
