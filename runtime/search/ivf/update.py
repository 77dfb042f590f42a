"""Growing a store's on-disk index with its new commits, without training it again.

:func:`update_index` makes the index current for the store's snapshot at the cost of what
changed: the previous index's codes are kept for every current record whose vector lies in a
shard that index recorded with the same sha256 (a shard file is never rewritten in place, so
the same shard and row is the same vector), renumbered to the new snapshot's ids; the codes of
records deleted or replaced since are left out; only the vectors it holds no codes for (new
commits, re-embedded files) are read and encoded with the trained quantiser and codec. The new
index is written beside the old one and renamed into place like a build (see build.py: same
lock, staging folder, checksums, "disk full" line), so a service picks it up at its next
request, without a restart.

It is trained anew instead (a full :func:`build_index`, with the reason in the summary) when:

* there is no index to grow: missing, damaged, built for another model, or built by a vggsim
  that did not record its shards and its fit;
* **growth**: the store holds more than ``GROWTH_LIMIT`` (4) times the vectors the index was
  trained for (the rule in params.py would pick other lists for that size);
* **drift**: the vectors added since training sit farther from their lists' centroids than the
  training sample did. Drift is the mean squared distance of the added (unit) vectors to their
  nearest centroid over the same mean for the training sample, recorded at training; above
  ``DRIFT_LIMIT`` (1.5) the lists no longer describe the collection (a new kind of photo,
  another camera), and candidates get worse while every score stays exact.

With ``retrain=False``, growth and drift never retrain: the index grows and the summary says
how far they went. Trained anew, the index keeps the parameters the old one recorded (its code,
lists, sample and nprobe, which may have been chosen by hand), except on growth, where the
lists follow the rule for the new size with the old code; the rule's where none were recorded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import require
from vggsim.validate import ArgumentError
from vggsim.similarity import l2_normalize
from vggsim.store import Store
from vggsim.store.format import Block, shard_name
from vggsim.store.npyio import load_npy
from vggsim.search.ivf.build import (add_parts, build_index, build_lock, centroids, index_record, location_parts,
                                     merge_parts, publish, rows_per_part, staging_folder, write_mapping)
from vggsim.search.ivf.files import (CODES, INDEX_DIR, LOCATIONS, IndexProblem, built_folder, damaged, index_key,
                                     quiet_stdout, read_info, require_files, stale_cause, write_info)
from vggsim.search.ivf.merge import invlists_source, residuals
from vggsim.search.ivf.params import IndexParams, choose

DRIFT_LIMIT = 1.5
GROWTH_LIMIT = 4.0
MIN_RESIDUAL = 1e-9  # squared distance on unit vectors: float32 rounding is about 1e-12
BLOCK_ROWS = 16384


@dataclass(frozen=True)
class UpdateSummary:
    """What :func:`update_index` did: ``vectors`` in the index now, of which ``added`` encoded by this
    update and ``kept`` carried over; ``dropped`` codes of records deleted or replaced since. ``drift``
    (see the module docstring) is None where nothing was added since training. ``retrained`` says why it
    was trained anew instead (None when it grew, or was current already: ``current``)."""

    folder: Path
    vectors: int
    added: int
    kept: int
    dropped: int
    seconds: float
    drift: float | None = None
    retrained: str | None = None
    current: bool = False
    growth: float | None = None  # the store's vectors over the vectors the index was trained for


def update_index(store: Store, *, retrain: bool = True, drift_limit: float = DRIFT_LIMIT,
                 part_rows: int | None = None, progress: Callable[[str], None] | None = None) -> UpdateSummary:
    """Make ``store``'s index current: grown with what changed since it was built, or trained anew
    (see the module docstring)."""
    faiss = require("faiss", "ann", "The on-disk index")
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    with build_lock(store.root / INDEX_DIR, "update"):
        outcome = _grow(store, faiss, retrain, drift_limit, part_rows, say, started)
    if isinstance(outcome, UpdateSummary):
        return outcome
    reason, params = outcome
    say(f"training the index anew: {reason}")
    built = build_index(store, params, part_rows=part_rows, progress=progress)
    return UpdateSummary(built.folder, built.vectors, built.vectors, 0, 0, time.perf_counter() - started,
                         retrained=reason)


def _params_anew(old: IndexParams | None, total: int, dim: int, growth: bool) -> IndexParams | None:
    """The parameters to train anew with: the old index's (its code, lists, sample and nprobe, which a user
    may have chosen), or for growth the rule's lists for the new size with the old code; None (the rule's
    for everything) when there are none or they no longer fit the store."""
    if old is None:
        return None
    codes: dict[str, Any] = {"pq": old.pq_m if old.codes == "pq" else None, "sq8": old.codes == "sq8"}
    try:
        if growth:
            return choose(total, dim, **codes)
        return choose(total, dim, nlist=old.nlist, sample=old.sample, nprobe=old.nprobe, **codes)
    except ArgumentError:
        return None


def _first_line(problem: BaseException) -> str:
    return (str(problem).splitlines() or ["?"])[0].split("; rebuild it with")[0]


def _grow(store: Store, faiss: Any, retrain: bool, drift_limit: float, part_rows: int | None,
          say: Callable[[str], None], started: float) -> UpdateSummary | tuple[str, IndexParams | None]:
    """The grown index's summary, or why it must be trained anew and with what parameters."""
    try:
        folder = built_folder(store.root)
        info = read_info(folder, store.root)
    except IndexProblem as exc:
        return _first_line(exc), None
    try:
        old: IndexParams | None = IndexParams(**{f.name: info["params"][f.name] for f in fields(IndexParams)})
    except (KeyError, TypeError):
        old = None
    total, dim = store.current_view().vectors, store.identity.dim
    try:
        require_files(folder, info, store.root)  # no code is carried over from a file that does not check out
    except IndexProblem as exc:
        return _first_line(exc), _params_anew(old, total, dim, False)
    vectors = int(info["vectors"])
    if stale_cause(info, store) is None:
        return UpdateSummary(folder, vectors, 0, vectors, 0, time.perf_counter() - started, current=True)
    if info.get("identity") != store.identity.to_dict():
        return "the index was built for another model, preprocessing or dim than the store's", None
    fit, shards = info.get("fit"), info.get("shards")
    if not isinstance(fit, dict) or not isinstance(shards, dict) or old is None:
        return "the index was built by a vggsim that recorded neither its shards nor its fit", \
            _params_anew(old, total, dim, False)
    growth = total / max(1, int(fit["vectors"]))
    if retrain and growth > GROWTH_LIMIT:
        return (f"growth: the store holds {total:,} vectors, over {GROWTH_LIMIT:g} times the {int(fit['vectors']):,} "
                f"the index was trained for"), _params_anew(old, total, dim, True)
    try:
        with quiet_stdout():
            index = faiss.read_index(str(folder / CODES), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
        old_locations = np.asarray(load_npy(folder / LOCATIONS), np.int64)
        if index.ntotal != vectors or int((old_locations >= 0).sum()) != vectors:
            raise ValueError("its ids mapping does not match its vectors")
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        return _first_line(damaged(folder, store.root, exc)), _params_anew(old, total, dim, False)
    unchanged = {int(shard.id) for shard in store.commit_record.shards
                 if shards.get(str(shard.id)) is not None
                 and shards[str(shard.id)] == shard.files.get(shard_name(shard.id, "vectors"), {}).get("sha256")}
    new_locations = np.concatenate([np.zeros(0, np.int64), *location_parts(store)])
    renumber = _renumber(old_locations, new_locations, unchanged)
    need = new_locations >= 0
    need[renumber[renumber >= 0]] = False
    kept = int((renumber >= 0).sum())
    template = _empty_copy(faiss, folder)
    say(f"keeping {kept:,} codes, encoding {int(need.sum()):,} new vectors")
    with staging_folder(store.root / INDEX_DIR) as staging:
        quantiser = centroids(faiss, index)
        fit_added = [int(fit["added"]), float(fit["added_residual_sum"])]

        def measured(blocks: Iterator[Block]) -> Iterator[Block]:
            for block in blocks:
                found = residuals(quantiser, l2_normalize(block.vectors, np.float32))
                fit_added[0] += len(found)
                fit_added[1] += float(found.sum())
                yield block

        ivf = faiss.extract_index_ivf(index)
        rows = part_rows or rows_per_part(int(ivf.code_size))
        parts = add_parts(measured(_needed_blocks(store, need)), faiss, template, staging, rows, say)
        # a training sample that fit its centroids exactly (one vector, or copies) counts as a tiny residual:
        # any added vector off the centroids is then drift
        drift = (fit_added[1] / fit_added[0]) / max(float(fit["residual"]), MIN_RESIDUAL) if fit_added[0] else None
        if retrain and drift is not None and drift > drift_limit:
            shutil.rmtree(staging, ignore_errors=True)
            return (f"drift: the {fit_added[0]:,} vectors added since training lie {drift:.2f} times as far from "
                    f"their lists' centroids as the training sample (limit {drift_limit:g})"), \
                _params_anew(old, total, dim, False)
        files: dict[str, dict[str, Any]] = {}
        old_lists = invlists_source(faiss, ivf.invlists, int(ivf.code_size), renumber)
        written = merge_parts(faiss, template, parts, [old_lists], staging, files)
        if written != kept + int(need.sum()):
            raise damaged(folder, store.root, f"its lists hold {written - int(need.sum()):,} of the "
                          f"{kept:,} codes its ids mapping lists")
        del index, ivf, old_lists
        write_mapping(store, staging, files)
        write_info(staging, index_record(store, written, old, files,
                                         {**fit, "added": fit_added[0], "added_residual_sum": fit_added[1]},
                                         started, updates=int(info.get("updates", 0)) + 1))
        grown = publish(staging, store.root / INDEX_DIR, index_key(store))
    return UpdateSummary(grown, written, int(need.sum()), kept, vectors - kept, time.perf_counter() - started, drift,
                         growth=growth)


def _renumber(old: np.ndarray, new: np.ndarray, unchanged: set[int]) -> np.ndarray:
    """Old id -> new id of the record holding the same vector (same shard, same row, the shard unchanged),
    -1 for the old ids whose vector is no longer current."""
    renumber = np.full(len(old), -1, np.int64)
    if not len(old) or not len(new) or not unchanged:
        return renumber
    usable = (old >= 0) & np.isin(old >> 32, np.fromiter(unchanged, np.int64))
    order = np.argsort(new, kind="stable")
    ordered = new[order]
    at = np.minimum(np.searchsorted(ordered, old), len(ordered) - 1)
    hit = usable & (ordered[at] == old)
    renumber[hit] = order[at[hit]]
    return renumber


def _empty_copy(faiss: Any, folder: Path) -> Any:
    """The trained quantiser and codec of the index in ``folder``, with empty lists, serialized."""
    with quiet_stdout():
        index = faiss.read_index(str(folder / CODES), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    ivf = faiss.extract_index_ivf(index)
    empty = faiss.ArrayInvertedLists(int(ivf.nlist), int(ivf.code_size))
    ivf.replace_invlists(empty, True)
    empty.this.disown()  # the index owns it now
    ivf.ntotal = index.ntotal = 0
    return faiss.serialize_index(index)


def _needed_blocks(store: Store, need: np.ndarray) -> Iterator[Block]:
    """The vectors of the ids ``need`` marks, shard by shard, at most BLOCK_ROWS at a time (only those rows read)."""
    for part in store.current_view().shards:
        chosen = need[part.first_id:part.first_id + len(part.positions)]
        if not chosen.any():
            continue
        ids, rows = part.ids[chosen], part.rows[chosen].astype(np.int64)
        with store.vector_file(part.shard.id) as file:
            for start in range(0, len(ids), BLOCK_ROWS):
                yield Block(ids[start:start + BLOCK_ROWS], file.take(rows[start:start + BLOCK_ROWS]))
