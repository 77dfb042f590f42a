"""`vggsim store sync --postgres`: a store's vectors mirrored into a real PostgreSQL with pgvector.

The server is the pgserver wheel's PostgreSQL 16 + pgvector 0.6, started by the session (conftest);
each test gets its own database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vggsim import StoreError
from vggsim.store import Record, Store, StoreIdentity, StoreWriter

pytest.importorskip("pyarrow")
psycopg = pytest.importorskip("psycopg")

from vggsim.postgres import PostgresError, sync_store  # noqa: E402
from support import make_store, run_cli  # noqa: E402

DIM = 32
IDENTITY = StoreIdentity("synthetic", {}, DIM)


def vectors(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)


def table_of(uri: str, table: str = "vggsim_images") -> dict[str, np.ndarray]:
    from pgvector.psycopg import register_vector

    with psycopg.connect(uri) as conn:
        register_vector(conn)
        return {bytes(name).decode(): np.asarray(vec.to_numpy(), np.float32)
                for name, vec in conn.execute(f"SELECT path_bytes, embedding FROM {table}").fetchall()}


def store_contents(store: Store) -> dict[str, np.ndarray]:
    out = {}
    records = store.records()
    for block in store.blocks():
        for i, vector in zip(block.ids, block.vectors):
            out[records[int(i)].path] = vector
    return out


def assert_mirrors(uri: str, root: Path, table: str = "vggsim_images") -> None:
    store = Store.open(root)
    got, want = table_of(uri, table), store_contents(store)
    assert sorted(got) == sorted(want)
    for path, vector in want.items():
        assert np.array_equal(got[path], vector), path  # float32 as stored, bit for bit
    with psycopg.connect(uri) as conn:
        snapshot, generation, rows = conn.execute(
            "SELECT snapshot, generation, rows FROM vggsim_tables WHERE name = %s", (table,)).fetchone()
    assert (snapshot, generation, rows) == (store.snapshot_id, store.generation, len(want))


def edit(root: Path, added: range, replaced: range, deleted: range, seed: int) -> None:
    new = vectors(len(added) + len(replaced), seed)
    with StoreWriter.open(root, IDENTITY) as writer:
        for vector, n in zip(new, [*added, *replaced]):
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "ok", 2, 2), vector)
        for n in deleted:
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "deleted"))


def test_a_sync_mirrors_the_store_bit_for_bit_with_an_hnsw_index(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(1500, 0), IDENTITY, per_commit=400)
    report = sync_store(tmp_path / "s", postgres_uri)
    assert (report.written, report.deleted, report.rows, report.index_built) == (1500, 0, 1500, True)
    assert_mirrors(postgres_uri, tmp_path / "s")
    with psycopg.connect(postgres_uri) as conn:
        indexes = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'vggsim_images'"))
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["vggsim_images_embedding_hnsw"]
    # pgvector's default graph (ef_construction 64) missed recall@10 0.99 at 100k vectors: the options are the index's
    assert "WITH (m='16', ef_construction='128')" in indexes["vggsim_images_embedding_hnsw"]


def test_the_documented_schema_is_the_one_sync_makes(tmp_path: Path, postgres_uri: str) -> None:
    # docs/guide/postgres.md shows the tables for other tools to read: its columns must be the real ones
    text = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "postgres.md").read_text()
    documented = {}
    for table in ("vggsim_tables", "vggsim_images"):
        block = text.split(f"CREATE TABLE {table} (", 1)[1].split("\n);", 1)[0]
        lines = [line.split("--")[0].strip() for line in block.splitlines()]
        documented[table] = [part.split()[0] for line in lines for part in line.split(",") if part.strip()]
    make_store(tmp_path / "s", vectors(20, 1), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        for table, columns in documented.items():
            real = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                               "ORDER BY ordinal_position", (table,))]
            assert columns == real, table


def test_a_second_sync_of_an_unchanged_store_writes_nothing(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(300, 1), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        before = conn.execute("SELECT id, xmin::text FROM vggsim_images ORDER BY id").fetchall()
    again = sync_store(tmp_path / "s", postgres_uri)
    assert again.up_to_date and again.written == 0 and again.rows == 300
    with psycopg.connect(postgres_uri) as conn:
        assert conn.execute("SELECT id, xmin::text FROM vggsim_images ORDER BY id").fetchall() == before  # no row rewritten


def test_a_dropped_index_is_built_again_by_the_next_sync_of_an_unchanged_store(tmp_path: Path, postgres_uri: str) -> None:
    # the documented way to rebuild the index with other options: DROP INDEX, then sync (rows already current)
    make_store(tmp_path / "s", vectors(300, 1), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("DROP INDEX vggsim_images_embedding_hnsw")
    again = sync_store(tmp_path / "s", postgres_uri)
    assert again.up_to_date and again.written == 0 and again.index_built
    with psycopg.connect(postgres_uri) as conn:
        assert conn.execute("SELECT to_regclass('vggsim_images_embedding_hnsw') IS NOT NULL").fetchone()[0]
    assert not sync_store(tmp_path / "s", postgres_uri).index_built  # and only once


def test_only_new_and_reembedded_files_are_written_and_deletions_propagate(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(1000, 2), IDENTITY, per_commit=300)
    sync_store(tmp_path / "s", postgres_uri)
    edit(tmp_path / "s", added=range(1000, 1050), replaced=range(10, 20), deleted=range(500, 505), seed=3)
    report = sync_store(tmp_path / "s", postgres_uri)
    assert (report.written, report.deleted, report.unchanged, report.index_built) == (60, 5, 985, False)
    assert_mirrors(postgres_uri, tmp_path / "s")


def test_a_failed_file_leaves_the_table(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(20, 4), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with StoreWriter.open(tmp_path / "s", IDENTITY) as writer:  # re-embedding it failed: it has no vector now
        writer.add(Record("/synthetic/00003.jpg", "error", error_kind="truncated", error="truncated"))
    assert sync_store(tmp_path / "s", postgres_uri).deleted == 1
    assert "/synthetic/00003.jpg" not in table_of(postgres_uri)


def test_a_sync_killed_midway_is_finished_by_the_next_without_writing_twice(tmp_path: Path, postgres_uri: str) -> None:
    root = tmp_path / "s"
    make_store(root, vectors(20000, 5), IDENTITY, per_commit=5000)
    code = (f"from vggsim.postgres.sync import sync_store; sync_store({str(root)!r}, {postgres_uri!r}, batch_rows=500, "
            "progress=lambda n: __import__('time').sleep(0.05))")
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    written = 0
    try:
        while time.monotonic() < deadline and written < 2000:
            time.sleep(0.05)
            try:
                with psycopg.connect(postgres_uri) as conn:
                    written = conn.execute("SELECT count(*) FROM vggsim_images").fetchone()[0]
            except psycopg.Error:  # the table is not there yet
                pass
            assert child.poll() is None, "the sync finished before it could be killed"
    finally:
        child.kill()
        child.wait(30)
    assert 2000 <= written < 20000
    with psycopg.connect(postgres_uri) as conn:
        assert conn.execute("SELECT snapshot FROM vggsim_tables").fetchone()[0] is None  # not complete
        written = conn.execute("SELECT count(*) FROM vggsim_images").fetchone()[0]
    report = sync_store(root, postgres_uri)
    assert report.written == 20000 - written and report.unchanged == written
    assert_mirrors(postgres_uri, root)


def test_a_second_sync_at_the_same_time_is_refused(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(10, 6), IDENTITY)
    with psycopg.connect(postgres_uri, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('vggsim sync vggsim_images'))")
        with pytest.raises(PostgresError, match="another sync into it is running"):
            sync_store(tmp_path / "s", postgres_uri)
    assert sync_store(tmp_path / "s", postgres_uri).rows == 10


def test_a_table_of_another_model_or_store_is_refused(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "a", vectors(10, 7), IDENTITY)
    make_store(tmp_path / "b", vectors(10, 8), StoreIdentity("other-model", {}, DIM))
    make_store(tmp_path / "c", vectors(10, 9), IDENTITY)
    sync_store(tmp_path / "a", postgres_uri)
    with pytest.raises(PostgresError, match="different model sha256"):
        sync_store(tmp_path / "b", postgres_uri)
    with pytest.raises(PostgresError, match="mirrors the store"):
        sync_store(tmp_path / "c", postgres_uri)
    assert sync_store(tmp_path / "c", postgres_uri, "other_table").rows == 10
    assert_mirrors(postgres_uri, tmp_path / "a")  # untouched


def test_a_dropped_or_thinned_table_is_filled_again_not_called_up_to_date(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(200, 11), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        conn.execute("DELETE FROM vggsim_images WHERE id % 10 = 0")  # another tool deleted some rows
    again = sync_store(tmp_path / "s", postgres_uri)
    assert not again.up_to_date and again.written == 20
    assert_mirrors(postgres_uri, tmp_path / "s")
    with psycopg.connect(postgres_uri) as conn:
        conn.execute("DROP TABLE vggsim_images")
    again = sync_store(tmp_path / "s", postgres_uri)
    assert not again.up_to_date and again.written == 200
    assert_mirrors(postgres_uri, tmp_path / "s")


def test_a_tables_row_edited_by_another_tool_is_one_postgres_error(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(20, 12), IDENTITY)
    sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        conn.execute("""UPDATE vggsim_tables SET preprocess = '"a string"'::jsonb""")
    for _ in range(2):  # sync cannot mend the row itself: the message says what will
        with pytest.raises(PostgresError, match="not what vggsim store sync writes.*drop the table and its row"):
            sync_store(tmp_path / "s", postgres_uri)


def test_a_table_of_that_name_made_by_another_tool_is_refused_in_one_line(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(20, 12), IDENTITY)
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE mytab (id int, x text)")
    with pytest.raises(PostgresError, match="mytab exists but is not a vggsim images table .*--postgres-table"):
        sync_store(tmp_path / "s", postgres_uri, "mytab")
    with psycopg.connect(postgres_uri) as conn:  # left as it was
        assert [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_name = 'mytab' ORDER BY ordinal_position")] == ["id", "x"]


def test_a_damaged_shard_is_never_copied(tmp_path: Path, postgres_uri: str) -> None:
    store = make_store(tmp_path / "s", vectors(600, 10), IDENTITY, per_commit=300)
    shard = store.commit_record.shards[-1]
    path = tmp_path / "s" / "vectors" / f"{shard.id:06d}.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one vector's bytes, same size: only the checksum can tell
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{shard.id:06d}"):
        sync_store(tmp_path / "s", postgres_uri)
    with psycopg.connect(postgres_uri) as conn:
        damaged = conn.execute("SELECT count(*) FROM vggsim_images WHERE vector_ref LIKE %s",
                               (f"{shard.id}:%",)).fetchone()[0]
    assert damaged == 0


def test_bad_table_names_are_refused_before_connecting(tmp_path: Path) -> None:
    make_store(tmp_path / "s", vectors(3, 11), IDENTITY)
    for name in ("Images", "x; DROP TABLE y", "vggsim_tables", "", "a" * 49, "user", "order", "select",
                 "pg_class", "vggsim_stage", "a_sha256", "photos_embedding_hnsw"):
        with pytest.raises(PostgresError, match="table name"):
            sync_store(tmp_path / "s", "postgresql://nobody@127.0.0.1:1/none", name)
    # on the command line a bad name is a usage error (exit 2) in one line, for sync and serve alike
    for command in (("store", "sync", str(tmp_path / "s"), "--postgres", "postgresql://nobody@127.0.0.1:1/none"),
                    ("serve", "--search-backend", "postgres", "--postgres", "postgresql://nobody@127.0.0.1:1/none")):
        for name, says in (("Photos", "lower-case letters"), ("select", "SQL keyword"), ("vggsim_tables", "records")):
            result = run_cli(*command, "--postgres-table", name)
            assert result.returncode == 2 and says in result.stderr, (command, name, result.stderr)
            assert "not 'vggsim_tables'" not in result.stderr and "Traceback" not in result.stderr


def test_the_cli_syncs_and_says_what_it_did(tmp_path: Path, postgres_uri: str) -> None:
    make_store(tmp_path / "s", vectors(40, 12), IDENTITY)
    first = run_cli("store", "sync", str(tmp_path / "s"), "--postgres", postgres_uri, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["written"] == 40
    again = run_cli("store", "sync", str(tmp_path / "s"), "--postgres", postgres_uri)
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    make_store(tmp_path / "s", vectors(3, 13), IDENTITY)
    result = run_cli("store", "sync", str(tmp_path / "s"), "--postgres", "postgresql://me:s3cret@127.0.0.1:1/db")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "s3cret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    for uri in ("postgresql://me@127.0.0.1:1/db?password=s3cret", "host=127.0.0.1 port=1 password=s3cret",
                "postgresql://me:s3cret@[bad"):
        result = run_cli("store", "sync", str(tmp_path / "s"), "--postgres", uri)
        assert result.returncode == 1 and "s3cret" not in result.stderr, result.stderr
