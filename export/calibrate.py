"""The near-duplicate threshold of a model, measured at export on its own weights.

It is recorded in the manifest's ``dedup`` block (:class:`vggsim.model.manifest.DedupCalibration`),
which ``vggsim dedup`` reads; finding the pairs is the runtime's job (:mod:`vggsim.search.pairs`).
Needs no TensorFlow: it runs the exported ONNX model.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vggsim.model.manifest import DedupCalibration
from vggsim.images.preprocess import PreprocessSpec, load_image
from vggsim.images.samples import sample_photos
from vggsim.model.session import create_session
from vggsim.similarity import l2_normalize

from .convert import onnx_embed

Log = Callable[[str], None]


# Edits that make a near-duplicate of a photo: what photo libraries actually accumulate.
def _reencode(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


NEAR_DUPLICATE_EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q60": _reencode,
    "resized_half": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "cropped_90pct": lambda im: im.crop((im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)),
    "flipped": ImageOps.mirror,
    "brighter_20pct": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
}


def calibrate_threshold(embed: Callable[[list[Image.Image]], np.ndarray], photos: Sequence[Path]) -> DedupCalibration:
    """Scores of near-duplicates (each edit against its original) and of distinct photos.

    The suggested threshold is the midpoint between the lowest near-duplicate score and
    the highest distinct-pair score. It depends entirely on the model's weights.
    """
    originals = [Image.open(p).convert("RGB") for p in photos]
    base = l2_normalize(embed(originals))
    near: dict[str, list[float]] = {}
    for name, edit in NEAR_DUPLICATE_EDITS.items():
        edited = l2_normalize(embed([edit(im) for im in originals]))
        near[name] = [float(s) for s in np.sum(base * edited, axis=1)]
    distinct = (base @ base.T)[np.triu_indices(len(base), k=1)]
    near_min = min(min(v) for v in near.values())
    distinct_max = float(distinct.max())
    return DedupCalibration(
        threshold=round((near_min + distinct_max) / 2, 6), near_duplicate_min=near_min, distinct_max=distinct_max,
        separable=near_min > distinct_max, photos=len(photos), distinct_mean=float(distinct.mean()),
        near_duplicate_min_by_edit={k: min(v) for k, v in near.items()},
    )


def calibrate_model(model_path: Path, photos: Sequence[str | os.PathLike[str]] | None, spec: PreprocessSpec,
                    log: Log = lambda message: None) -> DedupCalibration | None:
    """Measure the threshold of the ONNX model at ``model_path`` (None with fewer than two photos)."""
    chosen = [Path(p) for p in photos] if photos else sample_photos()
    if len(chosen) < 2:
        return None
    session, _ = create_session(model_path, "cpu")
    result = calibrate_threshold(
        lambda images: onnx_embed(session, np.stack([load_image(im, spec) for im in images])), chosen)
    log(f"dedup threshold {result.threshold} (near-duplicates >= {result.near_duplicate_min:.4f}, "
        f"distinct photos <= {result.distinct_max:.4f}, separable: {result.separable})")
    return result
