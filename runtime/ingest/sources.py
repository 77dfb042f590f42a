"""Turning command-line inputs (files, folders, globs, list files) into a stream of paths.

Nothing here follows a directory symlink while recursing (folder walks and ``**``), so a
symlink loop cannot make a walk endless, and every file comes out once: files are told
apart by (device, inode), so a file reached through a link or named twice is yielded the
first time only. A name that does not exist is kept (once), so it is reported as missing.

Walks and globs never enter a vggsim store folder (one holding ``store.json`` and
``commit.json``, or a store named in ``skip``): a store kept inside the photo folder
(``vggsim embed ~/Pictures --store ~/Pictures/index.vgg --all-files``) must not be embedded
into itself, recording its own changing files as failures on every run.

A folder that cannot be listed (permissions, an I/O error, a path too long for the OS) is
never passed over in silence: it goes to the ``on_error`` callback of :func:`iter_inputs` with
its OSError, so a run reports it, and ``--prune`` leaves alone what it could not see.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from vggsim.images.decode import ALLOWED_FORMATS
from vggsim.errors import VggsimError, require_list

_MAGIC = re.compile(r"[*?[]")
#: called with a folder that could not be listed and why
OnError = Callable[[str, OSError], None]


def _ignore(folder: str, error: OSError) -> None:
    return None


class InputError(VggsimError, ValueError):
    """A list of inputs cannot be read (missing list file, NUL byte in a line...)."""


def image_extensions() -> frozenset[str]:
    """File extensions of the allowed formats, as Pillow registers them (".jpg", ".png", ...)."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in ALLOWED_FORMATS or (fmt == "MPO"))


def is_store_folder(folder: str | os.PathLike[str], skip: frozenset[str] = frozenset()) -> bool:
    """Whether ``folder`` is a vggsim store (store.json + commit.json) or one of ``skip`` (real paths)."""
    return (os.path.isfile(os.path.join(folder, "store.json")) and os.path.isfile(os.path.join(folder, "commit.json"))) \
        or (bool(skip) and os.path.realpath(folder) in skip)


def _walk(folder: Path, all_files: bool, extensions: frozenset[str], skip: frozenset[str] = frozenset(),
          on_error: OnError = _ignore) -> Iterator[Path]:
    if is_store_folder(folder, skip):
        return

    def failed(error: OSError) -> None:
        on_error(os.fspath(error.filename) if error.filename is not None else os.fspath(folder), error)

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not is_store_folder(os.path.join(root, d), skip))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if all_files or os.path.splitext(name)[1].lower() in extensions:
                yield Path(root) / name


def _entries(folder: str, on_error: OnError = _ignore) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder or ".") as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):  # vanished, or a file: nothing to match there
        return []
    except OSError as exc:  # unreadable: nothing to match, and said
        on_error(folder or ".", exc)
        return []


def _real_dirs(folder: str, skip: frozenset[str], on_error: OnError = _ignore) -> Iterator[str]:
    """``folder`` and every folder under it, never through a directory symlink (as ``**``),
    never into a store folder."""
    if is_store_folder(folder or ".", skip):
        return
    yield folder
    for entry in _entries(folder, on_error):
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield from _real_dirs(os.path.join(folder, entry.name), skip, on_error)


def _glob(pattern: str, skip: frozenset[str] = frozenset(), on_error: OnError = _ignore) -> Iterator[str]:
    """Matches of ``pattern`` in sorted walk order. ``**`` spans folders without following links;
    ``*``, ``?`` and ``[...]`` match within one name and skip hidden names, as glob does.
    Store folders are never entered."""
    anchor, parts = ("/", pattern.lstrip("/").split("/")) if pattern.startswith("/") else ("", pattern.split("/"))
    yield from _match(anchor, [p for p in parts if p], skip, on_error)


