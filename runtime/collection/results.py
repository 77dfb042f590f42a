"""The typed results of the collection library: plain frozen dataclasses, JSON-ready.

The CLI prints them, an HTTP server serialises them (``to_dict``), a Ray job returns them
across processes (they pickle): no front end needs to know how they were computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failure:
    """One file that could not be embedded in this run."""

    path: str
    kind: str  # ImageError.kind: not_found, truncated, timeout, changed, ...
    reason: str


@dataclass(frozen=True)
class EmbedProgress:
    """Where an embed stands; passed to the ``progress`` callback after every file.

    ``total`` counts every listed file, unchanged ones included, so ``done`` starts at
    ``unchanged``. ``eta_s`` is None until the first file is embedded or failed.
    ``still_failing`` counts unchanged files skipped because they failed before and still
    would (the summary's ``still_failing``), known from the start.
    """

    done: int
    total: int
    embedded: int
    failed: int
    unchanged: int
    elapsed_s: float
    eta_s: float | None
    still_failing: int = 0


@dataclass(frozen=True)
class EmbedSummary:
    """What one ``embed_into_store`` run did.

    ``unchanged`` files were skipped; ``still_failing`` of them were skipped because their
    latest record is an error that retrying will not fix (a rerun must not look clean while
    files in the store still fail). ``failures`` lists this run's failures only.
    """

    store: str
    seen: int
    embedded: int
    unchanged: int
    failed: int
    pruned: int
    still_failing: int
    failures: list[Failure]
    failed_by_kind: dict[str, int]
    seconds: float
    provider: str
    random_weights: bool
    generation: int = 0  # the store's commit generation after the run
    notes: list[str] = field(default_factory=list)  # the store's recovery notes (records of a killed run kept or dropped)

    @property
    def exit_code(self) -> int:
        """0 when every listed file is embedded, 1 when some failed now or still fail."""
        return 1 if self.failed or self.still_failing else 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        return data


@dataclass(frozen=True)
class Match:
    """One search hit: ``id`` indexes the searched snapshot's ``records()``. ``tier`` (duplicate checks
    only): ``byte`` (the same file content), ``pixel`` (the same decoded pixels) or ``near`` (cosine)."""

    path: str
    score: float
    id: int
    tier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.tier is None:
            del out["tier"]
        return out


@dataclass(frozen=True)
class SearchResult:
    """Matches per query and the store generation they were computed on."""

    generation: int
    matches: list[list[Match]]

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "matches": [[m.to_dict() for m in row] for row in self.matches]}


@dataclass(frozen=True)
class DuplicateMember:
    """A member of a duplicate group. ``tier`` says how it duplicates the group's keeper: ``byte`` (the
    same file content, sha256), ``pixel`` (the same decoded pixels: only metadata or encoding differ),
    ``near`` (cosine); the keeper itself is ``keeper``. ``score``: cosine to the keeper (1.0 for the
    keeper, byte and pixel tiers)."""

    path: str
    score: float
    id: int
    tier: str = "near"


@dataclass(frozen=True)
class DuplicateGroup:
    """Duplicates connected by pairs at or above the threshold (members by id), the member to keep
    (``keeper``: its id; ``keeper_reason``; ``keeper_chosen``: a person's decision) and the loosest
    tier among the others (``tier``: byte, pixel or near)."""

    number: int
    members: list[DuplicateMember] = field(default_factory=list)
    keeper: int = -1
    keeper_reason: str = ""
    keeper_chosen: bool = False
    tier: str = "near"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicatePage:
    """One page of duplicate groups (``page`` from 1) and how many there are in all."""

    groups: list[DuplicateGroup]
    page: int
    page_size: int
    total_groups: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_groups // self.page_size))

    def to_dict(self) -> dict[str, Any]:
        return {"page": self.page, "page_size": self.page_size, "pages": self.pages,
                "total_groups": self.total_groups, "groups": [g.to_dict() for g in self.groups]}


@dataclass(frozen=True)
class DuplicateCheck:
    """Is a vector a near-duplicate of something stored: the stored matches at or above the
    threshold, best first, and the generation checked."""

    generation: int
    threshold: float
    matches: list[Match]

    @property
    def is_duplicate(self) -> bool:
        return bool(self.matches)

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "threshold": self.threshold, "is_duplicate": self.is_duplicate,
                "matches": [m.to_dict() for m in self.matches]}


@dataclass(frozen=True)
class IndexSearch:
    """Matches found through the on-disk index, and how: ``nprobe`` the lists searched per query (the
    widest used), ``widened`` the queries searched again with more lists because the ``nprobe``
    lists held fewer than k candidates (k matches are returned whenever the store holds k vectors)."""

    matches: list[list[Match]]
    nprobe: int
    widened: int

    def to_dict(self) -> dict[str, Any]:
        return {"nprobe": self.nprobe, "widened": self.widened,
                "matches": [[m.to_dict() for m in row] for row in self.matches]}


@dataclass(frozen=True)
class IndexDuplicates:
    """The duplicates of one vector found through the index: ``used_index`` False when they were listed
    by an exact scan instead, and ``note`` says why (too many matches for the index's batches)."""

    matches: list[Match]
    used_index: bool
    note: str | None = None
