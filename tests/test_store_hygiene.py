"""Store hygiene found by fault injection: writers stay out of user folders, repair adopts
only provably committed shards, and verify of a missing folder says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vggsim import StoreError
from vggsim.store import StoreWriter  # noqa: E402
from support import run_cli  # noqa: E402

pytest.importorskip("pyarrow")


def test_store_option_on_a_non_store_folder_is_refused(tmp_path: Path) -> None:
    from vggsim.store import StoreIdentity, StoreWriter

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"not really")
    with pytest.raises(StoreError, match="photos exists and is not a vggsim store .*choose a new or empty folder"):
        StoreWriter.open(photos, StoreIdentity("m", {}, 4))
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]  # nothing written into it
    empty = tmp_path / "empty"
    empty.mkdir()
    StoreWriter.open(empty, StoreIdentity("m", {}, 4)).close()  # an empty folder becomes a store
    StoreWriter.open(empty, StoreIdentity("m", {}, 4)).close()  # and reopens


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


def _store_of_one_shard(root: Path) -> Path:
    from vggsim.store import Record, StoreIdentity

    with StoreWriter.open(root, StoreIdentity("m", {}, 4)) as writer:
        for n in range(3):
            writer.add(Record(f"/x/{n}.jpg", "ok", size=n), np.full(4, n + 1, np.float32))
    return root


def test_repair_after_a_lost_commit_json_never_adopts_stray_shard_files(tmp_path: Path) -> None:
    from vggsim.store import Store, repair

    root = _store_of_one_shard(tmp_path / "s")
    before = Store.open(root).history().num_rows
    shutil.copy(root / "vectors" / "000001.npy", root / "vectors" / "000002.npy")  # a restored backup, say
    shutil.copy(root / "meta" / "000001.parquet", root / "meta" / "000002.parquet")
    (root / "commit.json").unlink()
    report = repair(root)
    assert report.rebuilt_commit
    assert Store.open(root).history().num_rows == before  # 3 rows, not 6
    assert any("000002 not adopted" in line for line in report.not_adopted), report.not_adopted
    assert not (root / "vectors" / "000002.npy").exists() and (root / "damaged" / "000002.npy").exists()


def test_repair_after_a_lost_commit_json_refuses_mismatched_vectors_and_meta(tmp_path: Path) -> None:
    from vggsim.store import Record, Store, repair

    root = _store_of_one_shard(tmp_path / "s")
    with StoreWriter.open(root, Store.open(root).identity) as writer:  # a second, genuine shard
        writer.add(Record("/x/9.jpg", "ok", size=9), np.full(4, 9, np.float32))
    other = np.load(root / "vectors" / "000002.npy")
    np.save(root / "vectors" / "000002.npy", other * 2)  # same shape, other vectors: not what meta names
    (root / "commit.json").unlink()
    report = repair(root)
    assert sorted(Store.open(root).paths()) == ["/x/0.jpg", "/x/1.jpg", "/x/2.jpg"]
    assert [line.split(":")[0] for line in report.not_adopted] == ["shard 000002 not adopted"]
