"""The Open Inference Protocol (KServe v2 / Triton HTTP) in `vggsim serve`, driven by Triton's and KServe's clients.

Real uvicorn processes on free loopback ports; `tritonclient[http]` and `kserve.InferenceRESTClient`
(clients nobody here wrote) speak both the binary tensor extension and plain JSON. KServe's client
runs in its own virtual environment (.venv-kserve, made by scripts/test.sh; VGGSIM_KSERVE_PYTHON
names another), as kserve brings uvloop, Kubernetes and pandas that the suite must not import.
The vectors must be bit-identical to ``Embedder.embed`` of the same files, as /v1 gives them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

for _module in ("fastapi", "uvicorn", "httpx", "tritonclient.http"):
    pytest.importorskip(_module, reason=f"the OIP tests need the serve and test extras ({_module} missing)")

import httpx  # noqa: E402
import tritonclient.http as triton  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402
from support import TOKEN, Server, image_bytes  # noqa: E402

from vggsim import Embedder, load_image  # noqa: E402
from vggsim.serve.inputs import from_json  # noqa: E402
from vggsim.serve.oip.codec import parse_infer  # noqa: E402
from vggsim.serve.problems import ApiError  # noqa: E402


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    s = Server(model_dir, "--max-images", "8")
    yield s
    s.stop()


def client(server: Server, **kw: object) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120.0, **kw)


def images_input(data: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(data)], "BYTES")
    values = data if binary else [base64.b64encode(d) for d in data]  # JSON carries images as base64 text
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_gets_the_embedders_vectors_bit_for_bit(
    server: Server, embedder: Embedder, photos: list[Path], binary: bool
) -> None:
    files = photos[:3]
    expected = embedder.embed(files)
    wanted = [triton.InferRequestedOutput("embeddings", binary_data=binary)]
    result = client(server).infer("vggsim", [images_input([p.read_bytes() for p in files], binary)],
                                  outputs=wanted, request_id="req-7")
    got = result.as_numpy("embeddings")
    assert got.dtype == np.float32 and got.shape == (3, embedder.dim)
    assert np.array_equal(got, expected)
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "vggsim"
    assert response["parameters"]["model_sha256"] == embedder.model_sha256


KSERVE_PYTHON = Path(os.environ.get("VGGSIM_KSERVE_PYTHON") or Path(__file__).parents[1] / ".venv-kserve/bin/python")


def test_kserve_client_gets_the_embedders_vectors_bit_for_bit(
    server: Server, embedder: Embedder, photos: list[Path], tmp_path: Path
) -> None:
    if not KSERVE_PYTHON.exists() or subprocess.run([str(KSERVE_PYTHON), "-c", "import kserve"],
                                                    capture_output=True, timeout=120).returncode != 0:
        pytest.skip(f"needs KServe's client in its own venv at {KSERVE_PYTHON}: python -m venv .venv-kserve && "
                    ".venv-kserve/bin/pip install kserve==0.21.0 (scripts/test.sh makes it)")
    files = photos[:3]
    np.save(tmp_path / "pixels.npy", load_image(files[0])[None])
    run = subprocess.run([str(KSERVE_PYTHON), str(Path(__file__).with_name("kserve_client_run.py")), server.url,
                          str(tmp_path / "out.npz"), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    expected = embedder.embed(files)
    for kind in ("binary", "json"):
        assert got[kind].dtype == np.float32 and np.array_equal(got[kind], expected), kind
    assert np.array_equal(got["pixels"], expected[:1])
    assert got["health"].tolist() == [True, True, True, False]


def test_pixels_in_fp32_give_the_same_vectors(server: Server, embedder: Embedder, photos: list[Path]) -> None:
    files = photos[:2]
    pixels = np.stack([load_image(p) for p in files]).astype(np.float32)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    got = client(server).infer("vggsim", [tensor], model_version="1").as_numpy("embeddings")  # binary by default
    assert np.array_equal(got, embedder.embed(files))


def test_health_and_metadata_through_the_client(server: Server, embedder: Embedder) -> None:
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("vggsim") and c.is_model_ready("vggsim", "1")
    assert not c.is_model_ready("other")
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    meta = c.get_model_metadata("vggsim")
    assert meta["outputs"] == [{"name": "embeddings", "datatype": "FP32", "shape": [-1, embedder.dim]}]
    width, height = embedder.input_size
    assert {"name": "pixels", "datatype": "FP32", "shape": [-1, height, width, 3]} in meta["inputs"]
    assert c.get_model_metadata("vggsim", "1") == meta


def test_errors_are_the_protocols_shape_with_one_line(server: Server) -> None:
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str) and "\n" not in body["error"]
        assert "Traceback" not in response.text
        return str(body["error"])

    base = server.url + "/v2/models"
    assert "unknown model" in error(httpx.post(base + "/resnet/infer", json={"inputs": []}), 404)
    assert "unknown version" in error(httpx.get(base + "/vggsim/versions/9"), 404)
    broken = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                          "data": [base64.b64encode(b"not an image").decode()]}]}
    assert error(httpx.post(base + "/vggsim/infer", json=broken), 422).startswith("images[0]: ")
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 999}}]}).encode()
    cut = httpx.post(base + "/vggsim/infer", content=header + b"\x05\x00\x00\x00abc",
                     headers={"inference-header-content-length": str(len(header))})
    assert "binary_data_size" in error(cut, 400)
    assert "exactly one input" in error(httpx.post(base + "/vggsim/infer", content=b'{"inputs": []}'), 400)
    assert "not valid JSON" in error(httpx.post(base + "/vggsim/infer", content=b"{"), 400)
    many = [image_bytes(i) for i in range(9)]
    with pytest.raises(InferenceServerException, match="over the limit of 8"):
        client(server).infer("vggsim", [images_input(many, True)])
    metrics = httpx.get(server.url + "/metrics").text
    assert 'route="/v2/models/{name}/infer"' in metrics


def test_the_token_guards_inference_but_not_the_probes(model_dir: Path) -> None:
    s = Server(model_dir, env={"VGGSIM_SERVE_TOKEN": TOKEN})
    try:
        assert httpx.get(s.url + "/v2/health/ready").status_code == 200
        refused = httpx.post(s.url + "/v2/models/vggsim/infer", json={"inputs": []})
        assert refused.status_code == 401 and set(refused.json()) == {"error"}
        c = client(s)
        with pytest.raises(InferenceServerException):
            c.infer("vggsim", [images_input([image_bytes(1)], True)])
        ok = c.infer("vggsim", [images_input([image_bytes(1)], True)], headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.as_numpy("embeddings").shape[0] == 1
    finally:
        s.stop()


@pytest.mark.parametrize("body, message", [
    ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": ["AA=="]}]}, "does not match"),
    ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}, "not valid base64"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 2, 2, 3], "data": [0] * 12}]}, "[n,224,224,3]"),
    ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}, "unknown input"),
    ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}],
      "outputs": [{"name": "logits"}]}, "unknown output"),
    ({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [True], "data": ["AA=="]}]}, '"shape"'),
])
def test_malformed_requests_are_named(body: dict[str, object], message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_infer(json.dumps(body).encode(), None, (224, 224), 8)
    assert caught.value.status == 400 and message in caught.value.message


def test_inputs_that_used_to_answer_500_or_nan_are_400s() -> None:
    def refused(body: bytes, header_length: str | None = None) -> str:
        with pytest.raises(ApiError) as caught:
            parse_infer(body, header_length, (224, 224), 8)
        assert caught.value.status == 400
        return caught.value.message

    one = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]}).encode()
    assert "Inference-Header-Content-Length" in refused(one, "9" * 5000)  # int() refuses 4,300+ digits: was a 500
    pixels = np.full((1, 224, 224, 3), 3e38, np.float32)  # finite, but the embedding overflowed to NaN
    header = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 224, 224, 3],
                                     "parameters": {"binary_data_size": pixels.nbytes}}]}).encode()
    assert "0 to 255" in refused(header + pixels.tobytes(), str(len(header)))
    huge = b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 224, 224, 3], "data": [' + \
        b"1" * 400 + b", 0" * (224 * 224 * 3 - 1) + b"]}]}"
    assert "out of range" in refused(huge)  # a 400-digit integer: was an OverflowError, 500


def test_json_that_would_swell_in_memory_is_refused_before_it_is_parsed() -> None:
    # a 31 MB body of "[]," held the event loop for 8 s and grew the service by 800 MB while parsed
    lists = b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 224, 224, 3], "data": [' + \
        b"[]," * 1_000_000 + b"[]]}]}"
    with pytest.raises(ApiError, match="binary tensor extension"):
        parse_infer(lists, None, (224, 224), 8)
    keys = b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 224, 224, 3], "x": {' + \
        b",".join(b'"k%d": 0' % i for i in range(300_000)) + b'}, "data": []}]}'
    with pytest.raises(ApiError, match="binary tensor extension"):  # keys cost more than numbers: weighed so
        parse_infer(keys, None, (224, 224), 8)
    with pytest.raises(ApiError, match="more than 20,000"):  # /v1's JSON bodies alike
        from_json(b'{"images": [' + b"[]," * 30_000 + b"[]]}", 8)


def test_nested_json_data_is_read_flat_and_deep_nesting_is_no_crash() -> None:
    one = base64.b64encode(b"x").decode()
    parsed = parse_infer(json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2],
                                                 "data": [[one], [[one]]]}]}).encode(), None, (224, 224), 8)
    assert parsed.images == [b"x", b"x"] and not parsed.binary_output
    deep = b'{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"
    with pytest.raises(ApiError):
        parse_infer(deep, None, (224, 224), 8)
