"""The store (format 2): lossless paths, only committed data trusted, any .npy layout, safe
writers, full disks, live commits, verify and repair.

Tests named after a defect of issue 7 reach the store the way main's code did too (the
CLI, ``Store.open``, ``table``, ``history``, ``blocks``), so they fail on main for the
defect itself, not for a missing name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggsim import StoreError
from vggsim.store import StoreWriter  # noqa: E402
from support import run_cli

pytest.importorskip("pyarrow")

DIM = 512


def read_everything(root: Path) -> tuple[Any, np.ndarray]:
    """What a search reads: the current table and every vector."""
    from vggsim.store import Store

    store = Store.open(root)
    table = store.table()
    blocks = list(store.blocks())
    vectors = np.concatenate([b.vectors for b in blocks]) if blocks else np.zeros((0, DIM), np.float32)
    return table, vectors


@pytest.fixture(scope="module")
def template(model_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A store of four photos made by `vggsim embed`; tests work on copies."""
    root = tmp_path_factory.mktemp("template")
    files = []
    for n, photo in enumerate(photos[:4]):
        files.append(root / "photos" / f"{n}{photo.suffix}")
        files[-1].parent.mkdir(exist_ok=True)
        shutil.copy(photo, files[-1])
    result = run_cli("embed", str(root / "photos"), "--store", str(root / "store"), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    return root / "store", files


@pytest.fixture
def store_copy(template: tuple[Path, list[Path]], tmp_path: Path) -> Path:
    shutil.copytree(template[0], tmp_path / "store")
    return tmp_path / "store"


def committed_files(root: Path, kind: str) -> list[Path]:
    """The shard files of a store (on main: every file; now: those the commit record lists)."""
    if (root / "commit.json").exists():
        names = [n for s in json.loads((root / "commit.json").read_text())["shards"] for n in s["files"]]
        return [root / n for n in names if n.startswith(kind)]
    return sorted((root / kind).glob("*"))


def recommit(root: Path, path: Path) -> None:
    """Record a rewritten shard file in the commit record, as a writer would have."""
    commit_path = root / "commit.json"
    if not commit_path.exists():
        return  # main's store has no commit record
    commit = json.loads(commit_path.read_text())
    for shard in commit["shards"]:
        entry = shard["files"].get(path.relative_to(root).as_posix())
        if entry is not None:
            entry.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
            if path.suffix == ".npy":
                shard["dtype"] = np.load(path, mmap_mode="r").dtype.str
    commit_path.write_text(json.dumps(commit))


# ---- 1. lossless paths ---------------------------------------------------------------------

def test_non_utf8_file_name_round_trips(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9-\xff.jpg")  # Latin-1 bytes: not valid UTF-8
    shutil.copy(photos[0], odd)
    shutil.copy(photos[1], folder / "plain.jpg")
    store = tmp_path / "store"
    first = run_cli("embed", str(folder), "--store", str(store), "--model", str(model_dir), "--json")
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    second = run_cli("embed", str(folder), "--store", str(store), "--model", str(model_dir), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["unchanged"] == 2  # the odd name is recognised, not re-embedded
    from vggsim.store import Store

    opened = Store.open(store)
    assert sorted(opened.paths()) == sorted([odd, str(folder / "plain.jpg")])
    assert os.path.exists(opened.paths()[[Path(p).name for p in opened.paths()].index(Path(odd).name)])
    table = opened.table()
    assert os.fsencode(odd) in table.column("path_bytes").to_pylist()
    assert str(folder) + "/caf\\xe9-\\xff.jpg" in table.column("path").to_pylist()  # display text


def test_record_paths_and_errors_round_trip_through_journal_and_shard(tmp_path: Path) -> None:
    from vggsim.store import Record, Store, StoreIdentity

    names = [os.fsdecode(b"/x/\xff\xfe.jpg"), "/x/\u00e9t\u00e9.jpg", "/x/tab\tnew\nline.jpg"]
    with StoreWriter.open(tmp_path / "s", StoreIdentity("m", {}, 4)) as writer:
        for n, name in enumerate(names):
            writer.add(Record(name, "ok", size=n), np.full(4, n, np.float32))
        writer.add(Record("/x/bad.jpg", "error", error_kind="truncated", error=f"{names[0]}: cut short"))
    store = Store.open(tmp_path / "s")
    assert store.paths() == [*names, "/x/bad.jpg"]
    assert store.records()[3].error == "/x/\\xff\\xfe.jpg: cut short"  # shown, never a crash


# ---- 2. only committed data is trusted -----------------------------------------------------

def test_stray_files_are_ignored(store_copy: Path) -> None:
    table, vectors = read_everything(store_copy)
    meta = committed_files(store_copy, "meta")[0]
    shutil.copy(meta, store_copy / "meta" / "backup.parquet")
    (store_copy / "meta" / ".000001.parquet.tmp").write_bytes(b"half a file")
    (store_copy / "vectors" / "999999.npy").write_bytes(b"junk")
    again, again_vectors = read_everything(store_copy)
    assert again.num_rows == table.num_rows and np.array_equal(again_vectors, vectors)


def test_uncommitted_shard_is_never_adopted(store_copy: Path, template: tuple[Path, list[Path]]) -> None:
    """A shard written by a writer killed before its commit: readers and writers ignore it."""
    from vggsim.store import Store

    rows = Store.open(store_copy).history().num_rows
    shutil.copy(committed_files(store_copy, "meta")[0], store_copy / "meta" / "000077.parquet")
    shutil.copy(committed_files(store_copy, "vectors")[0], store_copy / "vectors" / "000077.npy")
    assert Store.open(store_copy).history().num_rows == rows


DAMAGE: dict[str, Callable[[Path], Path]] = {}


def damage(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        DAMAGE[name] = fn
        return fn
    return register


@damage("truncated shard")
def _truncate_vectors(root: Path) -> Path:
    path = committed_files(root, "vectors")[0]
    path.write_bytes(path.read_bytes()[:-100])
    return path


@damage("garbled shard header")
def _garble_vectors(root: Path) -> Path:
    path = committed_files(root, "vectors")[0]
    data = path.read_bytes()
    path.write_bytes(b"\x93NUMPY\x01\x00" + b"x" * 20 + data[28:])
    return path


@damage("missing shard")
def _missing_vectors(root: Path) -> Path:
    path = committed_files(root, "vectors")[0]
    path.unlink()
    return path


@damage("truncated meta")
def _truncate_meta(root: Path) -> Path:
    path = committed_files(root, "meta")[0]
    path.write_bytes(path.read_bytes()[:200])
    return path


@damage("garbled store.json")
def _garble_identity(root: Path) -> Path:
    (root / "store.json").write_text('{"format": 2, "model_sha')
    return root / "store.json"


@damage("missing store.json")
def _missing_identity(root: Path) -> Path:
    (root / "store.json").unlink()
    return root / "store.json"


@damage("garbled commit record")
def _garble_commit(root: Path) -> Path:
    (root / "commit.json").write_text('{"generation": 1, "shards": [{"id"')
    return root / "commit.json"


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_files_give_a_store_error_naming_the_file(store_copy: Path, kind: str) -> None:
    damaged = DAMAGE[kind](store_copy)
    with pytest.raises(StoreError) as raised:
        read_everything(store_copy)
    message = str(raised.value)
    assert str(damaged) in message
    if kind in ("missing store.json", "garbled store.json"):  # repair cannot help: a backup or a new store
        assert "restore" in message.lower() and "re-create the store" in message
    else:
        assert "vggsim store" in message and "repair" in message


def test_damaged_store_gives_one_line_in_the_cli_not_a_traceback(store_copy: Path, model_dir: Path,
                                                                 template: tuple[Path, list[Path]]) -> None:
    damaged = _truncate_vectors(store_copy)
    result = run_cli("search", str(template[1][0]), "--store", str(store_copy), "--model", str(model_dir))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(damaged) in result.stderr


def test_format_1_store_is_refused_with_a_way_out(tmp_path: Path) -> None:
    from vggsim.store import Store, StoreIdentity

    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "store.json").write_text(json.dumps({"format": 1, "model_sha256": "m", "preprocess": {}, "dim": 4}))
    with pytest.raises(StoreError, match="format-1 .*Re-create it"):
        Store.open(tmp_path / "old")
    with pytest.raises(StoreError, match="format-1 .*Re-create it"):
        StoreWriter.open(tmp_path / "old", StoreIdentity("m", {}, 4))


# ---- 3. any .npy layout ----------------------------------------------------------------------

LAYOUTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int]]] = {
    "fortran order": (np.asfortranarray, (1, 0)),
    "big-endian": (lambda a: a.astype(">f4"), (1, 0)),
    "float64": (lambda a: a.astype(np.float64), (1, 0)),
    "float16": (lambda a: a.astype(np.float16), (1, 0)),
    "header version 2": (lambda a: a, (2, 0)),
    "header version 3": (lambda a: a, (3, 0)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fortran_order_and_other_npy_layouts_read_correctly(store_copy: Path, layout: str) -> None:
    table, before = read_everything(store_copy)
    transform, version = LAYOUTS[layout]
    for path in committed_files(store_copy, "vectors"):
        array = transform(np.load(path))
        with open(path, "wb") as fp:
            np.lib.format.write_array(fp, array, version=version)
        recommit(store_copy, path)
    _, after = read_everything(store_copy)
    tolerance = 1e-2 if layout == "float16" else 1e-6
    assert after.dtype == np.float32 and after.flags.c_contiguous
    assert np.allclose(after, before, rtol=tolerance, atol=tolerance)
    scores = (after / np.linalg.norm(after, axis=1, keepdims=True)) @ (before[0] / np.linalg.norm(before[0]))
    assert scores.max() > 0.9999  # main read Fortran order as 0.80 for the same photo


# ---- 4. writers ------------------------------------------------------------------------------

def test_leftover_vec_without_jsonl_never_shifts_vectors(store_copy: Path, model_dir: Path,
                                                         template: tuple[Path, list[Path]], photos: list[Path],
                                                         tmp_path: Path) -> None:
    """A killed run's vector file without its record file must not take new records' rows."""
    garbage = np.full((3, DIM), 7.0, np.float32).tobytes()
    for journal_id in range(1, 12):  # whatever id the next writer would pick
        (store_copy / "journal").mkdir(exist_ok=True)
        (store_copy / "journal" / f"{journal_id:06d}.vec").write_bytes(garbage)
    extra = tmp_path / "more"
    extra.mkdir()
    for photo in photos[4:6]:
        shutil.copy(photo, extra / photo.name)
    result = run_cli("embed", str(extra), "--store", str(store_copy), "--model", str(model_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    from vggsim import Embedder

    expected = Embedder(model_dir, providers="cpu").embed(sorted(extra.iterdir()))
    table, vectors = read_everything(store_copy)
    got = {p: v for p, v in zip(table.column("path").to_pylist(), vectors)}
    for path, vector in zip(sorted(extra.iterdir()), expected):
        assert np.allclose(got[str(path)], vector, rtol=1e-4, atol=1e-3), path


def test_missing_store_json_refuses_any_writer(store_copy: Path, model_dir: Path,
                                               template: tuple[Path, list[Path]]) -> None:
    (store_copy / "store.json").unlink()
    result = run_cli("embed", str(template[1][0]), "--store", str(store_copy), "--model", str(model_dir),
                     "--exif-transpose", "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "store.json is missing" in result.stderr
    assert not (store_copy / "store.json").exists()


def test_identity_mismatch_names_the_field(tmp_path: Path) -> None:
    from vggsim.store import Store, StoreIdentity

    made = StoreIdentity("a" * 64, {"resample": "bicubic", "exif_transpose": False}, 4)
    StoreWriter.open(tmp_path / "s", made).close()
    other = StoreIdentity("a" * 64, {"resample": "bicubic", "exif_transpose": True}, 4)
    with pytest.raises(StoreError, match="different preprocess .*exif_transpose"):
        StoreWriter.open(tmp_path / "s", other)
    with pytest.raises(StoreError, match="different dim"):
        Store.open(tmp_path / "s").require_compatible(StoreIdentity("a" * 64, made.preprocess, 8))
    Store.open(tmp_path / "s").require_compatible(StoreIdentity("a" * 64, made.preprocess, 4, "float16"))


def test_garbled_journal_lines_are_dropped_not_fatal(tmp_path: Path) -> None:
    from vggsim.store import Record, StoreIdentity

    identity = StoreIdentity("m", {}, 4)
    script = (
        "import os, sys, numpy as np\n"
        "from vggsim.store import Record, StoreIdentity, StoreWriter\n"
        "w = StoreWriter.open(sys.argv[1], StoreIdentity('m', {}, 4))\n"
        "for n in range(4):\n"
        "    w.add(Record(f'/x/{n}.jpg', 'ok'), np.full(4, n, np.float32))\n"
        "w.flush()\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], check=True, timeout=120)
    journal = next((tmp_path / "s" / "journal").glob("*.jsonl"))
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"ok"', b'"OK"')  # a flipped byte: the line checksum fails
    journal.write_bytes(b"\n".join(lines))
    vec = journal.with_suffix(".vec")
    data = bytearray(vec.read_bytes())
    data[2 * 16] ^= 0xFF  # record 2's vector damaged: its checksum fails
    vec.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="2 damaged journal records dropped"):
        writer = StoreWriter.open(tmp_path / "s", identity)
    assert any("garbled" in note for note in writer.recovery_notes)
    writer.add(Record("/x/new.jpg", "ok"), np.full(4, 9, np.float32))
    store = writer.close()
    assert store.paths() == ["/x/0.jpg", "/x/3.jpg", "/x/new.jpg"]
    assert [float(v[0]) for v in store.vectors([0, 1, 2])] == [0.0, 3.0, 9.0]


WRITER = """
import sys, time
import numpy as np
from vggsim.store import Record, Store, StoreIdentity, StoreWriter
w = StoreWriter.open(sys.argv[1], StoreIdentity('m', {}, 64))
start = int(sys.argv[2])
for n in range(start, start + 400):
    w.add(Record(f'/x/{n:05d}.jpg', 'ok', size=n), np.full(64, n, np.float32))
    if n % 3 == 0:
        w.flush()
    if n % 25 == 0:
        w.commit()
    print(n, flush=True) if n % 3 == 0 else None
w.close()
"""


def test_kill_9_at_random_moments_loses_at_most_the_batch_and_duplicates_nothing(tmp_path: Path) -> None:
    from vggsim.store import Store

    rng = np.random.default_rng(0)
    start, interrupted = 0, 0
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "s"), str(start)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        first = process.stdout.readline()  # the writer is running: now kill it anywhere mid-run
        time.sleep(float(rng.uniform(0.0, 0.3)))
        process.send_signal(signal.SIGKILL)
        flushed = [int(line) for line in (first + process.stdout.read()).split()]
        process.wait()
        writer = StoreWriter.open(tmp_path / "s", Store.open(tmp_path / "s").identity)
        store = writer.close()
        records = store.records()
        numbers = [int(Path(r.path).stem) for r in records]
        assert len(set(numbers)) == len(numbers)  # nothing twice
        for n in flushed:
            assert n in numbers  # nothing flushed was lost
        vectors = store.vectors(range(len(records)))
        assert np.array_equal(vectors[:, 0], np.array(numbers, np.float32))  # every vector on its own record
        assert [r.size for r in records] == numbers
        interrupted += max(numbers, default=-1) < start + 399
        start = max(numbers, default=start) + 1
    assert interrupted and Store.open(tmp_path / "s").verify().ok


# ---- 5. full disk ----------------------------------------------------------------------------

@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_disk_full_while_committing_loses_nothing_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            failing: str) -> None:
    from vggsim.store import format as store_format
    from vggsim.store import Record, Store, StoreIdentity

    identity = StoreIdentity("m", {}, 4)
    writer = StoreWriter.open(tmp_path / "s", identity)
    writer.add(Record("/x/kept.jpg", "ok"), np.ones(4, np.float32))
    writer.commit()
    writer.add(Record("/x/pending.jpg", "ok"), np.full(4, 2, np.float32))
    writer.flush()

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_format.os, failing, full)
    with pytest.raises(StoreError, match="disk full writing .*nothing committed was lost; free space and run the same"):
        writer.commit()
    with pytest.raises(StoreError, match="stopped after an earlier error"):
        writer.add(Record("/x/later.jpg", "ok"), np.ones(4, np.float32))
    writer.close()
    monkeypatch.undo()
    assert Store.open(tmp_path / "s").paths() == ["/x/kept.jpg"]
    assert not list((tmp_path / "s").rglob("*.tmp"))  # tmp files removed: the disk is no fuller
    store = StoreWriter.open(tmp_path / "s", identity).close()  # space is back: the journal is recovered
    assert store.paths() == ["/x/kept.jpg", "/x/pending.jpg"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"a real full disk needs `mount -t tmpfs` (root in a container that allows it): {made.stderr!r}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_gives_a_clear_error_and_keeps_what_was_committed(tiny_disk: Path, model_dir: Path,
                                                                    photos: list[Path], tmp_path: Path) -> None:
    from vggsim.store import Store

    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(24):
        shutil.copy(photos[n % len(photos)], folder / f"{n:02d}{photos[n % len(photos)].suffix}")
    store = tiny_disk / "store"
    first = run_cli("embed", *map(str, sorted(folder.iterdir())[:2]), "--store", str(store), "--model", str(model_dir),
                    "--quiet")
    assert first.returncode == 0, first.stderr
    with open(tiny_disk / "filler", "wb") as fp:  # leave room for a few records, not for 24
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        fp.write(b"\0" * max(0, free - 24 * 1024))
    full = run_cli("embed", str(folder), "--store", str(store), "--model", str(model_dir), "--quiet",
                   "--batch-size", "2")
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert "disk full writing" in full.stderr and "free space and run the same command again" in full.stderr
    assert len(Store.open(store).paths()) == 2
    (tiny_disk / "filler").unlink()
    again = run_cli("embed", str(folder), "--store", str(store), "--model", str(model_dir), "--json")
    assert again.returncode == 0, again.stderr
    paths = Store.open(store).paths()
    assert sorted(paths) == sorted(map(str, folder.iterdir())) and Store.open(store).verify().ok


# ---- 6. live commits, snapshots, threads -------------------------------------------------------

def test_commit_publishes_while_writing_and_readers_see_snapshots(tmp_path: Path) -> None:
    from vggsim.store import Record, Store, StoreIdentity

    writer = StoreWriter.open(tmp_path / "s", StoreIdentity("m", {}, 4))
    early = Store.open(tmp_path / "s")
    for n in range(3):
        writer.add(Record(f"/x/{n}.jpg", "ok"), np.full(4, n, np.float32))
    assert Store.open(tmp_path / "s").count_ok() == 0 and not early.is_stale()  # added, not committed
    published = writer.commit()
    assert early.is_stale() and not published.is_stale()
    reader = Store.open(tmp_path / "s")
    assert reader.generation == published.generation == early.generation + 1 and reader.count_ok() == 3
    writer.add(Record("/x/0.jpg", "deleted"))
    writer.add(Record("/x/9.jpg", "ok"), np.full(4, 9, np.float32))
    writer.commit()
    assert reader.is_stale() and reader.paths() == ["/x/0.jpg", "/x/1.jpg", "/x/2.jpg"]  # still its snapshot
    assert Store.open(tmp_path / "s").paths() == ["/x/1.jpg", "/x/2.jpg", "/x/9.jpg"]
    assert early.count_ok() == 0
    writer.close()


def test_one_store_is_safe_to_read_from_many_threads(tmp_path: Path) -> None:
    from vggsim.store import Record, Store, StoreIdentity

    with StoreWriter.open(tmp_path / "s", StoreIdentity("m", {}, 8)) as writer:
        for n in range(300):
            writer.add(Record(f"/x/{n}.jpg", "ok"), np.full(8, n, np.float32))
            if n % 70 == 0:
                writer.commit()
    store = Store.open(tmp_path / "s")
    results: list[tuple[list[str], float]] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            total = sum(float(b.vectors.sum()) for b in store.blocks(block_rows=32))
            results.append((store.paths(), total))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 8
    assert all(r == results[0] for r in results) and results[0][1] == 8 * sum(range(300))


# ---- 7. verify and repair --------------------------------------------------------------------

def test_verify_names_damaged_shards_and_repair_lets_embed_redo_their_files(
        model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    from vggsim.store import Store, repair, verify_store

    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, folder / photo.name)
    store = tmp_path / "store"
    base = ["--store", str(store), "--model", str(model_dir), "--json"]
    assert run_cli("embed", str(folder), *base).returncode == 0
    for photo in photos[2:4]:
        shutil.copy(photo, folder / photo.name)
    assert json.loads(run_cli("embed", str(folder), *base).stdout)["embedded"] == 2
    second = committed_files(store, "vectors")[-1]
    data = bytearray(second.read_bytes())
    data[-5] ^= 0x55  # a bit flip: same size, so only the checksum can tell
    second.write_bytes(bytes(data))
    report = Store.open(store).verify()
    assert not report.ok and report.shards == 2 and any(str(second) in p and "sha256" in p for p in report.problems)
    assert verify_store(store).problems == report.problems
    fixed = repair(store)
    assert fixed.records_dropped == 2 and (store / "damaged" / second.name).exists()
    assert len(Store.open(store).paths()) == 2 and Store.open(store).verify().ok
    rerun = json.loads(run_cli("embed", str(folder), *base).stdout)
    assert (rerun["embedded"], rerun["unchanged"]) == (2, 2)
    assert sorted(Store.open(store).paths()) == sorted(map(str, folder.iterdir()))


def test_repair_rebuilds_a_lost_commit_record(store_copy: Path) -> None:
    from vggsim.store import Store, repair

    before = Store.open(store_copy).paths()
    (store_copy / "commit.json").unlink()
    with pytest.raises(StoreError, match="commit.json is missing.*repair"):
        Store.open(store_copy)
    assert repair(store_copy).rebuilt_commit
    assert Store.open(store_copy).paths() == before
