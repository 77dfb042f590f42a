"""``embed_into_store(..., prune=True)`` never deletes what it could not see.

A folder a walk cannot list is a failure of the run (its path, the cause), counted in the
summary and the exit code, and no stored file under it is pruned. A stored path the OS cannot
even look up (too long, unreadable) is reported, not marked deleted. The tests run as root,
so permissions are simulated by raising the OSError a non-root user would get, and the name
too long is a real one.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from vggsim import Embedder  # noqa: E402
from vggsim.collection import embed_into_store  # noqa: E402
from vggsim.store import Record, Store, StoreIdentity, StoreWriter  # noqa: E402


def _copy(photo: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(photo, folder / name))


def _deny(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` as a folder without read and search permission is to a non-root user: listing it
    and looking up anything inside it raise EACCES."""
    inside = os.path.join(str(folder), "")
    real_scandir, real_lstat = os.scandir, os.lstat

    def denied(path: Any) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and \
            os.path.join(os.path.abspath(os.fsdecode(path)), "").startswith(inside)

    def scandir(path: Any = ".") -> Any:
        if denied(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if denied(path) and os.path.abspath(os.fsdecode(path)) != str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "lstat", lstat)


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_an_unreadable_subfolder_is_a_failure_and_nothing_under_it_is_pruned(
        embedder: Embedder, tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    top = _copy(photos[0], tmp_path / "in", "a.png")
    hidden = _copy(photos[1], tmp_path / "in" / "sub", "b.png")
    first = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s")
    assert (first.embedded, first.exit_code) == (2, 0)
    _deny(monkeypatch, tmp_path / "in" / "sub")
    named = str(tmp_path / "in") if form == "folder" else str(tmp_path / "in" / "**" / "*.png")
    summary = embed_into_store(embedder, [named], tmp_path / "s", prune=True)
    monkeypatch.undo()
    assert [(f.path, f.kind) for f in summary.failures] == [(str(tmp_path / "in" / "sub"), "unreadable")]
    assert "Permission denied" in summary.failures[0].reason
    assert (summary.pruned, summary.failed, summary.exit_code) == (0, 1, 1)
    assert sorted(Store.open(tmp_path / "s").paths()) == sorted([str(top), str(hidden)])


def _long_folder(root: Path) -> Iterator[str]:
    """Folders nested under ``root`` until the path is longer than the OS takes (PATH_MAX): made through
    dir_fd, one name at a time. Yields the path of each level."""
    fd = os.open(root, os.O_RDONLY)
    path = str(root)
    try:
        while len(path) <= 4200:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, path = inner, os.path.join(path, name)
            yield path
    finally:
        os.close(fd)


def test_a_folder_path_too_long_for_the_os_is_reported_not_skipped(embedder: Embedder, tmp_path: Path,
                                                                   photos: list[Path]) -> None:
    _copy(photos[0], tmp_path / "in", "a.png")
    levels = list(_long_folder(tmp_path / "in"))
    try:
        summary = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s", prune=True)
    finally:
        shutil.rmtree(tmp_path / "in" / ("d" * 200))  # fd-based: it copes with the depth
    failed = [(f.path, f.kind) for f in summary.failures]
    assert len(failed) == 1 and failed[0][1] == "unreadable" and failed[0][0] in levels, failed
    assert len(failed[0][0]) > 4096 and os.strerror(errno.ENAMETOOLONG) in summary.failures[0].reason
    assert (summary.embedded, summary.failed, summary.exit_code) == (1, 1, 1)


def test_a_stored_path_too_long_to_look_up_is_reported_not_pruned(embedder: Embedder, tmp_path: Path) -> None:
    long_path = str(tmp_path / ("x" * 250) / ("y" * 250)) * 10  # ENAMETOOLONG from lstat, not ENOENT
    with StoreWriter.open(tmp_path / "s", StoreIdentity.of(embedder)) as writer:
        writer.add(Record(long_path, "ok", 1, 1, "0" * 64), np.ones(embedder.dim, np.float32))
    summary = embed_into_store(embedder, [], tmp_path / "s", prune=True)
    assert [(f.path, f.kind) for f in summary.failures] == [(long_path, "unreadable")]
    assert os.strerror(errno.ENAMETOOLONG) in summary.failures[0].reason
    assert (summary.pruned, summary.exit_code) == (0, 1)
    assert Store.open(tmp_path / "s").paths() == [long_path]


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_named_input_that_is_missing_or_empty_prunes_nothing_under_it(
        embedder: Embedder, tmp_path: Path, photos: list[Path], state: str) -> None:
    # an unmounted drive: its folder is gone, or its mount point is an empty folder; pruning "every
    # file that is gone" marked the whole drive's records deleted
    drive = tmp_path / "drive"
    kept = [_copy(photos[0], drive, "a.png"), _copy(photos[1], drive / "2019", "b.png")]
    assert embed_into_store(embedder, [drive], tmp_path / "s").embedded == 2
    shutil.rmtree(drive)
    if state == "empty":
        drive.mkdir()
    summary = embed_into_store(embedder, [drive], tmp_path / "s", prune=True)
    assert summary.pruned == 0
    assert any(str(drive) in note and "nothing under it was pruned" in note for note in summary.notes), summary.notes
    assert set(map(str, kept)) <= set(Store.open(tmp_path / "s").paths())  # (a missing input adds its error record)


def test_files_whose_folder_is_gone_are_pruned_only_under_a_named_folder(
        embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    home = _copy(photos[0], tmp_path / "home", "a.png")
    gone_from_home = _copy(photos[1], tmp_path / "home" / "2019", "b.png")
    elsewhere = _copy(photos[2], tmp_path / "drive" / "trip", "c.png")  # another drive, not named below
    assert embed_into_store(embedder, [tmp_path / "home", tmp_path / "drive"], tmp_path / "s").embedded == 3
    shutil.rmtree(tmp_path / "home" / "2019")  # deleted on purpose, inside the tree the user names
    shutil.rmtree(tmp_path / "drive")  # unmounted
    summary = embed_into_store(embedder, [tmp_path / "home"], tmp_path / "s", prune=True)
    assert summary.pruned == 1  # b.png: its folder is gone, under the named, present home folder
    assert any("missing or empty folder" in note and str(tmp_path / "drive" / "trip") in note for note in summary.notes)
    assert sorted(Store.open(tmp_path / "s").paths()) == sorted([str(home), str(elsewhere)])
    assert str(gone_from_home) not in Store.open(tmp_path / "s").paths()


@pytest.mark.parametrize("how", ["prune alone", "another input", "list file", "glob"])
def test_files_at_the_top_of_an_empty_mount_point_are_kept_however_the_run_is_named(
        embedder: Embedder, tmp_path: Path, photos: list[Path], how: str) -> None:
    # the drive is unmounted: its mount point is there, empty but for lost+found; the run does not name
    # it on the command line, so no named-input check applies to it
    drive, home = tmp_path / "mnt" / "drive", tmp_path / "home"
    top = _copy(photos[0], drive, "top.png")
    _copy(photos[1], home, "h.png")
    assert embed_into_store(embedder, [drive, home], tmp_path / "s").embedded == 2
    shutil.rmtree(drive)
    (drive / "lost+found").mkdir(parents=True)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{drive}\n")
    inputs, list_file = {"prune alone": ([], None), "another input": ([home], None), "list file": ([], str(listed)),
                         "glob": ([str(tmp_path / "mnt" / "*" / "*.png")], None)}[how]
    summary = embed_into_store(embedder, inputs, tmp_path / "s", list_file=list_file, prune=True)
    assert summary.pruned == 0, summary.notes
    assert str(top) in Store.open(tmp_path / "s").paths()
    assert any("missing or empty folder" in note for note in summary.notes), summary.notes
