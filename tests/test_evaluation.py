"""`vggsim eval`: accuracy against ground truth, in the figures imagededup reports.

The metrics are cross-checked against imagededup's own evaluation code on the same maps. imagededup
is installed without its dependencies (torch and torchvision, for its CNN methods, which its
evaluation never uses); its ``utils`` package imports torch on import, so the test loads the
package with ``imagededup.utils`` as a plain namespace: the metric code that runs is imagededup's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from vggsim import Embedder  # noqa: E402
from vggsim.errors import ArgumentError  # noqa: E402
from vggsim.collection import embed_into_store, dedup_threshold  # noqa: E402
from vggsim.collection.evaluation import (  # noqa: E402
    candidates, check_map, evaluate_store, load_truth, pair_metrics, retrieval_metrics, retrieved_duplicates,
    retrieved_neighbours)
from vggsim.store import Store  # noqa: E402
from vggsim.tools.evalset import EDITS, make_evaluation_set  # noqa: E402
from support import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def imagededup_evaluate() -> Iterator[Callable[..., dict[str, Any]]]:
    spec = importlib.util.find_spec("imagededup")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs imagededup (scripts/test.sh installs it with --no-deps)")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {k: v for k, v in sys.modules.items() if k.startswith("imagededup")}
    utils = types.ModuleType("imagededup.utils")
    utils.__path__ = [str(root / "utils")]
    sys.modules["imagededup.utils"] = utils
    try:
        from imagededup.evaluation import evaluate

        yield evaluate
    finally:
        for key in [k for k in sys.modules if k.startswith("imagededup")]:
            del sys.modules[key]
        sys.modules.update(saved)


def assert_same_figures(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for name in ("map", "ndcg", "jaccard"):
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-12), name
    for name in ("precision", "recall", "f1_score", "support"):
        assert np.allclose(ours[name], np.asarray(theirs[name], np.float64), atol=1e-12, rtol=0), name


HAND = {  # truth, and a retrieval with every case: found, wrong order, missed, spurious, empty
    "truth": {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"], "d": ["e"], "e": ["d"], "f": [], "g": []},
    # symmetric, as imagededup's checks require of a retrieved map
    "retrieved": {"a": ["d", "b", "c"], "b": ["a", "d", "c"], "c": ["b", "a"], "d": ["a", "b"], "e": [], "f": [],
                  "g": []},
}


def test_the_metrics_are_imagededups_on_a_map_with_every_case(imagededup_evaluate: Callable[..., Any]) -> None:
    truth, retrieved = HAND["truth"], HAND["retrieved"]
    ours = {**retrieval_metrics(truth, retrieved), **pair_metrics(truth, retrieved)}
    assert_same_figures(ours, imagededup_evaluate(truth, retrieved))


def test_hand_computed_figures() -> None:
    truth = {"a": ["b"], "b": ["a"], "c": []}
    retrieved = {"a": ["c", "b"], "b": ["a"], "c": ["a"]}
    figures = retrieval_metrics(truth, retrieved)
    assert figures["map"] == pytest.approx((0.5 + 1 + 0) / 3)  # a: b found second; c: nothing was right
    assert figures["jaccard"] == pytest.approx((0.5 + 1 + 0) / 3)
    pairs = pair_metrics(truth, retrieved)  # pairs ab (true, found), ac (false, found), bc (false, not)
    assert pairs["precision"] == [1.0, 0.5] and pairs["recall"] == [0.5, 1.0] and pairs["support"] == [2, 1]


def test_an_asymmetric_truth_is_refused_by_name() -> None:
    with pytest.raises(ArgumentError, match="'a' lists 'b', but 'b' does not list 'a'"):
        check_map({"a": ["b"], "b": []}, "truth.json")


@pytest.fixture(scope="module")
def evaluation_store(embedder: Embedder, photos: list[Path],
                     tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evalset")
    truth = make_evaluation_set(photos[:3], folder / "set")
    summary = embed_into_store(embedder, [folder / "set"], folder / "store")
    assert summary.embedded == 3 * (1 + len(EDITS)) and summary.exit_code == 0
    return folder / "store", truth


def test_a_real_run_scores_as_imagededup_scores_it(evaluation_store: tuple[Path, Path], embedder: Embedder,
                                                    imagededup_evaluate: Callable[..., Any]) -> None:
    root, truth_path = evaluation_store
    truth = json.loads(truth_path.read_text())
    store = Store.open(root)
    ids, names = candidates(store, truth, truth_path.parent)
    threshold = dedup_threshold(embedder.manifest)
    for retrieved in (retrieved_duplicates(store, ids, names, threshold), retrieved_neighbours(store, ids, names, 5)):
        theirs = imagededup_evaluate(truth, {k: list(v) for k, v in retrieved.items()}) if all(
            k in retrieved[v] for k, vs in retrieved.items() for v in vs) else None
        ours = {**retrieval_metrics(truth, retrieved), **pair_metrics(truth, retrieved)}
        if theirs is not None:  # top-k lists are not symmetric, which imagededup's checks refuse
            assert_same_figures(ours, theirs)
        else:
            from imagededup.handlers.metrics.information_retrieval import get_all_metrics
            for name, value in get_all_metrics(truth, retrieved).items():
                assert ours[name] == pytest.approx(float(value), abs=1e-12), name


def test_the_report_finds_a_metadata_only_copy_whatever_the_weights(evaluation_store: tuple[Path, Path],
                                                                     embedder: Embedder) -> None:
    root, truth_path = evaluation_store
    report = evaluate_store(Store.open(root), json.loads(truth_path.read_text()), truth_path.parent,
                            dedup_threshold(embedder.manifest), k=5)
    assert report["files"] == 24 and report["duplicate_pairs"] == 3 * 28
    assert report["dedup"]["per_edit"]["exif"] == 1.0  # the same pixels: the same vector, even with random weights
    for section in ("dedup", "search"):
        assert all(0.0 <= report[section][m] <= 1.0 for m in ("map", "ndcg", "jaccard"))


def test_the_cli_makes_a_set_and_scores_a_store(evaluation_store: tuple[Path, Path], model_dir: Path,
                                                 tmp_path: Path) -> None:
    made = run_cli("eval", "--make-set", str(tmp_path / "set"))
    assert made.returncode == 0 and (tmp_path / "set" / "truth.json").is_file(), made.stderr
    root, truth_path = evaluation_store
    scored = run_cli("eval", "--store", str(root), "--truth", str(truth_path), "--model", str(model_dir), "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["random_weights"] is True and set(report["dedup"]["per_edit"]) == set(EDITS)
    missing = run_cli("eval", "--store", str(root), "--truth", str(tmp_path / "set" / "truth.json"),
                      "--model", str(model_dir))
    assert missing.returncode == 1 and "not embedded" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("text, message", [
    ("{}", "names no files"),
    ('{"a": ["a"]}', "twice, or itself"),
    ('{"a": ["c", "c"], "c": ["a"]}', "twice, or itself"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_truth_files_that_would_skew_or_crash_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "truth.json"
    path.write_text(text)
    with pytest.raises(ArgumentError, match=message):
        load_truth(path)
