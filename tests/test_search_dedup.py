"""Search and near-duplicates: blockwise results equal brute force, and the CLI end to end."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggsim import cosine_similarity
from vggsim.search.pairs import group_pairs, similar_pairs
from vggsim.search.exact import AnnIndex, exact_topk, recall_at_k
from vggsim.store import Block
from support import run_cli  # noqa: E402


def blocks_of(matrix: np.ndarray, rows: int) -> list[Block]:
    return [Block(np.arange(s, min(s + rows, len(matrix))), matrix[s:s + rows]) for s in range(0, len(matrix), rows)]


def test_exact_topk_equals_brute_force_across_blocks() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1000, 64)).astype(np.float32)
    queries = rng.standard_normal((300, 64)).astype(np.float32)  # more than one query chunk
    ids, scores = exact_topk(queries, blocks_of(data, 97), k=10)
    brute = cosine_similarity(queries, data)
    expected = np.argsort(-brute, axis=1)[:, :10]
    assert np.array_equal(ids, expected)
    assert np.allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-5)


def test_topk_pads_when_the_store_is_small() -> None:
    ids, scores = exact_topk(np.ones((1, 4)), blocks_of(np.eye(4, dtype=np.float32), 3), k=6)
    assert list(ids[0, 4:]) == [-1, -1] and np.all(np.isneginf(scores[0, 4:]))


def test_ann_recall_against_exact() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 128))
    data = (centres[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 128))).astype(np.float32)
    queries = data[rng.integers(0, 5000, 100)] + 0.05 * rng.standard_normal((100, 128)).astype(np.float32)
    exact, _ = exact_topk(queries, blocks_of(data, 1024), k=10)
    index = AnnIndex.build(blocks_of(data, 1024), 128)
    approx, _ = index.search(queries, 10)
    assert recall_at_k(exact, approx) >= 0.9


def test_similar_pairs_equal_brute_force_and_groups_are_connected() -> None:
    rng = np.random.default_rng(2)
    data = rng.standard_normal((230, 16)).astype(np.float32)
    data[100] = data[5] + 0.01
    data[200] = data[100] + 0.01
    data[7] = data[6] + 0.01  # a pair inside one block: counted once, never as (7, 6) or a self-pair
    blocks = blocks_of(data, 50)  # the last block (30 rows) is smaller than the score buffer the others leave
    found = sorted(similar_pairs(lambda: blocks, 0.95))
    brute = cosine_similarity(data)
    expected = sorted((i, j) for i, j in zip(*np.nonzero(np.triu(brute, k=1) >= 0.95)))
    pairs = [(i, j) for i, j, _ in found]
    assert pairs == expected and (6, 7) in pairs
    assert np.allclose([score for *_, score in found], [brute[i, j] for i, j in pairs], atol=1e-5)
    assert [5, 100, 200] in group_pairs((i, j, 1.0) for i, j in pairs)
    assert group_pairs([(1, 2, 1.0), (3, 4, 1.0), (2, 3, 1.0), (8, 9, 1.0)]) == [[1, 2, 3, 4], [8, 9]]


def test_similar_pairs_keeps_a_pair_scoring_exactly_the_threshold_in_float32() -> None:
    # float32(0.95) is just under 0.95: the hit mask compares in float32 and keeps the pair, so the
    # shortcut that skips a pair of blocks with no hit must compare the same way (it did not on NumPy 1.x).
    c = np.float32(0.95)
    s = np.sqrt(np.float32(1) - c * c)
    blocks = [Block(np.array([0]), np.array([[1, 0]], np.float32)), Block(np.array([1]), np.array([[c, s]], np.float32))]
    mask_keeps = bool((np.array([[1, 0]], np.float32) @ np.array([[c, s]], np.float32).T >= 0.95).all())
    assert [(i, j) for i, j, _ in similar_pairs(lambda: blocks, 0.95)] == ([(0, 1)] if mask_keeps else [])


@pytest.fixture(scope="module")
def photo_store(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("library")
    for photo in photos[:5]:
        shutil.copy(photo, root / photo.name)
    image = Image.open(photos[0]).convert("RGB")
    image.save(root / "copy_of_first.jpg", quality=95)
    result = run_cli("embed", str(root), "--store", str(root / ".store"), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    return root


def test_search_cli_finds_the_photo_and_its_copy(photo_store: Path, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    plot = tmp_path / "search.png"
    result = run_cli("search", str(photos[0]), "--store", str(photo_store / ".store"), "--model", str(model_dir),
                     "-k", "3", "--json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    matches = json.loads(result.stdout)["results"][0]["matches"]
    assert {Path(m["path"]).name for m in matches[:2]} == {photos[0].name, "copy_of_first.jpg"}
    assert matches[0]["score"] >= matches[1]["score"] >= matches[2]["score"]
    assert Image.open(plot).width > 4 * 256
    if __import__("importlib").util.find_spec("faiss"):
        approx = run_cli("search", str(photos[0]), "--store", str(photo_store / ".store"), "--model", str(model_dir),
                         "-k", "3", "--json", "--ann")
        assert json.loads(approx.stdout)["results"][0]["matches"][0]["path"] in {m["path"] for m in matches[:2]}


def test_dedup_cli_groups_the_copy(photo_store: Path, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    out_json, out_csv, plot = tmp_path / "d.json", tmp_path / "d.csv", tmp_path / "d.png"
    result = run_cli("dedup", "--store", str(photo_store / ".store"), "--threshold", "0.9995", "--out", str(out_json),
                     "--csv", str(out_csv), "--plot", str(plot), "--json")
    assert result.returncode == 0, result.stderr
    groups = json.loads(out_json.read_text())["groups"]
    assert json.loads(result.stdout)["groups"] == groups  # --json prints, --out writes the file
    assert {Path(g["path"]).name for g in groups} == {photos[0].name, "copy_of_first.jpg"}
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["group"] for r in rows] == ["1", "1"] and float(rows[0]["score"]) == 1.0
    default = run_cli("dedup", "--store", str(photo_store / ".store"), "--model", str(model_dir))
    assert default.returncode == 0 and "threshold" in default.stderr
