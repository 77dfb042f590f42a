"""Non-RGB modes to the model's RGB, in horizontal or vertical strips.

A huge image converted whole costs several full-size copies (a 16-bit TIFF went through
five float64 arrays: 2.8 GB for 81 megapixels). Here only a strip of the image is ever
converted at once, and the resize is split into Pillow's own two passes, so no full-size
RGB/RGBA copy or float64 array exists. Every result is bit-identical to converting the whole
image by :func:`vggsim.images.preprocess.to_rgb`'s rule and then resizing it (a self-check at first
use guards against a Pillow whose resize differs; tests/test_inputs.py compares against the
old code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

#: Pixels converted at once (a strip of 1 Mpx is at most 8 MB as float64).
STRIP_PIXELS = 1 << 20
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

Box = tuple[int, int, int, int]


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def row_boxes(size: tuple[int, int], strip_pixels: int | None = None) -> Iterator[Box]:
    width, height = size
    rows = max(1, (strip_pixels or STRIP_PIXELS) // max(1, width))
    for top in range(0, height, rows):
        yield 0, top, width, min(height, top + rows)


def column_boxes(size: tuple[int, int], strip_pixels: int | None = None) -> Iterator[Box]:
    width, height = size
    columns = max(1, (strip_pixels or STRIP_PIXELS) // max(1, height))
    for left in range(0, width, columns):
        yield left, 0, min(width, left + columns), height


def _wide_values(strip: Image.Image) -> np.ndarray:
    # The same float64 steps the whole-image rule took, on one strip.
    values = np.asarray(strip).astype(np.float64)
    if values.ndim != 2:
        values = values.reshape(strip.size[1], strip.size[0])
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(values, 0.0, None)


def wide_peak(image: Image.Image, strip_pixels: int | None = None) -> float:
    """The maximum of the clipped values (0 for an empty image): max is exact, so per strip is fine."""
    peak = 0.0
    for box in row_boxes(image.size, strip_pixels):
        peak = max(peak, float(_wide_values(image.crop(box)).max(initial=0.0)))
    return peak


def wide_strip_to_l(strip: Image.Image, peak: float) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale to 8-bit, given the whole image's peak."""
    values = _wide_values(strip)
    if peak > 65535.0:
        values = values * (255.0 / peak)
    elif peak > 255.0:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def strip_to_rgb(strip: Image.Image, alpha: str, peak: float) -> Image.Image:
    """One strip by the to_rgb rule (``peak`` is the whole image's, for wide modes)."""
    mode = strip.mode
    if mode == "RGB":
        return strip
    if mode in WIDE_MODES:
        return wide_strip_to_l(strip, peak).convert("RGB")
    if not has_alpha(strip):
        return strip.convert("RGB")
    rgba = strip.convert("RGBA")
    if alpha == "drop":
        return rgba.convert("RGB")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def convert_whole(image: Image.Image, alpha: str, strip_pixels: int | None = None) -> Image.Image:
    """The full-size RGB image, built strip by strip (one output copy, no other full-size one)."""
    if image.mode == "RGB":
        return image
    peak = wide_peak(image, strip_pixels) if image.mode in WIDE_MODES else 0.0
    out = Image.new("RGB", image.size)
    for box in row_boxes(image.size, strip_pixels):
        out.paste(strip_to_rgb(image.crop(box), alpha, peak), box[:2])
    return out


# Which pass Pillow's resize runs first, as a function of (in size, out size). Pillow <= 12
# always ran the horizontal pass first; Pillow 13 runs the vertical one first when the height
# shrinks more than twice as much as the width. The right rule is picked by a self-check.
def _always_horizontal(w: int, h: int, ow: int, oh: int) -> bool:
    return True


def pillow13_rule(w: int, h: int, ow: int, oh: int) -> bool:
    return not (h - oh > 0 and h - oh > (w - ow) * 2)


_RULES: tuple[Callable[[int, int, int, int], bool], ...] = (pillow13_rule, _always_horizontal)
_checked: dict[tuple[int, tuple[int, int]], Callable[[int, int, int, int], bool] | None] = {}


def _two_pass(image: Image.Image, size: tuple[int, int], resample: int,
              convert: Callable[[Image.Image], Image.Image], horizontal_first: bool,
              strip_pixels: int | None) -> Image.Image:
    width, height = image.size
    out_w, out_h = size
    if horizontal_first:  # rows: horizontal pass per strip, then one vertical pass
        temp = Image.new("RGB", (out_w, height))
        for box in row_boxes(image.size, strip_pixels):
            rows = box[3] - box[1]
            part = convert(image.crop(box)).resize((out_w, rows), resample, (0, 0, width, rows))
            temp.paste(part, (0, box[1]))
        return temp.resize(size, resample, (0, 0, out_w, height))
    temp = Image.new("RGB", (width, out_h))  # columns: vertical pass per strip, then horizontal
    for box in column_boxes(image.size, strip_pixels):
        columns = box[2] - box[0]
        part = convert(image.crop(box)).resize((columns, out_h), resample, (0, 0, columns, height))
        temp.paste(part, (box[0], 0))
    return temp.resize(size, resample, (0, 0, width, out_h))


def pass_order(resample: int, size: tuple[int, int]) -> Callable[[int, int, int, int], bool] | None:
    """The pass-order rule this Pillow follows for ``resample`` and ``size``, or None if neither fits."""
    key = (resample, size)
    if key not in _checked:
        rng = np.random.default_rng(0)
        probes = [Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
                  for w, h in ((size[0] // 3 + 5, size[1] * 3 + 7), (size[0] * 3 + 7, size[1] // 3 + 5),
                               (size[0] * 2 + 3, size[1] * 5 + 1), (size[0] * 5 + 1, size[1] * 2 + 3))]
        _checked[key] = None
        for rule in _RULES:
            if all(np.array_equal(
                    np.asarray(probe.convert("RGB").resize(size, resample)),
                    np.asarray(_two_pass(probe, size, resample, lambda s: s.convert("RGB"),
                                         rule(*probe.size, *size), 997)))
                   for probe in probes):
                _checked[key] = rule
                break
    return _checked[key]


def resize_rgb(image: Image.Image, size: tuple[int, int], resample: int, alpha: str,
               strip_pixels: int | None = None) -> Image.Image:
    """``to_rgb(image, alpha).resize(size, resample)``, bit for bit, without full-size copies."""
    if image.mode == "RGB":
        return image.resize(size, resample)  # the parity path, untouched
    rule = None if resample == Image.Resampling.NEAREST else pass_order(resample, size)
    if rule is None:  # nearest is an affine transform, not two passes: convert whole
        return convert_whole(image, alpha, strip_pixels).resize(size, resample)
    peak = wide_peak(image, strip_pixels) if image.mode in WIDE_MODES else 0.0
    return _two_pass(image, size, resample, lambda strip: strip_to_rgb(strip, alpha, peak),
                     rule(*image.size, *size), strip_pixels)
