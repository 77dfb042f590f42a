"""`vggsim serve`: one pathological image cannot hold up the service.

The image is a real JPEG that takes long to decode: a progressive 4096 x 4096 gray JPEG with
tens of thousands of empty scans (libjpeg walks every block of the image once per scan, and
warns instead of failing). Real uvicorn processes on free 127.0.0.1 ports; every wait is bounded.
"""

from __future__ import annotations

import io
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx"):
    pytest.importorskip(_module, reason=f"vggsim serve tests need the serve extra and httpx ({_module} missing)")

import httpx  # noqa: E402
from support import Server, error_of, image_bytes  # noqa: E402

PNG = {"content-type": "image/png"}


def many_scans_jpeg(scans: int = 40_000, size: int = 4096) -> bytes:
    """A progressive JPEG whose first scan header is repeated ``scans`` times with no data: seconds to
    tens of seconds of decoding from a few hundred kilobytes, and within the default pixel limit."""
    buffer = io.BytesIO()
    Image.new("L", (size, size), 128).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    sos = data.index(b"\xff\xda")
    header = data[sos:sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")]
    return data[:sos] + header * scans + data[sos:]


def scans_lasting(seconds: float) -> int:
    """How many scans ``many_scans_jpeg`` needs to take about ``seconds`` to decode on this CPU, timed on
    a short one (decoding time grows with the scans)."""
    probe = 1_000
    started = time.perf_counter()
    with Image.open(io.BytesIO(many_scans_jpeg(probe))) as image:
        image.load()
    return int(min(max(seconds * probe / (time.perf_counter() - started), 2_000), 100_000))


def _post_in_background(url: str, body: bytes, answers: list[httpx.Response]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(
        httpx.post(url + "/v1/embed", content=body, headers={"content-type": "image/jpeg"}, timeout=300)))
    thread.start()
    return thread


def test_a_decode_past_the_time_limit_is_a_422_timeout_and_the_service_stays_ready(model_dir: Path) -> None:
    server = Server(model_dir, "--decode-timeout", "1", "--decode-workers", "1")
    try:
        slow = httpx.post(server.url + "/v1/embed", content=many_scans_jpeg(),
                          headers={"content-type": "image/jpeg"}, timeout=120)
        error = error_of(slow, 422)
        assert error["kind"] == "timeout" and "--decode-timeout" in error["message"], error
        # its thread still decodes (tens of seconds): a new one took its place in the one-thread pool
        assert httpx.post(server.url + "/v1/embed", content=image_bytes(1), headers=PNG, timeout=120).status_code == 200
        assert httpx.get(server.url + "/health/ready", timeout=30).status_code == 200
    finally:
        assert server.stop() == 0, server.output()


def test_a_slow_decode_never_holds_the_inference_thread_or_shutdown(model_dir: Path) -> None:
    """The slow image comes alone (the lone-image path) with no decode limit to speak of; another client's image
    is answered while it still decodes, and SIGTERM ends the service within --drain-timeout (plus start-up slack)."""
    server = Server(model_dir, "--decode-timeout", "600", "--drain-timeout", "1")
    slow: list[httpx.Response] = []
    thread = _post_in_background(server.url, many_scans_jpeg(), slow)
    try:
        thread.join(1.0)  # the slow decode has begun (its body is a few hundred kB on loopback)
        other = httpx.post(server.url + "/v1/embed", content=image_bytes(2), headers=PNG, timeout=300)
        assert other.status_code == 200, other.text
        assert thread.is_alive() and not slow, "the other client waited for the slow decode to end"
        assert httpx.get(server.url + "/health/ready", timeout=30).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(16)  # the slow decode alone would take far longer
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM waited for the slow decode") from None
        assert code == 0, server.output()
    finally:
        server.stop()
        thread.join(300)


def test_decodes_holding_every_thread_make_the_service_say_not_ready(model_dir: Path) -> None:
    """Threads cannot be stopped: with every decode thread held by decodes past their time limit, image
    requests used to wait out the whole deadline (503 after 30 s, for minutes) while /health/ready said
    200. Now they get 503 at once, ready says why, and all comes back when the decodes end."""
    server = Server(model_dir, "--decode-timeout", "1", "--decode-workers", "1")
    try:
        # The checks below run while both abandoned decodes still do, from about 2 s in: decodes of about
        # 10 s on this CPU leave room for them on any CPU (a fixed 40,000 scans took a minute here, all
        # of it waited out below).
        slow = many_scans_jpeg(scans_lasting(10.0))
        for _ in range(2):  # the first abandoned thread is replaced; the second takes the pool's last one
            assert error_of(httpx.post(server.url + "/v1/embed", content=slow,
                                       headers={"content-type": "image/jpeg"}, timeout=120), 422)["kind"] == "timeout"
        ready = httpx.get(server.url + "/health/ready", timeout=30)
        assert "--decode-timeout" in error_of(ready, 503)["message"]
        assert httpx.get(server.url + "/v2/health/ready", timeout=30).status_code == 503
        refused = httpx.post(server.url + "/v1/embed", content=image_bytes(1), headers=PNG, timeout=30)
        assert error_of(refused, 503)["kind"] == "decoders_blocked" and "retry-after" in refused.headers
        assert refused.elapsed.total_seconds() < 5  # at once, not after the deadline
        assert httpx.get(server.url + "/health/live", timeout=30).status_code == 200
        deadline = time.monotonic() + 240  # the abandoned decodes end on their own (tens of seconds)
        while httpx.get(server.url + "/health/ready", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the service never became ready again"
            time.sleep(0.5)
        assert httpx.post(server.url + "/v1/embed", content=image_bytes(1), headers=PNG, timeout=120).status_code == 200
    finally:
        assert server.stop() == 0, server.output()
