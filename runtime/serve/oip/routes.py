"""The /v2 routes: the Open Inference Protocol (KServe v2, Triton's HTTP API) for one model, "vggsim".

Thin, like the /v1 routes: parse (vggsim.serve.oip.codec), embed through the same admission,
decode pool, batching, deadline and metrics as /v1 (vggsim.serve.embedding), answer. Health
routes are open (for probes); the others take the bearer token when the service has one.
Errors are ``{"error": "message"}`` with the status (vggsim.serve.problems).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from vggsim.serve.embedding import embed_pixels, embed_uploads
from vggsim.serve.inputs import Upload, read_body
from vggsim.serve.oip.codec import HEADER_LENGTH, IMAGES, OUTPUT, PIXELS, encode_infer, parse_infer
from vggsim.serve.problems import OIP_PREFIX, ApiError, AsciiJSONResponse
from vggsim.serve.routes import check_token, facts, state_of
from vggsim.serve.state import ServiceState
from vggsim.version import __version__

#: the model's name and its one version in the protocol's paths
MODEL, VERSION = "vggsim", "1"
_TAGS: list[Any] = ["open inference protocol"]


def _model(name: str, version: str | None = None) -> None:
    if name != MODEL:
        raise ApiError(404, "not_found", f"unknown model {name!r}: this service serves {MODEL!r}")
    if version is not None and version != VERSION:
        raise ApiError(404, "not_found", f"unknown version {version!r} of {MODEL!r}: it has version {VERSION!r}")


def _ready(state: ServiceState, body: dict[str, Any]) -> Response:
    reason = state.not_ready()
    if reason is not None:
        raise ApiError(503, "not_ready", reason)
    # Triton's client reads only the status code; KServe's reads the body's "ready" (its spec's
    # {"ready": true}, with the model's name for a model): both are given
    return AsciiJSONResponse({**body, "ready": True})


def _metadata(state: ServiceState) -> dict[str, Any]:
    width, height = state.embedder.input_size
    return {"name": MODEL, "versions": [VERSION], "platform": "onnxruntime_onnx",
            "inputs": [{"name": IMAGES, "datatype": "BYTES", "shape": [-1]},
                       {"name": PIXELS, "datatype": "FP32", "shape": [-1, height, width, 3]}],
            "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, state.embedder.dim]}],
            "parameters": facts(state)}


async def _infer(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.config.max_body_bytes)
    # in a thread: parsing a JSON body of tens of MB takes seconds, which the event loop (every other
    # request, the health routes) must not wait for
    parsed = await asyncio.to_thread(parse_infer, body, request.headers.get(HEADER_LENGTH), state.embedder.input_size,
                                     state.config.max_images)
    if parsed.images is not None:
        uploads = [Upload(f"{IMAGES}[{number}]", data) for number, data in enumerate(parsed.images)]
        vectors = await embed_uploads(state, uploads, request)
    else:
        assert parsed.pixels is not None
        vectors = await embed_pixels(state, parsed.pixels, request)
    content, headers = encode_infer(parsed, vectors, MODEL, VERSION, facts(state))
    return Response(content, headers=headers)


def add_oip_routes(app: FastAPI) -> None:
    v2 = APIRouter(prefix=OIP_PREFIX, tags=_TAGS)
    auth = [Depends(check_token)]

    @v2.get("", dependencies=auth)
    async def server_metadata() -> Response:
        """Server metadata: name, version and the protocol extensions it speaks."""
        return AsciiJSONResponse({"name": "vggsim", "version": __version__, "extensions": ["binary_tensor_data"]})

    @v2.get("/health/live")
    async def server_live() -> Response:
        """The process answers."""
        return AsciiJSONResponse({"live": True})

    @v2.get("/health/ready")
    async def server_ready(request: Request) -> Response:
        """The model is loaded and warmed up, and the service is not draining (503 otherwise)."""
        return _ready(state_of(request), {})

    @v2.get("/models/{name}", dependencies=auth)
    async def model_metadata(request: Request, name: str) -> Response:
        """The model's inputs (`images`: BYTES [-1] encoded images, or `pixels`: FP32 [-1,224,224,3]) and output."""
        _model(name)
        return AsciiJSONResponse(_metadata(state_of(request)))

    @v2.get("/models/{name}/versions/{version}", dependencies=auth)
    async def model_version_metadata(request: Request, name: str, version: str) -> Response:
        """The model's metadata, for its one version ("1")."""
        _model(name, version)
        return AsciiJSONResponse(_metadata(state_of(request)))

    @v2.get("/models/{name}/ready", dependencies=auth)
    async def model_ready(request: Request, name: str) -> Response:
        """The model answers inference requests (503 while warming up or draining)."""
        _model(name)
        return _ready(state_of(request), {"name": MODEL})

    @v2.get("/models/{name}/versions/{version}/ready", dependencies=auth)
    async def model_version_ready(request: Request, name: str, version: str) -> Response:
        """The model's one version answers inference requests."""
        _model(name, version)
        return _ready(state_of(request), {"name": MODEL, "version": VERSION})

    @v2.post("/models/{name}/infer", dependencies=auth)
    async def infer(request: Request, name: str) -> Response:
        """Embeddings (FP32 [n, 512], bit-identical to `Embedder.embed`) of `images` or `pixels`;
        JSON or the binary tensor extension (Inference-Header-Content-Length)."""
        _model(name)
        return await _infer(request)

    @v2.post("/models/{name}/versions/{version}/infer", dependencies=auth)
    async def infer_version(request: Request, name: str, version: str) -> Response:
        """Inference on the model's one version."""
        _model(name, version)
        return await _infer(request)

    app.include_router(v2)
