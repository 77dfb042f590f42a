"""`update_index` / `vggsim index update`: a store's index grown with its new commits, not trained again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vggsim import StoreError

from vggsim.search.exact import exact_topk
from vggsim.store import Record, Store, StoreIdentity, StoreWriter

pytest.importorskip("pyarrow")
faiss = pytest.importorskip("faiss")

from vggsim.search.ivf import IndexParams, OnDiskIndex, build_index, update_index  # noqa: E402
from vggsim.search.ivf.files import CODES, LISTS, current_folder  # noqa: E402
from support import fill_disk_at, full_probe, make_store, run_cli  # noqa: E402

DIM = 64


def clustered(count: int, centre: np.ndarray, seed: int, spread: float = 0.3) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return (centre[None, :] + spread * noise).astype(np.float32)


def random_centre(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def add(store: Store, vectors: np.ndarray, first: int) -> Store:
    with StoreWriter.open(store.root, StoreIdentity("synthetic", {}, DIM)) as writer:
        for n, vector in enumerate(vectors, first):
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "ok", 1, 1), vector)
    return Store.open(store.root)


def quantiser_of(store: Store) -> np.ndarray:
    folder, _ = current_folder(store)
    index = faiss.read_index(str(folder / CODES), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    ivf = faiss.extract_index_ivf(index)
    return ivf.quantizer.reconstruct_n(0, ivf.nlist)


def assert_equals_exact(store: Store, queries: np.ndarray, k: int = 10) -> None:
    exact_ids, exact_scores = exact_topk(queries, store.blocks(), k)
    opened = OnDiskIndex.open(store)
    ids, scores = opened.search(queries, k, nprobe=opened.nlist)
    assert np.array_equal(ids, exact_ids)
    assert np.array_equal(scores, exact_scores)  # re-ranked from the stored vectors: bit for bit


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Store, np.ndarray]:
    base = clustered(3000, random_centre(1), 2, spread=1.0)
    store = make_store(tmp_path / "store", base)
    build_index(store, full_probe(3000, DIM), part_rows=1000)
    return store, base


def test_new_commits_are_encoded_and_the_rest_kept_without_training(grown: tuple[Store, np.ndarray]) -> None:
    store, base = grown
    before = quantiser_of(store)
    more = clustered(500, random_centre(1), 3, spread=1.0)
    store = add(store, more, 3000)
    summary = update_index(store, part_rows=200)
    assert (summary.added, summary.kept, summary.dropped, summary.vectors) == (500, 3000, 0, 3500)
    assert summary.retrained is None and not summary.current and summary.drift is not None
    assert np.array_equal(quantiser_of(store), before)  # not trained again
    assert os.listdir(store.root / "index") == [summary.folder.name]  # no staging folder, part or old index
    info = json.loads((summary.folder / "index.json").read_text())
    assert info["generation"] == store.generation and info["updates"] == 1 and info["fit"]["added"] == 500
    assert_equals_exact(store, np.vstack([base[::301], more[::51]]) + 0.01)
    again = update_index(store)
    assert again.current and again.added == 0 and again.folder == summary.folder


def test_deleted_and_replaced_records_leave_the_index(grown: tuple[Store, np.ndarray]) -> None:
    store, base = grown
    replaced = clustered(5, random_centre(1), 4, spread=1.0)
    with StoreWriter.open(store.root, StoreIdentity("synthetic", {}, DIM)) as writer:
        for n in range(10):
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "deleted"))
        for n, vector in zip(range(10, 15), replaced):
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "ok", 2, 2), vector)
    store = Store.open(store.root)
    summary = update_index(store)
    assert (summary.added, summary.kept, summary.dropped, summary.vectors) == (5, 2985, 15, 2990)
    opened = OnDiskIndex.open(store)
    ids, _ = opened.search(base[:15], 1, nprobe=opened.nlist)
    names = opened.paths(ids[:, 0])
    assert not any(name in names for name in (f"/synthetic/{n:05d}.jpg" for n in range(10)))
    assert opened.paths(ids[10:15, 0]) != [f"/synthetic/{n:05d}.jpg" for n in range(10, 15)]  # old vectors gone
    ids, scores = opened.search(replaced, 1, nprobe=opened.nlist)
    assert opened.paths(ids[:, 0]) == [f"/synthetic/{n:05d}.jpg" for n in range(10, 15)]
    assert_equals_exact(store, np.vstack([base[::97], replaced]) + 0.01)


def test_drift_trains_anew_and_says_why_unless_told_not_to(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", clustered(3000, random_centre(1), 2, spread=0.2))
    build_index(store, full_probe(3000, DIM))
    before = quantiser_of(store)
    store = add(store, clustered(700, random_centre(9), 5, spread=1.0), 3000)  # another kind of photo
    kept = update_index(store, retrain=False)
    assert kept.retrained is None and kept.drift is not None and kept.drift > 1.5
    assert np.array_equal(quantiser_of(store), before)
    store = add(store, clustered(10, random_centre(9), 6, spread=1.0), 3700)
    retrained = update_index(store)
    assert retrained.retrained is not None and retrained.retrained.startswith("drift: ")
    assert "training sample" in retrained.retrained and retrained.vectors == 3710
    assert not np.array_equal(quantiser_of(store), before)
    assert_equals_exact(store, clustered(5, random_centre(9), 7))


def test_drift_retraining_keeps_the_parameters_chosen_by_hand(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", clustered(3000, random_centre(1), 2, spread=0.2))
    build_index(store, IndexParams(16, "sq8", 0, 2000, 3))
    store = add(store, clustered(700, random_centre(9), 5, spread=1.0), 3000)
    summary = update_index(store)
    assert summary.retrained is not None and summary.retrained.startswith("drift: ")
    _, info = current_folder(store)
    assert {k: info["params"][k] for k in ("nlist", "codes", "sample", "nprobe")} == \
        {"nlist": 16, "codes": "sq8", "sample": 2000, "nprobe": 3}


def test_growth_past_four_times_the_trained_size_trains_anew(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", clustered(400, random_centre(1), 2, spread=1.0))
    build_index(store, full_probe(400, DIM))
    store = add(store, clustered(1300, random_centre(1), 3, spread=1.0), 400)
    kept = update_index(store, retrain=False)  # grown, and the growth reported
    assert kept.retrained is None and kept.growth == pytest.approx(1700 / 400) and kept.added == 1300
    store = add(store, clustered(10, random_centre(1), 4, spread=1.0), 1700)
    summary = update_index(store)
    assert summary.retrained is not None and summary.retrained.startswith("growth: the store holds 1,710 vectors")
    assert summary.vectors == 1710
    _, info = current_folder(store)
    assert info["params"]["codes"] == "sq8" and info["fit"]["vectors"] == 1710  # the old code, trained anew


def test_codes_of_a_shard_whose_vectors_changed_are_never_carried_over(tmp_path: Path) -> None:
    """Another store put in the folder: same model, names, shard ids and rows, other vectors. Only the
    shards' sha256 in index.json tells the old codes from the new vectors."""
    first = make_store(tmp_path / "first", clustered(3000, random_centre(1), 2, spread=1.0))
    build_index(first, full_probe(3000, DIM))
    second = make_store(tmp_path / "second", clustered(3000, random_centre(1), 8, spread=1.0))
    second = add(second, clustered(10, random_centre(1), 9, spread=1.0), 3000)  # a newer generation than the index
    shutil.copytree(first.root / "index", second.root / "index")
    summary = update_index(second)
    assert summary.retrained is None and (summary.kept, summary.added) == (0, 3010)
    assert_equals_exact(second, clustered(10, random_centre(1), 10, spread=1.0))


