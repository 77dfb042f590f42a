"""``vggsim export``: build the recipe's model, convert it, prove parity, write the manifest."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from vggsim.model.manifest import (MANIFEST_FILE, MODEL_FILE, DedupCalibration, Manifest, ModelFile, ParityRecord, TensorInfo,
                             WeightsInfo, sha256_file)
from vggsim.images.preprocess import DEFAULT_SPEC, PreprocessSpec
from vggsim.images.samples import sample_photos
from vggsim.model.session import create_session

from .calibrate import calibrate_model
from .convert import BATCH_DIM, DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, finish, onnx_embed, to_onnx
from .errors import ExportError
from .keras_model import INPUT_SHAPE, build_model, keras_embed
from .parity import DEFAULT_TOLERANCE, ParityTolerance, parity_report

Log = Callable[[str], None]
EMBEDDING_DIM = 512


@dataclass(frozen=True)
class ExportResult:
    """Where the model landed and what its manifest says."""

    out: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.out / MODEL_FILE


def library_versions() -> dict[str, str | None]:
    """Versions of everything that shapes the exported model, for the manifest."""
    names = ["tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime",
             "onnxruntime-gpu", "numpy", "pillow", "vggsim"]
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("tensorflow") is None:
        versions["tensorflow"] = versions.pop("tensorflow-cpu")
    else:
        versions.pop("tensorflow-cpu")
    if versions.get("onnxruntime") is None:
        versions["onnxruntime"] = versions.get("onnxruntime-gpu")
    versions.pop("onnxruntime-gpu")
    return versions


def build_manifest(model_path: Path, *, normalization: str, weights: WeightsInfo, opset: int,
                   spec: PreprocessSpec, parity: ParityRecord | None,
                   dedup: DedupCalibration | None = None) -> Manifest:
    """The manifest written beside model.onnx; models/README.md documents each field."""
    return Manifest(
        model=ModelFile(model_path.name, sha256_file(model_path), model_path.stat().st_size),
        architecture="VGG16 include_top=False pooling=max, all layers frozen",
        embedding_dim=EMBEDDING_DIM,
        precision="fp32",
        input=TensorInfo(INPUT_NAME, (BATCH_DIM, *INPUT_SHAPE), "float32", "NHWC", "0-255 RGB"),
        output=TensorInfo(OUTPUT_NAME, (BATCH_DIM, EMBEDDING_DIM), "float32"),
        normalization=normalization,
        preprocess=spec,
        weights=weights,
        opset=opset,
        versions=library_versions(),
        parity=parity,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        dedup=dedup,
    )


def export_model(
    out: str | os.PathLike[str] = "models/vgg16",
    weights: str = "imagenet",
    seed: int = 0,
    normalization: str = "caffe",
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    photos: Sequence[str | os.PathLike[str]] | None = None,
    spec: PreprocessSpec = DEFAULT_SPEC,
    tolerance: ParityTolerance = DEFAULT_TOLERANCE,
    log: Log = lambda message: None,
) -> ExportResult:
    """Export the recipe's VGG16 to ``out/model.onnx`` with ``out/manifest.json``.

    Raises :class:`~vggsim.export.WeightsError` when weights cannot be had and
    :class:`~vggsim.export.ParityError` when the ONNX model does not match Keras; in both
    cases nothing is written to ``out``.
    """
    out_dir = Path(out)
    log(f"building VGG16 (weights: {weights})")
    model, weights_info = build_model(weights, seed)
    log(f"converting to ONNX (opset {opset}, normalization {normalization})")
    proto = to_onnx(model, normalization, opset)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        staged_model = staging / MODEL_FILE
        finish(proto, staged_model, {
            "vggsim.normalization": normalization, "vggsim.weights": weights_info["source"],
            "vggsim.weights_sha256": weights_info["sha256"], "vggsim.input": "NHWC float32 0-255 RGB",
            "vggsim.images.preprocess": spec.to_dict(),
        })
        parity = _verify(model, staged_model, normalization, photos, tolerance, log) if verify else None
        manifest = build_manifest(staged_model, normalization=normalization,
                                  weights=WeightsInfo.from_dict(weights_info), opset=opset, spec=spec,
                                  parity=parity, dedup=calibrate_model(staged_model, photos, spec, log))
        manifest.write(staging / MANIFEST_FILE)
        # model first, manifest last: a folder with a manifest always has its model.
        os.replace(staged_model, out_dir / MODEL_FILE)
        os.replace(staging / MANIFEST_FILE, out_dir / MANIFEST_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out_dir / MODEL_FILE} and {out_dir / MANIFEST_FILE}")
    return ExportResult(out_dir, dataclasses.replace(manifest, path=out_dir / MANIFEST_FILE))


def _verify(model: Any, model_path: Path, normalization: str,
            photos: Sequence[str | os.PathLike[str]] | None, tolerance: ParityTolerance,
            log: Log) -> ParityRecord:
    chosen = [Path(p) for p in photos] if photos else sample_photos()
    if len(chosen) < 2:
        raise ExportError("The parity check needs two or more real photos: install scikit-learn "
                          "(it ships two) or pass --photos DIR, or skip the check with --no-verify.")
    log(f"parity check against Keras on {len(chosen)} photos and random batches of 1 and 8")
    session, _ = create_session(model_path, "cpu")
    report = ParityRecord.from_dict(parity_report(lambda x: keras_embed(model, x, normalization),
                                                  lambda x: onnx_embed(session, x), chosen, tolerance))
    log(f"parity: min cosine {report.min_cosine:.8f}, max |score diff| "
        f"{report.max_score_diff:.2e}, max rel error {report.max_rel_error:.2e}")
    return report
