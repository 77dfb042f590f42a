"""The manifest written beside every exported model, and how the runtime finds and checks it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .preprocess import PreprocessSpec

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_MODEL_DIR = Path("models") / "vgg16"
MODEL_ENV_VAR = "VGGSIM_MODEL"


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
    chosen = model if model is not None else os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL_DIR
    path = Path(chosen)
    if path.suffix == ".onnx":
        path = path.parent
    if not path.is_dir():
        raise ModelError(
            f"No model folder at {path}. Export one first with `vggsim export --out {path}` "
            f"(or `--weights random` offline), or pass --model DIR / set {MODEL_ENV_VAR}."
        )
    return path


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a model folder."""

    path: Path
    data: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path.parent / str(self.data["model"]["file"])

    @property
    def model_sha256(self) -> str:
        return str(self.data["model"]["sha256"])

    @property
    def embedding_dim(self) -> int:
        return int(self.data["embedding_dim"])

    @property
    def input_name(self) -> str:
        return str(self.data["input"]["name"])

    @property
    def output_name(self) -> str:
        return str(self.data["output"]["name"])

    @property
    def normalization(self) -> str:
        return str(self.data["normalization"])

    @property
    def precision(self) -> str:
        return str(self.data.get("precision", "fp32"))

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.data["preprocess"])

    @property
    def random_weights(self) -> bool:
        return bool(self.data.get("weights", {}).get("source") == "random")

    def identity(self) -> dict[str, Any]:
        """What a store records to refuse vectors from another model or preprocessing."""
        return {"model_sha256": self.model_sha256, "preprocess": self.data["preprocess"]}


def read_manifest(model_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> Manifest:
    """Read and check the manifest of a model folder.

    With ``verify`` the model file's sha256 must match the manifest; a missing manifest,
    a missing model file or a mismatch raises :class:`~vggsim.ModelError`.
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
        manifest = Manifest(path, data)
        model_path, expected = manifest.model_path, manifest.model_sha256
        manifest.preprocess  # noqa: B018 - validates the spec
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a valid vggsim manifest ({exc}); re-export the model.") from exc
    if int(data.get("format", 0)) > MANIFEST_FORMAT:
        raise ModelError(f"{path} has manifest format {data.get('format')}; upgrade vggsim to read it.")
    if not model_path.is_file():
        raise ModelError(f"{path} names {model_path.name}, which is missing; re-export the model.")
    if verify:
        actual = sha256_file(model_path)
        if actual != expected:
            raise ModelError(
                f"{model_path} does not match its manifest (sha256 {actual[:12]}... but the "
                f"manifest says {expected[:12]}...). The file was changed or replaced: re-export it."
            )
    return manifest
