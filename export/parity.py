"""The proof that the ONNX model is the Keras model: a parity report on real photos and noise."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from vggsim.images.preprocess import load_image
from vggsim.similarity import cosine_similarity, l2_normalize

from .errors import ParityError

Embed = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ParityTolerance:
    """The bounds an export must meet; recorded beside the figures in the manifest.

    The relative error of an embedding is ``max|keras - onnx| / max|keras|`` (per image),
    so a feature that is exactly zero in Keras cannot make it infinite.
    """

    min_cosine: float = 0.99999
    max_score_diff: float = 1e-5
    max_rel_error: float = 1e-4


DEFAULT_TOLERANCE = ParityTolerance()


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Error figures between two (N, D) embedding matrices, row by row."""
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    scale = np.maximum(np.abs(reference).max(axis=1), np.finfo(np.float32).tiny)
    cosines = np.sum(l2_normalize(reference, np.float64) * l2_normalize(candidate, np.float64), axis=1)
    return {
        "max_abs_error": float(diff.max()),
        "max_rel_error": float((diff.max(axis=1) / scale).max()),
        "min_cosine": float(cosines.min()),
    }


def score_difference(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest |difference| of the pairwise similarity score over all pairs of rows."""
    if len(reference) < 2:
        return 0.0
    upper = np.triu_indices(len(reference), k=1)
    return float(np.abs(cosine_similarity(reference)[upper] - cosine_similarity(candidate)[upper]).max())


def recipe_array(path: Path) -> np.ndarray:
    """The recipe's own preprocessing, with Keras's img_to_array (needs Keras)."""
    from keras.utils import img_to_array

    return np.asarray(img_to_array(Image.open(path).resize((224, 224))), dtype=np.float32)


def parity_report(
    keras_embed: Embed,
    onnx_embed: Embed,
    photos: Sequence[Path],
    tolerance: ParityTolerance = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run Keras and ONNX side by side and return the figures; raise ParityError on failure.

    (a) real photos through the recipe's PIL pipeline, (b) random 0-255 batches of sizes
    1 and 8. On RGB photos it also checks vggsim's preprocessing against the recipe's,
    bit for bit.
    """
    if len(photos) < 2:
        raise ValueError("the parity check needs at least two real photos")
    arrays = np.stack([load_image(p) for p in photos])
    bit_identical = all(
        np.array_equal(arrays[i], recipe_array(p))
        for i, p in enumerate(photos) if Image.open(p).mode == "RGB"
    )
    keras_photos, onnx_photos = keras_embed(arrays), onnx_embed(arrays)
    report: dict[str, Any] = {"photos": [p.name for p in photos], "preprocess_bit_identical": bit_identical}
    report["photos_figures"] = compare(keras_photos, onnx_photos)
    report["max_score_diff"] = score_difference(keras_photos, onnx_photos)
    rng = np.random.Generator(np.random.PCG64(seed))
    for size in (1, 8):
        noise = rng.uniform(0, 255, size=(size, *arrays.shape[1:])).astype(np.float32)
        report[f"random_batch_{size}"] = compare(keras_embed(noise), onnx_embed(noise))
    groups = [report["photos_figures"], report["random_batch_1"], report["random_batch_8"]]
    report["max_abs_error"] = max(g["max_abs_error"] for g in groups)
    report["max_rel_error"] = max(g["max_rel_error"] for g in groups)
    report["min_cosine"] = min(g["min_cosine"] for g in groups)
    report["tolerance"] = asdict(tolerance)
    failures = []
    if report["min_cosine"] < tolerance.min_cosine:
        failures.append(("min_cosine", report["min_cosine"], tolerance.min_cosine))
    if report["max_score_diff"] > tolerance.max_score_diff:
        failures.append(("max_score_diff", report["max_score_diff"], tolerance.max_score_diff))
    if report["max_rel_error"] > tolerance.max_rel_error:
        failures.append(("max_rel_error", report["max_rel_error"], tolerance.max_rel_error))
    if not bit_identical:
        failures.append(("preprocess_bit_identical", 0.0, 1.0))
    report["passed"] = not failures
    if failures:
        raise ParityError(failures, report)
    return report
