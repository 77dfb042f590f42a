"""The manifest's one schema: typed build, write, read, and a ModelError naming any bad field."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from vggsim import ModelError
from vggsim.model.manifest import (DedupCalibration, Manifest, ModelFile, ParityRecord, TensorInfo, VariantAccuracy,
                             VariantOf, WeightsInfo, read_manifest)
from vggsim.images.preprocess import PreprocessSpec


@pytest.fixture(scope="module")
def raw(model_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    return data


def _folder(tmp_path: Path, model_dir: Path, data: Any) -> Path:
    """A model folder holding ``data`` as manifest.json and a link to the real model file."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").symlink_to((model_dir / "model.onnx").resolve())
    (folder / "manifest.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return folder


def _edit(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy with the field at ``dotted`` set to ``value`` (or removed, for ``...``)."""
    out = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    block = out
    for key in parents:
        block = block[key]
    if value is ...:
        del block[last]
    else:
        block[last] = value
    return out


def test_todays_manifest_reads_and_writes_back_unchanged(model_dir: Path, raw: dict[str, Any]) -> None:
    manifest = read_manifest(model_dir)
    assert manifest.to_dict() == raw and list(manifest.to_dict()) == list(raw)
    assert manifest.path == model_dir / "manifest.json" and manifest.model_path == model_dir / "model.onnx"
    assert isinstance(manifest.weights, WeightsInfo) and manifest.weights.source == "random"
    assert manifest.random_weights and manifest.weights.seed == 0
    assert isinstance(manifest.preprocess, PreprocessSpec) and manifest.input_name == "image"
    if raw.get("dedup") is not None:
        assert isinstance(manifest.dedup, DedupCalibration)
        assert manifest.dedup.threshold == raw["dedup"]["threshold"]
    if raw.get("parity") is not None:
        assert isinstance(manifest.parity, ParityRecord) and manifest.parity.passed


def test_build_write_read_round_trip(tmp_path: Path, model_dir: Path) -> None:
    built = Manifest(
        model=ModelFile("model.onnx", read_manifest(model_dir, verify=False).model_sha256, 10),
        embedding_dim=512, input=TensorInfo("image", ("batch", 224, 224, 3), "float32", "NHWC", "0-255 RGB"),
        output=TensorInfo("embedding", ("batch", 512)), normalization="caffe",
        preprocess=PreprocessSpec(exif_transpose=True), weights=WeightsInfo("random", "0" * 64, seed=3),
        parity=ParityRecord(True, 0.999999, 1e-7, 1e-6, 1e-5, True, {"min_cosine": 0.99999}, {"photos": ["a.jpg"]}),
        dedup=DedupCalibration(0.95, 0.96, 0.94, True, 4, 0.5, {"flipped": 0.96}), opset=17,
        versions={"onnx": "1.0", "tensorflow": None}, created="2026-01-01T00:00:00+00:00",
    )
    folder = _folder(tmp_path, model_dir, "{}")
    built.write(folder / "manifest.json")
    read = read_manifest(folder)
    assert read == built and read.to_dict() == built.to_dict()
    assert read.preprocess.exif_transpose and read.parity is not None and read.parity.details["photos"] == ["a.jpg"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.embedding_dim = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        read.versions["onnx"] = "2"  # type: ignore[index]


@pytest.mark.parametrize("field", ["model", "model.sha256", "model.file", "embedding_dim", "input.name",
                                   "output.name", "normalization", "preprocess", "weights", "weights.source",
                                   "dedup.threshold", "dedup.separable", "parity.passed", "parity.min_cosine"])
def test_manifest_missing_a_field_names_it(tmp_path: Path, model_dir: Path, raw: dict[str, Any], field: str) -> None:
    data = copy.deepcopy(raw)
    data.setdefault("dedup", None)
    data["dedup"] = data["dedup"] or {"photos": 2, "near_duplicate_min": 0.9, "distinct_max": 0.8, "separable": True,
                                      "distinct_mean": 0.5, "threshold": 0.85, "near_duplicate_min_by_edit": {}}
    data["parity"] = data.get("parity") or {"passed": True, "min_cosine": 1.0, "max_score_diff": 0.0,
                                            "max_rel_error": 0.0, "max_abs_error": 0.0,
                                            "preprocess_bit_identical": True, "tolerance": {}}
    read_manifest(_folder(tmp_path, model_dir, data))  # complete, it reads
    (tmp_path / "model").rename(tmp_path / "complete")
    folder = _folder(tmp_path, model_dir, _edit(data, field, ...))
    with pytest.raises(ModelError) as info:
        read_manifest(folder)
    message = str(info.value)
    assert f"`{field}` is missing" in message and str(folder / "manifest.json") in message
    assert "vggsim export" in message


@pytest.mark.parametrize(("field", "value"), [
    ("embedding_dim", "512"), ("embedding_dim", True), ("embedding_dim", 0), ("model.sha256", 123),
    ("model.sha256", "abc"), ("model.file", "../elsewhere.onnx"), ("input", ["image"]), ("normalization", None),
    ("precision", "fp8"), ("preprocess.exif_transpose", "yes"), ("preprocess.size", [224]),
    ("preprocess.resample", "sinc"), ("weights.seed", 1.5), ("dedup", {"threshold": "0.9"}),
    ("dedup", 0.9), ("parity", {"passed": "true"}), ("versions", {"onnx": 1}), ("opset", "17"),
])
def test_manifest_field_of_the_wrong_type_names_it(tmp_path: Path, model_dir: Path, raw: dict[str, Any],
                                                   field: str, value: Any) -> None:
    folder = _folder(tmp_path, model_dir, _edit(raw, field, value))
    with pytest.raises(ModelError) as info:
        read_manifest(folder)
    message = str(info.value)
    assert f"`{field.split('.')[0]}" in message and str(folder / "manifest.json") in message


def test_dedup_threshold_outside_the_cosine_range_is_refused(tmp_path: Path, model_dir: Path,
                                                           raw: dict[str, Any]) -> None:
    dedup = {"photos": 2, "near_duplicate_min": 0.9, "distinct_max": 0.8, "separable": True, "distinct_mean": 0.5,
             "threshold": 1.5, "near_duplicate_min_by_edit": {}}
    with pytest.raises(ModelError, match=r"`dedup.threshold` must be a cosine score"):
        read_manifest(_folder(tmp_path, model_dir, dict(raw, dedup=dedup)))


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff"])
def test_manifest_that_is_not_a_json_object_is_a_model_error(tmp_path: Path, model_dir: Path, text: str) -> None:
    folder = _folder(tmp_path, model_dir, "{}")
    (folder / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError, match="manifest.json"):
        read_manifest(folder)


def test_variant_needs_its_variant_blocks(tmp_path: Path, model_dir: Path, raw: dict[str, Any]) -> None:
    with pytest.raises(ModelError, match="`variant_of` is missing"):
        read_manifest(_folder(tmp_path, model_dir, dict(raw, precision="int8")))
    base = read_manifest(model_dir)
    variant = dataclasses.replace(
        base, precision="int8", quantization={"format": "QDQ"}, parity=None, fp32_parity=base.parity,
        variant_of=VariantOf(base.model_sha256),
        accuracy_vs_fp32=VariantAccuracy(12, 0.995, 0.998, 0.99, 10, 0.9, ("a.jpg",)))
    data = variant.to_dict()
    assert "parity" not in data and data["variant_of"]["precision"] == "fp32" and data["accuracy_vs_fp32"][
        "top10_agreement"] == 0.9
    assert Manifest.from_dict(data) == variant


def test_unknown_fields_survive_a_rewrite(tmp_path: Path, model_dir: Path, raw: dict[str, Any]) -> None:
    manifest = read_manifest(_folder(tmp_path, model_dir, dict(raw, notes={"by": "a newer vggsim"})))
    assert manifest.extra["notes"] == {"by": "a newer vggsim"} and manifest.to_dict()["notes"]["by"]
