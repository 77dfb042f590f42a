"""``dedup --model`` checks the store's whole identity, not only the model sha256 (F-ident-1):
a threshold calibrated for one preprocessing means little for vectors made with another."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import run_cli  # noqa: E402

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def stores(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ident")
    for photo in photos[:3]:
        (root / "photos").mkdir(exist_ok=True)
        shutil.copy(photo, root / "photos" / photo.name)
    for name, extra in (("plain", []), ("exif", ["--exif-transpose"])):
        made = run_cli("embed", str(root / "photos"), "--store", str(root / name), "--model", str(model_dir),
                       "--quiet", *extra)
        assert made.returncode == 0, made.stderr
    return root


def _variant(model_dir: Path, folder: Path, **preprocess: object) -> Path:
    """The same model file with another preprocessing in its manifest (sha256 unchanged)."""
    shutil.copytree(model_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocess"].update(preprocess)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("change", [{"resample": "nearest"}, {"alpha": "drop"}])
def test_dedup_model_with_other_preprocessing_is_refused_like_search(stores: Path, model_dir: Path, tmp_path: Path,
                                                                    change: dict[str, object]) -> None:
    other = _variant(model_dir, tmp_path / "model", **change)
    dedup = run_cli("dedup", "--store", str(stores / "plain"), "--model", str(other))
    assert dedup.returncode == 1, dedup.stderr
    assert "different preprocess" in dedup.stderr and f"{next(iter(change))}=" in dedup.stderr
    with_threshold = run_cli("dedup", "--store", str(stores / "plain"), "--model", str(other), "--threshold", "0.9")
    assert with_threshold.returncode == 1 and "different preprocess" in with_threshold.stderr
    search = run_cli("search", str(next((stores / "photos").iterdir())), "--store", str(stores / "plain"),
                     "--model", str(other))
    assert search.returncode == 1 and "different preprocess" in search.stderr


def test_dedup_accepts_an_embed_time_exif_choice_with_one_warning(stores: Path, model_dir: Path) -> None:
    same = run_cli("dedup", "--store", str(stores / "plain"), "--model", str(model_dir))
    assert same.returncode == 0 and "calibrated with" not in same.stderr, same.stderr
    exif = run_cli("dedup", "--store", str(stores / "exif"), "--model", str(model_dir))
    assert exif.returncode == 0, exif.stderr
    warnings = [line for line in exif.stderr.splitlines() if "exif_transpose=True" in line]
    assert len(warnings) == 1 and "calibrated with exif_transpose=False" in warnings[0]
