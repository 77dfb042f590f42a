"""Malformed and unusual requests to ``vggsim serve`` are answered with a status and a JSON error, never a 500:
deep JSON, huge numbers, odd k and thresholds, odd methods and names, tokens in UTF-8, thumbnails of other
generations. The app runs in FastAPI's test client (its lifespan warms the model up once per module); no
test here needs more than one inference, and none needs a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra (pip install 'vggsim[serve]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from vggsim import Embedder  # noqa: E402
from vggsim.store import StoreWriter  # noqa: E402
from vggsim.serve.app import create_app  # noqa: E402
from vggsim.serve.config import ServeConfig  # noqa: E402
from vggsim.store import Record, StoreIdentity  # noqa: E402, StoreWriter

DIM = 512
#: the service answers its own names only (vggsim.serve.hosts), not the test client's default "testserver"
LOCAL = "http://127.0.0.1:8000"


def _png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def _add(store: Path, embedder: Embedder, files: list[Path], seed: int) -> None:
    rng = np.random.default_rng(seed)
    with StoreWriter.open(store, StoreIdentity.of(embedder)) as writer:
        for path in files:
            info = path.stat()
            writer.add(Record(str(path), "ok", info.st_size, info.st_mtime_ns),
                       rng.standard_normal(DIM).astype(np.float32))


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path, Embedder]]:
    root = tmp_path_factory.mktemp("requests")
    (root / "photos").mkdir()
    files = [_png(root / "photos" / f"{i}.png", i) for i in range(4)]
    embedder = Embedder(model_dir, providers="cpu")
    _add(root / "store", embedder, files, 0)
    app = create_app(ServeConfig(model=str(model_dir), store=str(root / "store"), providers="cpu"), embedder)
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL) as client:
        yield client, root, embedder


def _is_error(response: Any, status: int, kind: str | None = None) -> bool:
    body = response.json()
    return (response.status_code == status and set(body) == {"error"}
            and set(body["error"]) == {"code", "kind", "message"}
            and (kind is None or body["error"]["kind"] == kind))


# a deeply nested JSON body is a 500 (RecursionError escapes inputs._from_json).
@pytest.mark.parametrize("route", ["/v1/embed", "/v1/similarity", "/v1/search", "/v1/duplicates"])
def test_deeply_nested_json_is_bad_json_not_500(served: tuple[TestClient, Path, Embedder], route: str) -> None:
    client = served[0]
    body = '{"a":' * 100_000 + "1" + "}" * 100_000
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert _is_error(response, 400, "bad_json"), (response.status_code, response.text[:300])


# an integer too large for float64 inside "vector" is a 500 (OverflowError in np.asarray).
@pytest.mark.parametrize("route", ["/v1/search", "/v1/duplicates"])
def test_huge_integer_in_vector_is_bad_vector_not_500(served: tuple[TestClient, Path, Embedder], route: str) -> None:
    client = served[0]
    body = '{"vector": [1' + "0" * 400 + ",0" * (DIM - 1) + "]}"
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert _is_error(response, 400, "bad_vector"), (response.status_code, response.text[:300])


# k given as a string that str.isdigit() accepts but int() refuses is a 500 (routes._k).
@pytest.mark.parametrize("k", ["\u00b2", "9" * 5000])
def test_k_that_int_cannot_parse_is_400_not_500(served: tuple[TestClient, Path, Embedder], k: str) -> None:
    client = served[0]
    response = client.post("/v1/search", json={"vector": [0.1] * DIM, "k": k})
    assert _is_error(response, 400, "bad_request"), (response.status_code, response.text[:300])
    response = client.post("/v1/search", json={"vector": [0.1] * DIM, "k": "3"})  # the multipart/JSON string form works
    assert response.status_code == 200


# a threshold integer too large for float is a 500 (math.isfinite raises OverflowError).
def test_huge_integer_threshold_is_400_not_500(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    body = '{"vector": ' + str([0.1] * DIM) + ', "threshold": 1' + "0" * 400 + "}"
    response = client.post("/v1/duplicates", content=body, headers={"Content-Type": "application/json"})
    assert _is_error(response, 400, "bad_request"), (response.status_code, response.text[:300])


# an unexpected exception is answered 500 "see the service log" but nothing is logged:
# _RequestMetrics catches it before Starlette's ServerErrorMiddleware could call the handler.
def test_an_internal_error_is_logged(served: tuple[TestClient, Path, Embedder], caplog: pytest.LogCaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client = served[0]
    import vggsim.serve.routes as routes

    def boom(*_: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(routes, "_query_vector", boom)
    with caplog.at_level(logging.ERROR):
        response = client.post("/v1/search", json={"vector": [0.1] * DIM})
    assert _is_error(response, 500, "internal")
    assert any("injected failure" in r.getMessage() or "RuntimeError" in r.getMessage() for r in caplog.records), \
        "a 500 says 'see the service log' but the service logged nothing"


# a large-magnitude (but float32-finite, accepted) query vector gives every match score 0:
# the float32 norm overflows to inf in similarity.l2_normalize. Cosine is scale-free.
def test_scaled_query_vector_gives_the_same_matches(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    direction = np.random.default_rng(7).standard_normal(DIM)
    direction /= np.abs(direction).max()
    small = client.post("/v1/search", json={"vector": direction.tolist(), "k": 4})
    big = client.post("/v1/search", json={"vector": (direction * 1e30).tolist(), "k": 4})
    assert small.status_code == 200
    if big.status_code == 400:  # refusing such a vector would be fine too
        return
    scores = [round(m["score"], 5) for m in small.json()["matches"]]
    assert [round(m["score"], 5) for m in big.json()["matches"]] == scores, big.text[:400]


# the thumbnail of a match is refused (410) once one commit lands after the search,
# though thumbnails.SNAPSHOTS_KEPT exists "so thumbnails of a search still resolve after a commit lands".
def test_thumbnail_of_a_search_resolves_after_one_commit(model_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    embedder = Embedder(model_dir, providers="cpu")
    _add(tmp_path / "store", embedder, [_png(photos / "a.png", 1), _png(photos / "b.png", 2)], 0)
    app = create_app(ServeConfig(model=str(model_dir), store=str(tmp_path / "store"), providers="cpu"), embedder)
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL) as client:
        found = client.post("/v1/search", json={"vector": [0.1] * DIM, "k": 1}).json()
        _add(tmp_path / "store", embedder, [_png(photos / "c.png", 3)], 1)  # a running embed commits
        match = found["matches"][0]
        response = client.get(f"/v1/thumbnail/{match['id']}", params={"generation": found["generation"]})
        assert response.status_code == 200, response.text[:300]
        assert response.headers["content-type"] == "image/jpeg"


def test_fixture_sanity(served: tuple[TestClient, Path, Embedder]) -> None:
    """The module's app answers ordinary requests (so the failures above are the defects, not the set-up)."""
    client = served[0]
    assert client.get("/health/ready").status_code == 200
    found = client.post("/v1/search", json={"vector": [0.1] * DIM, "k": 2})
    assert found.status_code == 200 and len(found.json()["matches"]) == 2


