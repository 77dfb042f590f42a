"""create_app(config) -> FastAPI: the service, its lifespan (warm-up, drain) and its middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from vggsim.version import __version__
from vggsim.model.embedder import Embedder
from vggsim.model.session import CUDA_SETTINGS
from vggsim.serve.bodies import BodyBudget, BodyBudgetMiddleware
from vggsim.serve.config import ServeConfig
from vggsim.serve.docs import add_docs
from vggsim.serve.hosts import HostOriginMiddleware, own_hosts
from vggsim.serve.metrics import route_label
from vggsim.serve.problems import AsciiJSONResponse, error_response, install_handlers
from vggsim.serve.oip.routes import add_oip_routes
from vggsim.serve.routes import add_routes
from vggsim.serve.review import add_review_routes
from vggsim.serve.state import ServiceState

log = logging.getLogger("vggsim.serve")
#: the status counted for a request whose client disconnected before it was answered (nginx's convention)
CLIENT_CLOSED = 499


def with_serving_batch(make: Callable[[int | None], Embedder], providers: object, max_batch: int) -> Embedder:
    """The service's Embedder from ``make(fixed_batch)``: on CUDA every batch padded to ``max_batch``.

    Batches of every size from 1 to max-batch would each start cuDNN's exhaustive algorithm
    search (about half a second each; on an H200, 8 clients waited 0.5 s a request). Used by
    ``vggsim serve`` and by :func:`create_app` alike. ``auto`` only tells after the session
    starts whether CUDA runs, so there the Embedder is built again with the fixed batch.
    """
    fixed = max_batch if isinstance(providers, str) and providers.lower() in CUDA_SETTINGS else None
    embedder = make(fixed)
    if fixed is None and embedder.provider == "CUDAExecutionProvider":  # "auto" found a GPU
        embedder = make(max_batch)
    return embedder


def load_embedder(config: ServeConfig) -> Embedder:
    providers: Any = config.providers
    if "," in providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    return with_serving_batch(
        lambda fixed: Embedder(config.model, providers=providers, threads=config.threads, fixed_batch=fixed),
        providers, config.max_batch)


def create_app(config: ServeConfig, embedder: Embedder | None = None) -> FastAPI:
    """The service for ``config`` (the model is loaded now; it is warmed up when the app starts).

    Routes reach the :class:`ServiceState` as ``request.app.state.vggsim``.
    """
    state = ServiceState.build(config, embedder or load_embedder(config))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        width, height = state.embedder.input_size
        warm = np.zeros((1, height, width, 3), np.float32)
        await state.batcher.run_direct(warm)  # warm-up: the first run is slow
        if state.metrics.seconds_per_image is None:
            # admission (ServiceState.admit) refuses work that would pass the deadline by this estimate; without
            # one, a burst at start was all admitted and answered 503 instead of 429 (new-user trial): seed it
            # from a timed second run, one image (pessimistic next to batches, replaced as batches run)
            started = time.perf_counter()
            await state.batcher.run_direct(warm)
            state.metrics.seconds_per_image = time.perf_counter() - started
        state.ready = True
        # uvicorn's own "running on" line is not printed when it is handed a bound socket (vggsim serve binds
        # before the model loads): say where, on its logger, once the service is ready
        where = f"[{config.host}]" if ":" in config.host else config.host
        logging.getLogger("uvicorn.error").info("vggsim serve ready on http://%s:%d (%s, model %s)", where,
                                                config.port, state.embedder.provider, state.embedder.model_sha256[:12])
        try:
            yield
        finally:  # uvicorn has stopped accepting and let in-flight requests finish (or time out)
            state.ready = False
            await state.batcher.drain(config.drain_s)
            state.decoder.close()
            if state.postgres is not None:
                state.postgres.close()

    app = FastAPI(title="vggsim", version=__version__, lifespan=lifespan, default_response_class=AsciiJSONResponse,
                  description="VGG16 image embeddings, similarity, search and near-duplicate checks.",
                  docs_url=None, redoc_url=None)  # /docs is served with local assets (vggsim.serve.docs)
    app.state.vggsim = state
    install_handlers(app)
    add_routes(app)
    add_oip_routes(app)
    add_review_routes(app)
    add_docs(app)
    _add_page(app, state)
    app.add_middleware(BodyBudgetMiddleware, budget=BodyBudget(max(config.body_budget_bytes, config.max_body_bytes + 1)),
                       max_body=config.max_body_bytes, refused=state.metrics.rejected.labels("body_budget").inc,
                       timeout_s=config.body_timeout_s)
    if config.cors_origins:  # preflights and Access-Control-* headers for the origins allowed in
        from starlette.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    # outside the body budget: a foreign Host or Origin is refused before its body is read
    app.add_middleware(HostOriginMiddleware, hosts=own_hosts(config.host, config.port, config.allowed_hosts),
                       check_host=config.token is None or bool(config.allowed_hosts), origins=config.cors_origins)
    app.add_middleware(_RequestMetrics)  # added last: the outermost, so it counts the body budget's 429s too
    return app


def _add_page(app: FastAPI, state: ServiceState) -> None:
    """The web page at / (vggsim.serve.page); the service works without it."""
    try:
        from vggsim.serve import page
    except ImportError as exc:
        log.warning("web page not available: %s", exc)
        return
    page.add_page_routes(app, state)


class _RequestMetrics:
    """Counts every request by route template and status, and times it; a crash still answers JSON."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing went wrong here
            status["code"] = CLIENT_CLOSED
        except Exception as exc:  # handlers answer everything else; this is the last guard against a bare 500
            # logged here: Starlette's handler for Exception sits outside this middleware and never sees it
            log.exception("internal error on %s %s: %s: %s", scope.get("method", ""), route_label(scope),
                          type(exc).__name__, exc)
            if not status["sent"]:
                await error_response(500, "internal", f"internal error ({type(exc).__name__}); see the service log",
                                     path=scope.get("path", ""))(scope, receive, send)
        finally:
            state: ServiceState = scope["app"].state.vggsim if "app" in scope else None  # type: ignore[assignment]
            if state is not None:
                state.metrics.request(route_label(scope), scope.get("method", ""), int(status["code"]),
                                      time.perf_counter() - started)
