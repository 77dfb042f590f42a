"""Search and duplicate checks answered by a pgvector table (``vggsim serve --search-backend postgres``).

PostgreSQL finds candidates through the table's HNSW index (``hnsw.ef_search`` of them, at
least twice ``k``); vggsim then scores every candidate with the store's own formula
(:func:`vggsim.search.scores.cosine_scores`, from the float32 vector the row holds), so a score is
the exact scan's to the bit and only which vectors are found can differ: HNSW is approximate
(recall@10 measured in docs/guide/postgres.md). A duplicate check whose candidates all pass the
threshold may have more beyond them: it then scans the whole table (``enable_indexscan`` off),
and says so. Files whose content sha256 equals the query image's are duplicates with score 1.0,
as in the store's check.

``id`` in these matches is the table's ``id`` column (the row), not a store snapshot's record id;
the answer names the table and the store snapshot it last held in full.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vggsim.collection.decisions import Decisions
from vggsim.collection.decisions import load as load_decisions
from vggsim.collection.duplicates import match_order
from vggsim.collection.results import Match
from vggsim.postgres.connection import (DEFAULT_TABLE, PostgresError, TableInfo, connect, first_line, has_hnsw_index,
                                        redacted, require_fits, table_info, table_name, vector_array)
from vggsim.search.scores import cosine_scores, score_margin
from vggsim.store import StoreIdentity

#: HNSW candidates per search at least (pgvector's default ef_search is 40); at most pgvector's limit
MIN_CANDIDATES, MAX_CANDIDATES = 100, 1000
FEATURE = "vggsim serve --search-backend postgres"


class PostgresSearch:
    """Top-k and duplicate queries against one images table (see the module docstring); thread-safe,
    one connection per concurrent query (kept for reuse, at most ``connections`` idle)."""

    def __init__(self, uri: str, identity: StoreIdentity, table: str = DEFAULT_TABLE, connections: int = 4) -> None:
        self.uri, self.identity, self.table = uri, identity, table_name(table)
        self._idle: list[Any] = []
        self._keep = connections
        self._lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            # a kept connection may have died with its server (a restart, a failover, an administrator's
            # pg_terminate_backend) since it was last used: one round trip to know, rather than a 503
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
        if conn is None or conn.closed:
            conn = connect(self.uri, FEATURE)
        try:
            yield conn
            conn.rollback()
        except psycopg.Error as exc:
            conn.close()
            raise PostgresError(f"postgres {redacted(self.uri)} table {self.table}: {first_line(exc, self.uri)}") from None
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def info(self, conn: Any = None) -> TableInfo:
        """The table's row in ``vggsim_tables``, checked against the model; PostgresError naming the
        sync command when the table was never synced, or when another model's vectors are in it."""
        if conn is None:
            with self._connection() as opened:
                return self.info(opened)
        found = table_info(conn, self.table)
        if found is None:
            raise PostgresError(f"postgres {redacted(self.uri)} has no vggsim table {self.table}: fill it with "
                                f"`vggsim store sync STORE --postgres URI --postgres-table {self.table}`")
        require_fits(found, self.identity, "the service's model")
        return found

    def _candidates(self, conn: Any, query: np.ndarray, count: int, exact_floor: float | None = None) -> tuple[
            np.ndarray, list[str], np.ndarray]:
        """(ids, paths, float32 vectors) of ``count`` nearest rows by the HNSW index or, with ``exact_floor``,
        of every row whose pgvector cosine is at least that (a scan of the whole table)."""
        if exact_floor is None:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(min(max(count, MIN_CANDIDATES), MAX_CANDIDATES))}")
            rows = conn.execute(f"SELECT id, path, embedding FROM {self.table} ORDER BY embedding <=> %s LIMIT %s",
                                (query, count)).fetchall()
        else:
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute(f"SELECT id, path, embedding FROM {self.table} WHERE embedding <=> %s <= %s",
                                (query, 1.0 - exact_floor)).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = np.array([vector_array(r[2]) for r in rows], np.float32).reshape(len(rows), self.identity.dim)
        return ids, [r[1] for r in rows], vectors

    def search(self, query: np.ndarray, k: int) -> tuple[list[Match], TableInfo, dict[str, Any]]:
        """The top ``k`` rows for ``query`` (scores as the exact scan computes them), the table's facts, and
        what was done (the answer's ``index`` field)."""
        count = min(max(2 * k, MIN_CANDIDATES), MAX_CANDIDATES)
        with self._connection() as conn:
            info = self.info(conn)
            report = self._index_state(conn)
            ids, paths, vectors = self._candidates(conn, query, max(count, k))
        scores = cosine_scores(vectors, query) if len(ids) else np.zeros(0, np.float32)
        order = np.lexsort((ids, -scores))[:k]
        matches = [Match(paths[i], float(scores[i]), int(ids[i])) for i in order]
        return matches, info, {**report, "candidates": len(ids)}

    def _index_state(self, conn: Any) -> dict[str, Any]:
        """The answer's ``index`` field so far: ``hnsw``, or ``exact`` when the table has no HNSW index (dropped,
        or a sync stopped before building it), where PostgreSQL scans the whole table for every query."""
        report: dict[str, Any] = {"backend": "postgres", "used": True, "state": "hnsw", "table": self.table}
        if not has_hnsw_index(conn, self.table):
            report.update(state="exact", message=f"postgres table {self.table} has no HNSW index: every query scans "
                          f"the whole table (`vggsim store sync STORE --postgres URI` builds it)")
        return report

    def duplicates(self, query: np.ndarray, threshold: float, sha256: str | None = None,
                   pixel_sha256: str | None = None, decisions: Decisions | None = None,
                   ) -> tuple[list[Match], TableInfo, dict[str, Any]]:
        """Every row with cosine >= ``threshold`` to ``query`` (rows holding the file ``sha256`` first, score 1.0),
        each with its tier: ``byte`` (that file), ``pixel`` (the same decoded pixels, ``pixel_sha256``), ``near``;
        less the rows whose content a person marked as not a duplicate of ``sha256``, as the store's check
        leaves them out. ``decisions``: by default those kept in the store the table mirrors, when that
        folder is on this machine (decisions live in the store, never in the table)."""
        with self._connection() as conn:
            info = self.info(conn)
            report = self._index_state(conn)
            if decisions is None and sha256:
                # decisions live in the store folder the table mirrors (an absolute path, as sync records it);
                # where that folder is not on this machine none can be applied, and the answer says so
                if os.path.isabs(info.store) and os.path.isdir(info.store):
                    decisions = load_decisions(info.store)
                else:
                    report["decisions"] = "not applied"
                    said = (f"the store folder {info.store} that holds the duplicate decisions is not on "
                            "this machine: files marked not duplicates may be listed")
                    report["message"] = "; ".join(filter(None, [report.get("message"), said]))
            with conn.transaction():
                ids, paths, vectors = self._candidates(conn, query, MIN_CANDIDATES)
            scores = cosine_scores(vectors, query) if len(ids) else np.zeros(0, np.float32)
            if len(ids) == MIN_CANDIDATES and bool(np.all(scores >= np.float32(threshold))):
                # all candidates pass: there may be more beyond them; pgvector's distance is float32 arithmetic,
                # so the scan keeps a margin and the store's formula decides
                floor = threshold - 2 * score_margin(self.identity.dim)
                with conn.transaction():
                    ids, paths, vectors = self._candidates(conn, query, 0, exact_floor=floor)
                scores = cosine_scores(vectors, query) if len(ids) else np.zeros(0, np.float32)
                said = f"all {MIN_CANDIDATES} nearest rows passed the threshold: scanned the whole table"
                report.update(state="exact", message="; ".join(filter(None, [said, report.get("message")])))
            identical: dict[int, str] = {}
            if sha256:
                identical = dict(conn.execute(f"SELECT id, path FROM {self.table} WHERE sha256 = %s",
                                              (sha256,)).fetchall())
            same_pixels: set[int] = set()
            if pixel_sha256 and len(ids):
                same_pixels = {r[0] for r in conn.execute(f"SELECT id FROM {self.table} WHERE id = ANY(%s) AND "
                                                          "pixel_sha256 = %s", (ids.tolist(), pixel_sha256))}
            apart: set[int] = set()
            if decisions is not None and decisions.not_duplicates and sha256 and len(ids):
                apart = {r[0] for r in conn.execute(f"SELECT id, sha256 FROM {self.table} WHERE id = ANY(%s)",
                                                    (ids.tolist(),)) if decisions.apart(sha256, r[1])}
        keep = (scores >= np.float32(threshold)) & ~np.isin(ids, list(identical)) & ~np.isin(ids, list(apart))
        order = np.lexsort((ids[keep], -scores[keep]))
        kept_ids, kept_scores = ids[keep][order], scores[keep][order]
        kept_paths = [p for p, k in zip(paths, keep) if k]
        kept_paths = [kept_paths[i] for i in order]
        matches = [Match(identical[i], 1.0, i, "byte") for i in sorted(identical)]
        matches += [Match(p, 1.0, int(i), "pixel") if int(i) in same_pixels else Match(p, float(s), int(i), "near")
                    for p, s, i in zip(kept_paths, kept_scores, kept_ids)]
        return sorted(matches, key=match_order), info, report
