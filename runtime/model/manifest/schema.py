"""The typed blocks of ``manifest.json``: each reads itself from JSON, checking every field,
and writes itself back in the same format, so the file stays what models/README.md documents.

A bad field raises :class:`FieldError` with the field's dotted path (``model.sha256``);
:func:`vggsim.model.manifest.read_manifest` turns it into a ModelError that names the file too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vggsim.model.manifest.fields import (FieldError, frozen_map, get_any, get_block, get_bool, get_float, get_int, get_str,
                              number_map)

__all__ = ["FieldError", "ModelFile", "TensorInfo", "WeightsInfo", "ParityRecord", "DedupCalibration",
           "VariantAccuracy", "VariantOf", "Int8Tuning", "frozen_map", "get_block", "get_bool", "get_float",
           "get_int", "get_str"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelFile:
    """``model``: the ONNX file beside the manifest, its sha256 (checked at load) and size."""

    file: str
    sha256: str
    bytes: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model") -> ModelFile:
        name, digest = get_str(data, "file", where), get_str(data, "sha256", where)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise FieldError(f"{where}.file", f"must be a file name inside the model folder, not {name!r}")
        if not _SHA256.fullmatch(digest):
            raise FieldError(f"{where}.sha256", f"must be 64 lowercase hex digits, not {digest[:20]!r}")
        return cls(name, digest, get_int(data, "bytes", where, default=None))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True)
class TensorInfo:
    """``input`` / ``output``: a graph tensor's name, shape (``"batch"`` is dynamic) and type."""

    name: str
    shape: tuple[int | str, ...] = ()
    dtype: str = "float32"
    layout: str | None = None
    value_range: str | None = None  # "range" in the file

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TensorInfo:
        shape = get_any(data, "shape", where, default=[])
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
            raise FieldError(f"{where}.shape", f"must be a list of sizes and names, not {shape!r}")
        return cls(get_str(data, "name", where), tuple(shape), get_str(data, "dtype", where, default="float32"),
                   get_str(data, "layout", where, default=None), get_str(data, "range", where, default=None))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout is not None:
            out["layout"] = self.layout
        if self.value_range is not None:
            out["range"] = self.value_range
        return out


