"""What runs on Ray workers: decoding (tasks on CPUs) and inference (one Embedder per actor).

Both stages take and return numpy batches (dicts of columns). Paths travel as bytes
(``os.fsencode``): Arrow strings must be valid UTF-8, file names need not be. A decoded
image is the same array the local pipeline makes, because decoding goes through the same
function (:func:`vggsim.ingest.reading.read_file`, or :func:`~vggsim.images.preprocess.decode_prepare_and_hash`
for bytes), and errors get the same kinds the local pipeline records.

This module imports no Ray: the driver (:mod:`vggsim.ray.embed`) hands these functions to
Ray Data, which pickles them by reference, so each worker imports vggsim itself.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import ImageError
from vggsim.images.preprocess import PreprocessSpec, decode_prepare_and_hash
from vggsim.ingest.reading import FileInfo, read_file

#: Columns of a decoded batch. ``size``/``mtime_ns`` are -1 when unknown (a file that could
#: not be stat'ed); ``array`` rows of failed files are zeros and never reach the model.
DECODED = ("path", "array", "ok", "size", "mtime_ns", "sha256", "pixel_sha256", "width", "height", "error_kind", "error")


@dataclass(frozen=True)
class _Decoding:
    """What :func:`read_file` reads from an Embedder (its spec and bomb guard), without a model."""

    spec: PreprocessSpec
    max_pixels: int


def _from_file(path: str, how: _Decoding, max_bytes: int) -> tuple[np.ndarray | None, FileInfo | None, ImageError | None]:
    # The same handling as the local pipeline's decode threads (vggsim.ingest.pipeline._Worker.run).
    try:
        array, info = read_file(Path(path), how, max_bytes)  # type: ignore[arg-type]  # duck-typed: spec, max_pixels
        return array, info, None
    except ImageError as exc:
        return None, getattr(exc, "info", None), exc
    except Exception as exc:  # a bug or an exotic failure must not lose the path
        return None, None, ImageError(path, "internal", f"unexpected {type(exc).__name__}: {exc}")


def _from_bytes(path: str, data: bytes, mtime_ns: int, how: _Decoding,
                max_bytes: int) -> tuple[np.ndarray | None, FileInfo | None, ImageError | None]:
    known = FileInfo(len(data), mtime_ns, "", 0, 0)
    try:
        if len(data) > max_bytes:
            raise ImageError(path, "too_large", f"file is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
        array, (width, height), pixels = decode_prepare_and_hash(data, how.spec, how.max_pixels, path)
        return array, FileInfo(len(data), mtime_ns, hashlib.sha256(data).hexdigest(), width, height, pixels), None
    except ImageError as exc:
        return None, known, exc
    except Exception as exc:
        return None, known, ImageError(path, "internal", f"unexpected {type(exc).__name__}: {exc}")


def decode_batch(batch: dict[str, np.ndarray], spec: dict[str, Any], max_pixels: int,
                 max_bytes: int) -> dict[str, np.ndarray]:
    """Decode a batch of ``path`` (bytes) rows, reading each file, or the ``bytes`` column when given."""
    how = _Decoding(PreprocessSpec.from_dict(spec), max_pixels)
    width, height = how.spec.size
    raw_paths = list(batch["path"])
    count = len(raw_paths)
    out: dict[str, Any] = {
        "path": np.array(raw_paths, dtype=object), "array": np.zeros((count, height, width, 3), np.float32),
        "ok": np.zeros(count, bool), "size": np.full(count, -1, np.int64), "mtime_ns": np.full(count, -1, np.int64),
        "sha256": np.full(count, "", object), "pixel_sha256": np.full(count, "", object),
        "width": np.zeros(count, np.int64), "height": np.zeros(count, np.int64),
        "error_kind": np.full(count, "", object), "error": np.full(count, "", object)}
    for i, raw in enumerate(raw_paths):
        path = os.fsdecode(raw if isinstance(raw, (bytes, str)) else bytes(raw))
        if "bytes" in batch:
            mtime = int(batch["mtime_ns"][i]) if "mtime_ns" in batch else -1
            array, info, error = _from_bytes(path, bytes(batch["bytes"][i]), mtime, how, max_bytes)
        else:
            array, info, error = _from_file(path, how, max_bytes)
        if info is not None:
            out["size"][i], out["mtime_ns"][i] = info.size, info.mtime_ns
        if error is None:
            assert array is not None and info is not None
            out["array"][i], out["ok"][i] = array, True
            out["sha256"][i], out["width"][i], out["height"][i] = info.sha256, info.width, info.height
            out["pixel_sha256"][i] = info.pixel_sha256
        else:
            out["error_kind"][i], out["error"][i] = error.kind, error.reason
    return out


class EmbedActor:
    """One Embedder per Ray actor: built once, then runs every batch handed to this actor.

    The actor checks that its model folder holds the model the driver expects (a node with
    another model must not mix vectors into the store).
    """

    def __init__(self, model: str, model_sha256: str, spec: dict[str, Any], max_pixels: int,
                 providers: Any = "auto", threads: int | None = None) -> None:
        from vggsim.model.embedder import Embedder
        from vggsim.errors import RandomWeightsWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # the driver's summary says it once
            self.embedder = Embedder(model, providers=providers, threads=threads,
                                     spec=PreprocessSpec.from_dict(spec), max_pixels=max_pixels)
        if self.embedder.model_sha256 != model_sha256:
            raise RuntimeError(f"{model} on {os.uname().nodename} holds model {self.embedder.model_sha256[:12]}, "
                               f"not {model_sha256[:12]}: give every node the same model folder")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], bool)
        arrays = batch.pop("array")
        vectors = np.zeros((len(ok), self.embedder.dim), np.float32)
        if ok.any():
            vectors[ok] = self.embedder.run(np.asarray(arrays)[ok])
        batch["vector"] = vectors
        return batch
