"""Where an on-disk index lives in a store, what its ``index.json`` says, and how it is checked.

``STORE/index/<key>/`` holds ``index.faiss`` (the trained coarse quantiser and codec),
``lists.ivfdata`` (the inverted lists, memory-mapped when searching), the ids mapping
(``locations.npy``, ``paths.arrow``) and ``index.json``, written last. The folder is built
under ``STORE/index/.build-*`` and renamed into place, so a reader sees a whole index or none.
``<key>`` is the store snapshot's id (:attr:`Store.snapshot_id`): the commit generation plus
a digest of the identity and the committed shards with their files' checksums, so a new
commit, a repair or another store put in the same folder all make the index stale.

``index.json`` lists every other file of the folder with its size and sha256, written at
build. Opening checks them (each file hashed once per process, again when its stat changes
or after ``checksum.REVERIFY_S``: :mod:`vggsim.store.checksum`, the store's own checker), and
a searcher checks them again (a stat each, while unchanged) before every access to the
memory-mapped files: a file damaged or cut short since is refused as :class:`IndexDamaged`
instead of answering wrong ids or killing the process with SIGBUS. What is left is the
moment between that check and the access: a file cut exactly then can still kill a searcher.

The faiss ids of the index are the store's current-view ids at that generation (the
positions in ``Store.records()``), stored inside the lists by ``add_with_ids``. The ids
mapping sits beside them: ``locations.npy`` (per id, ``shard << 32 | row`` of its vector, -1
where it has none; read into memory when the index opens) and ``paths.arrow`` (per id, the
file name's bytes; memory-mapped). With them a search re-ranks and names its matches without
building the store's current view (about 0.5 GB of tables at 1M files). Both are valid
exactly as long as the snapshot matches, which is what opening the index checks.

Every refusal is a :class:`IndexProblem` (a StoreError, one line, naming the rebuild command):
:class:`IndexMissing`, :class:`IndexStale` or :class:`IndexDamaged`; what a front end does
about each is decided in one place, :mod:`vggsim.search.policy`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vggsim.errors import StoreError
from vggsim.store import Store
from vggsim.store.checksum import file_problem
from vggsim.store.format import atomic_write

INDEX_DIR = "index"
INDEX_FORMAT = 2  # 1: sizes only, no checksums (refused as stale: rebuild)
INFO, CODES, LISTS = "index.json", "index.faiss", "lists.ivfdata"
LOCATIONS, PATHS = "locations.npy", "paths.arrow"
FILES = (CODES, LISTS, LOCATIONS, PATHS)


class IndexProblem(StoreError):
    """The store's index cannot be used; the message names the rebuild command."""


class IndexMissing(IndexProblem):
    """No index was built for the store."""


class IndexStale(IndexProblem):
    """The index was built for another snapshot: an older commit, or another store in the same folder."""


class IndexDamaged(IndexProblem):
    """A file of the index is missing, garbled, cut or changed since it was built."""


def coverage(store: Store) -> str:
    """What the index of ``store`` must cover: the snapshot's content digest."""
    return store.digest


def index_key(store: Store) -> str:
    return store.snapshot_id


def rebuild_hint(root: Path) -> str:
    return f"`vggsim index build --store {root}` (or pass --rebuild to `vggsim search --index`)"


def damaged(folder: Path, root: Path, detail: object) -> IndexDamaged:
    text = (str(detail).splitlines() or ["?"])[0][:200]
    return IndexDamaged(f"{folder}: the index is damaged ({text}); rebuild it with {rebuild_hint(root)}")


def _record_digest(info: dict[str, Any]) -> str:
    """The sha256 of ``index.json``'s content less its own ``record_sha256`` (how its own damage shows)."""
    rest = {k: v for k, v in info.items() if k not in ("record_sha256", READ_STAT)}
    return hashlib.sha256(json.dumps(rest, indent=2, sort_keys=True).encode()).hexdigest()


def write_info(folder: Path, info: dict[str, Any]) -> None:
    text = json.dumps({**info, "record_sha256": _record_digest(info)}, indent=2, sort_keys=True).encode()
    atomic_write(folder / INFO, lambda fp: fp.write(text))


#: the key under which :func:`read_info` keeps ``index.json``'s stat when read (never written)
READ_STAT = "_read_stat"


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def built_folder(store_root: Path) -> Path:
    """The newest index folder of the store at ``store_root``, current or not; IndexMissing when there is none."""
    root = store_root / INDEX_DIR
    try:
        built = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime_ns) if root.is_dir() else []
    except OSError:
        built = []
    if not built:
        raise IndexMissing(f"{store_root} has no index; build it with {rebuild_hint(store_root)}")
    return built[-1]


