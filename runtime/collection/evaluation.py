"""Accuracy against ground truth: the metrics imagededup reports, for near-duplicates and for search.

Ground truth is imagededup's map: each file name (a path relative to a root folder) to the list
of its true duplicates, symmetric, every name a key. The store's files under that root are the
candidates; what vggsim retrieves for each is turned into the same kind of map, and both are
scored as :mod:`imagededup.evaluation` scores them (``tests/test_evaluation.py`` checks that the
figures are its figures):

- per query, ordered by score: average precision (mean: ``map``), ``ndcg`` and ``jaccard``;
- over all unordered pairs of files: precision, recall, F1 and support of class 0 (not
  duplicates) and class 1 (duplicates).

Near-duplicates (``retrieved_duplicates``): each file's direct matches at cosine >= threshold,
byte-identical copies first (as ``find_duplicates`` finds them, before any cosine). Search
(``retrieved_neighbours``): each file's k nearest other files. NumPy only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vggsim import validate
from vggsim.errors import ArgumentError, VggsimError
from vggsim.similarity import l2_normalize
from vggsim.store import Store

Truth = dict[str, list[str]]


def load_truth(path: str | os.PathLike[str]) -> Truth:
    """A ground-truth map from a JSON file, checked (ArgumentError naming the file and the fault)."""
    try:
        data = json.loads(Path(path).read_text())
    except RecursionError:
        raise ArgumentError(f"{path}: cannot read the ground truth (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise ArgumentError(f"{path}: cannot read the ground truth ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, list) and
                                             all(isinstance(x, str) for x in v) for k, v in data.items()):
        raise ArgumentError(f"{path}: the ground truth must be a JSON object of file name -> list of file names")
    if not data:
        raise ArgumentError(f"{path}: the ground truth names no files")
    check_map(data, f"{path}")
    return data


def check_map(mapping: Truth, what: str) -> None:
    """Every name listed is a key, once, not itself, and every pair is listed both ways (as imagededup requires)."""
    as_sets = {key: set(values) for key, values in mapping.items()}
    for key, values in mapping.items():
        if len(as_sets[key]) != len(values) or key in as_sets[key]:
            raise ArgumentError(f"{what}: {key!r} lists a name twice, or itself")
        for value in values:
            if value not in mapping:
                raise ArgumentError(f"{what}: {value!r} (a duplicate of {key!r}) is not one of its keys")
            if key not in as_sets[value]:
                raise ArgumentError(f"{what}: {key!r} lists {value!r}, but {value!r} does not list {key!r}")


def _average_precision(correct: set[str], retrieved: list[str]) -> float:
    if not retrieved and not correct:
        return 1.0
    if not retrieved or not correct:
        return 0.0
    relevance = np.array([name in correct for name in retrieved], dtype=np.float64)
    precision_at = np.cumsum(relevance) / np.arange(1, len(relevance) + 1)
    return float(np.sum(relevance * precision_at) / len(correct))


def _ndcg(correct: set[str], retrieved: list[str]) -> float:
    if not retrieved and not correct:
        return 1.0
    if not retrieved or not correct:
        return 0.0
    relevance = np.array([name in correct for name in retrieved], dtype=np.float64)
    discounts = np.log2(np.arange(len(relevance)) + 2)
    dcg = float(np.sum((2 ** relevance - 1) / discounts))
    if dcg == 0:
        return 0.0
    return dcg / float(np.sum((2 ** np.sort(relevance)[::-1] - 1) / discounts))


def _jaccard(correct: set[str], retrieved: list[str]) -> float:
    if not retrieved and not correct:
        return 1.0
    if not retrieved or not correct:
        return 0.0
    found = set(retrieved)
    return len(found & correct) / len(found | correct)


def retrieval_metrics(truth: Truth, retrieved: Truth) -> dict[str, float]:
    """Mean average precision, NDCG and Jaccard over the queries (the keys of ``truth``)."""
    _same_keys(truth, retrieved)
    per = {"map": _average_precision, "ndcg": _ndcg, "jaccard": _jaccard}
    return {name: float(np.mean([f(set(truth[k]), retrieved[k]) for k in truth])) for name, f in per.items()}


def pair_metrics(truth: Truth, retrieved: Truth) -> dict[str, list[float]]:
    """Precision, recall, F1 and support of class 0 (pairs not duplicates) and class 1 (duplicates),
    over every unordered pair of files; a ratio with nothing to divide is 0 (as scikit-learn's)."""
    _same_keys(truth, retrieved)
    positives = {tuple(sorted((k, v))) for k, vs in truth.items() for v in vs if k != v}
    found = {tuple(sorted((k, v))) for k, vs in retrieved.items() for v in vs if k != v}
    n = len(truth)
    total = n * (n - 1) // 2
    tp = len(positives & found)
    fp, fn = len(found) - tp, len(positives) - tp
    tn = total - tp - fp - fn

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    precision = [ratio(tn, tn + fn), ratio(tp, tp + fp)]
    recall = [ratio(tn, tn + fp), ratio(tp, tp + fn)]
    f1 = [0.0 if p + r == 0 else 2 * p * r / (p + r) for p, r in zip(precision, recall)]
    return {"precision": precision, "recall": recall, "f1_score": f1, "support": [tn + fp, tp + fn]}


def _same_keys(truth: Truth, retrieved: Truth) -> None:
    if set(truth) != set(retrieved):
        missing = sorted(set(truth) ^ set(retrieved))
        raise ArgumentError(f"the ground truth and the retrieved map name different files: {missing[:3]} "
                            f"({len(missing)} in all)")


def candidates(store: Store, truth: Truth, root: str | os.PathLike[str]) -> tuple[list[int], list[str]]:
    """The ids and names (relative to ``root``) of the store's embedded files that ``truth`` names;
    VggsimError naming the truth's files the store lacks."""
    base = os.path.abspath(os.fspath(root))
    by_name = {os.path.relpath(r.path, base): i for i, r in enumerate(store.records())
               if r.status == "ok" and os.path.abspath(r.path).startswith(os.path.join(base, ""))}
    missing = sorted(set(truth) - set(by_name))
    if missing:
        raise VggsimError(f"{len(missing)} file(s) of the ground truth are not embedded in {store.root} under "
                            f"{base}, such as {missing[0]!r}: embed them first (vggsim embed {base} --store ...)")
    names = sorted(truth)
    return [by_name[name] for name in names], names


def _scores(store: Store, ids: list[int]) -> np.ndarray:
    vectors = l2_normalize(store.vectors(ids), np.float32)
    return np.asarray(vectors @ vectors.T, np.float64)


def retrieved_duplicates(store: Store, ids: list[int], names: list[str], threshold: float) -> Truth:
    """Each file's direct matches at cosine >= ``threshold``, best first; byte-identical copies first."""
    threshold = validate.threshold(threshold)
    scores = _scores(store, ids)
    records = store.records()
    digests = [records[i].sha256 for i in ids]
    out: Truth = {}
    for a, name in enumerate(names):
        keyed = [(-(2.0 if digests[a] and digests[b] == digests[a] else scores[a, b]), names[b])
                 for b in range(len(names)) if b != a and
                 ((digests[a] and digests[b] == digests[a]) or scores[a, b] >= threshold)]
        out[name] = [n for _, n in sorted(keyed)]
    return out


def retrieved_neighbours(store: Store, ids: list[int], names: list[str], k: int) -> Truth:
    """Each file's ``k`` nearest other files by cosine, best first (ties by name)."""
    k = validate.positive_int("k", k)
    scores = _scores(store, ids)
    out: Truth = {}
    for a, name in enumerate(names):
        order = sorted((-scores[a, b], names[b]) for b in range(len(names)) if b != a)
        out[name] = [n for _, n in order[:k]]
    return out


def evaluate_store(store: Store, truth: Truth, root: str | os.PathLike[str], threshold: float,
                   k: int = 10) -> dict[str, Any]:
    """Near-duplicate and search metrics of ``store``'s files against ``truth`` (see the module docstring)."""
    check_map(truth, "the ground truth")
    ids, names = candidates(store, truth, root)
    duplicates = retrieved_duplicates(store, ids, names, threshold)
    neighbours = retrieved_neighbours(store, ids, names, k)
    return {"files": len(names), "duplicate_pairs": sum(map(len, truth.values())) // 2,
            "dedup": {"threshold": threshold, **retrieval_metrics(truth, duplicates),
                      **pair_metrics(truth, duplicates), "per_edit": edit_recall(truth, duplicates)},
            "search": {"k": k, **retrieval_metrics(truth, neighbours), "per_edit": edit_recall(truth, neighbours)}}


def edit_recall(truth: Truth, retrieved: Truth) -> dict[str, float]:
    """For files named ``ORIGINAL__EDIT.ext`` (vggsim's evaluation set): per edit, the share of
    (original, edited copy) pairs in the truth that were retrieved from the original."""
    found: dict[str, list[bool]] = {}
    for name, duplicates in truth.items():
        stem, _, edit = Path(name).stem.partition("__")
        if not edit:
            continue
        originals = [d for d in duplicates if Path(d).stem == stem]
        for original in originals:
            found.setdefault(edit, []).append(name in retrieved.get(original, []))
    return {edit: sum(hits) / len(hits) for edit, hits in sorted(found.items())}
