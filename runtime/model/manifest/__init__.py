"""The manifest written beside every exported model: its one typed schema, and how the
runtime finds, reads and checks it.

:class:`Manifest` is built by the exporter (and derived by ``dataclasses.replace`` for a
precision variant), written with :meth:`Manifest.write`, and read back with
:func:`read_manifest`, which checks every field. The blocks are in :mod:`vggsim.model.manifest.schema`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vggsim import config
from vggsim.errors import ModelError
from vggsim.model.manifest.schema import (DedupCalibration, FieldError, ModelFile, ParityRecord, TensorInfo, VariantAccuracy,
                              VariantOf, WeightsInfo, frozen_map, get_block, get_bool, get_int, get_str)
from vggsim.images.preprocess import PreprocessSpec

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_MODEL_DIR = config.DEFAULT_MODEL_DIR
MODEL_ENV_VAR = config.MODEL
PRECISIONS = ("fp32", "fp16", "int8")

__all__ = ["Manifest", "read_manifest", "resolve_model_dir", "sha256_file", "DedupCalibration", "ModelFile",
           "ParityRecord", "TensorInfo", "VariantAccuracy", "VariantOf", "WeightsInfo", "FieldError",
           "MODEL_FILE", "MANIFEST_FILE", "MANIFEST_FORMAT"]


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for chunk in iter(lambda: fp.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_dir(model: str | os.PathLike[str] | None = None) -> Path:
    """The model folder: ``model`` if given, else ``$VGGSIM_MODEL``, else ``models/vgg16``.

    ``model`` may also name the ``.onnx`` file itself; its folder is used.
    """
    chosen = model if model is not None else config.model_dir()
    path = Path(chosen)
    if path.suffix == ".onnx":
        path = path.parent
    if not path.is_dir():
        raise ModelError(
            f"No model folder at {path}. Export one first with `vggsim export --out {path}` "
            f"(or `--weights random` offline), or pass --model DIR / set {MODEL_ENV_VAR}."
        )
    return path


# Top-level keys this schema owns; any other key is kept in ``extra`` and written back as is.
_KNOWN = ("format", "model", "architecture", "embedding_dim", "precision", "input", "output", "normalization",
          "preprocess", "weights", "opset", "versions", "parity", "created", "dedup", "quantization",
          "accuracy_vs_fp32", "variant_of", "fp32_parity")


@dataclass(frozen=True)
class Manifest:
    """A model's ``manifest.json``, typed; models/README.md documents each field.

    ``path`` is the file it was read from (None for one not yet written). A variant
    (``precision`` fp16 or int8) has ``variant_of``, ``accuracy_vs_fp32`` and ``quantization``,
    and carries the fp32 model's parity as ``fp32_parity`` (its own ``parity`` is None).
    """

    model: ModelFile
    embedding_dim: int
    input: TensorInfo
    output: TensorInfo
    normalization: str
    preprocess: PreprocessSpec
    weights: WeightsInfo
    precision: str = "fp32"
    parity: ParityRecord | None = None
    dedup: DedupCalibration | None = None
    opset: int | None = None
    architecture: str | None = None
    versions: Mapping[str, str | None] = field(default_factory=lambda: frozen_map({}))
    created: str | None = None
    quantization: Mapping[str, Any] | None = None
    accuracy_vs_fp32: VariantAccuracy | None = None
    variant_of: VariantOf | None = None
    fp32_parity: ParityRecord | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: frozen_map({}))
    format: int = MANIFEST_FORMAT
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("versions", "quantization", "extra"):  # frozen all the way down
            if getattr(self, name) is not None:
                object.__setattr__(self, name, frozen_map(getattr(self, name)))
        if self.embedding_dim < 1:
            raise FieldError("embedding_dim", f"must be a positive integer, not {self.embedding_dim}")
        if self.precision not in PRECISIONS:
            raise FieldError("precision", f"must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision != "fp32" and (self.variant_of is None or self.accuracy_vs_fp32 is None):
            missing = "variant_of" if self.variant_of is None else "accuracy_vs_fp32"
            raise FieldError(missing, f"is missing (a {self.precision} model is a variant of an fp32 one)")

    # -- what the runtime asks of a manifest -------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The ONNX file: beside the manifest once it has been read or written."""
        return (self.path.parent if self.path is not None else Path(".")) / self.model.file

    @property
    def model_sha256(self) -> str:
        return self.model.sha256

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def output_name(self) -> str:
        return self.output.name

    @property
    def random_weights(self) -> bool:
        return self.weights.random

    @property
    def data(self) -> dict[str, Any]:
        """The manifest as JSON (a fresh dict: changing it changes nothing), for display."""
        return self.to_dict()

    def identity(self) -> dict[str, Any]:
        """What a store records to refuse vectors from another model or preprocessing."""
        return {"model_sha256": self.model_sha256, "preprocess": self.preprocess.to_dict()}

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object of manifest.json, in the format models/README.md documents."""
        out: dict[str, Any] = {"format": self.format, "model": self.model.to_dict()}
        if self.architecture is not None:
            out["architecture"] = self.architecture
        out.update(embedding_dim=self.embedding_dim, precision=self.precision, input=self.input.to_dict(),
                   output=self.output.to_dict(), normalization=self.normalization,
                   preprocess=self.preprocess.to_dict(), weights=self.weights.to_dict())
        if self.opset is not None:
            out["opset"] = self.opset
        out["versions"] = dict(self.versions)
        if self.variant_of is None:  # a variant carries the fp32 parity as fp32_parity instead
            out["parity"] = self.parity.to_dict() if self.parity else None
        if self.created is not None:
            out["created"] = self.created
        out["dedup"] = self.dedup.to_dict() if self.dedup else None
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        if self.accuracy_vs_fp32 is not None:
            out["accuracy_vs_fp32"] = self.accuracy_vs_fp32.to_dict()
        if self.variant_of is not None:
            out["variant_of"] = self.variant_of.to_dict()
            out["fp32_parity"] = self.fp32_parity.to_dict() if self.fp32_parity else None
        out.update(self.extra)
        return out

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write manifest.json to ``path`` (the caller stages and renames it into place)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> Manifest:
        """Check every field and build the manifest; a bad field raises :class:`FieldError`."""
        optional = _optional_blocks(data)
        preprocess = _preprocess(get_block(data, "preprocess"))
        versions = get_block(data, "versions", default={})
        if not all(v is None or isinstance(v, str) for v in versions.values()):
            raise FieldError("versions", "must map package names to version strings")
        return cls(
            model=ModelFile.from_dict(get_block(data, "model")),
            embedding_dim=get_int(data, "embedding_dim"),
            input=TensorInfo.from_dict(get_block(data, "input"), "input"),
            output=TensorInfo.from_dict(get_block(data, "output"), "output"),
            normalization=get_str(data, "normalization"),
            preprocess=preprocess,
            weights=WeightsInfo.from_dict(get_block(data, "weights")),
            precision=get_str(data, "precision", default="fp32"),
            opset=get_int(data, "opset", default=None),
            architecture=get_str(data, "architecture", default=None),
            versions=frozen_map(versions),
            created=get_str(data, "created", default=None),
            extra=frozen_map({k: v for k, v in data.items() if k not in _KNOWN}),
            format=get_int(data, "format", default=0),
            path=path,
            **optional,
        )


def _preprocess(block: Mapping[str, Any]) -> PreprocessSpec:
    for key in ("exif_transpose", "jpeg_draft"):
        get_bool(block, key, "preprocess", default=False)
    for key in ("resample", "alpha"):
        get_str(block, key, "preprocess", default="")
    size = block.get("size", [224, 224])
    if not isinstance(size, list) or len(size) != 2 or not all(type(v) is int for v in size):
        raise FieldError("preprocess.size", f"must be [width, height] in pixels, not {size!r}")
    try:
        return PreprocessSpec.from_dict(dict(block))
    except (TypeError, ValueError) as exc:
        raise FieldError("preprocess", f"is not a valid preprocessing spec ({exc})") from None


def _optional_blocks(data: Mapping[str, Any]) -> dict[str, Any]:
    """The blocks that may be absent or null: parity, dedup and a variant's own."""
    out: dict[str, Any] = {}
    for key, reader in (("parity", ParityRecord.from_dict), ("fp32_parity", ParityRecord.from_dict),
                        ("dedup", DedupCalibration.from_dict), ("accuracy_vs_fp32", VariantAccuracy.from_dict),
                        ("variant_of", VariantOf.from_dict)):
        block = get_block(data, key, default=None)
        out[key] = None if block is None else reader(block, key)
    quantization = get_block(data, "quantization", default=None)
    out["quantization"] = None if quantization is None else frozen_map(quantization)
    return out


