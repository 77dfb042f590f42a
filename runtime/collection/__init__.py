"""The collection workflow as a library: embed into a store, search it, find duplicates.

Front ends (the CLI, an HTTP server, Ray jobs) parse and print; everything they do to a
store goes through these functions, which return typed, JSON-ready results.
"""

from __future__ import annotations

from vggsim.collection.decisions import Decisions
from vggsim.collection.duplicates import (DEDUP_BLOCK_ROWS, dedup_threshold, find_duplicates, label_matches, page_of,
                                          require_threshold_model)
from vggsim.collection.queries import duplicates_of
from vggsim.collection.embed import embed_into_store
from vggsim.collection.reader import StoreReader
from vggsim.collection.results import (
    DuplicateCheck,
    DuplicateGroup,
    DuplicateMember,
    DuplicatePage,
    EmbedProgress,
    EmbedSummary,
    Failure,
    Match,
    SearchResult,
)
from vggsim.collection.search import search_images, search_store
from vggsim.validate import ArgumentError

__all__ = [
    "ArgumentError", "DEDUP_BLOCK_ROWS", "Decisions", "DuplicateCheck", "DuplicateGroup", "DuplicateMember",
    "DuplicatePage", "EmbedProgress", "EmbedSummary", "Failure", "Match", "SearchResult", "StoreReader",
    "dedup_threshold", "duplicates_of", "embed_into_store", "find_duplicates", "label_matches", "page_of",
    "require_threshold_model", "search_images", "search_store",
]
