"""Near-duplicates: all pairs above a threshold in bounded memory, grouped by union-find."""

from __future__ import annotations

import io
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .similarity import l2_normalize
from .store import Block

Blocks = Callable[[], Iterable[Block]]


def similar_pairs(blocks: Blocks, threshold: float) -> Iterator[tuple[int, int, float]]:
    """Every pair (i, j, score) with i < j and cosine score >= ``threshold``.

    ``blocks`` is called once per outer block to stream the inner ones again, so only two
    blocks are in memory at a time.
    """
    for a_index, outer in enumerate(blocks()):
        a = l2_normalize(outer.vectors, np.float32)
        for b_index, inner in enumerate(blocks()):
            if b_index < a_index:
                continue
            b = a if b_index == a_index else l2_normalize(inner.vectors, np.float32)
            scores = a @ b.T
            if b_index == a_index:
                scores[np.tril_indices_from(scores)] = -np.inf  # each pair once, no self-pairs
            rows, cols = np.nonzero(scores >= threshold)
            for r, c in zip(rows, cols):
                i, j = int(outer.ids[r]), int(inner.ids[c])
                yield (min(i, j), max(i, j), float(scores[r, c]))


def group_pairs(pairs: Iterable[tuple[int, int, float]]) -> list[list[int]]:
    """Connected groups of ids (union-find, path halving); each sorted, groups by first id."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


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


def calibrate_threshold(embed: Callable[[list[Image.Image]], np.ndarray], photos: Sequence[Path]) -> dict[str, object]:
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
    return {
        "photos": len(photos), "near_duplicate_min": near_min, "distinct_max": distinct_max,
        "near_duplicate_min_by_edit": {k: min(v) for k, v in near.items()},
        "distinct_mean": float(distinct.mean()), "separable": near_min > distinct_max,
        "threshold": round((near_min + distinct_max) / 2, 6),
    }
