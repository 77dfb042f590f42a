"""One JSON error shape for every failure: ``{"error": {"code", "kind", "message"}}``
(``{"error": "message"}`` under /v2, the Open Inference Protocol's shape).

``code`` is the HTTP status, ``kind`` a short machine-readable cause (an ImageError's kind
for a bad image), ``message`` one line for a person. Every exception ends here, so no
response ever carries a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from vggsim.errors import one_line, ImageError, StoreError, VggsimError
from vggsim.postgres.connection import PostgresError

log = logging.getLogger("vggsim.serve")


class AsciiJSONResponse(JSONResponse):
    """JSON with ASCII escapes: stored paths that are not valid UTF-8 (surrogate escapes) stay lossless."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``headers`` (Retry-After, WWW-Authenticate) go along."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


#: routes of the Open Inference Protocol (vggsim.serve.oip), whose errors are ``{"error": "message"}``
OIP_PREFIX = "/v2"


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None,
                   path: str = "") -> Response:
    """The error answer; under ``/v2`` in the Open Inference Protocol's shape, which its clients read."""
    message = one_line(message)
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return AsciiJSONResponse({"error": message}, status_code=status, headers=headers)
    return AsciiJSONResponse({"error": {"code": status, "kind": kind, "message": message}}, status_code=status,
                             headers=headers)


_HTTP_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 415: "unsupported_media_type", 429: "busy", 503: "unavailable"}


def install_handlers(app: FastAPI) -> None:
    """Route every exception to the one error shape."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.kind, exc.message, exc.headers, request.url.path)

    async def image_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ImageError)
        return error_response(422, exc.kind, f"{exc.source}: {exc.reason}", path=request.url.path)

    async def vggsim_error(request: Request, exc: Exception) -> Response:
        kind = "store" if isinstance(exc, StoreError) else "postgres" if isinstance(exc, PostgresError) else "bad_request"
        status = 409 if isinstance(exc, StoreError) else 503 if isinstance(exc, PostgresError) else 400
        return error_response(status, kind, str(exc).splitlines()[0] if str(exc) else kind, path=request.url.path)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}",
                              path=request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}), request.url.path)

    async def anything(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the service log",
                              path=request.url.path)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(VggsimError, vggsim_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, anything)
