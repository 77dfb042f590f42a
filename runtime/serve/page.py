"""The web page at ``/`` (owned by the SERVE-WEB helper; this is the stub it fills in)."""

from __future__ import annotations

from typing import Any


def add_page_routes(app: Any, state: Any) -> None:
    """Add the page's routes to ``app``; ``state`` is the :class:`ServiceState`. Stub: adds nothing."""
    return None
