"""Near-duplicates in a store: groups above a threshold, and is-this-vector-a-duplicate."""

from __future__ import annotations

from itertools import chain

import numpy as np

from vggsim.search.pairs import group_pairs, identical_pairs, similar_pairs
from vggsim.errors import VggsimError
from vggsim.similarity import l2_normalize
from vggsim import validate
from vggsim.model.manifest import Manifest
from vggsim.model.embedder import Embedder
from vggsim.store import Store, StoreIdentity
from vggsim.collection.results import DuplicateGroup, DuplicateMember
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


def find_duplicates(store: Store | StoreReader | str, threshold: float, *,
                    embedder: Embedder | None = None) -> list[DuplicateGroup]:
    """Groups of stored files whose vectors are connected by pairs with cosine >= ``threshold``.

    ``threshold`` must be finite and in (0, 1]. Memory stays at two blocks of
    ``DEDUP_BLOCK_ROWS`` vectors plus the pairs found. When ``embedder`` is given, the store
    must have been made by its model and preprocessing (a threshold calibrated for one model
    means nothing for another's vectors). Groups are numbered from 1 largest first, ties by
    their first member's id; members are sorted by id; each member's ``score`` is its cosine
    to the group's first member, 1.0 for a byte-identical copy of it: files with the same
    content sha256 are grouped before any cosine is computed, so float rounding cannot hide
    them even at threshold 1.
    """
    threshold = validate.threshold(threshold)
    store = as_store(store)
    if not isinstance(store, Store):
        store = store.snapshot()  # a StoreReader: its current snapshot, used throughout
    if embedder is not None:
        store.require_compatible(StoreIdentity.of(embedder))
    records = store.records()
    hashes = ((i, r.sha256) for i, r in enumerate(records) if r.status == "ok")
    groups = group_pairs(chain(identical_pairs(hashes), similar_pairs(lambda: store.blocks(DEDUP_BLOCK_ROWS),
                                                                       threshold)))
    if not groups:
        return []
    wanted = sorted({i for g in groups for i in g})
    vectors = dict(zip(wanted, l2_normalize(store.vectors(wanted), np.float32)))
    result = []
    for number, group in enumerate(sorted(groups, key=lambda g: (-len(g), g[0])), 1):
        first, digest = vectors[group[0]], records[group[0]].sha256
        members = [DuplicateMember(records[i].path, 1.0 if digest and records[i].sha256 == digest else
                                   round(float(np.dot(first, vectors[i])), 6), i) for i in group]
        result.append(DuplicateGroup(number, members))
    return result
