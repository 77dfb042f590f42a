"""The on-disk index trusts no byte the store would refuse (library and command line).

Each test failed before the index had checksums of its own and read the store's shards through
the store's checks: a shard damaged in place was re-ranked as if sound, a swapped pair of names in
``paths.arrow`` named the wrong files, a search returned fewer than k matches, index scores
differed from the exact scan's in the last bits, a full disk killed or half-reported a build, and
a killed build left its staging folder for ever.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggsim import StoreError
from vggsim.cli import main
from vggsim.collection import StoreReader, search_store
from vggsim.store import Record, Store, StoreIdentity, StoreWriter
from vggsim.store import checksum

pytest.importorskip("pyarrow")
pytest.importorskip("faiss")

from vggsim.collection.queries import duplicates_of, search_index  # noqa: E402
from vggsim.search import policy  # noqa: E402
from vggsim.search.ivf import IndexDamaged, IndexParams, IndexStale, OnDiskIndex, build_index, choose  # noqa: E402
from vggsim.search.ivf import build as build_module  # noqa: E402
from vggsim.search.ivf import files as files_module  # noqa: E402
from support import fill_disk_at, full_probe, make_store, run_cli  # noqa: E402

DIM = 64


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((3000, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path, vectors: np.ndarray) -> Store:
    return make_store(tmp_path / "store", vectors)



def first_shard(root: Path) -> Path:
    commit = json.loads((root / "commit.json").read_text())
    return root / f"vectors/{commit['shards'][0]['id']:06d}.npy"


def swap_rows_in_place(path: Path, keep_mtime: bool = False) -> None:
    """Rows 0 and 1 exchanged in the same file (same inode, size and header); optionally the mtime put back."""
    stat = path.stat()
    array = np.load(path)
    with open(path, "r+b") as fp:
        offset = os.path.getsize(path) - array.nbytes
        array[[0, 1]] = array[[1, 0]]
        fp.seek(offset)
        fp.write(array.tobytes())
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


def swap_bytes(path: Path, a: bytes, b: bytes) -> None:
    data = path.read_bytes()
    assert data.count(a) == 1 and data.count(b) == 1 and len(a) == len(b)
    path.write_bytes(data.replace(a, b"\0" * len(a)).replace(b, a).replace(b"\0" * len(a), b))


# -- 1. index reads are verified like exact search ----------------------------------------------------

@pytest.mark.parametrize("keep_mtime", [False, True], ids=["rewritten", "mtime-put-back"])
def test_a_shard_damaged_in_place_after_the_first_search_is_refused_through_the_index(
        store: Store, vectors: np.ndarray, keep_mtime: bool) -> None:
    """Before: the index re-ranked from its own open files, never checked (a swapped row scored as the other)."""
    build_index(store, full_probe(3000, DIM))
    index = OnDiskIndex.open(store)
    ids, _ = index.search(vectors[:1], 1)
    assert ids[0, 0] == 0
    swap_rows_in_place(first_shard(store.root), keep_mtime)  # ctime changes even when the mtime is put back
    with pytest.raises(StoreError, match="sha256 differs from the commit record") as caught:
        index.search(vectors[:1], 1)  # the same opened index, the same open shard file
    assert not isinstance(caught.value, files_module.IndexProblem)  # the store's damage, not the index's
    with pytest.raises(StoreError, match="sha256 differs"):
        search_store(Store.open(store.root), vectors[:1], 1, index=True)
    with pytest.raises(StoreError, match="sha256 differs"):
        search_store(Store.open(store.root), vectors[:1], 1)  # exact search refuses it the same way
    with pytest.raises(StoreError, match="sha256 differs"):
        duplicates_of(Store.open(store.root), vectors[0], 0.9, index=True)


def test_a_snapshot_rechecks_its_shards_after_the_first_read(store: Store, vectors: np.ndarray) -> None:
    """Before: a snapshot that had read a shard once never checked it again (a long-lived service answered
    from damaged bytes until the next commit)."""
    reader = StoreReader(store.root)
    assert reader.search(vectors[:1], 1).matches[0][0].id == 0
    swap_rows_in_place(first_shard(store.root), keep_mtime=True)
    with pytest.raises(StoreError, match="sha256 differs"):
        reader.search(vectors[:1], 1)  # same snapshot: no commit happened


def test_a_verification_expires_after_the_reverify_interval(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes that change with no stat change (a raw write to the device) are caught within REVERIFY_S."""
    checksum.forget()
    hashed: list[str] = []
    real = checksum._sha256
    monkeypatch.setattr(checksum, "_sha256", lambda fd, size: hashed.append("x") or real(fd, size))
    snapshot = Store.open(store.root)
    list(snapshot.blocks())
    first = len(hashed)
    list(snapshot.blocks())
    assert len(hashed) == first  # within the interval, unchanged: not hashed again
    monkeypatch.setattr(checksum, "REVERIFY_S", 0.0)
    list(snapshot.blocks())
    assert len(hashed) > first  # past it: hashed again