def test_a_damaged_index_is_trained_anew_never_carried_over(grown: tuple[Store, np.ndarray]) -> None:
    store, base = grown
    folder, _ = current_folder(store)
    lists = folder / LISTS
    data = bytearray(lists.read_bytes())
    data[100:108] = b"\xff" * 8  # same size, other codes
    lists.write_bytes(bytes(data))
    store = add(store, clustered(50, random_centre(1), 3, spread=1.0), 3000)
    summary = update_index(store)
    assert summary.retrained is not None and LISTS in summary.retrained and "damaged" in summary.retrained
    assert summary.vectors == 3050 and summary.kept == 0
    assert_equals_exact(store, base[::301] + 0.01)


def test_cli_index_update(grown: tuple[Store, np.ndarray]) -> None:
    store, _ = grown
    add(store, clustered(20, random_centre(1), 3, spread=1.0), 3000)
    result = run_cli("index", "update", "--store", str(store.root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["kept"], report["vectors"], report["retrained"]) == (20, 3000, 3020, None)
    assert "index updated" in result.stderr
    info = run_cli("index", "info", "--store", str(store.root))
    assert info.returncode == 0 and "current" in info.stdout + info.stderr
    empty = run_cli("index", "update", "--store", str(store.root), "--drift-limit", "0")
    assert empty.returncode == 2 and "--drift-limit" in empty.stderr


@pytest.mark.parametrize("stage", ["part-0000.faiss", "lists.ivfdata", "index.faiss", "locations.npy", "paths.arrow",
                                   "index.json"])
def test_disk_full_during_an_update_is_one_line_and_keeps_the_old_index(
        grown: tuple[Store, np.ndarray], stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = grown
    old = sorted(os.listdir(store.root / "index"))
    store = add(store, clustered(30, random_centre(1), 3, spread=1.0), 3000)
    fill_disk_at(stage, monkeypatch)
    with pytest.raises(StoreError) as caught:
        update_index(store)
    assert str(caught.value).startswith("disk full") and "\n" not in str(caught.value)
    assert sorted(os.listdir(store.root / "index")) == old  # no staging folder; the old index untouched


def test_drift_is_measured_when_the_training_sample_fit_its_lists_exactly(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", np.repeat(random_centre(1)[None, :], 50, axis=0))  # 50 copies
    with pytest.warns(UserWarning, match="trained 1 centroid on only 1 vectors"):
        build_index(store, IndexParams(1, "sq8", 0, 1, 1))
    store = add(store, clustered(100, random_centre(2), 3, spread=1.0), 50)
    summary = update_index(store)
    assert summary.retrained is not None and summary.retrained.startswith("drift: ")
