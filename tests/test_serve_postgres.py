"""`vggsim serve --search-backend postgres`: /v1/search and /v1/duplicates answered by a pgvector table.

A real uvicorn process on a free loopback port, a real PostgreSQL (pgserver's, started by the session),
the table filled by the CLI's `vggsim store sync`: the answers must match the store-backed service's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "httpx", "pyarrow", "psycopg", "pgvector"):
    pytest.importorskip(_module, reason=f"needs the serve and postgres extras ({_module} missing)")

import httpx  # noqa: E402
import psycopg  # noqa: E402

from support import Server, error_of, png_files, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return png_files(tmp_path_factory.mktemp("serve-postgres-images"), range(300, 306))


@pytest.fixture
def synced(model_dir: Path, images: list[Path], tmp_path: Path, postgres_uri: str) -> Path:
    store = tmp_path / "store"
    embedded = run_cli("embed", *map(str, images[:5]), "--store", str(store), "--model", str(model_dir))
    assert embedded.returncode == 0, embedded.stderr
    done = run_cli("store", "sync", str(store), "--postgres", postgres_uri)
    assert done.returncode == 0, done.stderr
    return store


@pytest.fixture
def servers(model_dir: Path, synced: Path, postgres_uri: str) -> Iterator[tuple[Server, Server]]:
    on_postgres = Server(model_dir, "--search-backend", "postgres", "--postgres", postgres_uri)
    on_store = Server(model_dir, "--store", str(synced), "--index", "off")
    yield on_postgres, on_store
    on_postgres.stop()
    on_store.stop()


def _ask(server: Server, route: str, image: Path, **fields: object) -> dict:
    body = {"image": base64.b64encode(image.read_bytes()).decode(), **fields}
    response = httpx.post(f"{server.url}/v1/{route}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_search_and_duplicates_answer_as_the_store_backed_service(servers: tuple[Server, Server],
                                                                  images: list[Path], synced: Path) -> None:
    on_postgres, on_store = servers
    for image in (images[0], images[5]):  # one stored, one not
        got, want = _ask(on_postgres, "search", image, k=4), _ask(on_store, "search", image, k=4)
        assert [(m["path"], m["score"]) for m in got["matches"]] == [(m["path"], m["score"]) for m in want["matches"]]
        assert got["index"]["backend"] == "postgres" and got["table"] == "vggsim_images"
        assert got["snapshot"] == want["snapshot"]  # the table holds the store's snapshot in full
    got, want = _ask(on_postgres, "duplicates", images[1]), _ask(on_store, "duplicates", images[1])
    assert got["is_duplicate"] and got["matches"][0] == {**want["matches"][0], "id": got["matches"][0]["id"]}
    assert got["matches"][0]["score"] == 1.0 and got["matches"][0]["path"] == str(images[1].resolve())
    info = httpx.get(f"{on_postgres.url}/v1/info", timeout=30).json()
    assert info["search_backend"] == "postgres" and info["postgres"]["complete"] and info["postgres"]["rows"] == 5


def test_not_duplicates_decisions_in_the_store_are_honoured_as_by_the_store_backend(
        servers: tuple[Server, Server], images: list[Path], synced: Path) -> None:
    on_postgres, on_store = servers
    first, second = (str(p.resolve()) for p in images[1:3])
    before = {m["path"] for m in _ask(on_postgres, "duplicates", images[1], threshold=0.01)["matches"]}
    assert second in before  # every stored image passes so low a threshold
    marked = run_cli("dedup", "--store", str(synced), "--threshold", "1", "--not-duplicates", first, second)
    assert marked.returncode == 0, marked.stderr
    got, want = (_ask(s, "duplicates", images[1], threshold=0.01) for s in (on_postgres, on_store))
    assert second not in {m["path"] for m in got["matches"]} and first in {m["path"] for m in got["matches"]}
    assert [(m["path"], m["score"], m["tier"]) for m in got["matches"]] == \
        [(m["path"], m["score"], m["tier"]) for m in want["matches"]]
    assert "decisions" not in got["index"]
    synced.rename(synced.with_name("moved"))  # the store folder, and its decisions, no longer on this machine
    moved = _ask(on_postgres, "duplicates", images[1], threshold=0.01)
    assert moved["index"]["decisions"] == "not applied" and "not on this machine" in moved["index"]["message"]
    assert second in {m["path"] for m in moved["matches"]}


def test_a_kept_connection_that_died_is_replaced_not_answered_with_a_503(
        servers: tuple[Server, Server], images: list[Path], postgres_uri: str) -> None:
    on_postgres, _ = servers
    assert _ask(on_postgres, "search", images[0], k=2)["matches"]  # leaves a connection kept for reuse
    with psycopg.connect(postgres_uri, autocommit=True) as conn:  # as a server restart or failover would
        ended = conn.execute("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'vggsim' AND pid <> pg_backend_pid()) t").fetchone()[0]
    assert ended >= 1
    assert _ask(on_postgres, "search", images[0], k=2)["matches"]  # 200, on a new connection


def test_a_table_gone_or_of_another_model_is_a_503_json_error(servers: tuple[Server, Server], images: list[Path],
                                                              postgres_uri: str) -> None:
    on_postgres, _ = servers
    body = {"image": base64.b64encode(images[0].read_bytes()).decode()}
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("UPDATE vggsim_tables SET model_sha256 = 'another'")
        error = error_of(httpx.post(f"{on_postgres.url}/v1/search", json=body, timeout=60), 503)
        assert error["kind"] == "postgres" and "different model sha256" in error["message"]
        conn.execute("DROP TABLE vggsim_images")
        conn.execute("DROP TABLE vggsim_tables")
    error = error_of(httpx.post(f"{on_postgres.url}/v1/duplicates", json=body, timeout=60), 503)
    assert "vggsim store sync" in error["message"]
    assert httpx.get(f"{on_postgres.url}/health/live", timeout=10).status_code == 200


def test_the_service_will_not_start_without_a_synced_table(model_dir: Path, postgres_uri: str) -> None:
    with pytest.raises(AssertionError, match="has no vggsim table vggsim_images"):
        Server(model_dir, "--search-backend", "postgres", "--postgres", postgres_uri)
    result = run_cli("serve", "--model", str(model_dir), "--search-backend", "postgres")
    assert result.returncode == 2 and "needs --postgres URI" in result.stderr
