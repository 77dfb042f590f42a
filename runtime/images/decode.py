"""Opening images safely: one place that turns any input into a loaded PIL image or an ImageError.

Guards, in order: the input exists and is a non-empty regular file; the format is on an
allowlist (PostScript/EPS and PDF are never handed to Pillow, so Ghostscript never runs);
the declared size, and that of any image a container embeds (vggsim.images.embedded), is
within ``max_pixels`` before any pixel is decoded; Pillow's own
truncated-file check stays on. Every Pillow failure becomes an :class:`ImageError`.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from stat import S_ISDIR, S_ISREG
from pathlib import Path
from typing import BinaryIO, Optional, Union
from collections.abc import Callable

from PIL import Image, UnidentifiedImageError

from vggsim.errors import ImageError
from vggsim.images.embedded import Payload, embedded_payload

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Image.Image]

#: Raster formats vggsim decodes. Vector and page formats (EPS, PS, PDF) and formats that
#: call out to external programs are not on the list.
ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "ICO",
    "ICNS", "JPEG2000", "PCX", "SGI", "DDS", "QOI", "PSD", "FLI", "IM", "MSP", "XBM", "XPM",
    "BLP", "CUR", "DCX", "FTEX", "GBR", "PIXAR", "SPIDER", "SUN", "FITS", "MCIDAS",
)
_registered: tuple[str, ...] | None = None


def _allowed_registered() -> tuple[str, ...]:
    """The allowlist less the names this Pillow build does not register (MPO lives in JPEG now),
    in Pillow's own order: ``Image.open`` tries formats in the order given, and some accept
    almost any bytes (TGA takes an ICO's header for its own), so any other order opens some
    files as a different format than ``Image.open(path)`` does."""
    global _registered
    if _registered is None:
        Image.init()
        _registered = tuple(f for f in Image.ID if f in ALLOWED_FORMATS and f in Image.OPEN)
    return _registered

#: Default pixel limit (width x height), the same as Pillow's own warning threshold
#: (about 9,459 x 9,459). Pillow itself refuses twice this many pixels outright.
DEFAULT_MAX_PIXELS: int = 89_478_485

_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
)


def describe_source(source: object) -> str:
    """A short name for an input, used in every error message."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"


def stat_file(path: Path, name: str) -> os.stat_result:
    """``os.stat(path)`` (following links), or an ImageError saying why it cannot be stat'ed."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ImageError(name, "not_found", "no such file") from None
    except PermissionError:
        raise ImageError(name, "unreadable", "permission denied") from None
    except ValueError:  # an embedded NUL byte: no file can have this name
        raise ImageError(name, "bad_input", "the path contains a NUL byte") from None
    except OSError as exc:
        raise ImageError(name, "unreadable", f"cannot read the file ({exc.strerror or exc})") from None


def check_stat(stat: os.stat_result, name: str) -> None:
    """Raise ImageError if ``stat`` is a folder, not a regular file, or an empty file."""
    if S_ISDIR(stat.st_mode):
        raise ImageError(name, "is_directory", "is a directory, not an image file")
    if not S_ISREG(stat.st_mode):
        raise ImageError(name, "not_a_file", "is not a regular file")
    if stat.st_size == 0:
        raise ImageError(name, "empty", "the file is empty (0 bytes)")


def check_path(path: Path, name: str) -> None:
    """Raise ImageError if ``path`` is missing, a folder, unreadable or empty."""
    check_stat(stat_file(path, name), name)


@dataclass(frozen=True)
class ImageHeader:
    """What an image declares before any pixel is decoded."""

    width: int
    height: int
    mode: str
    format: str


def probe(path: Path, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Read only the header of the image file ``path``, through the same guards as a decode.

    Lets a caller size the memory a decode will take before it starts (see vggsim.images.budget).
    No pixel is decoded: for a container that embeds another image the header gives the size
    of what it embeds where that is larger (the size the decode will work at).
    """
    try:
        with path.open("rb") as fp:
            return _probe(fp, name, max_pixels)
    except PermissionError:
        raise ImageError(name, "unreadable", "permission denied") from None
    except OSError as exc:
        raise ImageError(name, "unreadable", f"cannot read the file ({exc.strerror or exc})") from None


def probe_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """:func:`probe` for an image held in memory (an upload): its header, through the same guards."""
    return _probe(io.BytesIO(data), name, max_pixels)


def _probe(fp: BinaryIO, name: str, max_pixels: int) -> ImageHeader:
    payload = _guard(fp, name, max_pixels)
    if payload is not None and payload.container == "ICO":
        # Pillow decodes an ICO's payload inside Image.open: the payload's header is the header.
        return ImageHeader(payload.width, payload.height, payload.mode, "ICO")
    image = _pillow_open(fp, name, max_pixels)
    width, height = image.size
    if payload is not None and payload.pixels > width * height:
        width, height = payload.width, payload.height
    return ImageHeader(width, height, image.mode, image.format or "")


def _read_head(fp: BinaryIO) -> bytes:
    position = fp.tell()
    head = fp.read(16)
    fp.seek(position)
    return head


def _refused_format(head: bytes) -> str | None:
    for signature, label in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return label
    return None


def _classify(exc: BaseException) -> tuple[str, str]:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, UnidentifiedImageError):
        return "not_an_image", "not an image Pillow can read in an allowed format"
    if isinstance(exc, Image.DecompressionBombError):
        return "too_large", f"image too large: {text}"
    if isinstance(exc, MemoryError):
        return "too_large", "ran out of memory while decoding"
    if "truncated" in lowered or "premature end" in lowered or "broken data stream" in lowered:
        return "truncated", f"truncated or damaged image data ({text})"
    return "decode_error", f"cannot decode the image ({type(exc).__name__}: {text})"


