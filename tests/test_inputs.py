"""Inputs that cannot hang or repeat, odd bytes, bad items, changing files, NaN, and memory.

Each test is named after the defect of issue 7 it covers and fails on the code before the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vggsim import PreprocessSpec
from vggsim.preprocess import RESAMPLE_FILTERS, prepare, to_rgb


def bounded(seconds: float, function: Callable[[], Any]) -> Any:
    """Run ``function`` in a daemon thread; fail (instead of hanging the suite) past ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"did not finish within {seconds} s (hang)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- the conversions as they were before the strip rewrite, kept verbatim as the reference ---

_OLD_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _old_wide_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    if values.ndim != 2:
        values = values.reshape(image.size[1], image.size[0])
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    peak = float(values.max(initial=0.0))
    if peak > 65535.0:
        values = values * (255.0 / peak)
    elif peak > 255.0:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _old_to_rgb(image: Image.Image, alpha: str = "white") -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _OLD_WIDE_MODES:
        return _old_wide_to_l(image).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    if alpha == "drop":
        return rgba.convert("RGB")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _random_modes(rng: np.random.Generator, width: int, height: int) -> dict[str, Image.Image]:
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    # 16-bit values right at the /257 rounding edges (257k+128 rounds down, 257k+129 up)
    k = rng.integers(0, 255, (height, width))
    edges = (257 * k + rng.choice([0, 127, 128, 129, 130, 256], (height, width))).clip(0, 65535)
    small = rng.integers(0, 256, (height, width))  # a wide image whose peak is <= 255
    floats = rng.normal(30000, 30000, (height, width)).astype(np.float32)
    floats.flat[:: 7] = np.nan
    floats.flat[3:: 11] = np.inf
    floats.flat[5:: 13] = -np.inf
    palette_transparent = rgb.convert("P")
    palette_transparent.info["transparency"] = 3
    return {
        "1": rgb.convert("1"), "L": rgb.convert("L"), "P": rgb.convert("P"), "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"), "RGBA": rgba, "LA": rgba.convert("LA"),
        "RGBa": rgba.convert("RGBa"), "PA": rgba.convert("PA"), "P+transparency": palette_transparent,
        "I;16": Image.fromarray(edges.astype(np.uint16)), "I;16B": Image.fromarray(edges.astype(">u2")),
        "I;16 small": Image.fromarray(small.astype(np.uint16)),
        "I": Image.fromarray(edges.astype(np.int32) - 3000),  # negatives clip to 0
        "I over 65535": Image.fromarray(rng.integers(-5, 3_000_000, (height, width)).astype(np.int32)),
        "F": Image.fromarray(floats),
        "F over 65535": Image.fromarray(rng.uniform(0, 1e6, (height, width)).astype(np.float32)),
    }


@pytest.mark.parametrize("size", [(97, 31), (31, 97), (300, 301), (640, 90), (90, 640), (1, 1), (5, 400)])
def test_strip_conversion_is_bit_identical_to_the_whole_image_rule(size: tuple[int, int],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim import convert

    monkeypatch.setattr(convert, "STRIP_PIXELS", 1500)  # many strips, odd remainders
    rng = np.random.default_rng(sum(size))
    for name, image in _random_modes(rng, *size).items():
        for alpha in ("white", "drop"):
            expected = _old_to_rgb(image, alpha)
            assert np.array_equal(np.asarray(to_rgb(image, alpha)), np.asarray(expected)), (name, alpha)
            for resample in RESAMPLE_FILTERS:
                spec = PreprocessSpec(size=(60, 44), resample=resample, alpha=alpha)
                old = np.asarray(expected.resize(spec.size, resample=RESAMPLE_FILTERS[resample]), np.float32)
                assert np.array_equal(prepare(image, spec), old), (name, alpha, resample)
        default = np.asarray(_old_to_rgb(image).resize((224, 224), Image.Resampling.BICUBIC), np.float32)
        assert np.array_equal(prepare(image), default), name
