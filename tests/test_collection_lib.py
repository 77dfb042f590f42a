"""The collection library (vggsim.collection): incremental embed, commits, search, dedup, StoreReader.

Each defect of issue 7 that lives in this layer has a test named after it; on main the
library does not exist and the CLI handlers had the defects (noted per test).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggsim import Embedder, StoreError, VggsimError
from vggsim.collection import (
    EmbedProgress,
    StoreReader,
    dedup_threshold,
    embed_into_store,
    find_duplicates,
    search_images,
    search_store,
)
from vggsim.collection import embed as embed_module
from vggsim.store import Record, Store, StoreIdentity, StoreWriter
from vggsim.errors import ImageError
from vggsim.ingest.pipeline import EmbedResult
from support import synthetic_store  # noqa: E402

pytest.importorskip("pyarrow")


def copies(photos: list[Path], folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(n):
        target = folder / f"{i:03d}{photos[i % len(photos)].suffix}"
        shutil.copy(photos[i % len(photos)], target)
        made.append(target)
    return made


@pytest.fixture(scope="module")
def unit_vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((20, 512)).astype(np.float32)


# -- embed: incremental rules, prune, commits, progress ------------------------------------------

def test_unchanged_files_are_skipped_and_changed_ones_embedded(embedder: Embedder, tmp_path: Path,
                                                               photos: list[Path]) -> None:
    files = copies(photos, tmp_path / "in", 3)
    first = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s")
    assert (first.seen, first.embedded, first.unchanged, first.exit_code) == (3, 3, 0, 0)
    shutil.copy(photos[3], files[0])
    second = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s")
    assert (second.embedded, second.unchanged, second.still_failing, second.exit_code) == (1, 2, 0, 0)
    assert second.random_weights and second.provider == embedder.provider
    assert json.loads(json.dumps(second.to_dict()))["exit_code"] == 0
    assert pickle.loads(pickle.dumps(second)) == second  # a Ray task can return it


def _record_error(root: Path, embedder: Embedder, path: Path, kind: str) -> None:
    stat = path.stat()
    with StoreWriter.open(root, StoreIdentity.of(embedder)) as writer:
        writer.add(Record(str(path), "error", stat.st_size, stat.st_mtime_ns, error_kind=kind, error=f"made up {kind}"))


@pytest.mark.parametrize("kind", ["changed", "timeout", "unreadable", "internal", "disk_full"])
def test_retryable_error_kinds_are_retried_though_unchanged(embedder: Embedder, tmp_path: Path, photos: list[Path],
                                                            kind: str) -> None:
    photo = copies(photos, tmp_path / "in", 1)[0]
    _record_error(tmp_path / "s", embedder, photo, kind)
    summary = embed_into_store(embedder, [photo], tmp_path / "s")
    assert (summary.embedded, summary.unchanged, summary.still_failing, summary.exit_code) == (1, 0, 0, 0)


def test_rerun_with_failing_files_says_how_many_and_exits_1(embedder: Embedder, tmp_path: Path,
                                                            photos: list[Path]) -> None:
    """Issue: a plain rerun after failures reported "0 failed" and exited 0."""
    good, bad = copies(photos, tmp_path / "in", 2)
    embed_into_store(embedder, [good], tmp_path / "s")
    _record_error(tmp_path / "s", embedder, bad, "truncated")  # lasting: the same bytes fail the same way
    rerun = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s")
    assert (rerun.unchanged, rerun.failed, rerun.still_failing, rerun.exit_code) == (2, 0, 1, 1)
    retried = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s", retry_errors=True)
    assert (retried.embedded, retried.still_failing, retried.exit_code) == (1, 0, 0)


def test_non_utf8_file_name_round_trips_and_is_skipped_next_run(embedder: Embedder, tmp_path: Path,
                                                               photos: list[Path]) -> None:
    """Issue: a file name that is not valid UTF-8 crashed the run at the final seal."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    shutil.copy(photos[0], odd)
    first = embed_into_store(embedder, [folder], tmp_path / "s")
    assert (first.embedded, first.exit_code) == (1, 0)
    assert os.fsencode(Store.open(tmp_path / "s").paths()[0]) == odd
    json.dumps(first.to_dict())  # surrogate-escaped paths still serialise
    second = embed_into_store(embedder, [folder], tmp_path / "s")
    assert (second.embedded, second.unchanged) == (0, 1)


