"""`vggsim serve`: real uvicorn processes on free loopback ports, every endpoint and error path.

All traffic goes to 127.0.0.1; every wait is bounded. Needs the serve extra (and httpx).
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx", "pyarrow"):
    pytest.importorskip(_module, reason=f"vggsim serve tests need the serve extra and httpx ({_module} missing)")

import httpx  # noqa: E402

from vggsim import Embedder  # noqa: E402
from support import Server, TOKEN, error_of, image_bytes, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve-images")
    paths = []
    for seed in range(6):
        path = folder / f"img{seed}.{'jpg' if seed % 2 else 'png'}"
        path.write_bytes(image_bytes(seed, "JPEG" if seed % 2 else "PNG"))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def store(model_dir: Path, images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-store") / "store"
    result = run_cli("embed", *map(str, images[:4]), "--store", str(root), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def server(model_dir: Path, store: Path) -> Iterator[Server]:
    s = Server(model_dir, "--store", str(store))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict(model_dir: Path) -> Iterator[Server]:
    """Tiny limits and a token: 401, 413, 429."""
    s = Server(model_dir, "--queue-size", "2", "--max-images", "2", "--max-body-mb", "0.05", "--max-wait-ms", "50",
               env={"VGGSIM_SERVE_TOKEN": TOKEN})
    yield s
    s.stop()



def test_health_info_and_openapi(server: Server, model_dir: Path) -> None:
    assert httpx.get(server.url + "/health/live").json() == {"status": "live"}
    assert httpx.get(server.url + "/health/ready").json() == {"status": "ready"}
    info = httpx.get(server.url + "/v1/info").json()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert info["model_sha256"] == manifest["model"]["sha256"] and info["dim"] == 512
    assert info["random_weights"] is True and info["store"]["vectors"] == 4
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/embed", "/v1/similarity", "/v1/search", "/v1/duplicates", "/v1/info"} <= set(schema["paths"])
    assert httpx.get(server.url + "/docs").status_code == 200


def test_service_embeddings_equal_embedder_embed_bit_for_bit(server: Server, model_dir: Path) -> None:
    embedder = Embedder(model_dir)
    blobs = [image_bytes(10), image_bytes(11, "JPEG"), image_bytes(12, "GIF")]
    raw = httpx.post(server.url + "/v1/embed", content=blobs[0], headers={"content-type": "image/png"}).json()
    assert np.array_equal(np.asarray(raw["embeddings"], np.float32), embedder.embed([blobs[0]]))
    assert raw["dim"] == 512 and raw["provider"] == embedder.provider and raw["random_weights"] is True
    b64 = httpx.post(server.url + "/v1/embed", json={"images": [base64.b64encode(b).decode() for b in blobs]}).json()
    assert np.array_equal(np.asarray(b64["embeddings"], np.float32), embedder.embed(blobs))
    files = [("file", (f"{i}.img", b, "application/octet-stream")) for i, b in enumerate(blobs)]
    multi = httpx.post(server.url + "/v1/embed", files=files, params={"normalize": "true"}).json()
    expected = embedder.embed(blobs)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert multi["normalized"] is True
    assert np.allclose(np.asarray(multi["embeddings"], np.float32), expected, atol=1e-6)


def test_embeddings_batched_with_other_requests_stay_bit_for_bit(server: Server, model_dir: Path) -> None:
    """Concurrent requests share inference batches; each still gets exactly Embedder.embed's vector."""
    blobs = [image_bytes(20 + i, "JPEG") for i in range(6)]
    got: dict[int, np.ndarray] = {}

    def client(i: int) -> None:
        r = httpx.post(server.url + "/v1/embed", content=blobs[i], headers={"content-type": "image/jpeg"}, timeout=60)
        got[i] = np.asarray(r.json()["embeddings"][0], np.float32)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    expected = Embedder(model_dir).embed(blobs)
    assert sorted(got) == list(range(len(blobs)))
    for i, vector in got.items():
        assert np.array_equal(vector, expected[i]), i


def test_similarity_equals_compare(server: Server, model_dir: Path, images: list[Path]) -> None:
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in images[:2]]
    score = httpx.post(server.url + "/v1/similarity", files=files).json()["score"]
    cli = run_cli("compare", str(images[0]), str(images[1]), "--model", str(model_dir), "--json")
    assert score == json.loads(cli.stdout)["score"]
    assert error_of(httpx.post(server.url + "/v1/similarity", files=files[:1]), 400)["kind"] == "two_images"


