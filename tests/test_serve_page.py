"""The web page end to end: a real ``vggsim serve`` process and a real headless Chromium.

A store of real sample photos is made with ``vggsim embed``; the service is started on a
free loopback port; Chromium (Debian's ``chromium`` and ``chromium-driver`` packages,
driven by selenium) opens the page, uploads one of the stored photos and must render k
matches, the first being that photo with score ~1.0, every thumbnail loaded. A file that
is not an image must show the API's error as text. Every wait is bounded; the whole test
takes well under two minutes. Set VGGSIM_PAGE_SCREENSHOT=FILE.png to keep a screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Server, browser_missing, headless_chromium  # noqa: E402

RESULT_TIMEOUT_S = 20.0

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


def vggsim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def store(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A store of up to five real photos, made by `vggsim embed`."""
    root = tmp_path_factory.mktemp("page")
    files = []
    for n, photo in enumerate(photos[:5]):
        files.append(root / "photos" / f"photo-{n}{photo.suffix}")
        files[-1].parent.mkdir(exist_ok=True)
        shutil.copy(photo, files[-1])
    result = vggsim("embed", str(root / "photos"), "--store", str(root / "store"), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    return root / "store", files


@pytest.fixture(scope="module")
def service(model_dir: Path, store: tuple[Path, list[Path]]) -> Iterator[str]:
    """`vggsim serve` on a free loopback port; its URL once /health/ready answers."""
    server = Server(model_dir, "--store", str(store[0]), "--host", "127.0.0.1")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as driver:
        yield driver


def upload(browser: Any, url: str, path: Path, k: int) -> str:
    """Open the page, set k, choose ``path``; the results' final state (done or error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    field = browser.find_element(By.ID, "k")
    field.clear()
    field.send_keys(str(k))
    browser.find_element(By.ID, "file").send_keys(str(path))
    state: str = WebDriverWait(browser, RESULT_TIMEOUT_S, poll_frequency=0.1).until(
        lambda d: d.find_element(By.ID, "results").get_attribute("data-state") in ("done", "error")
        and d.find_element(By.ID, "results").get_attribute("data-state"))
    return state


def test_page_uploads_an_image_and_shows_its_matches(browser: Any, service: str, store: tuple[Path, list[Path]]) -> None:
    from selenium.webdriver.common.by import By

    files = store[1]
    k = len(files) - 1  # fewer than the store holds: the page must show exactly k
    query = files[2]
    state = upload(browser, service, query, k)
    status = browser.find_element(By.ID, "status").text
    assert state == "done", status
    items = browser.find_elements(By.CSS_SELECTOR, "#results .match")
    assert len(items) == k
    paths = [item.get_attribute("data-path") for item in items]
    scores = [float(item.get_attribute("data-score")) for item in items]
    assert Path(paths[0]).resolve() == query.resolve()
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores == sorted(scores, reverse=True) and len(set(paths)) == k
    assert {Path(p).resolve() for p in paths} <= {f.resolve() for f in files}
    # What the user reads: the path and the score, as text.
    assert query.name in items[0].text and f"{scores[0]:.4f}" in items[0].text
    assert f"{len(files)} images in the store" in browser.find_element(By.ID, "info").text
    assert "random weights" in status  # the test model's: the page says its scores mean nothing
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#results .match')].map("
        "li => { const i = li.querySelector('img'); return i && i.complete ? i.naturalWidth : 0; });")
    assert len(widths) == k and all(w > 0 for w in widths), (widths, browser.find_element(By.ID, "results").text)
    screenshot = os.environ.get("VGGSIM_PAGE_SCREENSHOT")
    if screenshot:
        browser.save_screenshot(screenshot)


def test_page_takes_a_dropped_image(browser: Any, service: str, store: tuple[Path, list[Path]]) -> None:
    """Drag and drop: a file dropped on the drop zone is searched like a chosen one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(service + "/")
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/v1/thumbnail/0').then(r => r.blob()).then(blob => {
          const data = new DataTransfer();
          data.items.add(new File([blob], 'dropped.jpg', {type: 'image/jpeg'}));
          document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
          done();
        });""")
    WebDriverWait(browser, RESULT_TIMEOUT_S, poll_frequency=0.1).until(
        lambda d: d.find_element(By.ID, "results").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.ID, "results").get_attribute("data-state") == "done"
    assert browser.find_element(By.ID, "chosen").text == "dropped.jpg"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .match")) == min(8, len(store[1]))


@pytest.mark.parametrize("target", [
    "/v1/thumbnail/../../../../etc/passwd", "/v1/thumbnail/..%2F..%2F..%2Fetc%2Fpasswd", "/v1/thumbnail//etc/passwd",
    "/v1/thumbnail/%2Fetc%2Fpasswd", "/v1/thumbnail/0/../../../etc/passwd", "/v1/thumbnail/-1", "/v1/thumbnail/999",
    "/v1/thumbnail/1.5", "/v1/thumbnail/0x0", "/v1/thumbnail/%30%2e%2e", "/../../etc/passwd", "/static/../../etc/passwd",
])
def test_no_url_reaches_a_file_outside_the_store(service: str, target: str) -> None:
    """Sent as written (http.client does not normalise ``..``): the real server must answer with a JSON error."""
    import http.client

    host, port = service.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status in (404, 405, 400), (response.status, body[:200])
    assert b"root:" not in body and response.getheader("content-type", "").startswith("application/json")


def test_page_shows_the_api_error_as_text(browser: Any, service: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    bogus = tmp_path / "not-a-photo.jpg"
    bogus.write_bytes(b"this is text, not a JPEG")
    assert upload(browser, service, bogus, 3) == "error"
    status = browser.find_element(By.ID, "status")
    assert "error" in (status.get_attribute("class") or "")
    assert "HTTP 422" in status.text and "not_an_image" in status.text, status.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results .match") == []