@pytest.mark.parametrize("damage", [
    pytest.param(lambda f: swap_bytes(f / "paths.arrow", b"/synthetic/00001.jpg", b"/synthetic/00002.jpg"),
                 id="paths-swapped"),
    pytest.param(lambda f: _swap_locations(f / "locations.npy"), id="locations-swapped"),
    pytest.param(lambda f: _flip(f / "lists.ivfdata"), id="lists-flipped"),
    pytest.param(lambda f: _flip(f / "index.faiss", at=-20), id="codes-flipped"),
])
def test_index_files_damaged_in_place_are_refused_on_open_and_while_open(store: Store, vectors: np.ndarray,
                                                                         damage: Any) -> None:
    """Before: a same-size change to an index file passed the size check, and a search named the wrong files."""
    folder = build_index(store, full_probe(3000, DIM)).folder
    opened = OnDiskIndex.open(store)
    damage(folder)
    with pytest.raises(IndexDamaged) as caught:
        OnDiskIndex.open(store)
    message = str(caught.value)
    assert "\n" not in message and "sha256 differs from index.json" in message and "vggsim index build" in message
    with pytest.raises(IndexDamaged):
        opened.search(vectors[1:2], 3)  # the index opened before the damage checks again before reading
    decision = policy.open_index(store)
    assert decision.state is policy.IndexState.DAMAGED and decision.index is None


