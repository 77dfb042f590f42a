"""A running service trusts no byte the store would refuse: damage and truncation after it started.

Real uvicorn processes (support.Server), each on its own copy of a small store with an index. Each
test failed before: the index's re-rank read shards unchecked and a snapshot trusted a shard for
ever after its first read (wrong scores, 200), a swapped pair of names in ``paths.arrow`` named the
wrong files, a file cut under a memory map killed the service with SIGBUS, and a thumbnail asked
for a search of one store showed the photo of another store put in its place at the same generation.
"""

from __future__ import annotations

import json
import os
import shutil
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
    return png_files(tmp_path_factory.mktemp("integrity-images"), range(300, 308))


@pytest.fixture(scope="module")
def template(model_dir: Path, images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return indexed_store(tmp_path_factory.mktemp("integrity-store") / "store", model_dir, images[:6])


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "store"))


@pytest.fixture
def served(model_dir: Path, store: Path) -> Iterator[Server]:
    server = Server(model_dir, "--store", str(store))
    yield server
    server.stop()


def post(server: Server, route: str, image: Path, **params: Any) -> httpx.Response:
    return httpx.post(server.url + route, params=params, content=image.read_bytes(),
                      headers={"content-type": "image/png"}, timeout=60)


def index_folder(store: Path) -> Path:
    return next(p for p in (store / "index").iterdir() if not p.name.startswith("."))


def shard(store: Path) -> Path:
    commit = json.loads((store / "commit.json").read_text())
    return store / f"vectors/{commit['shards'][0]['id']:06d}.npy"


def swap_rows_in_place(path: Path) -> None:
    stat = path.stat()
    array = np.load(path)
    array[[0, 1]] = array[[1, 0]]
    with open(path, "r+b") as fp:
        fp.seek(stat.st_size - array.nbytes)
        fp.write(array.tobytes())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the mtime put back: only the ctime tells


def alive(server: Server) -> bool:
    return server.process.poll() is None and httpx.get(server.url + "/health/live", timeout=10).status_code == 200


def test_a_shard_damaged_after_start_is_refused_by_both_paths(model_dir: Path, store: Path, images: list[Path],
                                                               tmp_path: Path) -> None:
    exact_store = Path(shutil.copytree(store, tmp_path / "exact"))
    auto, off = Server(model_dir, "--store", str(store)), Server(model_dir, "--store", str(exact_store), "--index", "off")
    try:
        for server, root in ((auto, store), (off, exact_store)):
            first = post(server, "/v1/search", images[0], k=2)
            assert first.status_code == 200 and first.json()["matches"][0]["path"] == str(images[0])
            assert first.json()["index"]["used"] is (server is auto)
            swap_rows_in_place(shard(root))
            for route in ("/v1/search", "/v1/duplicates"):
                refused = post(server, route, images[0], **({"k": 2} if route == "/v1/search" else {}))
                assert refused.status_code == 409, (route, refused.text)
                error = refused.json()["error"]
                assert error["kind"] == "store" and "sha256 differs" in error["message"], error
            assert alive(server)
    finally:
        auto.stop()
        off.stop()


def test_an_index_file_damaged_after_start_falls_back_to_exact_and_says_damaged(
        served: Server, store: Path, images: list[Path]) -> None:
    before = post(served, "/v1/search", images[1], k=3).json()
    assert before["index"]["state"] == "current" and before["matches"][0]["path"] == str(images[1])
    names = index_folder(store) / "paths.arrow"
    data = names.read_bytes()
    one, two = str(images[1]).encode(), str(images[2]).encode()
    names.write_bytes(data.replace(one, b"\0" * len(one)).replace(two, one).replace(b"\0" * len(one), two))
    after = post(served, "/v1/search", images[1], k=3).json()
    assert after["index"]["used"] is False and after["index"]["state"] == "damaged", after["index"]
    assert "paths.arrow" in after["index"]["message"] and "searching exactly" in after["index"]["message"]
    assert [(m["path"], m["score"]) for m in after["matches"]] == [(m["path"], m["score"]) for m in before["matches"]]
    dup = post(served, "/v1/duplicates", images[1], threshold=0.999).json()
    assert dup["index"]["state"] == "damaged" and [m["path"] for m in dup["matches"]] == [str(images[1])]
    info = httpx.get(served.url + "/v1/info", timeout=30).json()["store"]["index"]
    assert info["state"] == "damaged"
    names.write_bytes(data)  # put back as it was: the service must not keep refusing a sound index
    restored = post(served, "/v1/search", images[1], k=3).json()
    assert restored["index"]["state"] == "current" and restored["index"]["used"] is True, restored["index"]
    names.write_bytes(data.replace(one, b"\0" * len(one)).replace(two, one).replace(b"\0" * len(one), two))
    assert post(served, "/v1/search", images[1], k=3).json()["index"]["state"] == "damaged"
    assert run_cli("index", "build", "--store", str(store)).returncode == 0  # a rebuild is picked up
    assert post(served, "/v1/search", images[1], k=3).json()["index"]["state"] == "current"


