"""The web page at ``/`` and the thumbnails it shows (``GET /v1/thumbnail/{id}``).

The page (``static/index.html``, one self-contained file: no CDN, the service may be
offline) posts the chosen image to ``/v1/search`` and shows the matches as a grid of
thumbnails. A thumbnail is named by the match's record id and the store snapshot the
search ran on, never by a path: see :mod:`vggsim.serve.thumbnails`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from vggsim.serve.problems import ApiError
from vggsim.serve.routes import ERRORS, check_token
from vggsim.serve.schemas import ErrorResponse
from vggsim.serve.thumbnails import Thumbnailer, ThumbnailError

if TYPE_CHECKING:
    from vggsim.serve.state import ServiceState

COMMON_MARKER = "/* vggsim:common.js */"


@lru_cache(maxsize=4)
def page_html(name: str = "index.html") -> str:
    """A page's HTML, read once from the package, with ``static/common.js`` (what the pages share) put in
    place of its marker: one inline script per page, which the Content-Security-Policy allows by hash."""
    static = resources.files(__package__ or "vggsim.serve").joinpath("static")
    html = static.joinpath(name).read_text("utf-8")
    return html.replace(COMMON_MARKER, static.joinpath("common.js").read_text("utf-8"), 1)


@lru_cache(maxsize=4)
def page_headers(name: str = "index.html") -> dict[str, str]:
    """The page may only talk to this service and show its own thumbnails or the user's file (blob:).

    Its one inline script is allowed by its sha256, not by 'unsafe-inline': should markup ever
    get into the page, no script in it would run.
    """
    scripts = re.findall(r"<script>(.*?)</script>", page_html(name), re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    return {
        "Content-Security-Policy": f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
                                   "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                   "frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def add_page_routes(app: FastAPI, state: ServiceState) -> None:
    """Add ``GET /`` and ``GET /v1/thumbnail/{record_id}`` to ``app`` for the :class:`ServiceState` ``state``."""
    reader = state.store
    thumbnailer = Thumbnailer(lambda: reader.snapshot() if reader is not None else None,
                              state.decoder.budget, state.embedder.max_pixels)
    state.snapshot_listeners.append(thumbnailer.remember)  # the snapshots searches answer from

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(page_html(), headers=page_headers())

    @app.get("/review", include_in_schema=False)
    async def review() -> Response:  # duplicate groups side by side, keep / not duplicates (vggsim.serve.review)
        return HTMLResponse(page_html("review.html"), headers=page_headers("review.html"))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:  # browsers ask for it: no content, rather than a 404 in every console
        return Response(status_code=204)

    @app.get("/v1/thumbnail/{record_id}", tags=["page"], response_class=Response, dependencies=[Depends(check_token)],
             responses={**ERRORS, 404: {"model": ErrorResponse}, 410: {"model": ErrorResponse},
                        200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"}})
    async def thumbnail(record_id: str, generation: str | None = None, snapshot: str | None = None) -> Response:
        """A small JPEG of the stored image with this record id (``id`` of a search match).

        ``snapshot``: the store snapshot the search answer named (``snapshot``: its generation and content);
        ``generation`` alone: the store generation it reported; without either, the current snapshot.
        404 if there is no such record or its file is gone, 410 if the file (or the store) changed.
        """
        try:
            data = await run_in_threadpool(thumbnailer.thumbnail, record_id, generation, snapshot)
        except ThumbnailError as exc:  # the service's one error shape (problems.py)
            raise ApiError(exc.status, exc.code, exc.message) from None
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"})
