"""The service's connections, against a real uvicorn process: a declared body that never comes does not
hold the body budget past --body-timeout, a client gone mid-body is counted 499 (not an internal
error), the service logs where it listens once ready, and body-budget refusals are counted under
their route."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx"):
    pytest.importorskip(_module, reason=f"the service's tests need the serve extra ({_module} missing)")

import httpx  # noqa: E402

from support import Server  # noqa: E402

BODY = 1_000_000  # under --max-body-mb 1; two of them exceed --body-budget-mb 1.5


def _metrics(server: Server) -> str:
    return httpx.get(server.url + "/metrics", timeout=30).text


def _post(server: Server, size: int) -> httpx.Response:
    return httpx.post(server.url + "/v1/embed", content=b"\0" * size, headers={"content-type": "image/png"},
                      timeout=60)


# --- a client that declares a Content-Length and sends nothing holds the body budget for ever -------------

def test_an_idle_declared_body_does_not_hold_the_budget_past_the_body_timeout(model_dir: Path) -> None:
    """Two idle connections (headers with Content-Length, 4 body bytes, then silence) each held their
    declared length with no time limit: every max-size upload got 429 for as long as they stayed open.
    With the default 128 MiB budget and 32 MiB bodies, four idle sockets deny all large uploads."""
    server = Server(model_dir, "--max-body-mb", "1", "--body-budget-mb", "1.5", "--body-timeout", "2")
    held = []
    try:
        held.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        held[0].sendall(b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                        b"Content-Length: %d\r\n\r\n\x89PNG" % BODY)
        time.sleep(2 + 4)  # well past --body-timeout
        answer = _post(server, BODY)
        assert answer.status_code != 429, "an idle, never-completed body still holds the budget past --body-timeout"
    finally:
        for sock in held:
            sock.close()
        server.stop()


# --- a client that disconnects mid-body is logged as an internal error and counted as a 500 -----------------

def test_a_client_disconnect_mid_body_is_not_an_internal_error(model_dir: Path) -> None:
    server = Server(model_dir)
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 500000\r\n\r\n" + b"\0" * 100_000)
            time.sleep(0.3)
            sock.close()
        time.sleep(1.0)
        text = _metrics(server)
        assert 'status="500"' not in text, [line for line in text.splitlines() if 'status="500"' in line]
        assert "internal error" not in server.output()  # a traceback per disconnect: log spam anyone can cause
    finally:
        server.stop()


# --- binding the socket ourselves lost uvicorn's "running on" line: the service never says its address -----

def test_serve_says_where_it_listens(model_dir: Path) -> None:
    server = Server(model_dir, "--log-level", "info")
    try:
        time.sleep(0.5)
        out = server.output()
        assert f"127.0.0.1:{server.port}" in out, out[-1500:]
    finally:
        server.stop()


# --- a body-budget 429 is counted under route="<unmatched>", not the route asked for -------------------------

def test_body_budget_refusals_are_counted_under_their_route(model_dir: Path) -> None:
    server = Server(model_dir, "--max-body-mb", "1", "--body-budget-mb", "1.5")
    held = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        held.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\n\r\n\x89PNG" % BODY)
        time.sleep(1.0)
        assert _post(server, BODY).status_code == 429
        text = _metrics(server)
        assert 'route="/v1/embed",status="429"' in text, [line for line in text.splitlines() if "429" in line]
    finally:
        held.close()
        server.stop()
