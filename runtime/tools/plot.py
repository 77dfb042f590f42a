"""Contact sheets drawn with Pillow alone: images in a row with a caption under each."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vggsim.collection.results import DuplicateGroup
from vggsim.images.decode import ImageSource, open_image
from vggsim.errors import ImageError
from vggsim.images.preprocess import to_rgb

TILE = 256
CAPTION = 44
MARGIN = 10
TITLE_LINE = 20

#: A tile: an image and its caption, or None and a caption drawn in an empty tile ("+10 more").
Tile = tuple[ImageSource | None, str]


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=14)


def _tile(source: ImageSource) -> Image.Image:
    try:
        image = to_rgb(open_image(source))
    except ImageError:
        return Image.new("RGB", (TILE, TILE), (200, 200, 200))
    image.thumbnail((TILE, TILE), Image.Resampling.BICUBIC)
    return image


def sheet_width(columns: int) -> int:
    return max(columns, 1) * (TILE + MARGIN) + MARGIN


def title_lines(title: str, width: int) -> list[str]:
    """``title`` broken at spaces into lines that fit ``width`` pixels with the margins: a two-image
    sheet (vggsim compare) is 542 pixels wide, narrower than a title with the random-weights warning."""
    font, room = _font(), width - 2 * MARGIN
    lines: list[str] = []
    for word in title.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def contact_sheet(rows: Sequence[Sequence[Tile]], out: str | os.PathLike[str], title: str | None = None) -> None:
    """Write a PNG: one row per sequence of tiles, an optional title on top (wrapped to the sheet's width)."""
    font = _font()
    columns = max((len(row) for row in rows), default=1)
    width = sheet_width(columns)
    lines = title_lines(title, width) if title else []
    top = len(lines) * TITLE_LINE + MARGIN if lines else 0
    sheet = Image.new("RGB", (width, top + len(rows) * (TILE + CAPTION) + MARGIN), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((MARGIN, 8 + TITLE_LINE * i), line, fill="black", font=font)
    for r, row in enumerate(rows):
        for c, (source, caption) in enumerate(row):
            x, y = MARGIN + c * (TILE + MARGIN), top + r * (TILE + CAPTION) + 5
            if source is None:  # a note in place of an image
                draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), fill=(235, 235, 235))
                draw.text((x + TILE // 2, y + TILE // 2), caption, fill="black", font=font, anchor="mm")
                continue
            tile = _tile(source)
            sheet.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
            for i, line in enumerate(caption.splitlines()[:2]):
                draw.text((x, y + TILE + 4 + 17 * i), line[:36], fill="black", font=font)
    sheet.save(out, format="PNG")


def duplicate_rows(groups: Sequence[DuplicateGroup], max_groups: int = 8, per_group: int = 6) -> list[list[Tile]]:
    """The tiles of ``vggsim dedup --plot``: the largest groups first (ties by first member), a row each,
    ``per_group`` images a row, then a tile saying how many members are not drawn ("+10 more")."""
    chosen = sorted(groups, key=lambda g: (-len(g.members), g.members[0].id if g.members else 0))[:max_groups]
    rows: list[list[Tile]] = []
    for group in chosen:
        members = group.members
        shown = members[:per_group]
        row: list[Tile] = [(m.path, f"group {group.number}  {m.score:.4f}\n{Path(m.path).name}") for m in shown]
        if len(shown) < len(members):
            row.append((None, f"group {group.number}: +{len(members) - len(shown)} more"))
        rows.append(row)
    return rows