@dataclass(frozen=True)
class WeightsInfo:
    """``weights``: ``imagenet``, ``file`` or ``random`` (with its seed), and their sha256."""

    source: str
    sha256: str | None = None
    file: str | None = None
    seed: int | None = None
    init: str | None = None

    @property
    def random(self) -> bool:
        return self.source == "random"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "weights") -> WeightsInfo:
        info = cls(get_str(data, "source", where), get_str(data, "sha256", where, default=None),
                   get_str(data, "file", where, default=None), get_int(data, "seed", where, default=None),
                   get_str(data, "init", where, default=None))
        if info.random and info.seed is None:
            raise FieldError(f"{where}.seed", "is missing (random weights are rebuilt from their seed)")
        return info

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        for key in ("seed", "init", "file", "sha256"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class ParityRecord:
    """``parity`` (``fp32_parity`` in a variant): the figures that prove ONNX == Keras.

    The summary figures are typed; the per-group figures (``photos_figures``,
    ``random_batch_1``...) and the photo names stay in ``details`` as the report wrote them.
    """

    passed: bool
    min_cosine: float
    max_score_diff: float
    max_rel_error: float
    max_abs_error: float
    preprocess_bit_identical: bool
    tolerance: Mapping[str, float] = field(default_factory=lambda: frozen_map({}))
    details: Mapping[str, Any] = field(default_factory=lambda: frozen_map({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerance", frozen_map(self.tolerance))
        object.__setattr__(self, "details", frozen_map(self.details))

    _TYPED = ("passed", "min_cosine", "max_score_diff", "max_rel_error", "max_abs_error",
              "preprocess_bit_identical", "tolerance")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "parity") -> ParityRecord:
        return cls(
            get_bool(data, "passed", where), get_float(data, "min_cosine", where),
            get_float(data, "max_score_diff", where), get_float(data, "max_rel_error", where),
            get_float(data, "max_abs_error", where), get_bool(data, "preprocess_bit_identical", where),
            number_map(data, "tolerance", where),
            frozen_map({k: v for k, v in data.items() if k not in cls._TYPED}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "preprocess_bit_identical": self.preprocess_bit_identical,
                "max_score_diff": self.max_score_diff, "max_abs_error": self.max_abs_error,
                "max_rel_error": self.max_rel_error, "min_cosine": self.min_cosine,
                "tolerance": dict(self.tolerance), "passed": self.passed}


@dataclass(frozen=True)
class DedupCalibration:
    """``dedup``: the near-duplicate threshold measured on this model's own weights.

    ``threshold`` is the midpoint between ``near_duplicate_min`` (lowest score of a photo
    against an edit of itself) and ``distinct_max`` (highest score of two different photos);
    ``separable`` says whether the first is above the second.
    """

    threshold: float
    near_duplicate_min: float
    distinct_max: float
    separable: bool
    photos: int
    distinct_mean: float
    near_duplicate_min_by_edit: Mapping[str, float] = field(default_factory=lambda: frozen_map({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "near_duplicate_min_by_edit", frozen_map(self.near_duplicate_min_by_edit))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "dedup") -> DedupCalibration:
        calibration = cls(
            get_float(data, "threshold", where), get_float(data, "near_duplicate_min", where),
            get_float(data, "distinct_max", where), get_bool(data, "separable", where),
            get_int(data, "photos", where), get_float(data, "distinct_mean", where),
            number_map(data, "near_duplicate_min_by_edit", where),
        )
        if not -1.0 <= calibration.threshold <= 1.0:
            raise FieldError(f"{where}.threshold", f"must be a cosine score in [-1, 1], not {calibration.threshold}")
        return calibration

    def to_dict(self) -> dict[str, Any]:
        return {"photos": self.photos, "near_duplicate_min": self.near_duplicate_min, "distinct_max": self.distinct_max,
                "near_duplicate_min_by_edit": dict(self.near_duplicate_min_by_edit),
                "distinct_mean": self.distinct_mean, "separable": self.separable, "threshold": self.threshold}


@dataclass(frozen=True)
class VariantAccuracy:
    """``accuracy_vs_fp32``: a reduced-precision variant against the fp32 model of the same
    weights, on held-out photos and their near-duplicate edits."""

    images: int
    min_cosine: float
    mean_cosine: float
    bound_min_cosine: float
    top_k: int
    top_k_agreement: float  # "top{k}_agreement" in the file
    held_out_photos: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "held_out_photos", tuple(self.held_out_photos))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "accuracy_vs_fp32") -> VariantAccuracy:
        keys = [m for m in (re.fullmatch(r"top(\d+)_agreement", k) for k in data) if m]
        if len(keys) != 1:
            raise FieldError(f"{where}.top<k>_agreement", "is missing (or given twice)")
        photos = get_any(data, "held_out_photos", where, default=[])
        if not isinstance(photos, list) or not all(isinstance(p, str) for p in photos):
            raise FieldError(f"{where}.held_out_photos", "must be a list of file names")
        return cls(get_int(data, "images", where), get_float(data, "min_cosine", where),
                   get_float(data, "mean_cosine", where), get_float(data, "bound_min_cosine", where),
                   int(keys[0].group(1)), get_float(data, keys[0].group(0), where), tuple(photos))

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "min_cosine": self.min_cosine, "mean_cosine": self.mean_cosine,
                f"top{self.top_k}_agreement": self.top_k_agreement, "bound_min_cosine": self.bound_min_cosine,
                "held_out_photos": list(self.held_out_photos)}


@dataclass(frozen=True)
class VariantOf:
    """``variant_of``: the fp32 model a reduced-precision variant was derived from."""

    sha256: str
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "variant_of") -> VariantOf:
        return cls(get_str(data, "sha256", where), get_str(data, "precision", where, default="fp32"))

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "precision": self.precision}


@dataclass(frozen=True)
class Int8Tuning:
    """``quantization.tuning`` of an int8 variant: the instruction set its settings were chosen
    for (``isa``), whether they were measured on such a CPU or taken from onnxruntime's guide,
    which instruction sets had been measured, and the CPU that made the export. Manifests
    written before it have no such block (:meth:`from_quantization` returns None)."""

    isa: str
    measured: bool
    source: str
    measured_isas: tuple[str, ...] = ()
    export_cpu_isa: str | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: frozen_map({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "measured_isas", tuple(self.measured_isas))
        object.__setattr__(self, "settings", frozen_map(self.settings))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "quantization.tuning") -> Int8Tuning:
        isas = get_any(data, "measured_isas", where, default=[])
        if not isinstance(isas, list) or not all(isinstance(i, str) for i in isas):
            raise FieldError(f"{where}.measured_isas", "must be a list of instruction-set names")
        return cls(get_str(data, "isa", where), get_bool(data, "measured", where), get_str(data, "source", where),
                   tuple(isas), get_str(data, "export_cpu_isa", where, default=None),
                   frozen_map(get_block(data, "settings", where, default={})))

    @classmethod
    def from_quantization(cls, quantization: Mapping[str, Any] | None) -> Int8Tuning | None:
        """The typed tuning block of a manifest's ``quantization``, or None where it has none."""
        if quantization is None or "tuning" not in quantization:
            return None
        return cls.from_dict(get_block(quantization, "tuning", "quantization"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isa": self.isa, "measured": self.measured, "source": self.source,
                               "measured_isas": list(self.measured_isas), "settings": dict(self.settings)}
        if self.export_cpu_isa is not None:
            out["export_cpu_isa"] = self.export_cpu_isa
        return out
