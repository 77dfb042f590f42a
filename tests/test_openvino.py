"""`providers="openvino-cpu"` and `"openvino-bf16"`: OpenVINO runs the exported model, selectable by name.

bf16 must stay within cosine 0.999 of onnxruntime's fp32 on real photos (the issue's tolerance for a bf16
setting); OpenVINO at f32 within float rounding. Speed is measured side by side in
benchmarks/runtime_parity.py, not here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from vggsim import Embedder, MissingExtraError
from vggsim.errors import ProviderError
from vggsim.model.openvino import matrix_units
from support import run_cli


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def quiet_embedder(model_dir: Path, providers: str) -> Embedder:
    """The random-weight test model says so in a warning on every load: not what these tests check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Embedder(model_dir, providers=providers)


@pytest.fixture(scope="module")
def reference(model_dir: Path, photos: list[Path]) -> np.ndarray:
    return quiet_embedder(model_dir, "cpu").embed(photos)


def test_openvino_at_f32_gives_the_fp32_vectors(model_dir: Path, photos: list[Path], reference: np.ndarray) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra")
    embedder = quiet_embedder(model_dir, "openvino-cpu")
    vectors = embedder.embed(photos)
    assert embedder.provider.startswith("OpenVINO") and embedder.provider.endswith("(f32)")
    assert np.abs(vectors - reference).max() / np.abs(reference).max() < 1e-4


def test_openvino_bf16_stays_within_cosine_0_999(model_dir: Path, photos: list[Path], reference: np.ndarray) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra")
    embedder = quiet_embedder(model_dir, "openvino-bf16")
    vectors = embedder.embed(photos)
    has_units = bool({"amx_bf16", "avx512_bf16"} & set(matrix_units()))
    assert embedder.provider.endswith("(bf16)" if has_units else "(f32)"), embedder.provider  # says what runs
    assert cosines(vectors, reference).min() >= 0.999
    if has_units:  # really bf16: not the fp32 vectors
        assert np.abs(vectors - reference).max() / np.abs(reference).max() > 1e-5
    # the same vectors one at a time and in a batch: one compiled model, one precision
    assert np.allclose(embedder.embed(photos[:1]), vectors[:1], rtol=0, atol=1e-5 * np.abs(vectors).max())


def test_without_openvino_the_setting_names_the_extra(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"'openvino' extra .*pip install"):
        Embedder(model_dir, providers="openvino-bf16")


def test_an_unknown_provider_lists_the_openvino_settings(model_dir: Path) -> None:
    with pytest.raises(ProviderError, match="openvino-bf16"):
        Embedder(model_dir, providers="openvino-fp8")


def test_an_openvino_setting_in_a_list_says_to_pass_it_alone(model_dir: Path, photos: list[Path]) -> None:
    with pytest.raises(ProviderError, match="pass it alone"):
        Embedder(model_dir, providers=["openvino-cpu", "cpu"])
    if importlib.util.find_spec("openvino") is not None:  # a list of the setting alone is the setting
        assert Embedder(model_dir, providers=["openvino-cpu"]).provider == Embedder(model_dir, providers="openvino-cpu").provider
    listed = run_cli("compare", "--model", str(model_dir), "--providers", "openvino-bf16,cpu", str(photos[0]),
                     str(photos[1]))
    assert listed.returncode == 1 and "pass it alone" in listed.stderr
    assert [line for line in listed.stderr.splitlines() if "pass it alone" in line][0].startswith("vggsim: error: ")


def test_the_cli_and_doctor_take_and_report_the_setting(model_dir: Path, photos: list[Path]) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra")
    compared = run_cli("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir), "--providers",
                       "openvino-bf16", "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["provider"].startswith("OpenVINO")
    doctor = run_cli("doctor", "--model", str(model_dir), "--json")
    report = json.loads(doctor.stdout)["cpu_settings"]
    assert report["openvino_installed"] and report["settings"] == ["openvino-cpu", "openvino-bf16"]
    assert report["matrix_units"] == matrix_units()
