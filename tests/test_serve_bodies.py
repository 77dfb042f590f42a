"""The request bodies a service holds at once are bounded (--body-budget-mb). A real uvicorn process.

Before, every body was read whole before any admission check: 24 concurrent 30 MB JSON uploads took a
service to 2 GB. A real uvicorn process; one client holds a large body half-sent while another arrives.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx"):
    pytest.importorskip(_module, reason=f"the service's tests need the serve extra ({_module} missing)")

import httpx  # noqa: E402

from support import Server  # noqa: E402

BODY = 1_000_000  # under --max-body-mb 1 (1,048,576 bytes); two of them exceed --body-budget-mb 1.5


def _metric(server: Server, line_start: str) -> float:
    for line in httpx.get(server.url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(line_start):
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"{line_start} not in /metrics")


def test_a_body_that_does_not_fit_the_budget_gets_429_until_the_held_one_is_gone(model_dir: Path) -> None:
    server = Server(model_dir, "--max-body-mb", "1", "--body-budget-mb", "1.5")
    try:
        assert _metric(server, 'vggsim_rejected_total{reason="body_budget"}') == 0  # the series exists from the start
        held = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        held.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\n\r\n" % BODY + b"\x89PNG" + b"\0" * 60_000)  # and then nothing more
        time.sleep(1.0)  # the service has the headers: the declared length is held
        refused = httpx.post(server.url + "/v1/embed", content=b"\0" * BODY, headers={"content-type": "image/png"},
                             timeout=60)
        assert refused.status_code == 429, refused.text[:300]
        assert refused.json()["error"]["kind"] == "busy" and "--body-budget-mb" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        assert _metric(server, 'vggsim_rejected_total{reason="body_budget"}') >= 1
        small = httpx.post(server.url + "/v1/embed", content=b"\0" * 1000, headers={"content-type": "image/png"},
                           timeout=60)
        assert small.status_code == 422  # a small body still fits beside the held one (and is no image)
        held.close()  # the client goes away: its bytes are given back
        deadline = time.monotonic() + 30
        while True:
            again = httpx.post(server.url + "/v1/embed", content=b"\0" * BODY, headers={"content-type": "image/png"},
                               timeout=60)
            if again.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.status_code == 422, again.text[:300]
    finally:
        server.stop()