def _flip(path: Path, at: int | None = None) -> None:
    with open(path, "r+b") as fp:
        fp.seek(path.stat().st_size // 2 if at is None else path.stat().st_size + at)
        byte = fp.read(1)
        fp.seek(-1, os.SEEK_CUR)
        fp.write(bytes([byte[0] ^ 0x01]))


def _swap_locations(path: Path) -> None:
    array = np.load(path)
    array[[1, 2]] = array[[2, 1]]
    with open(path, "r+b") as fp:
        fp.seek(path.stat().st_size - array.nbytes)
        fp.write(array.tobytes())


def test_cli_refuses_a_damaged_index_in_one_line_and_verify_and_info_report_it(
        embedder: Any, model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "store"
    make_store(root, np.random.default_rng(5).standard_normal((400, embedder.dim)).astype(np.float32),
               StoreIdentity.of(embedder))
    assert run_cli("index", "build", "--store", str(root)).returncode == 0
    assert run_cli("store", "verify", str(root)).returncode == 0
    folder = next(p for p in (root / "index").iterdir() if not p.name.startswith("."))
    swap_bytes(folder / "paths.arrow", b"/synthetic/00001.jpg", b"/synthetic/00002.jpg")
    model = ["--model", str(model_dir)]
    search = run_cli("search", str(photos[0]), "--store", str(root), "--index", *model)
    assert search.returncode == 1 and len(search.stderr.splitlines()) == 1, search.stderr
    assert "the index is damaged" in search.stderr and "paths.arrow" in search.stderr
    info = run_cli("index", "info", "--store", str(root))
    assert info.returncode == 1 and "damaged" in info.stderr and "Traceback" not in info.stderr
    verify = run_cli("store", "verify", str(root), "--json")
    assert verify.returncode == 1
    report = json.loads(verify.stdout)
    assert report["ok"] is True and report["index"]["state"] == "damaged"  # the store's shards are sound
    assert any("paths.arrow" in p for p in report["index"]["problems"])
    rebuilt = run_cli("search", str(photos[0]), "--store", str(root), "--index", "--rebuild", *model)
    assert rebuilt.returncode == 0 and "rebuilding the index" in rebuilt.stderr
    shard = first_shard(root)
    swap_rows_in_place(shard)
    damaged = run_cli("search", str(photos[0]), "--store", str(root), "--index", *model)
    assert damaged.returncode == 1 and "sha256 differs" in damaged.stderr and str(shard) in damaged.stderr


# -- 4. k means k, the exact scan's scores, and the real cause of staleness --------------------------

def test_a_search_returns_k_matches_when_the_probed_lists_hold_fewer(store: Store, vectors: np.ndarray) -> None:
    """Before: nprobe 1 of 64 lists (about 47 vectors) gave 47 matches for k 200, silently."""
    build_index(store, IndexParams(64, "sq8", 0, 3000, 1))
    index = OnDiskIndex.open(store)
    answer = index.answer(vectors[:5], 200)
    assert (answer.ids >= 0).all() and answer.ids.shape == (5, 200)
    assert answer.widened == 5 and answer.nprobe > 1
    found = search_index(store, vectors[:5], 200)
    assert [len(row) for row in found.matches] == [200] * 5 and found.widened == 5
    assert len(search_index(store, vectors[:1], 5000).matches[0]) == 3000  # k beyond the store: all of it


def test_index_scores_equal_the_exact_scan_bit_for_bit(store: Store, vectors: np.ndarray) -> None:
    """Before: the re-rank divided a float32 dot product by the norm, exact search multiplied normalised
    float32 rows (BLAS): scores differed in the last bits (assert_allclose(atol=1e-5) hid it)."""
    build_index(store, full_probe(3000, DIM))
    queries = vectors[::37] * 3.5 + 0.05
    through_index = search_store(store, queries, 10, index=True)
    exact = search_store(store, queries, 10)
    one_by_one = [search_store(store, q[None], 10)[0] for q in queries[:5]]
    assert [[(m.id, m.score) for m in row] for row in through_index] == [[(m.id, m.score) for m in row] for row in exact]
    assert [[(m.id, m.score) for m in row] for row in one_by_one] == [[(m.id, m.score) for m in row] for row in exact[:5]]
    for row in range(0, len(queries), 7):
        assert duplicates_of(store, queries[row], 0.2) == duplicates_of(store, queries[row], 0.2, index=True)


def test_the_stale_message_names_the_real_cause(tmp_path: Path, vectors: np.ndarray) -> None:
    first = make_store(tmp_path / "store", vectors[:1500])
    build_index(first, full_probe(1500, DIM))
    with StoreWriter.open(first.root, first.identity) as writer:
        writer.add(Record("/synthetic/new.jpg", "ok", 1, 1), vectors[0])
    with pytest.raises(IndexStale, match="newer commits"):
        OnDiskIndex.open(Store.open(first.root))
    # another store put in the folder, at the same generation: its own shards, the old index beside them
    index_folder = tmp_path / "kept-index"
    shutil.move(str(first.root / "index"), index_folder)
    shutil.rmtree(first.root)
    other = make_store(first.root, vectors[1500:3000] * -1)
    assert other.generation == first.generation
    shutil.move(str(index_folder), first.root / "index")
    with pytest.raises(IndexStale, match="another store at the same generation"):
        OnDiskIndex.open(other)
    assert policy.open_index(other).state is policy.IndexState.STALE


def test_policy_states_come_from_the_refusal_type(tmp_path: Path, vectors: np.ndarray) -> None:
    store = make_store(tmp_path / "store", vectors[:500])
    assert policy.open_index(store).state is policy.IndexState.MISSING
    assert policy.open_index(store, wanted=False).state is policy.IndexState.OFF
    empty = tmp_path / "empty"
    with StoreWriter.open(empty, StoreIdentity("synthetic", {}, DIM)):
        pass
    assert policy.open_index(Store.open(empty)).state is policy.IndexState.EMPTY
    build_index(store, full_probe(500, DIM))
    decision = policy.open_index(store)
    assert decision.state is policy.IndexState.CURRENT and decision.index is not None
    assert policy.state_of(IndexDamaged("any words at all")) is policy.IndexState.DAMAGED
    assert not policy.answers_exactly(policy.refused(IndexStale("x")), policy.IndexMode.REQUIRE)
    assert policy.answers_exactly(policy.refused(IndexStale("x")), policy.IndexMode.AUTO)


# -- 3. disk full and killed builds ----------------------------------------------------------------

STAGES = ["part-0000.faiss", "lists.ivfdata", "index.faiss", "locations.npy", "paths.arrow", "index.json"]


@pytest.mark.parametrize("stage", STAGES)
def test_disk_full_at_any_stage_of_a_build_is_one_line_and_leaves_nothing(
        store: Store, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the write of one file (faiss's included, through its Python writer)."""
    fill_disk_at(stage, monkeypatch)
    with pytest.raises(StoreError) as caught:
        build_index(store, full_probe(3000, DIM), part_rows=1000)
    assert str(caught.value).startswith("disk full") and "\n" not in str(caught.value)
    assert os.listdir(store.root / "index") == []


def _mounted_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("room", ["parts", "merge"])
def test_cli_build_on_a_really_full_disk(tmp_path: Path, room: str) -> None:
    """A tmpfs too small for the index: "disk full ...", exit 1, no staging folder, no SIGBUS (faiss's own
    merge wrote through a memory map of a sparse file: the full tmpfs killed the build with SIGBUS)."""
    rng = np.random.default_rng(1)
    template = make_store(tmp_path / "template", rng.standard_normal((20_000, DIM)).astype(np.float32), per_commit=10_000)
    build_index(template, choose(20_000, DIM, sq8=True))
    index = next(p for p in (template.root / "index").iterdir() if not p.name.startswith("."))
    lists = (index / "lists.ivfdata").stat().st_size
    shutil.rmtree(template.root / "index")
    used = sum(p.stat().st_size for p in template.root.rglob("*") if p.is_file())
    room_bytes = 64 << 10 if room == "parts" else lists + (256 << 10)  # the parts fit, the merged lists do not
    mount = tmp_path / "small"
    if not _mounted_tmpfs(mount, used + (1 << 20) + room_bytes):  # tmpfs rounds up; ~1 MB of folder blocks
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        shutil.copytree(template.root, mount / "store")
        result = subprocess.run([sys.executable, "-m", "vggsim", "index", "build", "--store", str(mount / "store"),
                                 "--sq8", "--json"], capture_output=True, text=True, timeout=300)  # --json: no progress
        assert result.returncode == 1, (result.returncode, result.stderr)  # not -SIGBUS
        assert result.stderr.startswith("vggsim: error: disk full") and len(result.stderr.splitlines()) == 1, \
            result.stderr
        assert ("lists.ivfdata" if room == "merge" else "part-0000.faiss") in result.stderr
        assert os.listdir(mount / "store" / "index") == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_what_a_killed_build_leaves_is_cleaned_by_the_next(tmp_path: Path, vectors: np.ndarray) -> None:
    store = make_store(tmp_path / "store", np.tile(vectors, (10, 1)), per_commit=10_000)
    command = [sys.executable, "-m", "vggsim", "index", "build", "--store", str(store.root), "--sq8"]
    killed = False
    for _ in range(5):  # kill -9 once the build has a staging folder
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if (store.root / "index").is_dir() and any(p.name.startswith(".build-")
                                                       for p in (store.root / "index").iterdir()):
                process.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        process.wait(60)
        if killed:
            break
    (store.root / "index").mkdir(exist_ok=True)
    leftover = store.root / "index" / ".build-simulated"  # what a kill at any moment leaves, made sure of
    leftover.mkdir(exist_ok=True)
    (leftover / "part-0000.faiss").write_bytes(b"\0" * 1000)
    (store.root / "index" / ".old-simulated").mkdir()
    assert run_cli("index", "build", "--store", str(store.root), "--sq8").returncode == 0
    assert os.listdir(store.root / "index") == [Store.open(store.root).snapshot_id]
    assert main(["index", "info", "--store", str(store.root)]) == 0


def test_a_second_concurrent_build_is_refused(store: Store) -> None:
    with build_module.build_lock(store.root / "index"):
        with pytest.raises(StoreError, match="another `vggsim index build` or `update` is running"):
            build_index(store)
    build_index(store, full_probe(3000, DIM))


def test_index_json_is_checked_against_itself_and_while_open(store: Store, vectors: np.ndarray) -> None:
    """Before: a changed field of index.json (its identity) passed, and an index.json cut to nothing after
    the index was opened went unnoticed by that open index (a long-running service said "current")."""
    folder = build_index(store, full_probe(3000, DIM)).folder
    opened = OnDiskIndex.open(store)
    info = folder / "index.json"
    original = info.read_bytes()
    record = json.loads(original)
    record["identity"]["model_sha256"] = "f" * 64
    info.write_text(json.dumps(record, indent=2, sort_keys=True))
    with pytest.raises(IndexDamaged, match="record_sha256"):
        OnDiskIndex.open(store)
    assert policy.check_index(store.root, store).state is policy.IndexState.DAMAGED
    info.write_bytes(original)
    opened = OnDiskIndex.open(store)
    info.write_bytes(b"")
    with pytest.raises(IndexDamaged, match="index.json"):
        opened.search(vectors[1:2], 3)

    info.write_bytes(b"[" * 100_000 + b"]" * 100_000)  # nested past the parser's stack: damage, not a crash
    with pytest.raises(IndexDamaged, match="nested too deeply"):
        OnDiskIndex.open(store)