def read_info(folder: Path, root: Path) -> dict[str, Any]:
    """``index.json``, checked for a known format and a size and sha256 per file (not the files)."""
    path = folder / INFO
    try:
        stat = _stat_key(path)
        info = json.loads(path.read_bytes())
    except RecursionError:
        raise damaged(folder, root, f"{INFO}: nested too deeply to be an index record") from None
    except (OSError, ValueError) as exc:
        raise damaged(folder, root, f"{INFO}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") \
            from None
    if isinstance(info, dict) and info.get("format") == 1:
        raise IndexStale(f"{path}: the index was built by an older vggsim that recorded no checksums of its "
                         f"files, so it cannot be checked; rebuild it with {rebuild_hint(root)}")
    files = info.get("files") if isinstance(info, dict) else None
    if (not isinstance(info, dict) or info.get("format") != INDEX_FORMAT or not isinstance(files, dict)
            or sorted(files) != sorted(FILES) or not all(
                isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                for e in files.values())
            or not isinstance(info.get("vectors"), int) or not isinstance(info.get("params"), dict)):
        raise damaged(folder, root, f"{INFO} is not an index record of a known format")
    if info.get("record_sha256") != _record_digest(info):
        raise damaged(folder, root, f"{INFO} does not match its own record_sha256 (edited or damaged)")
    info[READ_STAT] = stat
    return info


def stale_cause(info: dict[str, Any], store: Store) -> str | None:
    """Why the index of ``info`` does not cover ``store``'s snapshot, or None when it does."""
    generation = info.get("generation")
    if generation == store.generation and info.get("coverage") == coverage(store):
        return None
    if info.get("identity") != store.identity.to_dict():
        return (f"the index was built for another store (another model, preprocessing or dim) than the one now "
                f"at {store.root}")
    if not isinstance(generation, int) or generation > store.generation:
        return (f"the index covers generation {generation}, but the store is at generation {store.generation}: "
                f"it was built for another store (re-created, or restored from a backup, in this folder)")
    if generation == store.generation:
        return (f"the index was built for another store at the same generation {generation} (its shards differ: "
                f"a store re-created, restored or repaired in this folder)")
    return (f"the index covers generation {generation}, but the store is at generation {store.generation} "
            f"(it changed since the index was built: newer commits, which `vggsim index update --store "
            f"{store.root}` adds without training it again)")


def file_problems(folder: Path, info: dict[str, Any], *, fresh: bool = False) -> list[str]:
    """Each file of the index that does not hold what ``index.json`` lists, with the cause."""
    problems = []
    try:  # index.json itself, as it was read: a copy in memory must not outlive the file it came from
        if READ_STAT in info and _stat_key(folder / INFO) != info[READ_STAT]:
            problems.append(f"{INFO}: changed since it was read")
    except OSError as exc:
        problems.append(f"{INFO}: {exc.strerror or exc}")
    for name in FILES:
        entry = info["files"][name]
        problem = file_problem(folder / name, entry["size"], entry["sha256"], record=INFO, fresh=fresh)
        if problem is not None:
            problems.append(f"{name}: {problem}")
    return problems


def require_files(folder: Path, info: dict[str, Any], root: Path, *, fresh: bool = False) -> None:
    """IndexDamaged unless every file still holds what ``index.json`` lists (a stat each while unchanged;
    every file hashed with ``fresh``)."""
    problems = file_problems(folder, info, fresh=fresh)
    if problems:
        raise damaged(folder, root, problems[0])


def current_folder(store: Store, *, fresh: bool = False) -> tuple[Path, dict[str, Any]]:
    """The folder and ``index.json`` of the store's index if it covers this snapshot and its files
    check out (hashed again with ``fresh``); IndexMissing, IndexStale or IndexDamaged if not."""
    folder = built_folder(store.root)
    info = read_info(folder, store.root)
    cause = stale_cause(info, store)
    if cause is not None:
        raise IndexStale(f"{folder / INFO}: {cause}; rebuild it with {rebuild_hint(store.root)}")
    require_files(folder, info, store.root, fresh=fresh)
    return folder, info


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Keep faiss's C-level progress lines ("resizing ...") off stdout, which may carry JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what faiss printed is still in C's buffer: drop it here
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Catch what C code (faiss's k-means) writes to stderr; the list holds it, line by line, after the block."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
