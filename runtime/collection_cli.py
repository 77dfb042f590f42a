"""Handlers of ``vggsim embed``, ``search`` and ``dedup`` (filled in by the collections work)."""

from __future__ import annotations

from typing import Any, Callable


def add_collection_parsers(sub: Any, add_model_args: Callable[[Any], None]) -> None:
    """Register the collection subcommands."""
