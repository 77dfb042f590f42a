"""Whether a search may go through a store's on-disk index, decided in one place.

Every front end asks :func:`open_index` for a snapshot and gets an :class:`IndexDecision`: the
opened index when it is current, else the :class:`IndexState` that says why not and the error
that says it in words (naming the command that fixes it). The states come from the type of
the refusal (:mod:`vggsim.search.ivf.files`), never from its text:

- ``current``: the index covers the snapshot and every file checks out: use it;
- ``missing``: no index was built (``vggsim index build``);
- ``stale``: built for another snapshot: newer commits, or another store in the folder;
- ``damaged``: a file of the index is missing, cut, garbled or changed since it was built;
- ``unavailable``: faiss is not installed;
- ``empty``: the store holds no vectors: there is nothing to index or to find;
- ``off``: the index was not asked for.

What each front end does with a state that is not ``current`` is :func:`answers_exactly`: the
library and the CLI refuse (or rebuild, when asked: :func:`open_or_rebuild`); the service
under ``--index auto`` searches exactly and names the state in each answer, under
``--index require`` it refuses (409), under ``--index off`` it never asks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggsim.errors import MissingExtraError, VggsimError, require
from vggsim.store import Store

if TYPE_CHECKING:
    from vggsim.search.ivf import OnDiskIndex


class IndexState(str, enum.Enum):
    """Why a search did or did not go through the index (the values are what answers report)."""

    CURRENT = "current"
    MISSING = "missing"
    STALE = "stale"
    DAMAGED = "damaged"
    UNAVAILABLE = "unavailable"
    EMPTY = "empty"
    OFF = "off"


class IndexMode(str, enum.Enum):
    """What a service does when the index cannot be used: ``auto`` searches exactly, ``require`` refuses,
    ``off`` never uses it."""

    AUTO = "auto"
    OFF = "off"
    REQUIRE = "require"


#: states a rebuild fixes
REBUILDABLE = frozenset({IndexState.MISSING, IndexState.STALE, IndexState.DAMAGED})


@dataclass(frozen=True)
class IndexDecision:
    """The index to search (``state`` current), or why there is none and the error saying so."""

    state: IndexState
    index: OnDiskIndex | None = None
    problem: VggsimError | None = None

    @property
    def message(self) -> str | None:
        return (str(self.problem).splitlines() or [""])[0] if self.problem is not None else None

    def require(self) -> OnDiskIndex | None:
        """The index; None for an empty store (nothing to search); else raise the refusal."""
        if self.index is not None or self.state is IndexState.EMPTY:
            return self.index
        raise self.problem or VggsimError(f"the index is {self.state.value}")


def state_of(problem: BaseException) -> IndexState:
    """The state an index refusal stands for, by its type."""
    from vggsim.search.ivf.files import IndexDamaged, IndexMissing, IndexStale

    for kind, state in ((IndexMissing, IndexState.MISSING), (IndexStale, IndexState.STALE),
                        (IndexDamaged, IndexState.DAMAGED), (MissingExtraError, IndexState.UNAVAILABLE)):
        if isinstance(problem, kind):
            return state
    raise TypeError(f"not an index refusal: {type(problem).__name__}")


def refused(problem: VggsimError) -> IndexDecision:
    """The decision a refusal met while searching (an index damaged since it was opened, say) stands for."""
    return IndexDecision(state_of(problem), None, problem)


def open_index(store: Store, *, wanted: bool = True) -> IndexDecision:
    """Whether ``store``'s snapshot can be searched through its on-disk index, and the index if so."""
    from vggsim.search.ivf.files import IndexProblem

    if not wanted:
        return IndexDecision(IndexState.OFF)
    if not any(shard.rows for shard in store.commit_record.shards):
        return IndexDecision(IndexState.EMPTY)
    try:
        require("faiss", "ann", "The on-disk index")
    except MissingExtraError as exc:
        return IndexDecision(IndexState.UNAVAILABLE, None, exc)
    from vggsim.search.ivf import OnDiskIndex

    try:
        return IndexDecision(IndexState.CURRENT, OnDiskIndex.open(store))
    except IndexProblem as exc:
        return refused(exc)


def open_or_rebuild(store: Store, rebuild: bool, progress: Callable[[str], None] | None = None) -> IndexDecision:
    """:func:`open_index`, first rebuilding a missing, stale or damaged index when ``rebuild``; the
    decision is current or empty, or its refusal is raised (the library's and the CLI's rule)."""
    decision = open_index(store)
    if rebuild and decision.state in REBUILDABLE:
        from vggsim.search.ivf import build_index

        if progress is not None:
            progress(f"rebuilding the index: {decision.message}")
        build_index(store, progress=progress)
        decision = open_index(store)
    decision.require()
    return decision


def answers_exactly(decision: IndexDecision, mode: IndexMode) -> bool:
    """Whether a service in ``mode`` answers exactly (True) or refuses (False) when ``decision`` has no index."""
    return mode is not IndexMode.REQUIRE or decision.state is IndexState.EMPTY


@dataclass(frozen=True)
class IndexCheck:
    """What a full check of a store's index found (``vggsim store verify``, ``vggsim index info``):
    ``problems`` name each damaged file; ``message`` says what to do."""

    state: IndexState
    folder: str | None = None
    problems: list[str] = field(default_factory=list)
    message: str | None = None
    info: dict[str, Any] | None = None  # the index.json read (when it could be)

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state.value, "folder": self.folder, "problems": self.problems, "message": self.message}


def check_index(root: Path, store: Store | None = None) -> IndexCheck:
    """Hash every file of the index of the store at ``root`` (no cached verification) and say its state:
    missing (none built), damaged, stale (built for another snapshot than ``store``) or current (sound,
    and covering ``store``; not compared with one when ``store`` is None, for a store that does not
    open). Needs no faiss."""
    from vggsim.search.ivf.files import (READ_STAT, IndexProblem, built_folder, file_problems, read_info,
                                         rebuild_hint, stale_cause)

    try:
        folder = built_folder(root)
        info = read_info(folder, root)
    except IndexProblem as exc:
        state = state_of(exc)
        return IndexCheck(state, None, [str(exc).split("; rebuild")[0]] if state is IndexState.DAMAGED else [],
                          str(exc))
    problems = [f"{folder / problem}" for problem in file_problems(folder, info, fresh=True)]
    info = {k: v for k, v in info.items() if k != READ_STAT}  # kept for file_problems, not for a report
    if problems:
        return IndexCheck(IndexState.DAMAGED, str(folder), problems, f"{folder}: the index is damaged "
                          f"({len(problems)} file(s); {problems[0]}); rebuild it with {rebuild_hint(root)}", info)
    cause = stale_cause(info, store) if store is not None else None
    if cause is not None:
        return IndexCheck(IndexState.STALE, str(folder), [], f"{cause}; rebuild it with {rebuild_hint(root)}", info)
    return IndexCheck(IndexState.CURRENT, str(folder), [],
                      None if store is not None else "sound; not compared with the store, which does not open", info)
