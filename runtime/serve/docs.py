"""/docs: Swagger UI served from this process, so the docs work offline (FastAPI's default loads a CDN).

The assets come from the ``swagger-ui-bundle-v2`` package (the Swagger UI 5 distribution that
connexion's maintainers publish, in the ``serve`` extra), mounted at ``/docs/assets`` as FastAPI's
self-hosting recipe does. Without the package, /docs is a short page that says what to
install and links the schema; the service itself does not need it. ReDoc (/redoc) would load
its script from a CDN too, and is off.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse

log = logging.getLogger("vggsim.serve")

DOCS, ASSETS, REDIRECT = "/docs", "/docs/assets", "/docs/oauth2-redirect"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def assets_folder() -> Path | None:
    """Swagger UI's files, or None when swagger-ui-bundle-v2 is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = Path(str(swagger_ui_path))
    return folder if all((folder / name).is_file() for name in ASSET_FILES) else None


def add_docs(app: FastAPI) -> None:
    """/docs with local assets; the app must be made with ``docs_url=None, redoc_url=None``."""
    folder = assets_folder()
    openapi_url = app.openapi_url or "/openapi.json"
    if folder is None:
        log.warning("/docs shows no Swagger UI: pip install swagger-ui-bundle-v2 (part of vggsim[serve])")

        @app.get(DOCS, include_in_schema=False)
        async def no_docs() -> HTMLResponse:
            schema = html.escape(openapi_url)
            return HTMLResponse(f"<!doctype html><title>vggsim API</title><p>Swagger UI is not installed here: "
                                f"<code>pip install swagger-ui-bundle-v2</code> (part of <code>vggsim[serve]</code>). "
                                f'The schema is at <a href="{schema}">{schema}</a>.</p>')
        return
    from starlette.staticfiles import StaticFiles

    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get(DOCS, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API docs",
                                   oauth2_redirect_url=REDIRECT, swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")

    @app.get(REDIRECT, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
