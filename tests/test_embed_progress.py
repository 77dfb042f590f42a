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


def test_embed_ray_json_keeps_ray_driver_messages_off_stdout(folder: Path, model_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Ray's driver prints cluster messages ("(raylet) A worker died ...") to sys.stdout from its
    own thread; with --json that broke the document on stdout (seen on the two-node cluster test)."""
    import threading

    import vggsim.ray.embed as ray_embed
    from vggsim.collection import embed_into_store
    from vggsim.model.embedder import Embedder

    def fake_embed_dataset(inputs: list[str], store: str, **kw: object) -> object:
        printer = threading.Thread(target=lambda: print("(raylet) A worker died or was killed while executing a task"))
        printer.start()
        printer.join()
        return embed_into_store(Embedder(model_dir, providers="cpu"), inputs, store)

    monkeypatch.setattr(ray_embed, "import_ray", lambda: None)
    monkeypatch.setattr(ray_embed, "embed_dataset", fake_embed_dataset)
    assert main(["embed", str(folder), "--store", str(tmp_path / "store"), "--model", str(model_dir), "--json",
                 "--ray=127.0.0.1:1"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["embedded"] == 1  # stdout is the JSON alone
    assert "(raylet) A worker died" in captured.err  # still shown, on stderr
