"""`vggsim embed`'s progress bar: shown with --json (on stderr), and counting files that still fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vggsim.cli import main

pytest.importorskip("pyarrow")
pytest.importorskip("tqdm")


@pytest.fixture
def folder(tmp_path: Path, photos: list[Path]) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photos[0].read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")  # fails for good: not retried on a rerun
    return folder


def test_embed_json_keeps_the_progress_bar_on_stderr(folder: Path, model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(folder), "--store", str(tmp_path / "store"), "--model", str(model_dir), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["embedded"] == 1  # stdout is the JSON alone
    assert "embedding" in captured.err and "2/2" in captured.err


def test_embed_rerun_bar_counts_files_that_still_fail(folder: Path, model_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    command = ["embed", str(folder), "--store", str(tmp_path / "store"), "--model", str(model_dir)]
    assert main(command) == 1
    capsys.readouterr()
    assert main(command) == 1  # nothing to do, but broken.jpg still fails
    err = capsys.readouterr().err
    assert "1 unchanged file(s) still fail" in err
    bar = [line for line in err.replace("\r", "\n").splitlines() if "embedding" in line]
    assert bar and "failed=1" in bar[-1], err
