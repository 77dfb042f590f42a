"""Duplicate review in the service: groups page by page, and the decisions a person makes.

``GET /v1/duplicates/groups?page=N`` answers one page of the store's duplicate groups
(:func:`vggsim.collection.find_duplicates`: tiers, keeper and reason, the store's decisions
honoured). Finding the groups is a pass over every pair of vectors (minutes at a million), far
longer than a request may take, so it runs once per store snapshot, threshold and set of
decisions, in a background thread, one pass at a time: until it is done the route answers 202
``computing`` with Retry-After, then every page comes from the result kept in memory (two
results at most).
A new commit or a new decision starts the next pass on the next request.

``POST /v1/duplicates/decisions`` records "not duplicates", "keep" or "forget" for stored files
named by path (:mod:`vggsim.collection.decisions`), in the store folder, so the CLI and the
library honour them too. The review page (``GET /review``) uses both.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import Response

from vggsim import validate
from vggsim.collection import DuplicateGroup, dedup_threshold, find_duplicates, page_of
from vggsim.collection.decisions import KINDS, load, record
from vggsim.errors import ArgumentError, StoreError
from vggsim.store import Store
from vggsim.serve.problems import ApiError, AsciiJSONResponse
from vggsim.serve.routes import ERRORS, check_token, facts, snapshot_of, state_of

KEPT = 2  # group results kept in memory


class GroupCache:
    """Duplicate groups per (snapshot, threshold, decisions), found in a background thread; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple[str, float, str], list[DuplicateGroup] | BaseException] = {}
        self._running: set[tuple[str, float, str]] = set()

    def groups(self, store: Store, threshold: float) -> list[DuplicateGroup] | None:
        """The groups, or None while they are being found (the first call starts the pass). One pass runs
        at a time: a request for other groups meanwhile (another threshold, say) waits its turn with a 202,
        so clients asking for many thresholds cannot start many passes."""
        key = (store.snapshot_id, threshold, load(store.root).version)
        with self._lock:
            found = self._done.get(key)
            if found is None and not self._running:
                self._running.add(key)
                threading.Thread(target=self._find, args=(store, threshold, key), daemon=True,
                                 name="vggsim-duplicate-groups").start()
        if isinstance(found, BaseException):
            raise found
        return found

    def _find(self, store: Store, threshold: float, key: tuple[str, float, str]) -> None:
        result: list[DuplicateGroup] | BaseException
        try:
            result = find_duplicates(store, threshold)
        except Exception as exc:  # noqa: BLE001 - answered to the next request as its error
            result = exc
        with self._lock:
            self._running.discard(key)
            self._done[key] = result
            while len(self._done) > KEPT:
                self._done.pop(next(iter(self._done)))


def _threshold(state: Any, value: Any) -> float:
    if value is None:
        value = dedup_threshold(state.embedder.manifest)
    try:
        return validate.threshold(value)
    except ArgumentError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def add_review_routes(app: FastAPI) -> None:
    cache = GroupCache()
    v1 = APIRouter(prefix="/v1/duplicates", dependencies=[Depends(check_token)], responses=ERRORS, tags=["duplicates"])

    @v1.get("/groups", response_model=None, responses={202: {"description": "still computing: retry"}})
    async def groups(request: Request, page: int = Query(1, ge=1, description="page, from 1"),
                     page_size: int = Query(50, ge=1, le=1000, description="groups a page"),
                     threshold: float | None = Query(None, description="cosine threshold in (0, 1] (default: the "
                                                     "model's calibrated one)")) -> Response:
        """One page of the store's duplicate groups, largest first: tiers, keeper and reason, decisions honoured."""
        state = state_of(request)
        snapshot = snapshot_of(state)
        value = _threshold(state, threshold)
        found = await asyncio.to_thread(cache.groups, snapshot, value)
        head = {**facts(state), "generation": snapshot.generation, "snapshot": snapshot.snapshot_id, "threshold": value}
        if found is None:
            return AsciiJSONResponse({**head, "state": "computing"}, status_code=202, headers={"Retry-After": "1"})
        return AsciiJSONResponse({**head, "state": "ready", **page_of(found, page, page_size).to_dict()})

    @v1.post("/decisions", response_model=None)
    async def decisions(request: Request) -> Response:
        """Record a decision about stored files named by path: ``{"decision": "not_duplicates" | "keep" | "forget",
        "paths": [...]}``; later groups and duplicate checks honour it."""
        state = state_of(request)
        snapshot = snapshot_of(state)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "bad_request", "send a JSON object: {\"decision\": ..., \"paths\": [...]}") from None
        kind, paths = (body.get("decision"), body.get("paths")) if isinstance(body, dict) else (None, None)
        if kind not in KINDS or not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ApiError(400, "bad_request", f'"decision" must be one of {", ".join(KINDS)} and "paths" a '
                           "non-empty list of stored paths")
        try:
            decided = await asyncio.to_thread(record, snapshot, kind, paths)
        except StoreError as exc:
            raise ApiError(409, "store", str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return AsciiJSONResponse({"decision": kind, "paths": paths, "decisions": decided.to_dict()})

    app.include_router(v1)
