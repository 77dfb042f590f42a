"""Building a store's on-disk IVF index in bounded memory.

The store is read through its streaming API (:meth:`Store.iter_vector_blocks`,
:meth:`Store.iter_record_blocks`, :meth:`Store.sample_vectors`), never through its current
view's tables. Memory: the store's scan (about 9 bytes per record kept; 45-60 bytes per
committed record while it sorts out the latest record of each name, freed before training), the training sample
(<= 100,000 vectors, see params), one store block, and one part of at most ``PART_BYTES``
of encoded vectors. Parts are written to the staging folder, then merged list by list into
one ``lists.ivfdata`` file in faiss's ``OnDiskInvertedLists`` layout (codes, then ids, per
list). Disk: the parts and the merged lists (about twice the index size) until the parts are
deleted.

Every file is written with ordinary writes (faiss's own through a Python callback), never
through a memory map, and hashed as it is written: a full disk is an OSError (ENOSPC) at
whatever stage it happens, reported as one line, "disk full ...", where a write into a mapped,
sparse file would kill the build with SIGBUS. The sha256 of each file goes into
``index.json`` (see files.py).

One build at a time per store: a build holds a lock on the ``STORE/index`` folder itself (flock,
released by the kernel however the build ends, and no file left behind) and first removes what killed builds left (``.build-*``
staging folders, ``.old-*`` folders of a replaced index); a build that fails removes its
own staging folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from vggsim.errors import StoreError, require
from vggsim.similarity import l2_normalize
from vggsim.store import Store
from vggsim.store.format import atomic_write, shard_name
from vggsim.search.ivf.files import (
    FILES,
    INDEX_DIR,
    INDEX_FORMAT,
    LISTS,
    LOCATIONS,
    PATHS,
    captured_stderr,
    coverage,
    index_key,
    quiet_stdout,
    write_info,
)
from vggsim.search.ivf.merge import invlists_source, residuals, write_faiss, write_lists
from vggsim.search.ivf.params import IndexParams, choose

PART_BYTES = 64 << 20  # encoded bytes per part: a part is built in memory (faiss may reserve up to 2x), then written out


@dataclass(frozen=True)
class BuildSummary:
    folder: Path
    vectors: int
    params: IndexParams
    bytes: int
    seconds: float


FAISS_CLUSTERING = re.compile(r"WARNING clustering (\d+) points to (\d+) centroids: please provide at least (\d+)")


def _faiss() -> Any:
    return require("faiss", "ann", "The on-disk index")


def _say_faiss_lines(lines: list[str], params: IndexParams, vectors: int) -> None:
    """faiss warns "WARNING clustering N points to K centroids: please provide at least M training points"
    from C, once per k-means (per PQ sub-space too): said once, in vggsim's words, with only the remedies
    that apply to this build; other lines passed on."""
    found = [m for m in (FAISS_CLUSTERING.match(line) for line in lines) if m]
    if found:
        points, centroids, wanted = (int(v) for v in found[0].groups())
        remedies = ([f"a larger --sample (up to {vectors:,})"] if params.sample < vectors else []) + \
            (["a smaller --nlist"] if params.nlist > 1 else []) + (["--sq8 instead of --pq"] if params.codes == "pq" else [])
        fix = f"pass {' or '.join(remedies)}, or " if remedies else ""
        lists = f"{centroids} centroid{'' if centroids == 1 else 's'}"
        warnings.warn(f"the index trained {lists} on only {points:,} vectors (faiss asks for at least "
                      f"{wanted:,}): it works, but its lists are rough; {fix}search a store this small exactly "
                      "(without --index)", UserWarning, stacklevel=3)
    for line in lines:
        if not FAISS_CLUSTERING.match(line):
            print(line, file=sys.stderr)


def training_sample(store: Store, size: int, seed: int = 0) -> np.ndarray:
    """``size`` vectors drawn uniformly (only their rows are read), unit length, float32."""
    return l2_normalize(store.sample_vectors(size, seed).vectors, np.float32)


def _failed(exc: OSError, where: Path) -> StoreError:
    """One line for an OSError while building: "disk full ..." when it is that."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"disk full writing the index in {where}: nothing was replaced; free space and build "
                          "it again")
    return StoreError(f"{where}: writing the index failed ({exc.strerror or exc}); nothing was replaced")


