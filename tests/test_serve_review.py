"""Duplicate review in the service: groups page by page with tiers and keepers, decisions recorded and honoured
by the routes and the CLI, and the review page driven by a real headless Chromium. A real `vggsim serve`
process on a free loopback port."""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx", "pyarrow"):
    pytest.importorskip(_module, reason=f"needs the serve and store extras ({_module} missing)")

import httpx  # noqa: E402

from vggsim.store import StoreIdentity  # noqa: E402
from support import Server, browser_missing, error_of, headless_chromium, image_bytes, make_store, run_cli  # noqa: E402

WAIT_S = 60.0


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.png, b.png (a's pixels with metadata added), c.png (a byte copy of a), e.png (unrelated)."""
    folder = tmp_path_factory.mktemp("review-photos")
    original = image_bytes(21, size=(160, 120))
    (folder / "a.png").write_bytes(original)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "metadata only")
    out = io.BytesIO()
    Image.open(io.BytesIO(original)).save(out, "PNG", pnginfo=info)
    (folder / "b.png").write_bytes(out.getvalue())
    shutil.copy(folder / "a.png", folder / "c.png")
    (folder / "e.png").write_bytes(image_bytes(22, size=(160, 120)))
    return folder


@pytest.fixture
def server(model_dir: Path, photos: Path, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    store = tmp_path / "store"
    done = run_cli("embed", str(photos), "--store", str(store), "--model", str(model_dir), "--quiet")
    assert done.returncode == 0, done.stderr
    s = Server(model_dir, "--store", str(store))
    yield s, store
    s.stop()


def groups_page(server: Server, **params: Any) -> dict[str, Any]:
    """GET /v1/duplicates/groups until it is no longer computing (bounded in time)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = httpx.get(f"{server.url}/v1/duplicates/groups", params=params, timeout=30)
        if response.status_code != 202:
            assert response.status_code == 200, response.text
            return dict(response.json())
        assert response.json()["state"] == "computing" and response.headers["Retry-After"] == "1"
        assert time.monotonic() < deadline, "groups still computing"
        time.sleep(0.2)


def test_groups_tiers_and_decisions_through_the_service(server: tuple[Server, Path], photos: Path) -> None:
    s, store = server
    body = groups_page(s, threshold=1.0)
    assert body["state"] == "ready" and body["total_groups"] == 1 and body["pages"] == 1
    group = body["groups"][0]
    names = {Path(m["path"]).name: m for m in group["members"]}
    assert set(names) == {"a.png", "b.png", "c.png"} and group["keeper_reason"]
    assert {m["tier"] for m in group["members"]} in ({"keeper", "byte", "pixel"}, {"keeper", "pixel"})
    # the single-image check names tiers too: the upload is a's bytes
    upload = {"image": base64.b64encode((photos / "a.png").read_bytes()).decode(), "threshold": 0.999}
    check = httpx.post(f"{s.url}/v1/duplicates", json=upload, timeout=60).json()
    tiers = {Path(m["path"]).name: m["tier"] for m in check["matches"]}
    assert tiers["a.png"] == tiers["c.png"] == "byte" and tiers["b.png"] == "pixel"
    assert [m["tier"] for m in check["matches"]][:2] == ["byte", "byte"]
    # a person says a and b are not duplicates: the groups, the check and the CLI honour it
    paths = [names["a.png"]["path"], names["b.png"]["path"]]
    saved = httpx.post(f"{s.url}/v1/duplicates/decisions", json={"decision": "not_duplicates", "paths": paths},
                       timeout=30)
    assert saved.status_code == 200 and saved.json()["decisions"]["not_duplicates"] == 1
    after = groups_page(s, threshold=1.0)
    assert sorted(Path(m["path"]).name for m in after["groups"][0]["members"]) == ["a.png", "c.png"]
    check = httpx.post(f"{s.url}/v1/duplicates", json=upload, timeout=60).json()
    assert "b.png" not in {Path(m["path"]).name for m in check["matches"]}
    cli = run_cli("dedup", "--store", str(store), "--threshold", "1", "--json")
    assert sorted(Path(r["path"]).name for r in json.loads(cli.stdout)["groups"]) == ["a.png", "c.png"]


def test_bad_decisions_are_json_errors(server: tuple[Server, Path]) -> None:
    s, _ = server
    url = f"{s.url}/v1/duplicates/decisions"
    assert error_of(httpx.post(url, json={"decision": "delete", "paths": ["/x"]}, timeout=30), 400)["kind"] == \
        "bad_request"
    assert "not a file with a vector" in error_of(
        httpx.post(url, json={"decision": "keep", "paths": ["/nowhere.png"]}, timeout=30), 409)["message"]
    assert error_of(httpx.post(url, content=b"{", headers={"content-type": "application/json"}, timeout=30), 400)
    assert error_of(httpx.get(f"{s.url}/v1/duplicates/groups", params={"page": 0}, timeout=30), 422)


def test_thousands_of_groups_come_page_by_page(model_dir: Path, embedder: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, embedder.dim)).astype(np.float32)
    pairs = np.concatenate([base, base + np.float32(1e-4)])  # 3,000 groups of two near-identical vectors
    make_store(tmp_path / "store", pairs, StoreIdentity.of(embedder), per_commit=2000)
    s = Server(model_dir, "--store", str(tmp_path / "store"))
    try:
        first = groups_page(s, threshold=0.99, page_size=1000)
        assert first["total_groups"] == 3000 and first["pages"] == 3 and len(first["groups"]) == 1000
        started = time.monotonic()
        last = groups_page(s, threshold=0.99, page_size=1000, page=3)
        assert time.monotonic() - started < 10  # from the kept result, not a new pass
        assert len(last["groups"]) == 1000 and last["groups"][-1]["number"] == 3000
        assert groups_page(s, threshold=0.99, page_size=1000, page=4)["groups"] == []
    finally:
        s.stop()


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_the_review_page_shows_groups_side_by_side_and_records_decisions(server: tuple[Server, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s, store = server
    groups_page(s)  # computed once at the calibrated threshold, as the page asks
    with headless_chromium() as browser:
        browser.get(s.url + "/review")
        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
        wait.until(lambda d: d.find_element(By.ID, "groups").get_attribute("data-state") in ("ready", "error"))
        assert browser.find_element(By.ID, "groups").get_attribute("data-state") == "ready", \
            browser.find_element(By.ID, "status").text
        group = browser.find_elements(By.CSS_SELECTOR, ".group")[0]
        cards = group.find_elements(By.CSS_SELECTOR, ".member")
        assert len(cards) >= 3 and len(group.find_elements(By.CSS_SELECTOR, ".member.keeper")) == 1
        wait.until(lambda d: all(c.find_elements(By.CSS_SELECTOR, "img") for c in cards))  # thumbnails loaded
        assert "suggested keeper" in group.text
        # "Keep this one" on a member that is not the keeper: it becomes the keeper, kept by you
        chosen = next(c for c in cards if "keeper" not in c.get_attribute("class"))
        path = chosen.get_attribute("data-path")
        chosen.find_element(By.CSS_SELECTOR, "button.keep").click()
        wait.until(lambda d: "saved: keep" in d.find_element(By.ID, "status").text)
        keeper = browser.find_elements(By.CSS_SELECTOR, ".group")[0].find_element(By.CSS_SELECTOR, ".member.keeper")
        assert keeper.get_attribute("data-path") == path and "kept by you" in keeper.text
        # "Not duplicates" on the group: every pair of contents in it is recorded; only byte-identical copies
        # (one content: always duplicates) can still be grouped
        browser.find_elements(By.CSS_SELECTOR, ".group")[0].find_element(By.CSS_SELECTOR, "button.dismiss").click()
        wait.until(lambda d: "saved: not duplicates" in d.find_element(By.ID, "status").text)
        left = [sorted(Path(c.get_attribute("data-path")).name for c in g.find_elements(By.CSS_SELECTOR, ".member"))
                for g in browser.find_elements(By.CSS_SELECTOR, ".group")]
        assert left in ([], [["a.png", "c.png"]]), left
    decisions = (store / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line.split(" ", 1)[1])["decision"] for line in decisions] == ["keep", "not_duplicates"]