def test_search_and_duplicates_equal_the_cli(server: Server, model_dir: Path, store: Path, images: list[Path]) -> None:
    query = images[1]
    found = httpx.post(server.url + "/v1/search", params={"k": 3}, content=query.read_bytes(),
                       headers={"content-type": "image/jpeg"}).json()
    cli = json.loads(run_cli("search", str(query), "--store", str(store), "--model", str(model_dir), "-k", "3",
                             "--json").stdout)
    assert found["generation"] == cli["generation"]
    assert [(m["path"], m["score"]) for m in found["matches"]] == [
        (m["path"], m["score"]) for m in cli["results"][0]["matches"]]
    assert found["matches"][0]["path"] == str(query)
    # by vector: the same matches
    vector = httpx.post(server.url + "/v1/embed", content=query.read_bytes(), headers={"content-type": "image/jpeg"})
    by_vector = httpx.post(server.url + "/v1/search", json={"vector": vector.json()["embeddings"][0], "k": 3}).json()
    assert by_vector["matches"] == found["matches"]
    dup = httpx.post(server.url + "/v1/duplicates", content=query.read_bytes(),
                     headers={"content-type": "image/jpeg"}).json()
    threshold = json.loads((model_dir / "manifest.json").read_text())["dedup"]["threshold"]
    assert dup["threshold"] == threshold and dup["is_duplicate"] is True
    assert dup["matches"][0]["path"] == str(query) and all(m["score"] >= threshold for m in dup["matches"])
    strict_dup = httpx.post(server.url + "/v1/duplicates", params={"threshold": 1.0}, content=image_bytes(99),
                            headers={"content-type": "image/png"}).json()
    assert strict_dup["threshold"] == 1.0 and all(m["score"] >= 1.0 for m in strict_dup["matches"])


