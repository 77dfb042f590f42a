"""Damage that keeps a file's size (the fault-injection report of issue 7's store, F-store-*).

A shard damaged in place passes every cheap check (size, .npy header), so readers must check
its sha256 before trusting it; and every store error must give advice that works.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vggsim import StoreError
from support import run_cli  # noqa: E402

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def template(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    for n, photo in enumerate(photos[:4]):
        (root / "photos").mkdir(exist_ok=True)
        shutil.copy(photo, root / "photos" / f"{n}{photo.suffix}")
    result = run_cli("embed", str(root / "photos"), "--store", str(root / "store"), "--model", str(model_dir),
                     "--quiet")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def store_copy(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template / "store", tmp_path / "store")
    return tmp_path / "store"


def _swap_first_rows(path: Path) -> None:
    """Rows 0 and 1 exchanged: same size, same header, different bytes."""
    array = np.load(path)
    array[[0, 1]] = array[[1, 0]]
    np.save(path, array)


def _shard(root: Path, kind: str) -> Path:
    commit = json.loads((root / "commit.json").read_text())
    return root / next(n for s in commit["shards"] for n in s["files"] if n.startswith(kind))


def test_same_size_damaged_vector_shard_is_refused_not_a_wrong_score(store_copy: Path, template: Path,
                                                                       model_dir: Path) -> None:
    shard = _shard(store_copy, "vectors")
    size = shard.stat().st_size
    _swap_first_rows(shard)
    assert shard.stat().st_size == size
    photo = str(sorted((template / "photos").iterdir())[0])
    result = run_cli("search", photo, "--store", str(store_copy), "--model", str(model_dir), "-k", "2")
    assert result.returncode == 1, result.stdout
    assert "sha256 differs" in result.stderr and str(shard) in result.stderr
    assert "vggsim store verify" in result.stderr and "Traceback" not in result.stderr
    dedup = run_cli("dedup", "--store", str(store_copy), "--threshold", "0.9")
    assert dedup.returncode == 1 and "sha256 differs" in dedup.stderr


def test_random_bytes_in_a_vector_shard_are_refused_by_every_reader(store_copy: Path) -> None:
    from vggsim.collection import StoreReader
    from vggsim.store import Store

    shard = _shard(store_copy, "vectors")
    with open(shard, "r+b") as fp:
        fp.seek(shard.stat().st_size - 100)
        fp.write(b"\xde\xad\xbe\xef")
    with pytest.raises(StoreError, match="sha256 differs"):
        list(Store.open(store_copy).blocks())
    with pytest.raises(StoreError, match="sha256 differs"):
        Store.open(store_copy).vectors([0])
    with pytest.raises(StoreError, match="sha256 differs"):
        StoreReader(store_copy).search(np.ones(512, np.float32), k=1)


def test_same_size_damaged_meta_shard_is_refused(store_copy: Path) -> None:
    from vggsim.store import Store

    meta = _shard(store_copy, "meta")
    data = bytearray(meta.read_bytes())
    index = data.find(b".png") if b".png" in data else data.find(b".jpg")
    data[index + 1] ^= 0x20  # a path's extension changes case: parquet still reads it
    meta.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256 differs"):
        Store.open(store_copy).records()


def test_shard_checksum_is_computed_once_per_file_per_process(store_copy: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vggsim.store import checksum as store_checksum
    from vggsim.store import Store

    store_checksum.forget()
    calls: list[int] = []

    def counting_sha256() -> Any:
        calls.append(1)
        return hashlib.sha256()

    monkeypatch.setattr(store_checksum, "hashlib", SimpleNamespace(sha256=counting_sha256))
    first = [b.vectors for b in Store.open(store_copy).blocks()]
    hashed = len(calls)
    assert hashed == 2  # the meta file and the vectors file of the one shard
    again = [b.vectors for b in Store.open(store_copy).blocks()]  # a new snapshot: nothing re-hashed
    assert len(calls) == hashed and all(np.array_equal(a, b) for a, b in zip(first, again))
    shard = _shard(store_copy, "vectors")
    _swap_first_rows(shard)  # a new mtime (and file): checked again, and refused
    with pytest.raises(StoreError, match="sha256 differs"):
        list(Store.open(store_copy).blocks())


@pytest.mark.parametrize("damage", ["truncate", "garble", "no_model"])
def test_garbled_store_json_advice_does_not_loop_through_repair(store_copy: Path, template: Path,
                                                                model_dir: Path, damage: str) -> None:
    identity = store_copy / "store.json"
    if damage == "truncate":
        identity.write_bytes(identity.read_bytes()[:20])
    elif damage == "garble":
        identity.write_bytes(b"\x00" * len(identity.read_bytes()))
    else:
        data = json.loads(identity.read_text())
        del data["model_sha256"]
        identity.write_text(json.dumps(data))
    photo = str(sorted((template / "photos").iterdir())[0])
    search = run_cli("search", photo, "--store", str(store_copy), "--model", str(model_dir))
    assert search.returncode == 1 and "Traceback" not in search.stderr
    assert "restore" in search.stderr and "re-create the store" in search.stderr, search.stderr
    assert "then `vggsim store repair" not in search.stderr  # repair refuses such a store: no loop
    repair = run_cli("store", "repair", str(store_copy))
    assert repair.returncode == 1 and "restore" in repair.stderr and "re-create the store" in repair.stderr
