"""`vggsim serve` on loopback without a token: foreign Host headers (DNS rebinding) and Origins are refused.

One real uvicorn process on a free 127.0.0.1 port; every request is bounded by httpx's timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx"):
    pytest.importorskip(_module, reason=f"vggsim serve tests need the serve extra and httpx ({_module} missing)")

import httpx  # noqa: E402
from support import Server, error_of, image_bytes  # noqa: E402

from vggsim.serve.hosts import host_allowed, own_hosts  # noqa: E402


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    s = Server(model_dir, "--allowed-hosts", "photos.test,other.test:9", "--cors-origins", "http://app.test")
    yield s
    s.stop()


def _embed(server: Server, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/embed", content=image_bytes(1),
                      headers={"content-type": "image/png", **headers}, timeout=60)


def test_a_foreign_host_header_is_refused_without_a_token(server: Server) -> None:
    port = server.port
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as Host
    assert error_of(_embed(server, host=f"rebind.attacker.test:{port}"), 403)["kind"] == "bad_host"
    assert error_of(httpx.get(server.url + "/v1/info", headers={"host": "rebind.attacker.test"}), 403)
    assert error_of(httpx.get(server.url + "/v1/info", headers={"host": f"other.test:{port}"}), 403)  # wrong port
    # loopback names on any port: a port mapping, a proxy or an app mounted in another server (create_app
    # served on a port of its own) connects on a port other than the configured one; the name is what
    # rebinding forges, and it is refused above
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}",
                 f"localhost:{port + 1}", "127.0.0.1:8011", f"photos.test:{port}", "photos.test:443", "other.test:9"):
        assert httpx.get(server.url + "/v1/info", headers={"host": host}).status_code == 200, host
    assert _embed(server).status_code == 200


def test_a_cross_origin_request_is_refused_unless_allowed(server: Server) -> None:
    refused = _embed(server, origin="http://evil.test")
    assert error_of(refused, 403)["kind"] == "bad_origin"
    assert "access-control-allow-origin" not in refused.headers
    assert error_of(_embed(server, origin="null"), 403)["kind"] == "bad_origin"
    assert _embed(server, origin=server.url).status_code == 200  # the service's own page
    allowed = _embed(server, origin="http://app.test")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://app.test"
    preflight = httpx.options(server.url + "/v1/embed", headers={
        "origin": "http://app.test", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://app.test"


def test_own_hosts_names_the_bound_address_and_loopback_on_any_port() -> None:
    assert own_hosts("0.0.0.0", 8000) == {"127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"}
    assert "[fe80::1]:*" in own_hosts("fe80::1", 81)
    # create_app(ServeConfig()) says port 8000, but the app runs wherever its server binds it
    mounted = own_hosts("127.0.0.1", 8000)
    assert host_allowed("127.0.0.1:8011", mounted) and host_allowed("localhost:8011", mounted)
    assert not host_allowed("rebind.attacker.test:8000", mounted)
    assert not host_allowed("127.0.0.1.attacker.test:8000", mounted)