BeforeLoad = Optional[Callable[[Image.Image], None]]


def open_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, before_load: BeforeLoad = None,
    name: str | None = None,
) -> Image.Image:
    """Open and fully decode ``source`` (its first frame), or raise :class:`ImageError`.

    Accepts a path, bytes, a binary file object or a PIL image (returned as it is, after
    the pixel check). The returned image is loaded, so the file is no longer needed.
    ``before_load`` may adjust the opened image before its pixels are decoded (JPEG draft).
    ``name`` names the input in errors (default: the path, or ``<bytes>``...).
    """
    name = name or describe_source(source)
    if isinstance(source, Image.Image):
        _check_pixels(source, name, max_pixels)
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        check_path(path, name)
        try:
            with path.open("rb") as fp:
                return _decode(fp, name, max_pixels, before_load)
        except PermissionError:
            raise ImageError(name, "unreadable", "permission denied") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty", "no bytes given (empty input)")
        return _decode(io.BytesIO(bytes(source)), name, max_pixels, before_load)
    if hasattr(source, "read"):
        return _decode(source, name, max_pixels, before_load)
    raise ImageError(
        name, "bad_input",
        f"expected a path, bytes, a binary file object or a PIL image, got {type(source).__name__}",
    )


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, "decode_error", f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            name, "too_large",
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (decompression-bomb guard; raise max_pixels to allow it)",
        )


def _open(fp: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    """Open (header only) through the guards: refused signatures, allowlist, pixel limit."""
    _guard(fp, name, max_pixels)
    return _pillow_open(fp, name, max_pixels)


def _guard(fp: BinaryIO, name: str, max_pixels: int) -> Payload | None:
    """The checks before Pillow sees the input; returns the image a container embeds, if any."""
    try:
        head = _read_head(fp)
    except (OSError, ValueError) as exc:
        raise ImageError(name, "unreadable", f"cannot read the input ({exc})") from None
    if not head:
        raise ImageError(name, "empty", "the input is empty (0 bytes)")
    refused = _refused_format(head)
    if refused:
        raise ImageError(
            name, "format_refused", f"{refused} files are refused (they need Ghostscript to decode)"
        )
    payload = embedded_payload(fp, head)
    if payload is not None and payload.pixels > max_pixels:
        raise ImageError(
            name, "too_large",
            f"the {payload.container} file holds a {payload.encoding} image of {payload.width}x"
            f"{payload.height} = {payload.pixels:,} pixels, over the limit of {max_pixels:,} "
            "(decompression-bomb guard; raise max_pixels to allow it)",
        )
    return payload


def _pillow_open(fp: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    failure: tuple[str, str] | None = None
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked below; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=_allowed_registered())
    except Exception as exc:  # Pillow raises many types on damaged input (OSError, SyntaxError, ...)
        failure = _classify(exc)
    if failure is not None:  # raised outside the handler: no chained traceback keeps buffers alive
        raise ImageError(name, *failure)
    _check_pixels(image, name, max_pixels)
    _check_raw_length(image, fp, name)
    return image


def _check_raw_length(image: Image.Image, fp: BinaryIO, name: str) -> None:
    """Refuse a raw-pixel BLP shorter than its declared pixels need, before decoding it.

    Pillow's BLP decoder is Python code that allocates the whole declared image and more
    (measured: 640 MB for a 1 x 83,886,338 file of a few KB) before it finds the data missing.
    Every non-JPEG BLP encoding takes at least half a byte per pixel (DXT1).
    """
    tile = getattr(image, "tile", None)  # an ImageFile's decoder list
    if image.format != "BLP" or not tile or not tile[0].args or tile[0].args[0] == 0:  # 0: JPEG inside
        return
    position = fp.tell()
    length = fp.seek(0, os.SEEK_END)
    fp.seek(position)
    least = image.size[0] * image.size[1] // 2
    if length < least:
        raise ImageError(name, "truncated", f"truncated or damaged image data (declares {image.size[0]}x"
                         f"{image.size[1]} pixels, which need at least {least:,} bytes; the file has {length:,})")


def _decode(fp: BinaryIO, name: str, max_pixels: int, before_load: BeforeLoad) -> Image.Image:
    image = _open(fp, name, max_pixels)
    failure: tuple[str, str] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if before_load is not None:
                before_load(image)
            image.load()
    except Exception as exc:  # Pillow raises many types on damaged input (OSError, SyntaxError, ...)
        failure = _classify(exc)
    if failure is not None:
        # A failed decode can hold hundreds of MB (a partly filled image, a decoder's buffers):
        # close it, and raise outside the handler so no traceback chain keeps them alive.
        image.close()
        del image
        raise ImageError(name, *failure)
    return image
