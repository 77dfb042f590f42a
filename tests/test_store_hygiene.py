"""Store hygiene found by fault injection: writers stay out of user folders, repair adopts
only provably committed shards, and verify of a missing folder says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vggsim import StoreError

pytest.importorskip("pyarrow")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True, timeout=600)


def test_store_option_on_a_non_store_folder_is_refused(tmp_path: Path) -> None:
    from vggsim.store import Store, StoreIdentity

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"not really")
    with pytest.raises(StoreError, match="photos exists and is not a vggsim store .*choose a new or empty folder"):
        Store.open_for_writing(photos, StoreIdentity("m", {}, 4))
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]  # nothing written into it
    empty = tmp_path / "empty"
    empty.mkdir()
    Store.open_for_writing(empty, StoreIdentity("m", {}, 4)).close()  # an empty folder becomes a store
    Store.open_for_writing(empty, StoreIdentity("m", {}, 4)).close()  # and reopens


def test_store_option_on_a_non_store_folder_is_one_line_in_the_cli(tmp_path: Path, model_dir: Path,
                                                                    photos: list[Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos[0], folder / "one.jpg")
    result = run_cli("embed", str(folder / "one.jpg"), "--store", str(folder), "--model", str(model_dir), "--quiet")
    assert result.returncode == 1 and "not a vggsim store" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in folder.iterdir()] == ["one.jpg"]


def test_verify_of_a_missing_folder_says_no_store_not_damaged(tmp_path: Path) -> None:
    for name in ("nope.vgg", "empty.vgg"):
        if name == "empty.vgg":
            (tmp_path / name).mkdir()
        result = run_cli("store", "verify", str(tmp_path / name))
        assert result.returncode == 1, result.stderr
        assert f"no store at {tmp_path / name}" in result.stderr
        assert "DAMAGED" not in result.stderr and "repair" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
