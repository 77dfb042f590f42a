"""Turning command-line inputs (files, folders, globs, list files) into a stream of paths."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TextIO
from collections.abc import Iterable, Iterator

from PIL import Image

from .decode import ALLOWED_FORMATS


def image_extensions() -> frozenset[str]:
    """File extensions of the allowed formats, as Pillow registers them (".jpg", ".png", ...)."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in ALLOWED_FORMATS or (fmt == "MPO"))


def _walk(folder: Path, all_files: bool, extensions: frozenset[str]) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if all_files or os.path.splitext(name)[1].lower() in extensions:
                yield Path(root) / name


def read_path_list(stream: TextIO) -> Iterator[str]:
    """Paths from a list, one per line; blank lines and lines starting with # are skipped."""
    for line in stream:
        line = line.rstrip("\n").rstrip("\r")
        if line.strip() and not line.lstrip().startswith("#"):
            yield line


def iter_inputs(inputs: Iterable[str], list_file: str | None = None,
                all_files: bool = False) -> Iterator[Path]:
    """Every path named by ``inputs`` and ``list_file`` ('-' is stdin), each once.

    A file is yielded as given (and reported later if it is not an image). A folder is
    walked recursively, skipping hidden entries, for files with an image extension, or
    every file with ``all_files``. A pattern with ``*``, ``?`` or ``[`` is a glob (``**``
    recurses). A name that matches nothing is yielded too, so it is reported as missing.
    """
    extensions = image_extensions()
    seen: set[str] = set()

    def expand(item: str) -> Iterator[Path]:
        path = Path(item)
        if path.is_dir():
            yield from _walk(path, all_files, extensions)
        elif any(ch in item for ch in "*?[") and not path.exists():
            for match in sorted(glob.glob(item, recursive=True)):
                yield from expand(match) if Path(match).is_dir() else iter([Path(match)])
        else:
            yield path

    def sources() -> Iterator[str]:
        yield from inputs
        if list_file == "-":
            yield from read_path_list(sys.stdin)
        elif list_file:
            with open(list_file, encoding="utf-8") as stream:
                yield from read_path_list(stream)

    for item in sources():
        for path in expand(item):
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                yield path
