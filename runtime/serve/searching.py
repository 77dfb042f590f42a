"""Store search for the service: through the store's on-disk index when it is current, else exact.

Whether the index may be used is :mod:`vggsim.search.policy`'s decision, the same the library
and the CLI take; this module only keeps the opened index and says in every answer what was
done. ``--index auto`` (the default) searches the on-disk IVF index that ``vggsim index build``
wrote when it covers the snapshot being searched (memory-mapped lists, candidates re-ranked
with the exact scan's formula: a few MB resident at 1M vectors, the exact scores to the bit),
and searches exactly when it is missing, stale (the store changed since it was built, or
another store was put in the folder), damaged (a file of the index changed or was cut, seen
when it is opened or before any search reads it) or unavailable (no faiss); the answer's
``index`` field names the state and why. ``off`` always searches exactly; ``require`` refuses
(409) instead of searching exactly, and refuses to start without a current index. Damage to
the store itself (a shard that no longer matches its commit record) is refused (409) by
either path, as exact search refuses it.

``/v1/duplicates`` goes the same way, through the library's
:func:`~vggsim.collection.queries.duplicates_through_index`.

The opened index is kept for as long as the snapshot and the index folder stay the same:
opening costs a read of the coarse quantiser and a check of every file's sha256 (once per
process while the files are unchanged), far more than one query. A new commit or a new
build is seen on the next request (a directory listing per request); an index found damaged
stays refused until one of them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggsim.collection import Match, StoreReader
from vggsim.collection.queries import duplicates_of, duplicates_through_index, search_index
from vggsim.errors import StoreError
from vggsim.search import policy
from vggsim.search.policy import IndexDecision, IndexMode, IndexState
from vggsim.store import Store
from vggsim.serve.problems import ApiError

MODES = tuple(mode.value for mode in IndexMode)


@dataclass(frozen=True)
class IndexReport:
    """What a search used (the answer's ``index`` field): ``state`` as :mod:`vggsim.search.policy` decided it."""

    mode: IndexMode
    state: IndexState
    used: bool
    message: str | None = None
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode.value, "used": self.used, "state": self.state.value}
        if self.message:
            out["message"] = self.message
        if self.info:
            out.update(self.info)
        return out


class StoreSearch:
    """Top-k search of a :class:`StoreReader`'s snapshots, by index or exactly (see the module docstring)."""

    def __init__(self, reader: StoreReader, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"index mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.reader, self.mode = reader, IndexMode(mode)
        self._lock = threading.Lock()
        self._cached: tuple[Store, tuple[str, ...], IndexDecision, IndexReport] | None = None

    def _folders(self, store: Store) -> tuple[str, ...]:
        """What the cached decision was made from: each index folder and the stat (size, mtime, inode) of each
        of its files. A file replaced or restored in place (an update, a repair, a copy put back) changes it,
        so a decision that the index is damaged is not kept once its files are sound again."""
        try:
            return tuple(sorted(
                f"{folder.name}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
                for folder in os.scandir(store.root / "index") if folder.is_dir()
                for entry in os.scandir(folder.path) for stat in (entry.stat(),)))
        except OSError:
            return ()

    def _report(self, decision: IndexDecision) -> IndexReport:
        if decision.index is not None:
            index = decision.index
            info = {"vectors": index.vectors, "nprobe": index.nprobe, "factory": index.info["params"].get("factory"),
                    "generation": index.info.get("generation")}
            return IndexReport(self.mode, decision.state, True, None, info)
        message = decision.message
        if decision.state is IndexState.EMPTY:
            message = "the store holds no vectors yet"
        elif message and self.mode is IndexMode.AUTO:
            message += "; searching exactly"
        return IndexReport(self.mode, decision.state, False, message)

    def index_for(self, store: Store) -> tuple[IndexDecision, IndexReport]:
        """The decision about ``store``'s index (the opened index when current) and what to report about it."""
        if self.mode is IndexMode.OFF:
            decision = policy.open_index(store, wanted=False)
            return decision, self._report(decision)
        folders = self._folders(store)
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is store and cached[1] == folders:
                return cached[2], cached[3]
            decision = policy.open_index(store)
            report = self._report(decision)
            self._cached = (store, folders, decision, report)
            return decision, report

    def _refused_now(self, store: Store, decision: IndexDecision, problem: StoreError) -> tuple[IndexDecision, IndexReport]:
        """The index failed a check while answering (damaged since it was opened): remember it refused."""
        refused = policy.refused(problem)
        report = self._report(refused)
        with self._lock:
            if self._cached is not None and self._cached[2] is decision:
                self._cached = (store, self._cached[1], refused, report)
        return refused, report

    def _exact_or_refuse(self, decision: IndexDecision, report: IndexReport) -> None:
        if not policy.answers_exactly(decision, self.mode):
            raise ApiError(409, "index", f"--index require: {report.message or 'no current index'}")

    def check_startup(self) -> None:
        """For ``require``: a StoreError (naming the command to build it) unless the store has a current index."""
        if self.mode is not IndexMode.REQUIRE:
            return
        decision = policy.open_index(self.reader.snapshot())
        if decision.state is IndexState.UNAVAILABLE:
            raise StoreError("--index require needs faiss: pip install 'vggsim[ann]' (or use --index auto)")
        decision.require()  # the refusal naming the rebuild command when missing, stale or damaged

    def search(self, store: Store, query: np.ndarray, k: int) -> tuple[list[Match], IndexReport]:
        """The top ``k`` matches of one query vector in snapshot ``store``, and how they were found."""
        from vggsim.search.ivf import IndexProblem

        decision, report = self.index_for(store)
        opened = decision.index
        if opened is not None:
            try:
                found = search_index(store, query[None, :], k, index=opened)
            except IndexProblem as exc:  # the index changed under the service: answer exactly, or refuse
                decision, report = self._refused_now(store, decision, exc)
            else:
                if found.widened:
                    report = dataclasses.replace(report, message=(
                        f"the {opened.nprobe} index lists searched held fewer than {k} candidates: "
                        f"searched again with {found.nprobe}"), info={**(report.info or {}), "nprobe_used": found.nprobe})
                return found.matches[0], report
        self._exact_or_refuse(decision, report)
        return self.reader.search(query[None, :], k, False, snapshot=store).matches[0], report

    def duplicates(self, store: Store, query: np.ndarray, threshold: float,
                   sha256: str | None = None) -> tuple[list[Match], IndexReport]:
        """Every stored vector with cosine >= ``threshold`` to ``query`` in ``store``, best first, and how
        they were found (see the module docstring); stored files whose content is ``sha256`` first of all,
        with score 1.0 (:func:`vggsim.collection.queries.duplicates_of`)."""
        from vggsim.search.ivf import IndexProblem

        decision, report = self.index_for(store)
        if decision.index is not None:
            try:
                found = duplicates_through_index(store, decision.index, query, threshold, sha256=sha256)
            except IndexProblem as exc:
                decision, report = self._refused_now(store, decision, exc)
            else:
                if not found.used_index:
                    report = dataclasses.replace(report, used=False, message=found.note)
                return found.matches, report
        self._exact_or_refuse(decision, report)
        return duplicates_of(store, query, threshold, sha256=sha256), report
