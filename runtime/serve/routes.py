"""The /v1 endpoints, health and metrics. Thin: parse, call the library or the batcher, answer."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.security import HTTPBearer
from starlette.responses import Response

from vggsim.collection import dedup_threshold, label_matches

from vggsim import validate
from vggsim.errors import ArgumentError, VggsimError
from vggsim.postgres import TableInfo
from vggsim.similarity import cosine, l2_normalize
from vggsim.store import StoreIdentity
from vggsim.serve import schemas
from vggsim.serve.embedding import embed_uploads
from vggsim.serve.inputs import parse_images
from vggsim.serve.problems import ApiError, AsciiJSONResponse
from vggsim.search.policy import IndexState
from vggsim.serve.searching import IndexReport
from vggsim.serve.state import ServiceState

#: a query vector whose norm is outside this range is searched by its direction (see _query_vector)
QUERY_NORM_RANGE = (1e-15, 1e15)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": schemas.ErrorResponse} for code in
                                           (400, 401, 409, 413, 415, 422, 429, 503)}


def state_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.vggsim
    return state


#: declares the bearer scheme in /openapi.json (the Authorize button of /docs); the check itself is check_token's
_BEARER = Depends(HTTPBearer(auto_error=False, description="the value of $VGGSIM_SERVE_TOKEN, when the service has one"))


async def check_token(request: Request, _: Any = _BEARER) -> None:
    """Bearer auth when a token is set (constant-time comparison)."""
    token = state_of(request).config.token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    # Starlette decodes header bytes as latin-1: back to the bytes the client sent (UTF-8 from curl and
    # browsers), compared with the token's UTF-8 bytes, so that a non-ASCII token can match
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("latin-1"),
                                                                 token.encode("utf-8", "surrogateescape")):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def facts(state: ServiceState) -> dict[str, Any]:
    e = state.embedder
    return {"model_sha256": e.model_sha256, "provider": e.provider, "random_weights": bool(e.manifest.random_weights)}


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, "bad_request", f"{name} must be true or false")


def _k(value: Any, state: ServiceState) -> int:
    # isascii: str.isdigit() also accepts "²" and other digits that int() refuses; 12 digits: int() refuses
    # strings of over 4,300 digits, and no k that long could be in range anyway
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise ApiError(400, "bad_request", f"k must be a whole number from 1 to {state.config.max_k}")
    k = int(text)
    if not 1 <= k <= state.config.max_k:
        raise ApiError(400, "bad_request", f"k must be from 1 to {state.config.max_k}, got {k}")
    return k


def snapshot_of(state: ServiceState) -> Any:
    if state.store is None:
        raise ApiError(409, "no_store", "the service was started without --store")
    snapshot = state.store.snapshot()
    snapshot.require_compatible(StoreIdentity.of(state.embedder))
    for listener in state.snapshot_listeners:
        listener(snapshot)
    return snapshot


def _synced(table: TableInfo) -> dict[str, Any]:
    """An answer's ``generation`` and ``snapshot`` from a postgres table: the store snapshot it last held in full
    (both None while a sync is under way or after one was killed), and the table's name."""
    return {"generation": table.generation, "snapshot": table.snapshot, "table": table.name}


def _fallback(used: IndexReport) -> str | None:
    """The state a search answered exactly under (the fallbacks metric's label), None when that was not a fallback."""
    return None if used.used or used.state in (IndexState.OFF, IndexState.EMPTY) else used.state.value


def _query_vector(raw: Any, dim: int) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) != dim or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        raise ApiError(400, "bad_vector", f'"vector" must be a list of {dim} numbers')
    try:
        vector = np.asarray(raw, dtype=np.float64)
    except (OverflowError, ValueError):  # an integer of 400 digits is valid JSON, but no float64
        raise ApiError(400, "bad_vector", '"vector" holds out-of-float32-range values') from None
    if not np.all(np.isfinite(vector)) or not np.all(np.abs(vector) < np.finfo(np.float32).max):
        raise ApiError(400, "bad_vector", '"vector" holds NaN, infinite or out-of-float32-range values')
    if not np.any(vector):
        raise ApiError(400, "bad_vector", '"vector" is all zeros: it has no direction to compare')
    scale = float(np.abs(vector).max())  # scaled first: the square of 5e-324 is 0 even in float64
    norm = scale * float(np.linalg.norm(vector / scale))
    if not QUERY_NORM_RANGE[0] < norm < QUERY_NORM_RANGE[1]:
        # search normalises in float32, where the squares of values past ~1e19 overflow (every score would be 0)
        # and those under ~1e-19 underflow: cosine ignores scale, so send the direction instead
        vector = vector / norm
    return vector.astype(np.float32)


