"""Duplicates in a store: groups in three tiers (byte, pixel, near), decisions honoured, a keeper per group."""

from __future__ import annotations

from itertools import chain

import numpy as np

from vggsim.search.pairs import group_pairs, identical_pairs, similar_pairs
from vggsim.errors import VggsimError
from vggsim.similarity import l2_normalize
from vggsim import validate
from vggsim.model.manifest import Manifest
from vggsim.model.embedder import Embedder
from vggsim.store import Record, Store, StoreIdentity
from vggsim.collection.decisions import Decisions
from vggsim.collection.decisions import load as load_decisions
from vggsim.collection.keeper import suggest_keeper
from vggsim.collection.results import DuplicateGroup, DuplicateMember, DuplicatePage, Match
from vggsim.collection.reader import StoreReader, as_store

DEDUP_BLOCK_ROWS = 4096  # a 4096 x 4096 float32 score block is 64 MB
#: Preprocessing fields chosen when embedding (``--exif-transpose``), not fixed at export:
#: a store may differ from its model's manifest in these and still be that model's store.
EMBED_TIME_FIELDS = ("exif_transpose",)


def require_threshold_model(identity: StoreIdentity, manifest: Manifest, where: str) -> str | None:
    """Check that ``manifest`` describes the model that made a store of ``identity`` (sha256,
    preprocessing, dim) before its calibrated threshold is applied to the store's vectors.

    Raises the StoreError a search with that model would give. A store that differs only in
    fields chosen at embed time (:data:`EMBED_TIME_FIELDS`) is accepted, and the returned
    note says that the threshold was calibrated without that choice; otherwise None.
    """
    model_spec = manifest.preprocess.to_dict()
    chosen = {k: identity.preprocess[k] for k in EMBED_TIME_FIELDS if k in identity.preprocess}
    model = StoreIdentity.from_dict({"model_sha256": manifest.model_sha256, "preprocess": {**model_spec, **chosen},
                                     "dim": manifest.embedding_dim})
    identity.require_compatible(model, where)
    differing = [k for k, v in chosen.items() if v != model_spec.get(k)]
    if not differing:
        return None
    store_side = ", ".join(f"{k}={chosen[k]!r}" for k in differing)
    model_side = ", ".join(f"{k}={model_spec.get(k)!r}" for k in differing)
    return (f"the store was embedded with {store_side}, but the threshold of {manifest.path} was calibrated "
            f"with {model_side}: it may not fit these vectors (pass --threshold T to choose one)")


def dedup_threshold(manifest: Manifest) -> float:
    """The near-duplicate threshold calibrated for this model at export.

    Raises :class:`VggsimError` (pass a threshold instead) when the manifest has none or
    it is not a usable cosine score.
    """
    calibration = getattr(manifest, "dedup", None)
    if calibration is None:
        calibration = (getattr(manifest, "data", None) or {}).get("dedup")
    value = calibration.get("threshold") if isinstance(calibration, dict) else getattr(calibration, "threshold", None)
    if value is None:
        raise VggsimError(f"{getattr(manifest, 'path', 'the model')} has no calibrated dedup threshold "
                          "(exported without calibration photos): pass --threshold T, e.g. 0.95.")
    try:
        return validate.threshold(value)
    except ValueError:
        raise VggsimError(f"{getattr(manifest, 'path', 'the model')} has an unusable dedup threshold "
                          f"{value!r}: pass --threshold T, e.g. 0.95.") from None


TIERS = ("byte", "pixel", "near")  # tightest first