def test_file_written_while_read_is_retried_next_run(embedder: Embedder, tmp_path: Path, photos: list[Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue: a file still being written was recorded with the FINISHED file's size and mtime
    (stat'ed again after the failure), so every rerun called it unchanged: never embedded."""
    photo = copies(photos, tmp_path / "in", 1)[0]

    def half_written(_embedder: Any, paths: Any, **_: Any) -> Any:
        for path in paths:  # what the pipeline saw when it read: half the bytes, an older mtime
            info = types.SimpleNamespace(size=photo.stat().st_size // 2, mtime_ns=1)
            yield EmbedResult(str(path), error=ImageError(str(path), "truncated", "image file is truncated"), info=info)

    with monkeypatch.context() as patch:
        patch.setattr(embed_module, "iter_embeddings", half_written)
        first = embed_into_store(embedder, [photo], tmp_path / "s")
    assert first.failures[0].kind == "truncated" and first.exit_code == 1
    record = Store.open(tmp_path / "s").records()[0]
    assert (record.size, record.mtime_ns) == (photo.stat().st_size // 2, 1)  # the stat taken at read time
    second = embed_into_store(embedder, [photo], tmp_path / "s")
    assert (second.embedded, second.unchanged, second.exit_code) == (1, 0, 0)


def test_memory_budget_is_passed_only_when_given(embedder: Embedder, tmp_path: Path, photos: list[Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def record_options(_embedder: Any, paths: Any, **options: Any) -> Any:
        calls.append(options)
        return iter(())

    monkeypatch.setattr(embed_module, "iter_embeddings", record_options)
    photo = copies(photos, tmp_path / "in", 1)[0]
    embed_into_store(embedder, [photo], tmp_path / "s")
    embed_into_store(embedder, [photo], tmp_path / "s", memory_budget=123_000_000, workers=3)
    assert "memory_budget" not in calls[0]  # None means the pipeline's own default
    assert (calls[1]["memory_budget"], calls[1]["workers"]) == (123_000_000, 3)


def test_error_without_a_stat_is_retried(embedder: Embedder, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    for _ in range(2):
        summary = embed_into_store(embedder, [missing], tmp_path / "s")
        assert (summary.failed, summary.unchanged, summary.failed_by_kind) == (1, 0, {"not_found": 1})


def test_prune_marks_missing_files_deleted(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    files = copies(photos, tmp_path / "in", 2)
    embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s")
    files[0].unlink()
    summary = embed_into_store(embedder, [], tmp_path / "s", prune=True)
    assert (summary.pruned, summary.seen) == (1, 0)
    assert Store.open(tmp_path / "s").paths() == [str(files[1])]


def test_commits_make_a_long_embed_searchable_as_it_goes(embedder: Embedder, tmp_path: Path,
                                                         photos: list[Path]) -> None:
    copies(photos, tmp_path / "in", 7)
    seen_mid_run: list[int] = []

    def look(progress: EmbedProgress) -> None:
        if progress.done == 5:  # the embedding thread waits while another thread opens the store
            reader = threading.Thread(target=lambda: seen_mid_run.append(Store.open(tmp_path / "s").count_ok()))
            reader.start()
            reader.join(60)

    summary = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s", commit_rows=2, batch_size=2, progress=look)
    assert seen_mid_run == [4]  # two commits of two rows; the fifth row is not committed yet
    assert Store.open(tmp_path / "s").count_ok() == 7 and summary.generation >= 4


def test_commit_seconds_commits_without_waiting_for_rows(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    copies(photos, tmp_path / "in", 3)
    generations: list[int] = []
    summary = embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s", commit_rows=1000, commit_seconds=1e-9,
                               progress=lambda p: generations.append(Store.open(tmp_path / "s").generation)
                               if p.done else None)
    assert len(set(generations)) == 3 and summary.embedded == 3


def test_progress_has_a_total_and_an_eta(embedder: Embedder, tmp_path: Path, photos: list[Path]) -> None:
    """Issue: the progress bar had no total and no ETA."""
    copies(photos, tmp_path / "in", 3)
    embed_into_store(embedder, [tmp_path / "in" / "000.jpg"], tmp_path / "s")
    events: list[EmbedProgress] = []
    embed_into_store(embedder, [tmp_path / "in"], tmp_path / "s", progress=events.append)
    assert {e.total for e in events} == {3}
    assert (events[0].done, events[0].unchanged, events[0].eta_s) == (1, 1, None)
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in events[1:])
    assert (events[-1].done, events[-1].embedded, events[-1].eta_s) == (3, 2, 0)


def test_bad_numbers_are_refused_before_the_store_is_touched(embedder: Embedder, tmp_path: Path) -> None:
    for bad in ({"batch_size": 0}, {"workers": -2}, {"commit_rows": 0}, {"commit_seconds": math.nan},
                {"decode_timeout": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            embed_into_store(embedder, [], tmp_path / "s", **bad)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


# -- search ------------------------------------------------------------------------------------------

def test_k_below_one_is_refused(embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray) -> None:
    """Issue: -k 0 and -k -1 were accepted (-1 gave N-1 results, exit 0)."""
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    for k in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            search_store(store, unit_vectors[:1], k=k)  # type: ignore[arg-type]


def test_huge_k_is_clamped_to_the_store_not_allocated(embedder: Embedder, tmp_path: Path,
                                                      unit_vectors: np.ndarray) -> None:
    """Issue: -k 10**11 tried to allocate 373 GiB."""
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    matches = search_store(store, unit_vectors[:2], k=10**11)
    assert [len(m) for m in matches] == [20, 20]
    assert matches[0][0].path == "/synthetic/0.jpg" and matches[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert [m.score for m in matches[1]] == sorted((m.score for m in matches[1]), reverse=True)


def test_search_of_an_empty_store_is_empty_also_with_ann(embedder: Embedder, tmp_path: Path) -> None:
    """Issue: --ann on an empty store crashed."""
    embed_into_store(embedder, [], tmp_path / "s")
    store = Store.open(tmp_path / "s")
    assert search_store(store, np.ones((2, 512), np.float32), k=5) == [[], []]
    assert search_store(store, np.ones((2, 512), np.float32), k=5, ann=True) == [[], []]


def test_query_of_the_wrong_dim_names_both_dims(embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray) -> None:
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    with pytest.raises(StoreError, match=r"\(1, 64\).*512-dimensional"):
        search_store(store, np.ones((1, 64), np.float32))


def test_ann_index_is_rebuilt_after_a_commit(embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray) -> None:
    pytest.importorskip("faiss")
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors[:10])
    assert search_store(store, unit_vectors[:1], k=1, ann=True)[0][0].path == "/synthetic/0.jpg"
    with StoreWriter.open(tmp_path / "s", StoreIdentity.of(embedder)) as writer:
        writer.add(Record("/synthetic/new.jpg", "ok", 1, 1), unit_vectors[15])
    store = Store.open(tmp_path / "s")
    assert search_store(store, unit_vectors[15:16], k=1, ann=True)[0][0].path == "/synthetic/new.jpg"
    cached = [p.name for p in (tmp_path / "s" / "ann").iterdir()]
    assert len(cached) == 1 and cached[0].startswith(f"g{store.generation}-")  # the stale index was replaced


@pytest.mark.parametrize("change", [{"exif_transpose": True}, {"resample": "nearest"}])
def test_search_by_images_refuses_a_store_made_with_other_preprocessing(
        model_dir: Path, embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray, photos: list[Path],
        change: dict[str, Any]) -> None:
    """Issue: search checked only the model sha256, so --exif-transpose (or a manifest saying
    exif_transpose / resample nearest) silently searched a store made without it."""
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    other = Embedder(model_dir, providers="cpu", spec=dataclasses.replace(embedder.spec, **change))
    with pytest.raises(StoreError, match="preprocess"):
        search_images(other, store, [photos[0]], k=3)
    assert len(search_images(embedder, store, [photos[0]], k=3)[0]) == 3


# -- duplicates --------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [1.5, math.nan, -1.0, 0.0, math.inf, True, 10**400])
def test_dedup_threshold_out_of_range_is_refused(embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray,
                                                 threshold: float) -> None:
    """Issue: thresholds 1.5, nan and -1 were accepted (-1 yields every pair: quadratic)."""
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    with pytest.raises(ValueError, match=r"threshold must be a finite cosine score in \(0, 1\]"):
        find_duplicates(store, threshold)


def test_duplicate_groups_score_members_against_the_first(embedder: Embedder, tmp_path: Path,
                                                          unit_vectors: np.ndarray) -> None:
    vectors = unit_vectors.copy()
    vectors[12] = vectors[3] * 2 + 0.001  # same direction: a near-duplicate
    groups = find_duplicates(synthetic_store(tmp_path / "s", embedder, vectors), 0.999)
    assert len(groups) == 1 and [m.id for m in groups[0].members] == [3, 12]
    assert groups[0].members[0].score == pytest.approx(1.0) and groups[0].members[1].score > 0.999


def test_dedup_with_a_model_that_did_not_make_the_store_is_refused(model_dir: Path, embedder: Embedder,
                                                                   tmp_path: Path, unit_vectors: np.ndarray) -> None:
    """Issue: `dedup --model` skipped the identity check."""
    store = synthetic_store(tmp_path / "s", embedder, unit_vectors)
    other = Embedder(model_dir, providers="cpu", spec=dataclasses.replace(embedder.spec, exif_transpose=True))
    with pytest.raises(StoreError):
        find_duplicates(store, 0.99, embedder=other)
    assert find_duplicates(store, 0.99, embedder=embedder) == []


def test_dedup_threshold_comes_from_the_manifest_or_says_to_pass_one(embedder: Embedder) -> None:
    assert 0 < dedup_threshold(embedder.manifest) <= 1
    bare = types.SimpleNamespace(path=Path("m/manifest.json"), data={})
    with pytest.raises(VggsimError, match="--threshold"):
        dedup_threshold(bare)
    with pytest.raises(VggsimError, match="--threshold"):
        dedup_threshold(types.SimpleNamespace(path="m", data={"dedup": {"threshold": float("nan")}}))


# -- StoreReader -------------------------------------------------------------------------------------

def test_store_reader_picks_up_a_new_commit(embedder: Embedder, tmp_path: Path, unit_vectors: np.ndarray) -> None:
    synthetic_store(tmp_path / "s", embedder, unit_vectors[:5])
    reader = StoreReader(tmp_path / "s")
    first = reader.search(unit_vectors[:1], k=100)
    assert reader.snapshot() is reader.snapshot()  # no reopen without a commit
    with StoreWriter.open(tmp_path / "s", StoreIdentity.of(embedder)) as writer:
        writer.add(Record("/synthetic/late.jpg", "ok", 1, 1), unit_vectors[9])
    second = reader.search(unit_vectors[9:10], k=100)
    assert second.generation > first.generation
    assert (len(first.matches[0]), len(second.matches[0])) == (5, 6)
    assert second.matches[0][0].path == "/synthetic/late.jpg"
    check = reader.duplicates_of(unit_vectors[9], 0.999)
    assert check.is_duplicate and check.matches[0].path == "/synthetic/late.jpg"
    assert check.generation == second.generation and not reader.duplicates_of(-unit_vectors[9], 0.5).is_duplicate
    assert search_store(reader, unit_vectors[9:10], k=1)[0][0].path == "/synthetic/late.jpg"
    assert find_duplicates(reader, 0.999) == []


def test_store_reader_is_thread_safe_while_a_writer_commits(embedder: Embedder, tmp_path: Path,
                                                            unit_vectors: np.ndarray) -> None:
    synthetic_store(tmp_path / "s", embedder, unit_vectors[:2])
    reader = StoreReader(tmp_path / "s")
    errors: list[BaseException] = []
    generations: dict[int, list[int]] = {n: [] for n in range(4)}
    stop = threading.Event()

    def search(n: int) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                result = reader.search(unit_vectors[:3], k=50, ann=n == 0 and _has_faiss())
                assert all(len(row) == len(result.matches[0]) for row in result.matches)
                generations[n].append(result.generation)
            except BaseException as exc:  # noqa: B036 - handed to the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=search, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n in range(2, 10):  # eight commits while the readers run
            with StoreWriter.open(tmp_path / "s", StoreIdentity.of(embedder)) as writer:
                writer.add(Record(f"/synthetic/w{n}.jpg", "ok", 1, 1), unit_vectors[n])
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
    assert not errors, errors[0]
    assert all(g == sorted(g) and g for g in generations.values())  # never goes back in time
    assert len({g for gs in generations.values() for g in gs}) > 1
    assert len(reader.search(unit_vectors[:1], k=50).matches[0]) == 10


def _has_faiss() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None
