"""The real size of an image that a container embeds, read before any of its pixels are decoded.

Some formats wrap another image, and what the container declares says nothing about the size
of what it wraps: an ICO's directory holds at most 256x256, yet the entry may be a whole PNG
(or a DIB with its own header) of 20,000 x 20,000; an ICNS entry may hold a PNG or JPEG 2000 of
any size; a BLP1 may hold a JPEG of any size. Pillow decodes the payload at its own size (and
an ICO's already inside ``Image.open``), so a check of the declared size bounds nothing.

Here the payload that Pillow would decode is found as Pillow finds it, and its own header is
read with Pillow's header parsers (never a decoder), so the guards in vggsim.images.decode can
check the size the decode will really work at, against ``max_pixels`` and the memory budget.
A container too damaged to parse yields None: ``Image.open`` then fails on it the same way,
before any payload is decoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

from PIL import BmpImagePlugin, IcnsImagePlugin, IcoImagePlugin, Image, JpegImagePlugin, PngImagePlugin

_PNG = PngImagePlugin._MAGIC
_JPEG2000 = (b"\xff\x4f\xff\x51", b"\x0d\x0a\x87\x0a", b"\x00\x00\x00\x0cjP  \x0d\x0a\x87\x0a")
_BLP1_HEADER = 28 + 16 * 4 * 2  # magic .. subtype, then 16 mipmap offsets and 16 lengths


@dataclass(frozen=True)
class Payload:
    """The image a container embeds: its encoding, size and the mode Pillow decodes it to."""

    container: str  # "ICO", "ICNS" or "BLP"
    encoding: str  # "PNG", "DIB", "JPEG" or "JPEG2000"
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def embedded_payload(fp: BinaryIO, head: bytes) -> Payload | None:
    """The payload Pillow would decode from the container in ``fp`` (None if not a container).

    ``head`` is the input's first bytes; ``fp`` is left where it was.
    """
    reader = (_ico if head.startswith(b"\0\0\1\0") else _icns if head.startswith(b"icns")
              else _blp1_jpeg if head.startswith(b"BLP1") else None)
    if reader is None:
        return None
    position = fp.tell()
    try:
        fp.seek(0)  # the containers' offsets count from the start, as Pillow reads them
        return reader(fp)
    except Exception:  # damaged: Image.open refuses it the same way, before decoding anything
        return None
    finally:
        fp.seek(position)


def _ico(fp: BinaryIO) -> Payload | None:
    # Pillow's IcoImageFile decodes entry[0] of IcoFile's sorted directory, inside Image.open.
    icon = IcoImagePlugin.IcoFile(fp).entry[0]
    fp.seek(icon.offset)
    if fp.read(8) == _PNG:
        fp.seek(icon.offset)
        png = PngImagePlugin.PngImageFile(fp)
        return Payload("ICO", "PNG", png.size[0], png.size[1], png.mode)
    fp.seek(icon.offset)
    dib = BmpImagePlugin.DibImageFile(fp)  # its header; the height counts the AND mask too
    return Payload("ICO", "DIB", dib.size[0], dib.size[1] // 2, "RGBA")


def _icns(fp: BinaryIO) -> Payload | None:
    # IcnsImageFile.load reads every entry of the best size; the PNG and JPEG 2000 ones have
    # sizes of their own (the others are fixed-size run-length bitmaps of at most 128x128).
    icns = IcnsImagePlugin.IcnsFile(fp)
    largest: Payload | None = None
    for code, _reader in IcnsImagePlugin.IcnsFile.SIZES[icns.bestsize()]:
        if code not in icns.dct:
            continue
        offset, length = icns.dct[code]
        fp.seek(offset)
        signature = fp.read(12)
        fp.seek(offset)
        if signature.startswith(_PNG):
            inner: Image.Image = PngImagePlugin.PngImageFile(fp)
            payload = Payload("ICNS", "PNG", inner.size[0], inner.size[1], inner.mode)
        elif signature.startswith(_JPEG2000):
            inner = Image.open(io.BytesIO(fp.read(length)), formats=["JPEG2000"])
            payload = Payload("ICNS", "JPEG2000", inner.size[0], inner.size[1], "RGBA")
        else:
            continue
        if largest is None or payload.pixels > largest.pixels:
            largest = payload
    return largest


def _blp1_jpeg(fp: BinaryIO) -> Payload | None:
    # A BLP1 with compression 0 is a JPEG: a shared JPEG header, then the first mipmap's data.
    header = fp.read(_BLP1_HEADER + 4)
    if len(header) < _BLP1_HEADER + 4 or struct.unpack_from("<i", header, 4)[0] != 0:
        return None
    offset, length = struct.unpack_from("<I", header, 28)[0], struct.unpack_from("<I", header, 92)[0]
    (jpeg_header_size,) = struct.unpack_from("<I", header, _BLP1_HEADER)
    jpeg = fp.read(jpeg_header_size)
    fp.seek(max(offset, _BLP1_HEADER + 4 + jpeg_header_size))
    jpeg += fp.read(length)
    inner = JpegImagePlugin.JpegImageFile(io.BytesIO(jpeg))
    return Payload("BLP", "JPEG", inner.size[0], inner.size[1], "RGB")
