"""/docs works offline: its page names no other host, and every asset it loads is served here (real uvicorn)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx", "swagger_ui_bundle"):
    pytest.importorskip(_module, reason=f"the docs test needs the serve extra and httpx ({_module} missing)")

import httpx  # noqa: E402

from support import Server  # noqa: E402


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    s = Server(model_dir)
    yield s
    s.stop()


def test_docs_reference_no_external_host_and_their_assets_are_served(server: Server) -> None:
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    text = page.text
    assert "SwaggerUIBundle" in text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", text) + re.findall(r"""url:\s*["']([^"']+)["']""",
                                                                                      text)
    assert len(urls) >= 3, text  # the script, the stylesheet, the favicon (and the schema)
    absolute = re.findall(r"""(?:https?:)?//[A-Za-z0-9.-]+""", text)
    assert absolute == [], f"/docs names other hosts: {absolute}"
    for url in urls:
        target = urljoin(server.url + "/docs", url)
        assert urlparse(target).netloc == urlparse(server.url).netloc
        response = httpx.get(target)
        assert response.status_code == 200, (url, response.status_code)
        assert len(response.content) > 0
    script = httpx.get(server.url + "/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"] and len(script.content) > 100_000
    assert httpx.get(server.url + "/redoc").status_code == 404  # ReDoc would load a CDN script: off
    assert httpx.get(server.url + "/docs/assets/nothing-here.js").status_code == 404
