"""The page's routes without a model: ``GET /`` and thumbnails reachable only by store record id.

A store is written directly (random vectors) over copies of real photos, and the routes run
in FastAPI's test client over a stand-in for the service state: what is tested is which
files a request can reach and that every refusal is the service's JSON error, never a
traceback. The browser test (test_serve_page.py) covers the page end to end.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra (pip install 'vggsim[serve]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from vggsim.images.budget import MemoryBudget  # noqa: E402
from vggsim.store import StoreWriter  # noqa: E402
from vggsim.collection import StoreReader  # noqa: E402
from vggsim.serve.page import add_page_routes  # noqa: E402
from vggsim.serve.problems import install_handlers  # noqa: E402
from vggsim.store import Record, StoreIdentity  # noqa: E402, StoreWriter


def write_store(root: Path, files: list[Path], failed: Path | None = None) -> None:
    rng = np.random.default_rng(0)
    with StoreWriter.open(root, StoreIdentity("m" * 64, {}, 4)) as writer:
        for path in files:
            info = path.stat()
            writer.add(Record(str(path), "ok", info.st_size, info.st_mtime_ns), rng.standard_normal(4).astype(np.float32))
        if failed is not None:
            writer.add(Record(str(failed), "error", error_kind="not_an_image", error="bad"))


def make_app(store: Path | None, token: str | None = None, max_pixels: int = 89_478_485) -> TestClient:
    """The page's routes over a stand-in for ServiceState (what they use of it), with the service's error handlers."""
    state: Any = SimpleNamespace(store=StoreReader(store) if store else None,
                                 decoder=SimpleNamespace(budget=MemoryBudget(1 << 28)),
                                 embedder=SimpleNamespace(max_pixels=max_pixels), config=SimpleNamespace(token=token),
                                 snapshot_listeners=[])
    app = FastAPI()
    app.state.vggsim = state
    install_handlers(app)
    add_page_routes(app, state)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def served(photos: list[Path], tmp_path: Path) -> tuple[TestClient, list[Path], Path]:
    images = tmp_path / "images"
    images.mkdir()
    files = [Path(shutil.copy(p, images / f"{i}{p.suffix}")) for i, p in enumerate(photos[:3])]
    bad = images / "bad.jpg"
    bad.write_bytes(b"not an image")
    (tmp_path / "secret.txt").write_text("outside the store")
    write_store(tmp_path / "store", files, failed=bad)
    return make_app(tmp_path / "store"), files, tmp_path


def is_json_error(response: Any, status: int) -> bool:
    body = response.json()
    return response.status_code == status and set(body["error"]) == {"code", "kind", "message"} and \
        "Traceback" not in response.text


def test_page_is_served_self_contained(served: tuple[TestClient, list[Path], Path]) -> None:
    client, _, _ = served
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "/v1/search" in response.text and "/v1/thumbnail/" in response.text
    # Offline machines: nothing may load from elsewhere; the CSP says so to the browser too.
    assert "http://" not in response.text and "https://" not in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp  # the page's own script, by hash only
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_thumbnail_of_a_stored_file_is_a_small_jpeg(served: tuple[TestClient, list[Path], Path]) -> None:
    client, files, _ = served
    generation = StoreReader(served[2] / "store").generation
    for record_id in range(len(files)):
        response = client.get(f"/v1/thumbnail/{record_id}", params={"generation": generation})
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG" and max(image.size) <= 320 and min(image.size) > 0


@pytest.mark.parametrize("name", [
    "..", "../secret.txt", "%2e%2e%2fsecret.txt", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "-1", "+1", "1.0",
    "0x1", "1e3", "abc", "99", "4294967296", "99999999999999999999", "%00", " 1", "1%20", "%C2%B9",
])
def test_thumbnail_cannot_reach_anything_but_store_records(served: tuple[TestClient, list[Path], Path], name: str) -> None:
    client, _, _ = served
    response = client.get(f"/v1/thumbnail/{name}")
    assert response.status_code in (404, 405) and "outside the store" not in response.text
    assert response.headers["content-type"].startswith("application/json"), response.text


def test_absolute_path_in_the_url_reaches_nothing(served: tuple[TestClient, list[Path], Path]) -> None:
    client, files, tmp_path = served
    for target in (str(files[0]), str(tmp_path / "secret.txt"), "/etc/passwd"):
        response = client.get("/v1/thumbnail/" + target.lstrip("/"))
        assert response.status_code == 404 and response.headers["content-type"] != "image/jpeg"
        response = client.get("/v1/thumbnail/0", params={"path": target})  # a path parameter is ignored
        assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size


def test_record_that_failed_to_embed_has_no_thumbnail(served: tuple[TestClient, list[Path], Path]) -> None:
    client, files, _ = served
    response = client.get(f"/v1/thumbnail/{len(files)}")  # the "error" record
    assert is_json_error(response, 404)


def test_missing_file_is_404_and_changed_file_is_410(served: tuple[TestClient, list[Path], Path]) -> None:
    client, files, _ = served
    files[0].unlink()
    assert is_json_error(client.get("/v1/thumbnail/0"), 404)
    with files[1].open("ab") as fp:
        fp.write(b"\0")  # same name, different bytes than were embedded
    response = client.get("/v1/thumbnail/1")
    assert is_json_error(response, 410) and response.json()["error"]["kind"] == "file_changed"
    files[2].unlink()
    files[2].symlink_to(served[2] / "secret.txt")  # replaced by a link to a file outside the store
    response = client.get("/v1/thumbnail/2")
    assert is_json_error(response, 410) and "outside the store" not in response.text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_file_replaced_by_a_fifo_does_not_hang(served: tuple[TestClient, list[Path], Path]) -> None:
    """Opening a FIFO blocks until a writer comes: the route must refuse it at once, not hang a thread."""
    client, files, _ = served
    files[0].unlink()
    os.mkfifo(files[0])
    answer: list[Any] = []
    worker = threading.Thread(target=lambda: answer.append(client.get("/v1/thumbnail/0")), daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "the thumbnail request hung on a FIFO"
    assert is_json_error(answer[0], 410)


def test_unknown_generation_is_410_a_future_one_404_and_a_bad_one_400(
        served: tuple[TestClient, list[Path], Path]) -> None:
    client, _, _ = served
    generation = StoreReader(served[2] / "store").generation
    assert generation > 0  # the service never saw generation 0: an older one it does not keep
    assert is_json_error(client.get("/v1/thumbnail/0", params={"generation": 0}), 410)
    assert is_json_error(client.get("/v1/thumbnail/0", params={"generation": generation + 5}), 404)
    assert is_json_error(client.get("/v1/thumbnail/0", params={"generation": "x"}), 400)


def test_thumbnail_of_an_earlier_generation_after_a_commit(served: tuple[TestClient, list[Path], Path],
                                                           photos: list[Path]) -> None:
    client, files, tmp_path = served
    first = StoreReader(tmp_path / "store").generation
    assert client.get("/v1/thumbnail/0", params={"generation": first}).status_code == 200
    extra = Path(shutil.copy(photos[0], tmp_path / "images" / f"extra{photos[0].suffix}"))
    write_store(tmp_path / "store", [extra])
    assert StoreReader(tmp_path / "store").generation != first
    assert client.get("/v1/thumbnail/0", params={"generation": first}).status_code == 200  # still resolvable
    assert client.get("/v1/thumbnail/0").status_code == 200


def test_no_store_is_a_json_404(photos: list[Path]) -> None:
    response = make_app(None).get("/v1/thumbnail/0")
    assert is_json_error(response, 404) and response.json()["error"]["kind"] == "no_store"


def test_thumbnail_needs_the_token_when_one_is_set(served: tuple[TestClient, list[Path], Path]) -> None:
    _, _, tmp_path = served
    client = make_app(tmp_path / "store", token="s3cret")
    assert is_json_error(client.get("/v1/thumbnail/0"), 401)
    assert is_json_error(client.get("/v1/thumbnail/0", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/v1/thumbnail/0", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/").status_code == 200  # the page itself holds no data


def test_pixel_limit_applies_to_thumbnails(served: tuple[TestClient, list[Path], Path]) -> None:
    _, _, tmp_path = served
    response = make_app(tmp_path / "store", max_pixels=100).get("/v1/thumbnail/0")
    assert is_json_error(response, 422) and response.json()["error"]["kind"] == "too_large"


def test_non_utf8_file_name_has_a_thumbnail(photos: list[Path], tmp_path: Path) -> None:
    """A stored name that is not UTF-8 (kept lossless by the store) is reached by its id like any other."""
    folder = tmp_path / "images"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9" + os.fsencode(photos[0].suffix))
    shutil.copy(os.fsencode(photos[0]), raw)
    write_store(tmp_path / "store", [Path(os.fsdecode(raw))])
    response = make_app(tmp_path / "store").get("/v1/thumbnail/0")
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).format == "JPEG"


def test_the_favicon_is_no_content_not_a_404(served: tuple[TestClient, list[Path], Path]) -> None:
    response = served[0].get("/favicon.ico")
    assert response.status_code == 204 and not response.content


def test_another_store_at_the_same_generation_never_lends_its_photo(photos: list[Path], tmp_path: Path) -> None:
    """Snapshots were known by generation alone: a store replaced by another at the same generation answered a
    thumbnail asked for a search of the first with the second's photo."""
    images = tmp_path / "images"
    images.mkdir()
    first = [Path(shutil.copy(p, images / f"a{i}{p.suffix}")) for i, p in enumerate(photos[:2])]
    second = [Path(shutil.copy(p, images / f"b{i}{p.suffix}")) for i, p in enumerate(photos[2:4])]
    root = tmp_path / "store"
    write_store(root, first)
    client = make_app(root)
    before = StoreReader(root).snapshot()
    shown = client.get("/v1/thumbnail/0", params={"snapshot": before.snapshot_id})
    assert shown.status_code == 200
    shutil.rmtree(root)
    write_store(root, second)
    after = StoreReader(root).snapshot()
    assert after.generation == before.generation and after.snapshot_id != before.snapshot_id
    assert client.get("/v1/thumbnail/0", params={"snapshot": before.snapshot_id}).content == shown.content
    assert client.get("/v1/thumbnail/0", params={"snapshot": after.snapshot_id}).content != shown.content
    refused = client.get("/v1/thumbnail/0", params={"generation": before.generation})
    assert is_json_error(refused, 410) and refused.json()["error"]["kind"] == "store_changed"
    assert is_json_error(client.get("/v1/thumbnail/0", params={"snapshot": "g1-xyz"}), 400)


def test_an_older_snapshot_whose_files_were_replaced_is_410_not_damage(photos: list[Path], tmp_path: Path) -> None:
    """A snapshot known (a search answered from it) but never read, then the store replaced in place: its
    records no longer read. That was a 409 calling a sound store damaged and sending the user to repair it."""
    images = tmp_path / "images"
    images.mkdir()
    root = tmp_path / "store"
    write_store(root, [Path(shutil.copy(p, images / f"a{i}{p.suffix}")) for i, p in enumerate(photos[:2])])
    client = make_app(root)
    before = StoreReader(root).snapshot()
    assert client.get("/v1/thumbnail/0", params={"generation": 999}).status_code == 404  # known now, not read
    shutil.rmtree(root)
    write_store(root, [Path(shutil.copy(p, images / f"b{i}{p.suffix}")) for i, p in enumerate(photos[2:5])])
    refused = client.get("/v1/thumbnail/0", params={"snapshot": before.snapshot_id})
    assert is_json_error(refused, 410) and refused.json()["error"]["kind"] == "store_changed", refused.text
    assert client.get("/v1/thumbnail/0").status_code == 200  # the store itself is sound