def read_manifest(model_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> Manifest:
    """Read and check the manifest of a model folder.

    Every field is checked: a missing or malformed one is a :class:`~vggsim.ModelError`
    naming the file and the field. With ``verify`` the model file's sha256 must match the
    manifest; a missing manifest, a missing model file or a mismatch raises ModelError too.
    """
    folder = resolve_model_dir(model_dir)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"{folder} has no {MANIFEST_FILE}. vggsim only runs models it exported, so that "
            "the preprocessing and parity are known: re-export with `vggsim export`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}); re-export the model with `vggsim export`.") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a vggsim manifest (not a JSON object); re-export the model with `vggsim export`.")
    format_ = data.get("format", 0)
    if isinstance(format_, int) and format_ > MANIFEST_FORMAT:
        raise ModelError(f"{path} has manifest format {format_}; upgrade vggsim to read it.")
    try:
        manifest = Manifest.from_dict(data, path)
    except FieldError as exc:
        raise ModelError(f"{path}: {exc}. The manifest was edited or damaged: re-export the model with "
                         "`vggsim export`.") from None
    if not manifest.model_path.is_file():
        raise ModelError(f"{path} names {manifest.model.file}, which is missing; re-export the model.")
    if verify:
        actual = sha256_file(manifest.model_path)
        if actual != manifest.model_sha256:
            raise ModelError(
                f"{manifest.model_path} does not match its manifest (sha256 {actual[:12]}... but the "
                f"manifest says {manifest.model_sha256[:12]}...). The file was changed or replaced: re-export it."
            )
    return manifest
