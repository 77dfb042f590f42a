"""An evaluation set with ground truth, made from real photos: named edits of each, and the rest as distractors.

Each photo is saved as ``NAME.jpg`` (JPEG, quality 95) with its edited copies ``NAME__EDIT.jpg``:
``q30`` (JPEG quality 30), ``half`` (resized to half), ``crop`` (the central 80%), ``flip``
(mirrored), ``rot90`` (rotated a quarter turn), ``bright`` (brightness +40%) and ``exif`` (the
same JPEG bytes' pixels with an EXIF description added: a metadata-only change). A photo and its
copies are each other's duplicates in ``truth.json`` (imagededup's ground-truth map); every other
photo's files are distractors. Whether a rotation or a crop should count as a duplicate is the
user's call: the evaluation reports recall per edit, so each can be read on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageEnhance

EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "q30": lambda im: im,  # the quality is in how it is saved
    "half": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS),
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width - im.width // 10,
                                im.height - im.height // 10)),
    "flip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.4),
    "exif": lambda im: im,  # the same pixels, and an EXIF block added when saved
}
_IMAGE_DESCRIPTION = 0x010E


def make_evaluation_set(photos: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Write the photos, their edited copies and ``truth.json`` into ``out``; returns truth.json's path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[str]] = {}
    for photo in photos:
        stem = Path(photo).stem
        with Image.open(photo) as opened:
            image = opened.convert("RGB")
        names = [f"{stem}.jpg"]
        image.save(folder / names[0], "JPEG", quality=95)
        for edit, apply in EDITS.items():
            name = f"{stem}__{edit}.jpg"
            if edit == "exif":
                exif = Image.Exif()
                exif[_IMAGE_DESCRIPTION] = "an edited description: only the metadata differs"
                image.save(folder / name, "JPEG", quality=95, exif=exif)
            else:
                apply(image).save(folder / name, "JPEG", quality=30 if edit == "q30" else 95)
            names.append(name)
        for name in names:
            truth[name] = [other for other in names if other != name]
    path = folder / "truth.json"
    path.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return path