def test_a_growing_store_is_picked_up_without_restart(server: Server, model_dir: Path, store: Path,
                                                       images: list[Path]) -> None:
    before = httpx.post(server.url + "/v1/search", params={"k": 50}, content=images[5].read_bytes(),
                        headers={"content-type": "image/jpeg"}).json()
    assert str(images[5]) not in [m["path"] for m in before["matches"]]
    result = run_cli("embed", *map(str, images), "--store", str(store), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    after = httpx.post(server.url + "/v1/search", params={"k": 50}, content=images[5].read_bytes(),
                       headers={"content-type": "image/jpeg"}).json()
    assert after["generation"] > before["generation"]
    assert after["matches"][0]["path"] == str(images[5]) and len(after["matches"]) == 6


def test_bad_requests_get_one_json_error_shape(server: Server) -> None:
    url = server.url
    bad = error_of(httpx.post(url + "/v1/embed", content=b"not an image", headers={"content-type": "image/png"}), 422)
    assert bad["kind"] == "not_an_image"
    trunc = error_of(httpx.post(url + "/v1/embed", content=image_bytes(1, "JPEG")[:200],
                                headers={"content-type": "image/jpeg"}), 422)
    assert trunc["kind"] in ("truncated", "decode_error")
    eps = error_of(httpx.post(url + "/v1/embed", content=b"%!PS-Adobe-3.0 EPSF", headers={"content-type": "image/eps"}), 422)
    assert eps["kind"] == "format_refused"
    assert error_of(httpx.post(url + "/v1/embed", content=b"x", headers={"content-type": "text/plain"}), 415)
    assert error_of(httpx.post(url + "/v1/embed", content=b"{", headers={"content-type": "application/json"}), 400)
    assert error_of(httpx.post(url + "/v1/embed", json={"images": ["@@@"]}), 400)["kind"] == "bad_base64"
    assert error_of(httpx.post(url + "/v1/embed", json={"images": []}), 400)["kind"] == "no_image"
    assert error_of(httpx.post(url + "/v1/search", json={"vector": [1.0, 2.0]}), 400)["kind"] == "bad_vector"
    assert error_of(httpx.post(url + "/v1/search", json={"vector": [0.0] * 512, "k": 0}), 400)
    assert error_of(httpx.post(url + "/v1/duplicates", json={"vector": [1.0] * 512, "threshold": 2}), 400)
    assert error_of(httpx.get(url + "/v1/nothing"), 404)
    assert error_of(httpx.get(url + "/v1/embed"), 405)


def test_limits_auth_and_back_pressure(strict: Server) -> None:
    url, auth = strict.url, {"authorization": f"Bearer {TOKEN}"}
    png = {"content-type": "image/png"}
    assert error_of(httpx.post(url + "/v1/embed", content=image_bytes(1), headers=png), 401)["kind"] == "unauthorized"
    wrong = httpx.post(url + "/v1/embed", content=image_bytes(1), headers={**png, "authorization": "Bearer nope"})
    assert error_of(wrong, 401) and wrong.headers["www-authenticate"] == "Bearer"
    assert error_of(httpx.get(url + "/metrics"), 401)
    assert httpx.get(url + "/health/ready").status_code == 200  # health stays open for probes
    assert httpx.post(url + "/v1/embed", content=image_bytes(1), headers={**png, **auth}).status_code == 200
    big = image_bytes(2, "PNG", (400, 400)) + b"\0" * 60_000
    assert error_of(httpx.post(url + "/v1/embed", content=big, headers={**png, **auth}), 413)["kind"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield b"\0" * 8192

    assert error_of(httpx.post(url + "/v1/embed", content=chunks(), headers={**png, **auth}), 413)
    three = [("file", (f"{i}.png", image_bytes(i), "image/png")) for i in range(3)]
    assert error_of(httpx.post(url + "/v1/embed", files=three, headers=auth), 413)["kind"] == "too_many_images"
    # queue of 2 images: concurrent 2-image requests overflow it; only 200 and 429 come back
    statuses: list[int] = []
    retry: list[str] = []

    def client() -> None:
        r = httpx.post(url + "/v1/embed", files=three[:2], headers=auth, timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 429:
            error_of(r, 429)
            retry.append(r.headers["retry-after"])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert set(statuses) <= {200, 429} and 429 in statuses and 200 in statuses, statuses
    assert all(int(v) >= 1 for v in retry)
    metrics = httpx.get(url + "/metrics", headers=auth).text
    assert 'vggsim_requests_total{method="POST",route="/v1/embed",status="429"}' in metrics
    for stage in ("decode", "queue_wait", "inference"):
        assert f'vggsim_stage_seconds_count{{stage="{stage}"}}' in metrics
    assert "vggsim_batch_size_bucket" in metrics and "vggsim_queue_depth" in metrics


def test_deadline_gives_503(model_dir: Path) -> None:
    s = Server(model_dir, "--deadline", "0.001", "--max-wait-ms", "200")
    try:
        r = httpx.post(s.url + "/v1/embed", content=image_bytes(3), headers={"content-type": "image/png"}, timeout=30)
        assert error_of(r, 503)["kind"] == "deadline"
        assert httpx.get(s.url + "/health/ready").status_code == 200
    finally:
        s.stop()


def test_a_test_server_whose_port_was_taken_starts_again_on_another(server: Server, model_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Under pytest-xdist another worker's server can bind the "free" port first and answer the readiness
    probe: the test then talked to the wrong server while its own had exited. The helper now waits for
    its own process to hold the port and starts again on another when the port was taken."""
    import support

    handed = iter([server.port])  # the first "free" port is the running module server's
    real = support.free_port
    monkeypatch.setattr(support, "free_port", lambda: next(handed, None) or real())
    second = Server(model_dir)
    try:
        assert second.port != server.port
        assert support.listens_on(second.process.pid, second.port) and second.process.poll() is None
    finally:
        assert second.stop() == 0, second.output()


def test_sigterm_drains_in_flight_requests(model_dir: Path) -> None:
    s = Server(model_dir, "--max-batch", "4")
    files = [("file", (f"{i}.png", image_bytes(i), "image/png")) for i in range(16)]  # 4 batches: seconds of work
    result: dict[str, Any] = {}

    def client() -> None:
        r = httpx.post(s.url + "/v1/embed", files=files, timeout=120)
        result["status"], result["rows"] = r.status_code, len(r.json().get("embeddings", []))

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "vggsim_batch_size_count 0.0" in httpx.get(s.url + "/metrics").text:
        time.sleep(0.05)  # until the first batch has run: the request is surely in progress
    assert not result, "the request finished before SIGTERM: the test would prove nothing"
    s.process.send_signal(signal.SIGTERM)
    thread.join(120)
    assert result == {"status": 200, "rows": 16}
    assert s.stop() == 0, s.output()


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    """Property-based requests from /openapi.json: no 5xx, bounded in examples and time."""
    pytest.importorskip("schemathesis", reason="needs schemathesis (the test extra)")
    command = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()", "run",
               server.url + "/openapi.json", "--checks", "not_a_server_error", "--max-examples", "15",
               "--max-time", "40", "--request-timeout", "20", "--seed", "1", "--no-color",
               "--generation-database", "none", "--phases", "examples,coverage,fuzzing"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=tmp_path)  # its files go there
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert httpx.get(server.url + "/health/ready").status_code == 200


def test_serve_without_the_extra_says_what_to_install(model_dir: Path) -> None:
    code = ("import sys; sys.modules['fastapi'] = None; from vggsim.cli import main; "
            f"raise SystemExit(main(['serve', '--model', {str(model_dir)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    from vggsim.errors import pip_command

    assert result.returncode == 2 and pip_command("serve") in result.stderr, result.stderr


def test_import_vggsim_does_not_import_the_web_stack() -> None:
    code = ("import sys, vggsim, vggsim.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fastapi', 'uvicorn', 'starlette', 'prometheus_client', 'multipart', 'pydantic')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
