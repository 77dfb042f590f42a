"""`vggsim.postgres.PostgresSearch`: top-k and duplicate checks answered by a real pgvector table.

HNSW finds the candidates; each is scored with the store's own formula, so every score equals the
exact scan's to the bit and only recall can differ (measured here against the exact scan).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggsim.collection.queries import duplicates_of
from vggsim.search.exact import exact_topk
from vggsim.store import Store, StoreIdentity

pytest.importorskip("pyarrow")
psycopg = pytest.importorskip("psycopg")

from vggsim.postgres import PostgresError, PostgresSearch, sync_store  # noqa: E402
from support import make_store  # noqa: E402


def clustered(count: int, dim: int, centres: int, seed: int, spread: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    return (middle[rng.integers(0, centres, count)] + spread * rng.standard_normal((count, dim))).astype(np.float32)


def recall_and_scores(store: Store, search: PostgresSearch, queries: np.ndarray, k: int = 10) -> float:
    """recall@k of ``search`` against the exact scan; asserts every score found equals the exact scan's bit for bit."""
    exact_ids, exact_scores = exact_topk(queries, store.blocks(), k)
    paths = store.paths()
    hits = 0
    for query, ids, scores in zip(queries, exact_ids, exact_scores):
        found, _, done = search.search(query, k)
        assert done["backend"] == "postgres" and len(found) == k
        exact = {paths[int(i)]: s for i, s in zip(ids, scores)}
        for match in found:
            if match.path in exact:
                hits += 1
                assert np.float32(match.score) == exact[match.path]
        assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
    return hits / (len(queries) * k)


@pytest.fixture
def synced(tmp_path: Path, postgres_uri: str) -> tuple[Store, PostgresSearch]:
    identity = StoreIdentity("synthetic", {}, 48)
    store = make_store(tmp_path / "s", clustered(3000, 48, 30, 0), identity, per_commit=1000)
    sync_store(store.root, postgres_uri)
    search = PostgresSearch(postgres_uri, identity)
    yield store, search
    search.close()


def test_top_k_has_the_exact_scans_scores_and_recall(synced: tuple[Store, PostgresSearch]) -> None:
    store, search = synced
    queries = clustered(40, 48, 30, 0)[:40] + np.float32(0.05)
    assert recall_and_scores(store, search, queries) >= 0.99


def test_duplicates_beyond_the_candidates_are_found_by_a_scan_of_the_table(
        synced: tuple[Store, PostgresSearch]) -> None:
    store, search = synced
    query = store.vectors([0])[0]
    threshold = 0.2  # about one cluster's worth: over a hundred rows pass, more than the HNSW candidates
    found, _, done = search.duplicates(query, threshold)
    exact = duplicates_of(store, query, threshold)
    assert len(exact) > 100 and done["state"] == "exact" and "scanned the whole table" in done["message"]
    assert [(m.path, m.score) for m in found] == [(m.path, m.score) for m in exact]


def test_few_duplicates_come_from_the_index_and_equal_the_exact_check(synced: tuple[Store, PostgresSearch]) -> None:
    store, search = synced
    query = store.vectors([5])[0]
    found, _, done = search.duplicates(query, 0.9)
    exact = duplicates_of(store, query, 0.9)
    assert done["state"] == "hnsw" and 1 <= len(exact) < 100
    assert [(m.path, m.score) for m in found] == [(m.path, m.score) for m in exact]


def test_without_its_hnsw_index_the_table_answers_exactly_and_says_so(synced: tuple[Store, PostgresSearch]) -> None:
    store, search = synced
    with psycopg.connect(search.uri, autocommit=True) as conn:
        conn.execute("DROP INDEX vggsim_images_embedding_hnsw")
    query = store.vectors([5])[0]
    found, _, done = search.search(query, 10)
    exact_ids, exact_scores = exact_topk(query[None, :], store.blocks(), 10)
    assert done["state"] == "exact" and "has no HNSW index" in done["message"]
    assert [(m.path, np.float32(m.score)) for m in found] == [(store.paths()[int(i)], s)
                                                              for i, s in zip(exact_ids[0], exact_scores[0])]
    _, _, done = search.duplicates(query, 0.9)
    assert done["state"] == "exact" and "has no HNSW index" in done["message"]


def test_a_byte_identical_file_is_a_duplicate_whatever_its_score(tmp_path: Path, postgres_uri: str) -> None:
    from vggsim.store import Record, StoreWriter

    identity = StoreIdentity("synthetic", {}, 8)
    with StoreWriter.open(tmp_path / "s", identity) as writer:
        writer.add(Record("/a.jpg", "ok", 1, 1, "aa" * 32), np.ones(8, np.float32))
        writer.add(Record("/b.jpg", "ok", 1, 1, "bb" * 32), -np.ones(8, np.float32))
    sync_store(tmp_path / "s", postgres_uri)
    search = PostgresSearch(postgres_uri, identity)
    found, _, _ = search.duplicates(np.ones(8, np.float32), 0.99, sha256="bb" * 32)
    assert [(m.path, m.score) for m in found] == [("/b.jpg", 1.0), ("/a.jpg", 1.0)]
    search.close()


def test_a_missing_table_or_another_models_table_is_refused(synced: tuple[Store, PostgresSearch],
                                                            postgres_uri: str) -> None:
    with pytest.raises(PostgresError, match="vggsim store sync"):
        PostgresSearch(postgres_uri, StoreIdentity("synthetic", {}, 48), "never_synced").info()
    with pytest.raises(PostgresError, match="different model sha256"):
        PostgresSearch(postgres_uri, StoreIdentity("another", {}, 48)).search(np.ones(48, np.float32), 3)


@pytest.mark.slow
def test_recall_at_10_over_100k_vectors_of_512_dimensions(tmp_path: Path, postgres_uri: str) -> None:
    identity = StoreIdentity("synthetic", {}, 512)
    vectors = clustered(100_000, 512, 200, 1)
    store = make_store(tmp_path / "s", vectors, identity, per_commit=25_000)
    report = sync_store(store.root, postgres_uri)
    assert report.rows == 100_000 and report.index_built
    search = PostgresSearch(postgres_uri, identity)
    queries = vectors[np.random.default_rng(2).choice(100_000, 100, replace=False)]
    queries = queries + np.float32(0.2) * np.random.default_rng(3).standard_normal(queries.shape).astype(np.float32)
    assert recall_and_scores(store, search, queries) >= 0.99
    search.close()
