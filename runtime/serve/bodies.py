"""The request bodies held at once, bounded: concurrent large uploads cannot grow memory without limit.

``--max-body-mb`` bounds one body; nothing bounded how many were held together: each JSON
upload near the limit costs about twice its size again while it is parsed (the text, the
decoded bytes), so 24 concurrent 30 MB bodies took a service to 2 GB. This ASGI middleware
counts every body's bytes against ``--body-budget-mb`` from its first byte to the end of its
request: the declared Content-Length is taken at once (a request that cannot fit is refused
before anything is read), and the bytes of a body without one as they arrive. A request
that finds the budget spent gets 429 with Retry-After, like a full queue; its bytes are
given back when its response is sent. A body must arrive within ``--body-timeout`` of its headers
(408 ``body_timeout`` otherwise), so an idle connection cannot hold its declared bytes for
ever. uvicorn itself holds at most ~64 KB a connection
until the application reads (it stops reading the socket), so this bounds the rest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vggsim.serve.problems import ApiError, error_response

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class BodyBudget:
    """Bytes of request bodies held now, against ``limit``. The event loop's thread alone uses it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def take(self, amount: int) -> bool:
        if self.held + amount > self.limit:
            return False
        self.held += amount
        return True

    def give(self, amount: int) -> None:
        self.held -= amount


def _busy(budget: BodyBudget) -> ApiError:
    return ApiError(429, "busy", f"the service holds {budget.held:,} bytes of request bodies, near its "
                    f"{budget.limit:,}-byte budget (--body-budget-mb); retry later", {"Retry-After": "1"})


def _declared(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) <= 18 else None
    return None


class BodyBudgetMiddleware:
    """Counts each request's body against a :class:`BodyBudget` (see the module docstring)."""

    def __init__(self, app: Any, budget: BodyBudget, max_body: int, refused: Any = None,
                 timeout_s: float = 30.0) -> None:
        self.app, self.budget, self.max_body, self.refused = app, budget, max_body, refused
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in _NO_BODY:
            await self.app(scope, receive, send)
            return
        declared = _declared(scope)
        # a body over --max-body-mb is refused (413) by the route after max_body + 1 bytes at most
        held = min(declared, self.max_body + 1) if declared is not None else 0
        if not self.budget.take(held):
            if self.refused is not None:
                self.refused()
            error = _busy(self.budget)
            await error_response(error.status, error.kind, error.message, error.headers, scope.get("path", ""))(
                scope, receive, send)
            return
        received, complete = 0, False
        ends = asyncio.get_running_loop().time() + self.timeout_s

        async def counted() -> Any:
            nonlocal held, received, complete
            if complete:  # the body is in: later receives wait for a disconnect, without a time limit
                return await receive()
            try:  # a client that declared a body and sends it slowly, or never, must not hold its bytes for ever
                message = await asyncio.wait_for(receive(), max(0.0, ends - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                raise ApiError(408, "body_timeout", f"the request body did not arrive within {self.timeout_s:g} s "
                               "(--body-timeout)") from None
            if message.get("type") == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > held:
                    if not self.budget.take(received - held):
                        if self.refused is not None:
                            self.refused()
                        raise _busy(self.budget)  # answered by the service's ApiError handler
                    held = received
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            self.budget.give(held)
