"""`vggsim serve --index`: /v1/search through the store's on-disk index, and the exact fallback when it is stale.

Real uvicorn processes on free loopback ports (the helpers of test_serve.py); a store of a few
images with a tiny index (one list, SQ8), so the index's answers must equal the CLI's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx", "pyarrow", "faiss"):
    pytest.importorskip(_module, reason=f"the service's index tests need the serve and ann extras ({_module} missing)")

import httpx  # noqa: E402

from support import Server, indexed_store, png_files, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return png_files(tmp_path_factory.mktemp("serve-index-images"), range(100, 106))


@pytest.fixture(scope="module")
def store(model_dir: Path, images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return indexed_store(tmp_path_factory.mktemp("serve-index-store") / "store", model_dir, images[:4])


@pytest.fixture(scope="module")
def server(model_dir: Path, store: Path) -> Iterator[Server]:
    s = Server(model_dir, "--store", str(store))  # --index auto is the default
    yield s
    s.stop()


def search(server: Server, query: Path, k: int) -> dict[str, Any]:
    response = httpx.post(server.url + "/v1/search", params={"k": k}, content=query.read_bytes(),
                          headers={"content-type": "image/png"}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def cli_search(model_dir: Path, store: Path, query: Path, k: int, *flags: str) -> list[tuple[str, float]]:
    result = run_cli("search", str(query), "--store", str(store), "--model", str(model_dir), "-k", str(k), "--json",
                     *flags)
    assert result.returncode == 0, result.stderr
    return [(m["path"], m["score"]) for m in json.loads(result.stdout)["results"][0]["matches"]]


def metric(server: Server, line_start: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rpartition(" ")[2])
    return 0.0


def test_search_uses_a_current_index_and_equals_the_cli(server: Server, model_dir: Path, store: Path,
                                                        images: list[Path]) -> None:
    found = search(server, images[2], 3)
    assert found["index"]["used"] is True and found["index"]["state"] == "current"
    assert found["index"]["mode"] == "auto" and found["index"]["vectors"] == 4
    pairs = [(m["path"], m["score"]) for m in found["matches"]]
    assert pairs == cli_search(model_dir, store, images[2], 3, "--index")
    assert pairs[0][0] == str(images[2])
    info = httpx.get(server.url + "/v1/info").json()["store"]
    assert info["index"]["state"] == "current" and info["vectors"] == 4
    assert metric(server, 'vggsim_search_seconds_count{method="index"}') >= 1


def test_duplicates_use_a_current_index_and_equal_an_exact_scan(server: Server, store: Path, images: list[Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the service, then in-process (StoreSearch, the code under the route) with batch limits small
    enough that the index's batches grow and then give way to an exact scan."""
    from vggsim.collection import StoreReader, duplicates_of
    from vggsim.collection import queries
    from vggsim.serve import searching

    query = images[1].read_bytes()
    vector = httpx.post(server.url + "/v1/embed", content=query, headers={"content-type": "image/png"},
                        timeout=60).json()["embeddings"][0]
    low = 1e-6  # every stored image (random-weight features are all >= 0, so cosines are > 0)
    found = httpx.post(server.url + "/v1/duplicates", json={"vector": vector, "threshold": low}, timeout=60).json()
    assert found["index"]["used"] is True and found["index"]["state"] == "current"
    reader = StoreReader(store)
    snapshot = reader.snapshot()
    exact = duplicates_of(snapshot, vector, low)
    assert len(exact) == 4 and [m["path"] for m in found["matches"]] == [m.path for m in exact]
    assert [m["score"] for m in found["matches"]] == pytest.approx([m.score for m in exact], abs=1e-6)
    assert found["is_duplicate"] is True and found["matches"][0]["path"] == str(images[1])
    assert metric(server, 'vggsim_search_seconds_count{method="index"}') >= 1

    search = searching.StoreSearch(reader)
    query_vector = np.asarray(vector, np.float32)
    monkeypatch.setattr(queries, "DUPLICATE_INDEX_FIRST", 1)  # the library's loop, which the service calls
    monkeypatch.setattr(queries, "DUPLICATE_RERANK", 1)
    grown, used = search.duplicates(snapshot, query_vector, low)  # batches of 1, then 4 = the whole store
    assert used.used is True and [m.path for m in grown] == [m.path for m in exact]
    monkeypatch.setattr(queries, "DUPLICATE_INDEX_LIMIT", 1)
    scanned, used = search.duplicates(snapshot, query_vector, low)
    assert used.used is False and used.state == "current" and "exact scan" in (used.message or "")
    assert [(m.path, m.score) for m in scanned] == [(m.path, m.score) for m in exact]
    monkeypatch.setattr(queries, "DUPLICATE_INDEX_LIMIT", 16)
    only, used = search.duplicates(snapshot, query_vector, 1.0 - 1e-6)  # just itself
    assert used.used is True and [m.path for m in only] == [str(images[1])]

def test_a_stale_index_falls_back_to_exact_search_and_says_so(server: Server, model_dir: Path, store: Path,
                                                              images: list[Path]) -> None:
    grown = run_cli("embed", *map(str, images), "--store", str(store), "--model", str(model_dir))
    assert grown.returncode == 0, grown.stderr
    found = search(server, images[5], 10)
    assert found["index"]["used"] is False and found["index"]["state"] == "stale"
    assert "vggsim index build" in found["index"]["message"] and "searching exactly" in found["index"]["message"]
    assert [(m["path"], m["score"]) for m in found["matches"]] == cli_search(model_dir, store, images[5], 10)
    assert found["matches"][0]["path"] == str(images[5]) and len(found["matches"]) == 6
    assert httpx.get(server.url + "/v1/info").json()["store"]["index"]["state"] == "stale"
    assert metric(server, 'vggsim_search_exact_fallbacks_total{state="stale"}') >= 1
    assert "vggsim index update" in found["index"]["message"]
    # the index grown with the new commits is picked up by the running service, without a restart
    updated = run_cli("index", "update", "--store", str(store), "--json")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["vectors"] == 6
    again = search(server, images[5], 10)
    assert again["index"]["used"] is True and again["index"]["vectors"] == 6
    assert [(m["path"], m["score"]) for m in again["matches"]] == cli_search(model_dir, store, images[5], 10, "--index")


def test_index_off_and_require(model_dir: Path, store: Path, images: list[Path], tmp_path: Path) -> None:
    off = Server(model_dir, "--store", str(store), "--index", "off")
    try:
        found = search(off, images[0], 2)
        assert found["index"] == {"mode": "off", "used": False, "state": "off"}
    finally:
        off.stop()
    bare = tmp_path / "bare"
    assert run_cli("embed", str(images[0]), "--store", str(bare), "--model", str(model_dir)).returncode == 0
    refused = subprocess.run([sys.executable, "-m", "vggsim", "serve", "--model", str(model_dir), "--store", str(bare),
                              "--index", "require", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "has no index" in refused.stderr and "vggsim index build" in refused.stderr

