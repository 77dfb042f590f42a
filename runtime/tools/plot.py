"""Contact sheets drawn with Pillow alone: images in a row with a caption under each."""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from vggsim.images.decode import ImageSource, open_image
from vggsim.errors import ImageError
from vggsim.images.preprocess import to_rgb

TILE = 256
CAPTION = 44


def _tile(source: ImageSource) -> Image.Image:
    try:
        image = to_rgb(open_image(source))
    except ImageError:
        return Image.new("RGB", (TILE, TILE), (200, 200, 200))
    image.thumbnail((TILE, TILE), Image.Resampling.BICUBIC)
    return image


def contact_sheet(rows: Sequence[Sequence[tuple[ImageSource, str]]], out: str | os.PathLike[str],
                  title: str | None = None) -> None:
    """Write a PNG: one row per sequence of (image, caption) pairs, an optional title on top."""
    font = ImageFont.load_default(size=14)
    columns = max((len(row) for row in rows), default=1)
    top = 30 if title else 0
    sheet = Image.new("RGB", (columns * (TILE + 10) + 10, top + len(rows) * (TILE + CAPTION) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((10, 8), title, fill="black", font=font)
    for r, row in enumerate(rows):
        for c, (source, caption) in enumerate(row):
            x, y = 10 + c * (TILE + 10), top + r * (TILE + CAPTION) + 5
            tile = _tile(source)
            sheet.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
            for i, line in enumerate(caption.splitlines()[:2]):
                draw.text((x, y + TILE + 4 + 17 * i), line[:36], fill="black", font=font)
    sheet.save(out, format="PNG")