async def _query(request: Request, state: ServiceState) -> tuple[np.ndarray, dict[str, Any], str | None, bytes | None]:
    """The query vector, the body's other fields, the image's content sha256 and bytes (None for a vector)."""
    body = await parse_images(request, state.config.max_body_bytes, 1)
    if "vector" in body.fields and not body.uploads:
        return _query_vector(body.fields["vector"], state.embedder.dim), body.fields, None, None
    if len(body.uploads) != 1:
        raise ApiError(400, "no_image", 'send one image (or JSON {"vector": [...]})')
    digest = hashlib.sha256(body.uploads[0].data).hexdigest()
    return (await embed_uploads(state, body.uploads, request))[0], body.fields, digest, body.uploads[0].data


def add_routes(app: FastAPI) -> None:
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_token)], responses=ERRORS)

    @v1.post("/embed", response_model=None, responses={200: {"model": schemas.EmbedResponse}},
             openapi_extra=schemas.body_doc({"type": "object", "properties": {
                 "images": schemas.B64_LIST, "normalize": {"type": "boolean"}}, "required": ["images"]}))
    async def embed(request: Request, normalize: bool = Query(False, description="L2-normalise each row")) -> Response:
        """Embeddings of one or many images: float32 values, exactly as `Embedder.embed` gives them."""
        state = state_of(request)
        body = await parse_images(request, state.config.max_body_bytes, state.config.max_images)
        normalize = _flag(body.fields.get("normalize", normalize), "normalize")
        vectors = await embed_uploads(state, body.uploads, request)
        if normalize:
            vectors = l2_normalize(vectors, np.float32)
        return AsciiJSONResponse({**facts(state), "dim": int(vectors.shape[1]), "normalized": normalize,
                                  "embeddings": vectors.tolist()})

    @v1.post("/similarity", response_model=None, responses={200: {"model": schemas.SimilarityResponse}},
             openapi_extra=schemas.body_doc({"type": "object", "properties": {
                 "images": {**schemas.B64_LIST, "minItems": 2, "maxItems": 2}}, "required": ["images"]}, files=2))
    async def similarity(request: Request) -> Response:
        """Cosine similarity of two images, as `vggsim compare` prints it."""
        state = state_of(request)
        body = await parse_images(request, state.config.max_body_bytes, 2)
        if len(body.uploads) != 2:
            raise ApiError(400, "two_images", f"send exactly two images, got {len(body.uploads)}")
        vectors = await embed_uploads(state, body.uploads, request)
        return AsciiJSONResponse({**facts(state), "score": cosine(vectors[0], vectors[1])})

    @v1.post("/search", response_model=None, responses={200: {"model": schemas.SearchResponse}},
             openapi_extra=schemas.body_doc({"type": "object", "properties": {
                 "image": {"type": "string", "contentEncoding": "base64"},
                 "vector": {"type": "array", "items": {"type": "number"}}, "k": {"type": "integer"}}}, files=1))
    async def search(request: Request, k: int = Query(10, description="matches wanted, from 1 to --max-k")) -> Response:
        """The k stored images most similar to an image (or a vector); reports the store generation searched."""
        state = state_of(request)
        if state.postgres is not None:
            query, fields, _, _ = await _query(request, state)
            k = _k(fields.get("k", k), state)
            started = time.perf_counter()
            found, table, done = await asyncio.to_thread(state.postgres.search, query, k)
            state.metrics.searched("postgres", time.perf_counter() - started)
            return AsciiJSONResponse({**facts(state), **_synced(table), "k": k, "index": done,
                                      "matches": [m.to_dict() for m in found]})
        snapshot = snapshot_of(state)
        query, fields, _, _ = await _query(request, state)
        k = _k(fields.get("k", k), state)
        started = time.perf_counter()
        assert state.search is not None
        matches, used = await asyncio.to_thread(state.search.search, snapshot, query, k)
        state.metrics.searched("index" if used.used else "exact", time.perf_counter() - started, _fallback(used))
        return AsciiJSONResponse({**facts(state), "generation": snapshot.generation, "snapshot": snapshot.snapshot_id,
                                  "k": k,
                                  "index": used.to_dict(), "matches": [m.to_dict() for m in matches]})

    @v1.post("/duplicates", response_model=None, responses={200: {"model": schemas.DuplicatesResponse}},
             openapi_extra=schemas.body_doc({"type": "object", "properties": {
                 "image": {"type": "string", "contentEncoding": "base64"},
                 "vector": {"type": "array", "items": {"type": "number"}}, "threshold": {"type": "number"}}}, files=1))
    async def duplicates(request: Request, threshold: float | None = Query(
            None, description="cosine threshold in (0, 1] (default: the model's calibrated one)")) -> Response:
        """Is this image a near-duplicate of something in the store?"""
        state = state_of(request)
        snapshot = None if state.postgres is not None else snapshot_of(state)
        query, fields, digest, data = await _query(request, state)
        value = fields.get("threshold", threshold)
        if value is None:
            value = dedup_threshold(state.embedder.manifest)
        if isinstance(value, str):  # a multipart form field
            try:
                value = float(value)
            except ValueError:
                pass
        try:
            value = validate.threshold(value)  # the library's rule, as `vggsim dedup --threshold` applies it
        except ArgumentError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        started = time.perf_counter()
        if state.postgres is not None:
            pixels = None if data is None else await asyncio.to_thread(state.decoder.pixel_digest, data, "<upload>")
            found, table, done = await asyncio.to_thread(state.postgres.duplicates, query, value, digest, pixels)
            state.metrics.searched("postgres", time.perf_counter() - started)
            return AsciiJSONResponse({**facts(state), **_synced(table), "threshold": value, "is_duplicate": bool(found),
                                      "index": done, "matches": [m.to_dict() for m in found]})
        assert snapshot is not None and state.store is not None
        assert state.search is not None
        matches, used = await asyncio.to_thread(state.search.duplicates, snapshot, query, value, digest)
        state.metrics.searched("index" if used.used else "exact", time.perf_counter() - started, _fallback(used))
        pixels = None
        if data is not None and matches:  # one of them may hold the same pixels: decode the upload again for its hash
            pixels = await asyncio.to_thread(state.decoder.pixel_digest, data, "<upload>")
        matches = await asyncio.to_thread(label_matches, snapshot, matches, digest, pixels)
        return AsciiJSONResponse({**facts(state), "generation": snapshot.generation, "snapshot": snapshot.snapshot_id,
                                  "threshold": value,
                                  "is_duplicate": bool(matches), "index": used.to_dict(),
                                  "matches": [m.to_dict() for m in matches]})

    @v1.get("/info")
    async def info(request: Request) -> Response:
        """The model's manifest facts, the store and the service limits."""
        state = state_of(request)
        e, c = state.embedder, state.config
        store = None
        if state.store is not None:
            snap = state.store.snapshot()
            used = None if state.search is None else (await asyncio.to_thread(state.search.index_for, snap))[1]
            # with a current index its count is the store's: count_ok() would build the store's tables (~0.5 GB at 1M)
            vectors = used.info["vectors"] if used is not None and used.info else await asyncio.to_thread(snap.count_ok)
            store = {"path": str(state.store.root), "generation": snap.generation, "vectors": vectors,
                     **({"index": used.to_dict()} if used is not None else {})}
        postgres = None
        if state.postgres is not None:
            postgres = (await asyncio.to_thread(state.postgres.info)).to_dict()
        try:
            threshold: float | None = dedup_threshold(e.manifest)
        except VggsimError:
            threshold = None
        return AsciiJSONResponse({
            **facts(state), "dim": e.dim, "input_size": list(e.input_size), "preprocess": e.spec.to_dict(),
            "precision": e.manifest.precision, "dedup_threshold": threshold, "store": store,
            "search_backend": "postgres" if state.postgres is not None else "store", "postgres": postgres,
            "limits": {"max_batch": c.max_batch, "max_wait_ms": c.max_wait_ms, "queue_size": c.queue_size,
                       "max_body_bytes": c.max_body_bytes, "max_images": c.max_images, "deadline_s": c.deadline_s,
                       "max_k": c.max_k}, "auth": c.token is not None})

    app.include_router(v1)

    @app.get("/health/live", tags=["health"])
    async def live() -> Response:
        """The process answers."""
        return AsciiJSONResponse({"status": "live"})

    @app.get("/health/ready", tags=["health"], responses={503: {"model": schemas.ErrorResponse}})
    async def ready(request: Request) -> Response:
        """The model is loaded and warmed up, the service is not draining, and decodes can start."""
        reason = state_of(request).not_ready()
        if reason is not None:
            raise ApiError(503, "not_ready", reason)
        return AsciiJSONResponse({"status": "ready"})

    # HEAD too (some load balancers probe with it), kept out of the schema: one operation per route there
    app.add_api_route("/health/live", live, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/health/ready", ready, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", tags=["health"], dependencies=[Depends(check_token)])
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        data, content_type = state_of(request).metrics.render()
        return Response(data, media_type=content_type)

