"""Connecting to PostgreSQL, the tables vggsim keeps there, and the check that a table fits a model.

Two tables per destination (docs/guide/postgres.md shows them for psql users):

- ``vggsim_tables``: one row per images table: which model and preprocessing made its vectors
  (the store's identity), the store it mirrors, and the store snapshot it holds in full
  (``snapshot`` is NULL while a sync is under way or was killed: the rows are then a mix of
  two snapshots, each row still a vector the store committed).
- the images table (``vggsim_images`` unless ``--table`` says otherwise): one row per current
  file of the store that has a vector, keyed by the file's exact name (``path_bytes``), with an
  HNSW index for cosine distance.

A table holding another model's vectors is refused, as a store is: cosine between two models'
vectors means nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from vggsim.errors import VggsimError, require
from vggsim.store import StoreIdentity

DEFAULT_TABLE = "vggsim_images"
TABLES = "vggsim_tables"
STAGE = "vggsim_stage"  # the TEMP table each sync stages its COPY in
INDEX_SUFFIXES = ("_sha256", "_embedding_hnsw")  # the indexes of an images table, named after it
#: a plain lower-case SQL identifier, so it is never quoted, and short enough for its index's name
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
#: PostgreSQL's keywords that cannot name a table unquoted (its reserved ones, and those reserved
#: but allowed as a function or type name; PostgreSQL 16's pg_get_keywords(), catcode R and T)
RESERVED = frozenset("""
    all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
    current_catalog current_date current_role current_time current_timestamp current_user default deferrable
    desc distinct do else end except false fetch for foreign from grant group having in initially intersect
    into lateral leading limit localtime localtimestamp not null offset on only or order placing primary
    references returning select session_user some symmetric system_user table then to trailing true union
    unique user using variadic when where window with
    authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull join
    left like natural notnull outer overlaps right similar tablesample verbose
""".split())


class PostgresError(VggsimError):
    """PostgreSQL could not be reached, refused a statement, or holds a table vggsim cannot use."""


def hnsw_index(table: str) -> str:
    """The name of ``table``'s HNSW index, as sync creates it."""
    return f"{table}_embedding_hnsw"


def has_hnsw_index(conn: Any, table: str) -> bool:
    """Whether ``table``'s HNSW index exists (sync builds it; another tool may have dropped it)."""
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (hnsw_index(table),)).fetchone()[0])


def table_name(name: str) -> str:
    """``name`` if it is a usable table name; PostgresError saying the rule otherwise."""
    if name == TABLES:
        raise PostgresError(f"postgres table name {name!r} is where vggsim records its tables: choose another")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PostgresError(f"postgres table name {name!r}: use lower-case letters, digits and _ (at most 48, "
                            "starting with a letter or _)")
    if name in RESERVED:
        raise PostgresError(f"postgres table name {name!r} is an SQL keyword: choose another (say {name}_images)")
    # names PostgreSQL or sync already use: pg_* resolves to the system catalog first, vggsim_stage is
    # sync's staging table, and <table>_sha256 / <table>_embedding_hnsw are another table's indexes
    if name.startswith("pg_") or name == STAGE or name.endswith(INDEX_SUFFIXES):
        raise PostgresError(f"postgres table name {name!r} is taken (pg_* names are PostgreSQL's; {STAGE} and "
                            f"names ending {' or '.join(INDEX_SUFFIXES)} are vggsim's own): choose another")
    return name


def redacted(uri: str) -> str:
    """Where ``uri`` points (user, host, port, database), never its password in any of libpq's forms
    (``user:pw@``, ``?password=``, ``password=`` in a key/value string): messages reach HTTP clients."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(uri)
    except Exception:  # noqa: BLE001 - unparsable: say nothing of it
        return "<the given URI>"
    shown = [f"{key}={parts[key]}" for key in ("user", "host", "port", "dbname") if parts.get(key)]
    return f"<{' '.join(shown) or 'defaults'}>"


def _secrets(uri: str) -> list[str]:
    found = [uri]
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(uri).get("password")
        if password:
            found.append(str(password))
    except Exception:  # noqa: BLE001
        pass
    try:
        if urlsplit(uri).password:
            found.append(str(urlsplit(uri).password))
    except ValueError:
        pass
    return found


def first_line(exc: BaseException, uri: str | None = None) -> str:
    """The first line of ``exc``'s message, with ``uri`` and its password cut out (psycopg quotes them)."""
    text = str(exc).strip().splitlines()
    line = text[0][:300] if text else type(exc).__name__
    for secret in _secrets(uri) if uri else []:
        line = line.replace(secret, "***")
    return line


