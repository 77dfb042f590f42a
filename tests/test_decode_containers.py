"""Formats that embed another image (ICO, ICNS, BLP1) are bounded by the size of what they embed.

A container's declared size says nothing about its payload: an ICO directory entry says 16x16 and
holds a 3000x3000 PNG. The header probe and the decode must check the payload's own size against
``max_pixels`` (and give it to the memory budget) before any of its pixels are decoded.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from vggsim import ImageError, load_image
from vggsim.images.budget import decode_need
from vggsim.images.decode import open_image, probe, probe_bytes
from vggsim.images.preprocess import PreprocessSpec

LIMIT = 1_000_000  # pixels; the payloads below have 9,000,000


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "JPEG")
    return out.getvalue()


def dib_header(width: int, height: int) -> bytes:
    """A 32-bit BITMAPINFOHEADER (height counts the AND mask too, as in an icon) and no pixels."""
    return struct.pack("<IiiHHIIiiII", 40, width, height * 2, 1, 32, 0, 0, 0, 0, 0, 0)


def ico(payload: bytes, declared: int = 16) -> bytes:
    entry = bytes([declared % 256, declared % 256, 0, 0]) + struct.pack("<HHII", 1, 32, len(payload), 22)
    return b"\0\0\1\0" + struct.pack("<H", 1) + entry + payload


def icns(payload: bytes, code: bytes = b"ic07") -> bytes:  # ic07: a 128x128 PNG, it says
    block = code + struct.pack(">I", 8 + len(payload)) + payload
    return b"icns" + struct.pack(">I", 8 + len(block)) + block


def blp1(payload: bytes, declared: int = 8) -> bytes:  # compression 0: a JPEG inside
    header = b"BLP1" + struct.pack("<iIIIii", 0, 0, declared, declared, 5, 0)
    offsets, lengths = [160] + [0] * 15, [len(payload)] + [0] * 15
    return header + struct.pack("<16I", *offsets) + struct.pack("<16I", *lengths) + struct.pack("<I", 0) + payload


BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "ico-png": (lambda: ico(png(3000, 3000)), "ICO file holds a PNG image of 3000x3000"),
    "ico-dib": (lambda: ico(dib_header(3000, 3000)), "ICO file holds a DIB image of 3000x3000"),
    "icns-png": (lambda: icns(png(3000, 3000)), "ICNS file holds a PNG image of 3000x3000"),
    "blp1-jpeg": (lambda: blp1(jpeg(3000, 3000)), "BLP file holds a JPEG image of 3000x3000"),
}


@pytest.fixture
def pixel_decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every Pillow pixel decode (ImageFile.load) the test's own thread makes while it runs.

    Only this thread's: the probes and loads below run in it, and a decode thread another test left
    behind (a pool finishing its queue) must not be counted against this one.
    """
    calls: list[str] = []
    real_load = ImageFile.ImageFile.load
    here = threading.get_ident()

    def load(self: ImageFile.ImageFile) -> object:
        if threading.get_ident() == here:
            calls.append(f"{self.format} {self.size}")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    yield calls


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_payload_over_the_pixel_limit_is_refused_before_it_is_decoded(
    kind: str, tmp_path: Path, pixel_decodes: list[str]
) -> None:
    make, says = BOMBS[kind]
    data = make()
    path = tmp_path / f"icon.{kind}"
    path.write_bytes(data)
    for attempt in (lambda: probe(path, path.name, LIMIT), lambda: probe_bytes(data, "upload", LIMIT),
                    lambda: load_image(path, max_pixels=LIMIT)):
        with pytest.raises(ImageError) as caught:
            attempt()
        assert caught.value.kind == "too_large", caught.value
        assert says in str(caught.value) and "9,000,000 pixels" in str(caught.value)
    assert pixel_decodes == [], f"pixels were decoded before the size was checked: {pixel_decodes}"


def test_the_probe_reports_the_size_an_ico_decodes_at_without_decoding_it(
    tmp_path: Path, pixel_decodes: list[str]
) -> None:
    path = tmp_path / "big.ico"
    path.write_bytes(ico(png(600, 400)))  # its directory says 16x16
    header = probe(path, path.name, LIMIT)
    assert (header.width, header.height, header.format) == (600, 400, "ICO")
    assert pixel_decodes == [], f"the header probe decoded pixels: {pixel_decodes}"
    # The memory budget is given the payload's pixels, not the 16x16 the directory declares.
    assert decode_need(header, path.stat().st_size, PreprocessSpec()) >= 600 * 400 * 4
    assert load_image(path, max_pixels=LIMIT).shape == (224, 224, 3)  # and it still decodes


def test_the_probe_reports_a_blp_jpeg_at_its_embedded_size(tmp_path: Path) -> None:
    path = tmp_path / "texture.blp"
    path.write_bytes(blp1(jpeg(400, 300)))  # it declares 8x8
    header = probe(path, path.name, LIMIT)
    assert (header.width, header.height, header.format) == (400, 300, "BLP")


def test_damaged_containers_still_fail_with_one_clear_error(tmp_path: Path) -> None:
    for name, data in {"cut.ico": ico(png(64, 64))[:30], "cut.icns": icns(png(64, 64))[:20],
                       "cut.blp": blp1(jpeg(64, 64))[:170]}.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as caught:
            load_image(path)
        assert name in str(caught.value) and "\n" not in str(caught.value)


def test_an_icon_opens_as_the_format_pillow_opens_it_as(tmp_path: Path) -> None:
    # Image.open tries formats in the order it is given. TGA has no signature and takes an
    # icon whose first entry is 32-bit and 64-128 KB long for a valid Targa header (32 x ~N
    # pixels), so an allowlist in any other order than Pillow's own failed on real icons.
    rng = np.random.default_rng(0)
    noise = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (160, 160, 4), dtype=np.uint8)).save(noise, "PNG")
    assert 65_536 <= len(noise.getvalue()) < 131_072
    path = tmp_path / "logo.ico"
    path.write_bytes(ico(noise.getvalue(), declared=160))
    with Image.open(path) as reference:
        expected = (reference.format, reference.size)
    decoded = open_image(path)
    assert (decoded.format, decoded.size) == expected == ("ICO", (160, 160))
