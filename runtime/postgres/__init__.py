"""PostgreSQL + pgvector: a store's vectors copied into a table, and searched there.

``vggsim store sync --postgres URI`` (:func:`sync_store`) mirrors a store's current vectors
into one table, incrementally and resumably; ``vggsim serve --search-backend postgres``
(:class:`PostgresSearch`) answers ``/v1/search`` and ``/v1/duplicates`` from it. The tables
are documented in docs/guide/postgres.md so that other tools can read them with plain SQL.
Needs the ``postgres`` extra (psycopg 3 and pgvector's Python adapter).
"""

from __future__ import annotations

from vggsim.postgres.connection import PostgresError, TableInfo
from vggsim.postgres.search import PostgresSearch
from vggsim.postgres.sync import SyncReport, sync_store

__all__ = ["PostgresError", "PostgresSearch", "SyncReport", "TableInfo", "sync_store"]
