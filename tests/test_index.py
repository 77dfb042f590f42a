"""The on-disk IVF index (vggsim.search.ivf, `vggsim index build`, `vggsim search --index`), on small stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggsim import StoreError
from vggsim.cli import main
from vggsim.collection import search_store
from vggsim.search.exact import exact_topk
from vggsim.store import Record, Store, StoreIdentity, StoreWriter

pytest.importorskip("pyarrow")
faiss = pytest.importorskip("faiss")

from vggsim.search.ivf import OnDiskIndex, build_index, choose  # noqa: E402
from vggsim.search.ivf.params import IndexParams  # noqa: E402
from support import full_probe, make_store  # noqa: E402

DIM = 64


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((3000, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path, vectors: np.ndarray) -> Store:
    return make_store(tmp_path / "store", vectors)



def test_parameters_follow_the_stated_rule() -> None:
    big = choose(1_000_000, 512)
    assert (big.factory, big.nprobe, big.sample) == ("IVF1024,PQ64", 16, 65_536)
    assert choose(10_000_000, 512).factory == "IVF4096,PQ64"
    assert choose(3000, 512).factory == "IVF64,SQ8"       # too few vectors to train PQ's 256 centroids
    assert choose(20, 512).nlist == 1
    with pytest.raises(Exception, match="must divide the dimension 512"):
        choose(100_000, 512, pq=7)


def test_build_writes_the_index_into_the_store_with_what_it_covers(store: Store) -> None:
    summary = build_index(store, part_rows=1000)  # several parts, merged into one lists file
    assert summary.folder.parent == store.root / "index" and summary.vectors == 3000
    info = json.loads((summary.folder / "index.json").read_text())
    assert info["generation"] == store.generation and info["identity"] == store.identity.to_dict()
    assert info["vectors"] == 3000 and info["params"]["factory"] == summary.params.factory
    assert sorted(os.listdir(summary.folder)) == ["index.faiss", "index.json", "lists.ivfdata", "locations.npy",
                                                  "paths.arrow"]
    assert os.listdir(store.root / "index") == [summary.folder.name]  # no staging folder or part left over


def test_search_with_reranking_equals_exact_search_on_an_easy_set(store: Store, vectors: np.ndarray) -> None:
    build_index(store, full_probe(store.count_ok(), DIM), part_rows=1000)
    queries = vectors[::97] + 0.05
    exact_ids, exact_scores = exact_topk(queries, store.blocks(), 10)
    ids, scores = OnDiskIndex.open(store).search(queries, 10)
    assert np.array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    matches = search_store(store, queries, 10, index=True)
    assert [m.id for m in matches[0]] == list(exact_ids[0])
    assert matches[0][0].path == store.paths()[exact_ids[0][0]]


def test_default_parameters_find_the_neighbours_of_stored_vectors(store: Store, vectors: np.ndarray) -> None:
    build_index(store)
    ids, _ = OnDiskIndex.open(store).search(vectors[:20], 1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.9


def test_index_built_before_a_new_commit_is_refused_naming_the_rebuild_command(store: Store,
                                                                               vectors: np.ndarray) -> None:
    build_index(store)
    with StoreWriter.open(store.root, store.identity) as writer:
        writer.add(Record("/synthetic/new.jpg", "ok", 1, 1), vectors[0] * 2)
    newer = Store.open(store.root)
    with pytest.raises(StoreError, match=r"generation .* changed since.*vggsim index build --store"):
        OnDiskIndex.open(newer)
    with pytest.raises(StoreError, match="vggsim index build"):
        search_store(newer, vectors[:1], 3, index=True)
    found = search_store(newer, vectors[:1], 3, index=True, rebuild_index=True)
    assert "/synthetic/new.jpg" in [m.path for m in found[0]]
    OnDiskIndex.open(newer)  # the rebuilt index is current


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scramble(path: Path) -> None:
    path.write_bytes(bytes(len(path.read_bytes())))


@pytest.mark.parametrize("damage", [
    pytest.param(lambda f: _cut(f / "lists.ivfdata"), id="lists-cut"),
    pytest.param(lambda f: _scramble(f / "index.faiss"), id="codes-zeroed"),
    pytest.param(lambda f: (f / "index.json").write_text("{garbled"), id="info-garbled"),
    pytest.param(lambda f: (f / "index.json").unlink(), id="info-missing"),
    pytest.param(lambda f: (f / "lists.ivfdata").unlink(), id="lists-missing"),
    pytest.param(lambda f: _scramble(f / "paths.arrow"), id="paths-zeroed"),
    pytest.param(lambda f: _scramble(f / "locations.npy"), id="locations-zeroed"),
])
def test_damaged_index_files_are_a_one_line_store_error(store: Store, damage: Any) -> None:
    folder = build_index(store).folder
    damage(folder)
    with pytest.raises(StoreError) as caught:
        OnDiskIndex.open(store)
    message = str(caught.value)
    assert "\n" not in message and "damaged" in message and "vggsim index build --store" in message


def test_store_without_an_index_says_how_to_build_one(store: Store) -> None:
    with pytest.raises(StoreError, match="has no index; build it with `vggsim index build --store"):
        OnDiskIndex.open(store)


# -- the command line ----------------------------------------------------------------------------

def test_cli_index_build_and_search_index(embedder: Any, model_dir: Path, photos: list[Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    root = tmp_path / "store"
    make_store(root, rng.standard_normal((400, embedder.dim)).astype(np.float32), StoreIdentity.of(embedder))
    model = ["--model", str(model_dir)]
    assert main(["search", str(photos[0]), "--store", str(root), "--index", *model]) == 1
    assert "has no index; build it with `vggsim index build" in capsys.readouterr().err
    assert main(["index", "build", "--store", str(root), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout (faiss's own lines kept off)
    assert built["vectors"] == 400 and built["factory"] == "IVF10,SQ8"
    assert main(["search", str(photos[0]), "--store", str(root), "--index", "-k", "5", "--json", *model]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["index"] is True and len(result["results"][0]["matches"]) == 5
    with StoreWriter.open(root, StoreIdentity.of(embedder)) as writer:
        writer.add(Record("/synthetic/late.jpg", "ok", 1, 1), np.ones(embedder.dim, np.float32))
    assert main(["search", str(photos[0]), "--store", str(root), "--index", *model]) == 1
    err = capsys.readouterr().err
    assert "changed since" in err and f"vggsim index build --store {root}" in err and len(err.splitlines()) == 1
    assert main(["search", str(photos[0]), "--store", str(root), "--index", "--rebuild", *model]) == 0
    rebuilt = capsys.readouterr()
    assert "rebuilding the index" in rebuilt.err and "late.jpg" in rebuilt.out
    assert main(["index", "info", "--store", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vectors"] == 401


def test_cli_index_info_speaks_text_by_default_and_json_with_the_flag(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    build_index(make_store(root, np.random.default_rng(1).standard_normal((300, DIM)).astype(np.float32)))
    capsys.readouterr()
    assert main(["index", "info", "--store", str(root)]) == 0
    text = capsys.readouterr().out
    assert "current" in text and "300 vectors" in text and "IVF" in text and not text.lstrip().startswith("{")
    assert main(["index", "info", "--store", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["current"] is True and info["vectors"] == 300 and info["store"] == str(root)


def test_cli_index_build_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "build", "--store", str(tmp_path / "none")]) == 1
    assert "not a vggsim store" in capsys.readouterr().err
    root = tmp_path / "store"
    make_store(root, np.ones((50, DIM), np.float32))
    assert main(["index", "build", "--store", str(root), "--pq", "7"]) == 2
    assert "must divide the dimension 64" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "build", "--store", str(root), "--pq", "8", "--sq8"])
    assert main(["search", "q.jpg", "--store", str(root), "--ann", "--index"]) == 2


@pytest.fixture
def no_faiss(tmp_path: Path) -> dict[str, str]:
    shadow = tmp_path / "shadow" / "faiss"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named faiss (shadowed by the test)')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}


@pytest.mark.parametrize("command", [["index", "build", "--store", "s"], ["search", "q.jpg", "--store", "s", "--index"]])
def test_without_faiss_the_pip_hint_and_exit_2(command: list[str], no_faiss: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vggsim", *command], capture_output=True, text=True, env=no_faiss,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    from vggsim.errors import pip_command

    assert pip_command("ann") in result.stderr


def test_import_vggsim_does_not_import_faiss() -> None:
    code = "import sys, vggsim, vggsim.search.ivf, vggsim.cli; assert 'faiss' not in sys.modules, 'faiss imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_search_through_the_index_never_builds_the_store_tables(store: Store, vectors: np.ndarray) -> None:
    build_index(store)
    fresh = Store.open(store.root)  # a searcher's snapshot: no table read yet
    found = search_store(fresh, vectors[:2], 3, index=True)
    assert found[0][0].path == "/synthetic/00000.jpg" and found[0][0].id == 0
    assert fresh._history is None and fresh._current is None  # ~0.5 GB at 1M files: the index replaces them


# -- the store's streaming read API (what the build reads instead of the current view's tables) ----------

@pytest.fixture
def churned(tmp_path: Path) -> Store:
    """Several shards with re-embedded names, errors and deletions: the current view differs from the history."""
    rng = np.random.default_rng(11)
    with StoreWriter.open(tmp_path / "churned", StoreIdentity("synthetic", {}, 8)) as writer:
        for n in range(600):
            status = str(rng.choice(["ok", "ok", "ok", "error", "deleted"]))
            vector = rng.standard_normal(8).astype(np.float32) if status == "ok" else None
            writer.add(Record(f"/p/{int(rng.integers(0, 250)):03d}.jpg", status), vector)
            if n % 53 == 52:
                writer.commit()
    return Store.open(tmp_path / "churned")


def test_vector_blocks_cover_every_current_vector_once_in_bounded_blocks(churned: Store) -> None:
    ok, _, _ = churned._layout()
    blocks = list(churned.iter_vector_blocks(7))
    ids = np.concatenate([b.ids for b in blocks])
    assert sorted(ids.tolist()) == np.flatnonzero(ok).tolist()  # each id with a vector, exactly once
    assert max(len(b.ids) for b in blocks) <= 7 and all(b.vectors.shape == (len(b.ids), 8) for b in blocks)
    for block in blocks:
        assert block.vectors.dtype == np.float32 and block.vectors.flags.c_contiguous
        assert np.array_equal(block.vectors, churned.vectors(block.ids))
    view = churned.current_view()
    assert (view.records, view.vectors) == (len(churned.records()), churned.count_ok())
    assert len(churned.history()) > view.records  # the fixture really has superseded records


def test_record_blocks_and_sample_match_the_current_view(churned: Store) -> None:
    fresh = Store.open(churned.root)
    pieces = list(fresh.iter_record_blocks(["path_bytes", "status"]))
    assert fresh._history is None and fresh._current is None and fresh._arrays is None  # no tables built
    ids = np.concatenate([i for i, _ in pieces])
    assert ids.tolist() == list(range(len(ids)))
    names = [name for _, table in pieces for name in table.column("path_bytes").to_pylist()]
    assert names == fresh.table().column("path_bytes").to_pylist()
    sample = fresh.sample_vectors(40, seed=2)
    assert len(np.unique(sample.ids)) == 40 and np.array_equal(sample.vectors, fresh.vectors(sample.ids))
    assert len(fresh.sample_vectors(10**6).ids) == fresh.count_ok()
    with pytest.raises(ValueError, match="unknown meta columns"):
        next(fresh.iter_record_blocks(["nope"]))


def test_streaming_reads_one_snapshot_while_a_writer_commits(churned: Store) -> None:
    before = [(b.ids.copy(), b.vectors.copy()) for b in churned.iter_vector_blocks(50)]
    with StoreWriter.open(churned.root, churned.identity) as writer:
        writer.add(Record("/p/000.jpg", "deleted"))
        writer.add(Record("/p/new.jpg", "ok"), np.ones(8, np.float32))
    again = [(b.ids, b.vectors) for b in churned.iter_vector_blocks(50)]  # the old snapshot, unchanged
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(before, again))
    newer = Store.open(churned.root)
    assert (newer.current_view().records, newer.current_view().vectors) == (len(newer.records()), newer.count_ok())
    names = [n for _, t in newer.iter_record_blocks(["path_bytes"]) for n in t.column("path_bytes").to_pylist()]
    assert b"/p/new.jpg" in names and b"/p/000.jpg" not in names


def test_build_never_builds_the_store_tables_and_search_equals_exact(churned: Store) -> None:
    fresh = Store.open(churned.root)
    build_index(fresh, IndexParams(4, "sq8", 0, 60, 4), part_rows=50)
    assert fresh._history is None and fresh._current is None and fresh._arrays is None
    queries = fresh.vectors(np.flatnonzero(fresh._layout()[0])[:9]) + 0.01
    exact_ids, exact_scores = exact_topk(queries, fresh.blocks(), 5)
    index = OnDiskIndex.open(fresh)
    ids, scores = index.search(queries, 5)
    assert np.array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert index.paths(ids[0]) == [fresh.paths()[i] for i in exact_ids[0]]
    assert np.array_equal(index.stored(ids[:, 0][::-1]), fresh.vectors(ids[:, 0][::-1]))  # any order, any shard
    index.close()


def test_float16_store_is_reranked_from_its_float16_rows(tmp_path: Path, vectors: np.ndarray) -> None:
    store = make_store(tmp_path / "half", vectors[:500], StoreIdentity("synthetic", {}, DIM, "float16"), 120)
    build_index(store, full_probe(500, DIM))
    queries = vectors[:5] + 0.05
    exact_ids, exact_scores = exact_topk(queries, store.blocks(), 3)
    ids, scores = OnDiskIndex.open(store).search(queries, 3)
    assert np.array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_index_build_on_a_small_store_says_faiss_clustering_warning_once_in_vggsim_words(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    make_store(root, np.random.default_rng(2).standard_normal((100, DIM)).astype(np.float32))
    capfd.readouterr()
    assert main(["index", "build", "--store", str(root), "--nlist", "8", "--json"]) == 0  # 8 lists want 312 vectors
    captured = capfd.readouterr()
    assert json.loads(captured.out)["vectors"] == 100
    assert "WARNING clustering" not in captured.err, captured.err  # faiss's own line, from C
    assert captured.err.count("vggsim: warning: the index trained 8 centroids on only 100 vectors") == 1, captured.err
    assert "a smaller --nlist" in captured.err and "--sample" not in captured.err  # it trained on all 100 already


def test_the_small_store_warning_offers_only_remedies_that_apply(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    # a store of 15 vectors gets IVF1,SQ8 trained on all 15: a larger sample, fewer lists or SQ8 cannot help
    root = tmp_path / "store"
    make_store(root, np.random.default_rng(3).standard_normal((15, DIM)).astype(np.float32))
    capfd.readouterr()
    assert main(["index", "build", "--store", str(root), "--json"]) == 0
    err = capfd.readouterr().err
    assert "the index trained 1 centroid on only 15 vectors" in err, err  # faiss asks 39 points a centroid
    assert "--sample" not in err and "--nlist" not in err and "--sq8" not in err, err
    assert "search a store this small exactly" in err