@pytest.mark.parametrize("name", ["lists.ivfdata", "paths.arrow", "locations.npy", "shard"])
def test_a_file_cut_under_the_running_service_never_kills_it(served: Server, store: Path, images: list[Path],
                                                              name: str) -> None:
    """Before: lists.ivfdata, paths.arrow and the shards were memory-mapped: a search after the cut died of SIGBUS."""
    assert post(served, "/v1/search", images[3], k=4).json()["index"]["used"] is True
    path = shard(store) if name == "shard" else index_folder(store) / name
    os.truncate(path, 0)  # a mapped page past the end of a file is a SIGBUS when touched
    for _ in range(3):
        answer = post(served, "/v1/search", images[3], k=4)
        if name == "shard":  # the store itself: refused, by either path
            assert answer.status_code == 409 and answer.json()["error"]["kind"] == "store", answer.text
        else:  # the index: answered exactly, saying why
            assert answer.status_code == 200, answer.text
            assert answer.json()["index"]["state"] == "damaged" and answer.json()["matches"][0]["path"] == str(images[3])
        assert post(served, "/v1/duplicates", images[3], threshold=0.999).status_code in (200, 409)
    assert alive(served), served.output()


def test_a_thumbnail_never_shows_the_photo_of_another_store_at_the_same_generation(
        served: Server, store: Path, model_dir: Path, images: list[Path], tmp_path: Path) -> None:
    first = post(served, "/v1/search", images[0], k=1).json()
    snapshot, generation = first["snapshot"], first["generation"]
    assert snapshot.startswith(f"g{generation}-")
    ok = httpx.get(served.url + "/v1/thumbnail/0", params={"snapshot": snapshot}, timeout=30)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    # another store in the same folder, reaching the same generation with other photos
    other = tmp_path / "other"
    result = run_cli("embed", *map(str, images[2:8]), "--store", str(other), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    shutil.rmtree(store)
    shutil.copytree(other, store)
    again = post(served, "/v1/search", images[0], k=1).json()
    assert again["generation"] == generation and again["snapshot"] != snapshot
    assert again["index"]["state"] == "missing"  # the old index went with the old store
    # the first search's snapshot is still known: its record 0, the first store's photo, not the other's
    kept = httpx.get(served.url + "/v1/thumbnail/0", params={"snapshot": snapshot}, timeout=30)
    assert kept.status_code == 200 and kept.content == ok.content
    mine = httpx.get(served.url + "/v1/thumbnail/0", params={"snapshot": again["snapshot"]}, timeout=30)
    assert mine.status_code == 200 and mine.content != ok.content  # the other store's record 0: another photo
    # a generation alone no longer says which store: refused, not guessed
    refused = httpx.get(served.url + "/v1/thumbnail/0", params={"generation": str(generation)}, timeout=30)
    assert refused.status_code == 410 and refused.json()["error"]["kind"] == "store_changed", refused.text
    # a snapshot the service no longer knows is refused too (here: one it never saw)
    unknown = httpx.get(served.url + "/v1/thumbnail/0", params={"snapshot": f"g{generation}-{'0' * 16}"}, timeout=30)
    assert unknown.status_code == 410
    assert alive(served)