def _match(folder: str, parts: list[str], skip: frozenset[str], on_error: OnError = _ignore) -> Iterator[str]:
    part, rest = parts[0], parts[1:]
    if part == "**":
        # the first pass reports unreadable folders; the second lists the same ones again
        for sub in _real_dirs(folder, skip, on_error):
            if rest:
                yield from _match(sub, rest, skip, on_error)
            elif sub != folder:
                yield sub
        if not rest:  # "a/**" also matches the files under a
            for sub in _real_dirs(folder, skip):
                for entry in _entries(sub):
                    if not entry.name.startswith(".") and not entry.is_dir(follow_symlinks=False):
                        yield os.path.join(sub, entry.name)
        return
    if not _MAGIC.search(part):
        path = os.path.join(folder, part)
        if not rest:
            if os.path.lexists(path):
                yield path
        elif os.path.isdir(path) and not is_store_folder(path, skip):  # a literal name may be a link: a finite step
            yield from _match(path, rest, skip, on_error)
        return
    for entry in _entries(folder, on_error):
        if entry.name.startswith(".") and not part.startswith("."):
            continue
        if fnmatchcase(entry.name, part):
            path = os.path.join(folder, entry.name)
            if not rest:
                yield path
            elif entry.is_dir() and not is_store_folder(path, skip):  # one part is one step, even through a link
                yield from _match(path, rest, skip, on_error)


def read_path_list(stream: BinaryIO, source: str = "<list>") -> Iterator[str]:
    """Paths from a list, one per line; blank lines and lines starting with # are skipped.

    Lines are bytes decoded as the file system does (``os.fsdecode``), so names that are not
    valid UTF-8 round-trip. A line holding a NUL byte cannot be a path: InputError naming the line.
    """
    for number, raw in enumerate(stream, 1):
        line = raw.rstrip(b"\n").rstrip(b"\r")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        if b"\0" in line:
            raise InputError(f"{source} line {number}: holds a NUL byte, which no path can contain "
                             "(lists are one path per line, not NUL-separated)")
        yield os.fsdecode(line)


def _list_lines(list_file: str) -> Iterator[str]:
    if list_file == "-":
        yield from read_path_list(sys.stdin.buffer, "stdin")
        return
    try:
        stream = open(list_file, "rb")
    except OSError as exc:
        raise InputError(f"cannot read the list file {list_file}: {exc.strerror or exc}") from None
    with stream:
        yield from read_path_list(stream, list_file)


def iter_inputs(inputs: Iterable[str], list_file: str | None = None,
                all_files: bool = False, skip: Iterable[str | os.PathLike[str]] = (),
                on_error: OnError = _ignore) -> Iterator[Path]:
    """Every path named by ``inputs`` and ``list_file`` ('-' is stdin), each file once.

    A file is yielded as given (and reported later if it is not an image). A folder is
    walked recursively, skipping hidden entries, for files with an image extension, or
    every file with ``all_files``. A pattern with ``*``, ``?`` or ``[`` is a glob (``**``
    recurses). Neither follows directory symlinks when recursing. A name that does not exist
    is yielded too, so it is reported as missing, and so is a name that cannot be stat'ed
    (too long...): it is reported as unreadable. A bad list file raises :class:`InputError`.
    Walks and globs skip store folders: those holding store.json + commit.json, and ``skip``
    (the store being written, say); a file named explicitly is still yielded. A folder that a
    walk or glob cannot list goes to ``on_error(folder, OSError)`` (once per folder), and the
    listing goes on.
    """
    require_list("inputs", inputs, "paths")
    extensions = image_extensions()
    skipped = frozenset(os.path.realpath(folder) for folder in skip)
    seen: set[object] = set()

    def expand(item: str) -> Iterator[Path]:
        path = Path(item)
        # os.path.isdir is False for a name that cannot be stat'ed at all (too long, a NUL
        # byte, a loop): such a name is yielded as a file, and its read reports it as failed,
        # so one bad line in a list never stops the others.
        if os.path.isdir(item):
            yield from _walk(path, all_files, extensions, skipped, on_error)
        elif _MAGIC.search(item) and not os.path.lexists(item):
            for match in _glob(item, skipped, on_error):
                yield from (_walk(Path(match), all_files, extensions, skipped, on_error) if os.path.isdir(match)
                            else iter([Path(match)]))
        else:
            yield path

    def sources() -> Iterator[str]:
        yield from inputs
        if list_file:
            yield from _list_lines(list_file)

    for item in sources():
        for path in expand(item):
            try:
                stat = os.stat(path)
                key: object = (stat.st_dev, stat.st_ino)
            except (OSError, ValueError):  # missing (or no valid name): keep it, once, to report
                key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                yield path
