"""Walks and globs never embed a vggsim store: a store kept in the photo folder must converge."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vggsim.ingest.sources import iter_inputs


def _fake_store(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "store.json").write_text("{}")
    (folder / "commit.json").write_text("{}")
    (folder / "vectors").mkdir()
    (folder / "vectors" / "000001.npy").write_bytes(b"x")
    (folder / "inner.jpg").write_bytes(b"x")


def test_store_inside_the_embedded_folder_is_not_walked_or_globbed(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    _fake_store(tmp_path / "s.vgg")
    target = tmp_path / "half"  # the store being written: skipped even before it holds commit.json
    target.mkdir()
    (target / "store.json").write_text("{}")
    expected = [str(tmp_path / "a.jpg")]
    for inputs in ([str(tmp_path)], [f"{tmp_path}/**"], [f"{tmp_path}/*"], [f"{tmp_path}/**/*.jpg"]):
        found = [str(p) for p in iter_inputs(inputs, all_files=True, skip=[target])]
        assert found == expected, (inputs, found)
    assert list(iter_inputs([f"{tmp_path}/*/*"], skip=[target])) == []  # no folder but stores holds files
    named = tmp_path / "s.vgg" / "inner.jpg"
    assert [str(p) for p in iter_inputs([str(named)])] == [str(named)]  # named explicitly: kept


def test_all_files_embed_with_the_store_inside_the_folder_converges(tmp_path: Path, model_dir: Path,
                                                                    photos: list[Path]) -> None:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "self"
    folder.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, folder / photo.name)
    command = [sys.executable, "-m", "vggsim", "embed", str(folder), "--store", str(folder / "s.vgg"),
               "--all-files", "--json", "--model", str(model_dir)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["embedded"] == 2
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    data = json.loads(second.stdout)
    assert (data["seen"], data["unchanged"], data["failed"]) == (2, 2, 0)