def connect(uri: str, feature: str, *, autocommit: bool = False) -> Any:
    """An open psycopg connection to ``uri`` with pgvector's types registered (creating the extension
    if it is missing); PostgresError in one line when that fails."""
    require("psycopg", "postgres", feature)
    require("pgvector", "postgres", feature)
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(uri, autocommit=True, connect_timeout=10, application_name="vggsim")
    except (psycopg.Error, ValueError) as exc:
        raise PostgresError(f"postgres {redacted(uri)}: cannot connect: {first_line(exc, uri)}") from None
    try:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
    except psycopg.Error as exc:
        conn.close()
        raise PostgresError(f"postgres {redacted(uri)}: the pgvector extension is not available ({first_line(exc, uri)}); "
                            "install pgvector on the server (https://github.com/pgvector/pgvector)") from None
    conn.autocommit = autocommit
    return conn


def vector_array(value: Any) -> np.ndarray:
    """A ``vector`` column's value as float32 (pgvector's adapter gives a Vector, older ones an array)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, np.float32)


@dataclass(frozen=True)
class TableInfo:
    """A row of ``vggsim_tables``: what an images table holds."""

    name: str
    identity: StoreIdentity
    store: str
    snapshot: str | None
    generation: int | None
    rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.name, "model_sha256": self.identity.model_sha256, "store": self.store,
                "snapshot": self.snapshot, "generation": self.generation, "rows": self.rows,
                "complete": self.snapshot is not None}


def table_info(conn: Any, table: str) -> TableInfo | None:
    """What ``vggsim_tables`` says about ``table``; None when it has no row (or the table does not exist)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLES,)).fetchone()[0]
    if not exists:
        return None
    row = conn.execute(f"SELECT model_sha256, preprocess, dim, store, snapshot, generation, rows FROM {TABLES} "
                       "WHERE name = %s", (table,)).fetchone()
    if row is None:
        return None
    # Another tool may have edited the row: anything but what sync writes is refused as a PostgresError
    # (a 503 naming the table in the service), never a crash.
    where = f"postgres {TABLES} row {table!r}"
    try:
        preprocess = row[1] if isinstance(row[1], dict) else json.loads(row[1])
        if not isinstance(preprocess, dict):
            raise ValueError(f"{where}: preprocess is a JSON {type(preprocess).__name__}, not an object")
        identity = StoreIdentity.from_dict({"model_sha256": row[0], "preprocess": preprocess, "dim": row[2]}, where)
    except (TypeError, ValueError) as exc:
        text = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        # sync reads this row too, so it cannot mend it: the table must be made again
        raise PostgresError(f"{text} (not what vggsim store sync writes): drop the table and its row "
                            f"(DROP TABLE {table}; DELETE FROM {TABLES} WHERE name = '{table}') and sync again") from None
    return TableInfo(table, identity, row[3], row[4], row[5], row[6])


def require_fits(info: TableInfo, identity: StoreIdentity, what: str = "this model") -> None:
    """PostgresError unless ``info``'s vectors were made by the model and preprocessing of ``identity``."""
    for key in ("model_sha256", "preprocess", "dim"):
        if getattr(info.identity, key) != getattr(identity, key):
            raise PostgresError(
                f"postgres table {info.name} holds vectors from a different {key.replace('_', ' ')} than {what}: "
                f"scores between them would mean nothing. Use another --postgres-table, or drop this one "
                f"(DROP TABLE {info.name}; DELETE FROM {TABLES} WHERE name = '{info.name}').")
