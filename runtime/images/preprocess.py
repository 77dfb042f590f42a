"""The Keras recipe's preprocessing, bit for bit, with every other choice named.

For an RGB image, :func:`load_image` returns exactly what the recipe makes::

    img = Image.open(path).resize((224, 224))          # Pillow's default for RGB: BICUBIC
    x = keras.preprocessing.image.img_to_array(img)     # np.asarray(img, dtype=float32)

except that the filter is always passed explicitly. Other modes are converted to RGB
first, at full resolution, by the rule in :func:`to_rgb`.
"""

from __future__ import annotations

import hashlib

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from vggsim.images.convert import convert_whole, resize_rgb
from vggsim.images.decode import DEFAULT_MAX_PIXELS, BeforeLoad, ImageSource, describe_source, open_image
from vggsim.errors import ImageError

RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
ALPHA_RULES = ("white", "drop")


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that decides the pixels the model sees. Recorded in every manifest and store.

    - ``size``: (width, height) of the resize, as ``Image.resize`` takes it.
    - ``resample``: the resize filter, always passed explicitly (``bicubic`` is what the
      recipe gets from Pillow's default for RGB images).
    - ``alpha``: ``white`` composites transparent pixels onto white; ``drop`` discards the
      alpha channel as ``Image.convert("RGB")`` (and Keras ``load_img``) do.
    - ``exif_transpose``: apply the EXIF orientation tag first. Off by default, because
      the recipe does not.
    - ``jpeg_draft``: let libjpeg decode large JPEGs at a reduced scale (at least twice
      the target size) before the resize. Faster, not bit-identical; off by default.
    """

    size: tuple[int, int] = (224, 224)
    resample: str = "bicubic"
    alpha: str = "white"
    exif_transpose: bool = False
    jpeg_draft: bool = False

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE_FILTERS:
            raise ValueError(
                f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {self.resample!r}"
            )
        if self.alpha not in ALPHA_RULES:
            raise ValueError(f"alpha must be one of {ALPHA_RULES}, got {self.alpha!r}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f"size must be (width, height) with positive sides, got {self.size}")
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def to_dict(self) -> dict[str, Any]:
        """The spec as the manifest and stores record it, with the fixed parts spelled out."""
        data = asdict(self)
        data["size"] = list(self.size)
        data.update(
            color="rgb",
            frame="first",
            layout="HWC",
            dtype="float32",
            value_range="0-255",
            wide_modes="clip at 0; kept if max <= 255, else /257 if max <= 65535, else scaled to max 255",
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Read a spec back from a manifest; fixed descriptive keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "size" in values:
            values["size"] = tuple(values["size"])
        return cls(**values)


DEFAULT_SPEC = PreprocessSpec()


def to_rgb(image: Image.Image, alpha: str = "white") -> Image.Image:
    """Convert any Pillow mode to RGB.

    - RGB: unchanged (the parity path).
    - 1, L, CMYK, YCbCr, HSV, LAB: Pillow's own ``convert("RGB")`` (grey is replicated;
      CMYK uses Pillow's plain formula, no ICC profile).
    - I;16*, I, F: to 8-bit grey first (negatives and NaN to 0; values kept if the
      maximum is <= 255, divided by 257 if it is <= 65535, else scaled so the maximum
      is 255), then replicated.
    - P without transparency: its palette colours. P with transparency, PA, LA, La,
      RGBA, RGBa: to RGBA, then by ``alpha``: ``white`` composites onto opaque white,
      ``drop`` discards alpha as ``convert("RGB")`` does.

    The conversion runs in strips (see :mod:`vggsim.images.convert`): the result is the same as
    converting the whole image at once, without the full-size working copies.
    """
    return convert_whole(image, alpha)


def prepare(image: Image.Image, spec: PreprocessSpec = DEFAULT_SPEC, name: str = "<image>") -> np.ndarray:
    """Turn a decoded PIL image into the model's HWC float32 array (0-255 RGB)."""
    try:
        if spec.exif_transpose:
            image = ImageOps.exif_transpose(image) or image
        # RGB: a plain resize (the parity path). Other modes: converted and resized in
        # strips, the same pixels as to_rgb(image).resize(...) without full-size copies.
        resized = resize_rgb(image, spec.size, RESAMPLE_FILTERS[spec.resample], spec.alpha)
        return np.asarray(resized, dtype=np.float32)
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises many types on odd modes and damaged data
        reason = f"cannot convert the image to RGB ({exc})"
    raise ImageError(name, "decode_error", reason)  # outside the handler: no chained traceback


def load_image(
    source: ImageSource,
    spec: PreprocessSpec = DEFAULT_SPEC,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``source`` and return a (height, width, 3) float32 array of 0-255 RGB values.

    ``source`` is a path, bytes, a binary file object or a PIL image. Raises
    :class:`~vggsim.ImageError` (a ``ValueError``) naming the input and the cause.
    """
    return decode_and_prepare(source, spec, max_pixels)[0]


def decode_and_prepare(
    source: ImageSource,
    spec: PreprocessSpec = DEFAULT_SPEC,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The one decode path (Embedder.load, load_image and the pipeline): the model's array
    and the decoded image's (width, height). ``name`` names the input in errors."""
    name = name or describe_source(source)
    before_load = jpeg_draft_hook(spec) if spec.jpeg_draft else None
    image = open_image(source, max_pixels, before_load, name=name)
    size = image.size
    return prepare(image, spec, name), size


def decode_prepare_and_hash(
    source: ImageSource,
    spec: PreprocessSpec = DEFAULT_SPEC,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> tuple[np.ndarray, tuple[int, int], str]:
    """:func:`decode_and_prepare` and the :func:`pixel_sha256` of the decoded image (a store records both)."""
    name = name or describe_source(source)
    before_load = jpeg_draft_hook(spec) if spec.jpeg_draft else None
    image = open_image(source, max_pixels, before_load, name=name)
    try:
        digest = pixel_sha256(image)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on damaged data
        raise ImageError(name, "decode_error", f"cannot read the decoded pixels ({exc})") from None
    return prepare(image, spec, name), image.size, digest


#: rows hashed at a time by :func:`pixel_sha256`: a strip of about 4 MB, never a full-size copy
_STRIP_BYTES = 1 << 22


def pixel_sha256(image: Image.Image) -> str:
    """The sha256 of a decoded image's pixels as decoded (mode, size, palette and raw bytes; no metadata).

    Two files with the same pixels hash alike whatever their EXIF, ICC profile, comments or
    compression settings (a PNG saved again at another level, a JPEG whose EXIF was edited): the
    store's "pixel-identical" duplicate tier. EXIF orientation is metadata, so it plays no part.
    With ``jpeg_draft`` the pixels are those of libjpeg's reduced decode, the ones the model saw.
    """
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    if image.mode in ("P", "PA") and image.palette is not None:
        digest.update(bytes(image.palette.tobytes()))
        digest.update(repr(image.info.get("transparency")).encode())
    rows = max(1, _STRIP_BYTES // max(1, image.width * 4))
    for top in range(0, image.height, rows):
        digest.update(image.crop((0, top, image.width, min(image.height, top + rows))).tobytes())
    return digest.hexdigest()


def jpeg_draft_hook(spec: PreprocessSpec) -> BeforeLoad:
    """DCT-domain downscaling in libjpeg to no less than twice the target size."""

    def draft(image: Image.Image) -> None:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (2 * spec.size[0], 2 * spec.size[1]))

    return draft
