"""Every bad input raises ImageError naming the input and the cause."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggsim import ImageError, load_image
from support import png_header_claiming  # noqa: E402


def expect(source: object, kind: str, name_in_message: str | None = None) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(source)  # type: ignore[arg-type]
    assert info.value.kind == kind, (info.value.kind, str(info.value))
    if name_in_message:
        assert name_in_message in str(info.value)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    expect(tmp_path / "nope.jpg", "not_found", "nope.jpg")


def test_directory_named_like_an_image(tmp_path: Path) -> None:
    (tmp_path / "folder.jpg").mkdir()
    expect(tmp_path / "folder.jpg", "is_directory", "folder.jpg")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    expect(tmp_path / "empty.png", "empty", "empty.png")
    expect(b"", "empty", "<bytes>")


def test_text_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 10)
    error = expect(tmp_path / "notes.jpg", "not_an_image", "notes.jpg")
    assert "allowed format" in error.reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path: Path, rgb_image: Image.Image, fmt: str) -> None:
    buffer = io.BytesIO()
    rgb_image.resize((400, 300)).save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    error = expect(path, "truncated", path.name)
    assert "truncated" in error.reason


def test_declared_size_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_claiming(100_000, 100_000))
    error = expect(path, "too_large", "bomb.png")
    assert "pixels" in error.reason
    with pytest.raises(ImageError, match="over the limit"):
        load_image(Image.new("L", (50, 50)), max_pixels=2000)


def test_postscript_is_refused_without_ghostscript(tmp_path: Path) -> None:
    path = tmp_path / "drawing.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    expect(path, "format_refused", "drawing.jpg")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads every file")
def test_unreadable_file(tmp_path: Path, rgb_image: Image.Image) -> None:
    path = tmp_path / "locked.png"
    rgb_image.save(path)
    path.chmod(0)
    expect(path, "unreadable", "locked.png")


def test_not_an_image_input_type() -> None:
    expect(12345, "bad_input")


def test_tiny_and_extreme_aspect_images_still_load(tmp_path: Path) -> None:
    for size in ((1, 1), (20000, 1)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (9, 99, 199)).save(path)
        array = load_image(path)
        assert array.shape == (224, 224, 3) and np.allclose(array[0, 0], (9, 99, 199), atol=1)