# a multipart file name with a bare LF is echoed into the error message, which is then two lines
# (errors are documented as one line; the CLI escapes control characters, the service does not).
def test_error_message_stays_one_line_whatever_the_file_name(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    body = (b'--BND\r\nContent-Disposition: form-data; name="file"; filename="a\nb.jpg"\r\n\r\n'
            b"not an image\r\n--BND--\r\n")
    response = client.post("/v1/embed", content=body, headers={"Content-Type": "multipart/form-data; boundary=BND"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "\n" not in message and "\r" not in message, repr(message)


# every distinct HTTP method a client invents becomes a new, never-freed metrics series
# (unauthenticated; memory and /metrics grow without bound).
def test_metrics_labels_stay_bounded_whatever_the_method(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    for i in range(50):
        client.request(f"FI3METHOD{i}", "/no-such-route")
    text = client.get("/metrics").text
    assert sum("FI3METHOD" in line for line in text.splitlines()) == 0, "client-chosen methods became label values"


# Protocol corners: methods, ranges, HEAD, the schema, generations, tokens, admission, ports.
def test_out_of_range_k_and_threshold_are_400_wherever_they_are_sent(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    vector = {"vector": [0.1] * DIM}
    for params in ({"k": "0"}, {"k": "-1"}, {"k": "5000"}):
        assert _is_error(client.post("/v1/search", params=params, json=vector), 400, "bad_request"), params
    for params in ({"threshold": "0"}, {"threshold": "2"}, {"threshold": "nan"}):
        assert _is_error(client.post("/v1/duplicates", params=params, json=vector), 400, "bad_request"), params
    assert client.post("/v1/duplicates", params={"threshold": "0.5"}, json=vector).status_code == 200


def test_health_answers_head_and_the_schema_declares_the_bearer_scheme(
        served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    assert client.head("/health/live").status_code == 200 and client.head("/health/ready").status_code == 200
    schema = client.get("/openapi.json").json()
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    assert "head" not in schema["paths"]["/health/live"]


def test_a_thumbnail_of_a_generation_that_does_not_exist_yet_is_404(served: tuple[TestClient, Path, Embedder]) -> None:
    client = served[0]
    assert _is_error(client.get("/v1/thumbnail/0", params={"generation": "99"}), 404, "not_found")


def test_a_non_ascii_token_sent_as_utf8_is_accepted(model_dir: Path, tmp_path: Path) -> None:
    embedder = Embedder(model_dir, providers="cpu")
    app = create_app(ServeConfig(model=str(model_dir), providers="cpu", token="t\u00f6k-\u00fc"), embedder)
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL) as client:
        good = client.get("/v1/info", headers={"Authorization": "Bearer t\u00f6k-\u00fc".encode()})
        assert good.status_code == 200, good.text[:200]
        assert _is_error(client.get("/v1/info", headers={"Authorization": b"Bearer tok-u"}), 401, "unauthorized")


def test_admission_has_a_time_estimate_before_the_first_request(model_dir: Path) -> None:
    """Without one, a burst right after start was all admitted and then answered 503, not 429 (new-user trial)."""
    app = create_app(ServeConfig(model=str(model_dir), providers="cpu"), Embedder(model_dir, providers="cpu"))
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL):  # the lifespan has run: ready, no request yet
        per_image = app.state.vggsim.metrics.seconds_per_image
        assert per_image is not None and per_image > 0


def test_a_port_in_use_is_one_line_and_exit_1_before_the_model_loads(model_dir: Path) -> None:
    """uvicorn logged four lines after the model had loaded and warmed up, then exited 3."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "vggsim", "serve", "--model", str(model_dir), "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"vggsim: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
                                     "another process holds it: pick another --port")


def test_a_vector_of_subnormal_values_is_searched_by_its_direction(served: tuple[TestClient, Path, Embedder]) -> None:
    """Its float64 norm underflowed to 0 and it was refused as all zeros."""
    client = served[0]
    tiny = [0.0] * DIM
    tiny[3] = 5e-324
    unit = [0.0] * DIM
    unit[3] = 1.0
    found = client.post("/v1/search", json={"vector": tiny, "k": 4})
    assert found.status_code == 200, found.text[:300]
    assert found.json()["matches"] == client.post("/v1/search", json={"vector": unit, "k": 4}).json()["matches"]