@contextmanager
def build_lock(parent: Path, action: str = "build") -> Iterator[None]:
    """Lock ``parent`` (the folder) for one build; StoreError at once if another build holds it. Then
    remove what killed builds left (nobody else can be writing there now)."""
    try:
        parent.mkdir(exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _failed(exc, parent) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another `vggsim index build` or `update` is running on {parent.parent} (it holds a "
                             f"lock on {parent}), so this {action} cannot start; wait for it to finish") from None
        for leftover in parent.iterdir():
            if leftover.is_dir() and leftover.name.startswith((".build-", ".old-")):
                shutil.rmtree(leftover, ignore_errors=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def rows_per_part(code_size: int) -> int:
    """Vectors per encoded part: PART_BYTES of codes and ids, at least 10,000."""
    return max(10_000, PART_BYTES // (code_size + 8))


@contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """A new ``.build-*`` folder in ``parent`` to write an index into, removed if the block fails (an
    OSError as one line: "disk full ..." when it is that). The block renames it into place when done."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
    except OSError as exc:
        raise _failed(exc, parent) from None
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _failed(exc, staging) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_index(store: Store, params: IndexParams | None = None, *, part_rows: int | None = None,
                progress: Callable[[str], None] | None = None) -> BuildSummary:
    """Build the IVF index of ``store``'s current vectors and put it in ``STORE/index/<key>/``."""
    faiss = _faiss()
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    parent = store.root / INDEX_DIR
    with build_lock(parent):
        n, dim = store.current_view().vectors, store.identity.dim
        params = params or choose(n, dim)
        say(f"training {params.factory} on {params.sample:,} of {n:,} vectors")
        sample = training_sample(store, params.sample)
        trained = faiss.index_factory(dim, params.factory, faiss.METRIC_INNER_PRODUCT)
        with quiet_stdout(), captured_stderr() as said:
            trained.train(sample)
        _say_faiss_lines(said, params, n)
        fit = {"generation": store.generation, "vectors": n, "sample": len(sample),
               "residual": float(residuals(centroids(faiss, trained), sample).mean()),
               "added": 0, "added_residual_sum": 0.0}
        del sample
        template = faiss.serialize_index(trained)
        part_rows = part_rows or rows_per_part(params.code_size(dim))
        with staging_folder(parent) as staging:
            parts = add_parts(store.iter_vector_blocks(), faiss, template, staging, part_rows, say)
            say(f"merging {len(parts)} part(s) into {LISTS}")
            files: dict[str, dict[str, Any]] = {}
            added = merge_parts(faiss, template, parts, [], staging, files)
            write_mapping(store, staging, files)
            write_info(staging, index_record(store, added, params, files, fit, started))
            folder = publish(staging, parent, index_key(store))
    size = sum(int(files[name]["size"]) for name in FILES)
    return BuildSummary(folder, added, params, size, time.perf_counter() - started)


def centroids(faiss: Any, index: Any) -> np.ndarray:
    """The coarse quantiser's centroids of a trained IVF index, (nlist, dim) float32."""
    ivf = faiss.extract_index_ivf(index)
    return np.asarray(ivf.quantizer.reconstruct_n(0, int(ivf.nlist)), np.float32)


def index_record(store: Store, vectors: int, params: IndexParams, files: dict[str, dict[str, Any]],
                 fit: dict[str, Any], started: float, **more: Any) -> dict[str, Any]:
    """What ``index.json`` says of an index of ``store``'s snapshot: besides what opening it checks, the
    vectors file's sha256 of each shard it holds codes of (an update keeps the codes of the shards whose
    sha256 is unchanged) and how well its training fits (``fit``, for an update's drift)."""
    return {
        "format": INDEX_FORMAT, "generation": store.generation, "coverage": coverage(store),
        "snapshot": store.snapshot_id, "identity": store.identity.to_dict(), "vectors": vectors,
        "params": params.to_dict(), "metric": "inner product on unit vectors",
        "ids": "Store.records() positions at this generation", "files": files,
        "shards": {str(shard.id): shard.files.get(shard_name(shard.id, "vectors"), {}).get("sha256")
                   for shard in store.commit_record.shards},
        "fit": fit, "built_seconds": round(time.perf_counter() - started, 2), **more}


def add_parts(blocks: Iterable[Any], faiss: Any, template: Any, staging: Path, part_rows: int,
              say: Callable[[str], None]) -> list[Path]:
    """Encode ``blocks`` (each with ``ids`` and ``vectors``) with the trained ``template`` into parts of
    about ``part_rows`` vectors, written into ``staging``."""
    parts: list[Path] = []
    part, done = None, 0
    for block in blocks:
        if part is None:
            part = faiss.deserialize_index(template)
        part.add_with_ids(l2_normalize(block.vectors, np.float32), block.ids.astype(np.int64))
        done += len(block.ids)
        if part.ntotal >= part_rows:
            parts.append(_write_part(faiss, part, staging, len(parts)))
            part = None
            say(f"encoded {done:,} vectors")
    if part is not None or not parts:
        parts.append(_write_part(faiss, part or faiss.deserialize_index(template), staging, len(parts)))
    return parts


def _write_part(faiss: Any, part: Any, staging: Path, number: int) -> Path:
    path = staging / f"part-{number:04d}.faiss"
    write_faiss(faiss, part, path)
    return path


def merge_parts(faiss: Any, template: Any, parts: list[Path], before: list[Any], staging: Path,
                files: dict[str, dict[str, Any]]) -> int:
    """Write the lists of ``before`` (list sources: an update's previous index) and of the parts into one
    lists file (see merge.py), then delete the parts. Records the files' size and sha256 in ``files``."""
    with quiet_stdout():
        mapped = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP) for p in parts]
    sources = before + [invlists_source(faiss, ivf.invlists, int(ivf.code_size))
                        for ivf in (faiss.extract_index_ivf(part) for part in mapped)]
    added = write_lists(faiss, template, sources, staging, files)
    del sources, mapped  # the parts' maps
    for part_path in parts:
        part_path.unlink()
    return added


def location_parts(store: Store) -> Iterator[np.ndarray]:
    """The ids' locations in the current view (``shard << 32 | row`` of each id's vector, -1 where it has
    none), one array per shard, in id order."""
    view = store.current_view()
    written = 0
    for part in view.shards:  # ids are consecutive, shard after shard
        if part.first_id != written:
            raise StoreError(f"{store.root}: the current view's ids are not consecutive at shard {part.shard.id}")
        where = part.rows.astype(np.int64)
        yield np.where(where >= 0, (part.shard.id << 32) | where, -1)
        written += len(where)
    if written != view.records:
        raise StoreError(f"{store.root}: the current view holds {view.records} records, {written} were listed")


def write_mapping(store: Store, staging: Path, files: dict[str, dict[str, Any]]) -> None:
    """The ids mapping searches use instead of the store's tables (see files.py); sizes and sha256 into ``files``."""
    from vggsim.store.format import pyarrow

    pa = pyarrow()
    view = store.current_view()

    def write_locations(fp: IO[bytes]) -> None:
        np.lib.format.write_array_header_1_0(fp, {"descr": np.lib.format.dtype_to_descr(np.dtype("<i8")),
                                                  "fortran_order": False, "shape": (view.records,)})
        for where in location_parts(store):
            fp.write(where.astype("<i8").data)

    files[LOCATIONS] = atomic_write(staging / LOCATIONS, write_locations)
    schema = pa.schema([("path_bytes", pa.binary())])

    def write_paths(fp: IO[bytes]) -> None:
        with pa.ipc.new_file(pa.PythonFile(fp, mode="w"), schema) as writer:
            for _ids, names in store.iter_record_blocks(["path_bytes"]):
                writer.write_table(names, max_chunksize=65536)

    files[PATHS] = atomic_write(staging / PATHS, write_paths)


def publish(staging: Path, parent: Path, key: str) -> Path:
    """Rename the staging folder into place; then remove every other index of the store."""
    target = parent / key
    if target.exists():  # the same generation rebuilt: move the old one aside first
        os.rename(target, tempfile.mkdtemp(prefix=".old-", dir=parent) + "/old")
    os.rename(staging, target)
    for other in parent.iterdir():
        if other != target and other.is_dir() and (other.name.startswith(".old-") or not other.name.startswith(".")):
            shutil.rmtree(other, ignore_errors=True)
    return target
