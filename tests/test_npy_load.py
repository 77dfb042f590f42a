"""Shard loads survive CPython gh-106905: concurrent ``np.load`` header parses (``ast``) in several threads
can raise SystemError on Python < 3.12, and the service's searches reported an intact store as damaged."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggsim import Embedder
from vggsim.collection import StoreReader

pytest.importorskip("pyarrow")

from support import synthetic_store  # noqa: E402  (a store of made-up vectors, no model run)


def _store(root: Path, embedder: Embedder, rows: int = 6) -> Path:
    synthetic_store(root, embedder, np.random.default_rng(0).standard_normal((rows, embedder.dim)).astype(np.float32))
    return root


def test_a_systemerror_from_the_header_parser_is_not_damage(embedder: Embedder, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path / "store", embedder)
    real = np.lib.format.read_array_header_1_0  # what every read of a shard's header parses with
    failures = {"left": 1}

    def flaky(*args: Any, **kwargs: Any) -> Any:  # what gh-106905 does to the first of two concurrent parses
        if failures["left"]:
            failures["left"] -= 1
            raise SystemError("AST constructor recursion depth mismatch (before=45, after=48)")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", flaky)
    found = StoreReader(root).search(np.ones((1, embedder.dim), np.float32), 3, False).matches[0]
    assert len(found) == 3 and failures["left"] == 0


def test_concurrent_searches_of_a_sound_store_never_report_damage(embedder: Embedder, tmp_path: Path) -> None:
    root = _store(tmp_path / "store", embedder, rows=40)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(30):  # a fresh reader each time: every search maps (and parses) the shard again
                StoreReader(root).search(np.ones((1, embedder.dim), np.float32), 5, False)
        except BaseException as exc:  # noqa: BLE001 - any failure counts
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
