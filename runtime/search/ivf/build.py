"""Building a store's on-disk IVF index in bounded memory.

The store is read through its streaming API (:meth:`Store.iter_vector_blocks`,
:meth:`Store.iter_record_blocks`, :meth:`Store.sample_vectors`), never through its current
view's tables. Memory: the store's scan (about 9 bytes per record kept; 45-60 bytes per
committed record while it sorts out the latest record of each name, freed before training), the training sample
(<= 100,000 vectors, see params), one store block, and one part of at most ``PART_BYTES``
of encoded vectors. Parts are written to the staging folder, then merged into one
``lists.ivfdata`` file (faiss ``OnDiskInvertedLists``) through memory maps: the merged
lists' pages (the index itself, n x (code size + 8) bytes) are the one part that grows with n.
Disk: the parts and the merged lists (about twice the index size) until the parts are deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import StoreError, require
from vggsim.similarity import l2_normalize
from vggsim.store import Store
from vggsim.search.ivf.files import (
    CODES,
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


def _say_faiss_lines(lines: list[str]) -> None:
    """faiss warns "WARNING clustering N points to K centroids: please provide at least M training points"
    from C, once per k-means (per PQ sub-space too): said once, in vggsim's words; other lines passed on."""
    found = [m for m in (FAISS_CLUSTERING.match(line) for line in lines) if m]
    if found:
        points, centroids, wanted = (int(v) for v in found[0].groups())
        warnings.warn(f"the index trained {centroids} centroids on only {points:,} vectors (faiss asks for at least "
                      f"{wanted:,}): it works, but its lists are rough; pass a larger --sample, a smaller --nlist "
                      "or --sq8 instead of --pq, or search a store this small exactly (without --index)",
                      UserWarning, stacklevel=3)
    for line in lines:
        if not FAISS_CLUSTERING.match(line):
            print(line, file=sys.stderr)


def training_sample(store: Store, size: int, seed: int = 0) -> np.ndarray:
    """``size`` vectors drawn uniformly (only their rows are read), unit length, float32."""
    return l2_normalize(store.sample_vectors(size, seed).vectors, np.float32)


def build_index(store: Store, params: IndexParams | None = None, *, part_rows: int | None = None,
                progress: Callable[[str], None] | None = None) -> BuildSummary:
    """Build the IVF index of ``store``'s current vectors and put it in ``STORE/index/<key>/``."""
    faiss = _faiss()
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    n, dim = store.current_view().vectors, store.identity.dim
    params = params or choose(n, dim)
    say(f"training {params.factory} on {params.sample:,} of {n:,} vectors")
    sample = training_sample(store, params.sample)
    trained = faiss.index_factory(dim, params.factory, faiss.METRIC_INNER_PRODUCT)
    with quiet_stdout(), captured_stderr() as said:
        trained.train(sample)
    _say_faiss_lines(said)
    del sample
    template = faiss.serialize_index(trained)
    part_rows = part_rows or max(10_000, PART_BYTES // (params.code_size(dim) + 8))
    parent = store.root / INDEX_DIR
    try:
        parent.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
    except OSError as exc:
        raise StoreError(f"{parent}: cannot write the index there ({exc.strerror or exc})") from None
    try:
        parts = _add_parts(store, faiss, template, staging, part_rows, say)
        say(f"merging {len(parts)} part(s) into {LISTS}")
        added = _merge(faiss, template, parts, staging)
        _write_mapping(store, staging)
        files = (CODES, LISTS, LOCATIONS, PATHS)
        size = sum((staging / name).stat().st_size for name in files)
        write_info(staging, {
            "format": INDEX_FORMAT, "generation": store.generation, "coverage": coverage(store),
            "identity": store.identity.to_dict(), "vectors": added, "params": params.to_dict(),
            "metric": "inner product on unit vectors", "ids": "Store.records() positions at this generation",
            "files": {name: (staging / name).stat().st_size for name in files},
            "built_seconds": round(time.perf_counter() - started, 2)})
        folder = _publish(staging, parent, index_key(store))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"{staging}: writing the index failed ({exc.strerror or exc}); nothing was replaced") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildSummary(folder, added, params, size, time.perf_counter() - started)


def _add_parts(store: Store, faiss: Any, template: Any, staging: Path, part_rows: int,
               say: Callable[[str], None]) -> list[Path]:
    parts: list[Path] = []
    part, done = None, 0
    for block in store.iter_vector_blocks():
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
    faiss.write_index(part, str(path))
    return path


def _merge(faiss: Any, template: Any, parts: list[Path], staging: Path) -> int:
    """Merge the parts' lists into one on-disk lists file; write the index that points at it."""
    index = faiss.deserialize_index(template)
    ivf = faiss.extract_index_ivf(index)
    with quiet_stdout():
        mapped = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP) for p in parts]
        lists = faiss.InvertedListsPtrVector()
        for part in mapped:
            lists.push_back(faiss.extract_index_ivf(part).invlists)
        ondisk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(staging / LISTS))
        added = int(ondisk.merge_from_multiple(lists.data(), lists.size(), False, False))
        ivf.ntotal = index.ntotal = added
        ivf.replace_invlists(ondisk, True)
        ondisk.this.disown()  # the index owns it now
        faiss.write_index(index, str(staging / CODES))
    del mapped, lists, index
    for part_path in parts:
        part_path.unlink()
    return added


def _write_mapping(store: Store, staging: Path) -> None:
    """The ids mapping searches use instead of the store's tables (see files.py)."""
    from vggsim.store.format import pyarrow

    pa = pyarrow()
    view = store.current_view()
    locations = np.lib.format.open_memmap(staging / LOCATIONS, "w+", np.int64, (view.records,))
    for part in view.shards:  # written through a memory map, flushed shard by shard
        where = part.rows.astype(np.int64)
        locations[part.first_id:part.first_id + len(where)] = np.where(where >= 0, (part.shard.id << 32) | where, -1)
        locations.flush()
    del locations
    schema = pa.schema([("path_bytes", pa.binary())])
    with pa.OSFile(str(staging / PATHS), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for _ids, names in store.iter_record_blocks(["path_bytes"]):
            writer.write_table(names, max_chunksize=65536)


def _publish(staging: Path, parent: Path, key: str) -> Path:
    """Rename the staging folder into place; then remove every other index of the store."""
    target = parent / key
    if target.exists():  # the same generation rebuilt: move the old one aside first
        os.rename(target, tempfile.mkdtemp(prefix=".old-", dir=parent) + "/old")
    os.rename(staging, target)
    for other in parent.iterdir():
        if other != target and (other.name.startswith(".old-") or not other.name.startswith(".")):
            shutil.rmtree(other, ignore_errors=True)
    return target