def find_duplicates(store: Store | StoreReader | str, threshold: float, *,
                    embedder: Embedder | None = None, decisions: Decisions | None = None) -> list[DuplicateGroup]:
    """Groups of stored files connected by pairs of duplicates: the same content (sha256), the same
    decoded pixels (the pixel hash the store records), or cosine >= ``threshold``.

    ``threshold`` must be finite and in (0, 1]. Memory stays at two blocks of
    ``DEDUP_BLOCK_ROWS`` vectors plus the pairs found. When ``embedder`` is given, the store
    must have been made by its model and preprocessing (a threshold calibrated for one model
    means nothing for another's vectors). The store's duplicate decisions
    (:mod:`vggsim.collection.decisions`; ``decisions`` to use others) are honoured: a pair marked
    "not duplicates" links nothing, and a file marked "keep" is its group's keeper. Groups are
    numbered from 1 largest first, ties by their first member's id; members are sorted by id;
    each names its tier against the keeper (:class:`DuplicateMember`), and each group its keeper
    and why (:func:`~vggsim.collection.keeper.suggest_keeper`). Byte- and pixel-identical files
    are paired before any cosine is computed, so float rounding cannot hide them even at threshold 1.
    """
    threshold = validate.threshold(threshold)
    store = as_store(store)
    if not isinstance(store, Store):
        store = store.snapshot()  # a StoreReader: its current snapshot, used throughout
    if embedder is not None:
        store.require_compatible(StoreIdentity.of(embedder))
    decided = load_decisions(store.root) if decisions is None else decisions
    records = store.records()
    ok = [i for i, r in enumerate(records) if r.status == "ok"]
    pairs = chain(identical_pairs((i, records[i].sha256) for i in ok),
                  identical_pairs((i, records[i].pixel_sha256) for i in ok),
                  similar_pairs(lambda: store.blocks(DEDUP_BLOCK_ROWS), threshold))
    groups = group_pairs(p for p in pairs if not decided.apart(records[p[0]].sha256, records[p[1]].sha256))
    if not groups:
        return []
    wanted = sorted({i for g in groups for i in g})
    vectors = dict(zip(wanted, l2_normalize(store.vectors(wanted), np.float32)))
    result = []
    for number, group in enumerate(sorted(groups, key=lambda g: (-len(g), g[0])), 1):
        keeper = suggest_keeper([records[i] for i in group], [decided.kept(records[i].path, records[i].sha256) for i in group])
        k = group[keeper.index]
        members = []
        for i in group:
            tier = "keeper" if i == k else _tier(records[k], records[i])
            score = 1.0 if tier != "near" else round(float(np.dot(vectors[k], vectors[i])), 6)
            members.append(DuplicateMember(records[i].path, score, i, tier))
        loosest = max((TIERS.index(m.tier) for m in members if m.tier != "keeper"), default=0)
        result.append(DuplicateGroup(number, members, k, keeper.reason, keeper.chosen, TIERS[loosest]))
    return result


def _tier(a: Record, b: Record) -> str:
    if a.sha256 and a.sha256 == b.sha256:
        return "byte"
    if a.pixel_sha256 and a.pixel_sha256 == b.pixel_sha256:
        return "pixel"
    return "near"


def page_of(groups: list[DuplicateGroup], page: int = 1, page_size: int = 100) -> DuplicatePage:
    """Page ``page`` (from 1) of ``groups``, ``page_size`` groups a page; past the last page, no groups."""
    page, page_size = validate.positive_int("page", page), validate.positive_int("page_size", page_size)
    start = (page - 1) * page_size
    return DuplicatePage(groups[start:start + page_size], page, page_size, len(groups))


def label_matches(store: Store, matches: list[Match], sha256: str | None, pixel_sha256: str | None = None,
                  decisions: Decisions | None = None) -> list[Match]:
    """The matches of one image's duplicate check with their tier (byte, pixel, near), less those a person
    marked as not duplicates of that image (``sha256``: its content). The one rule for every front end."""
    decided = load_decisions(store.root) if decisions is None else decisions
    records = store.records() if matches else []
    out = []
    for m in matches:
        stored = records[m.id]
        if decided.apart(sha256, stored.sha256):
            continue
        tier = ("byte" if sha256 and stored.sha256 == sha256 else
                "pixel" if pixel_sha256 and stored.pixel_sha256 == pixel_sha256 else "near")
        out.append(Match(m.path, 1.0 if tier != "near" else m.score, m.id, tier))
    return sorted(out, key=match_order)


def match_order(m: Match) -> tuple[int, float, int]:
    """Byte-identical first, then pixel-identical, then best score; ties by id."""
    return (TIERS.index(m.tier or "near"), -m.score, m.id)
