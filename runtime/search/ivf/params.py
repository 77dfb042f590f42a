"""How an on-disk IVF index is shaped: the rule that picks its parameters from the store's size.

The rule (any value can be given instead):

* ``nlist`` (inverted lists): the power of two nearest to sqrt(n), at most n / 39 (k-means
  wants >= 39 training points per list), at least 1. 1M vectors -> 1024 lists of ~1,000.
* codes: product quantisation with ``M = dim / 8`` sub-quantisers of 8 bits (64 bytes per
  512-d vector, 32x smaller than float32) once there are >= 20,000 vectors to train its 256
  centroids per sub-space; below that, or when ``dim`` is not a multiple of 8, 8-bit scalar
  quantisation (``dim`` bytes per vector), which needs almost no training.
* training sample: 64 points per list, at least 20,000 for PQ, at most 100,000 and n
  (100,000 x 512 float32 is 200 MB: the build's largest allocation).
* ``nprobe`` (lists scanned per query): nlist / 64, at least 8 (or all lists if fewer).
  The candidates (``k * rerank`` of them, rerank 100 by default) are re-scored exactly
  from the store's float32 vectors, so the codes only have to get the true neighbours
  into the candidate list, not order them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vggsim.validate import ArgumentError

PQ_MIN_VECTORS = 20_000
MAX_SAMPLE = 100_000


@dataclass(frozen=True)
class IndexParams:
    nlist: int
    codes: str          # "pq" | "sq8"
    pq_m: int           # sub-quantisers (pq only; 0 for sq8)
    sample: int         # training vectors
    nprobe: int

    @property
    def factory(self) -> str:
        """The faiss index_factory string (for the record and for people who know faiss)."""
        return f"IVF{self.nlist},{f'PQ{self.pq_m}' if self.codes == 'pq' else 'SQ8'}"

    def code_size(self, dim: int) -> int:
        return self.pq_m if self.codes == "pq" else dim

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "factory": self.factory}


def choose(n: int, dim: int, *, nlist: int | None = None, pq: int | None = None, sq8: bool = False,
           sample: int | None = None, nprobe: int | None = None) -> IndexParams:
    """The parameters for ``n`` vectors of ``dim`` (see the module docstring); given ones win."""
    if n < 1:
        raise ArgumentError("the store holds no vectors: there is nothing to index")
    if pq is not None and sq8:
        raise ArgumentError("--pq and --sq8 exclude each other: pick one code")
    if nlist is None:
        nlist = 2 ** round(math.log2(math.sqrt(n)))
        nlist = max(1, min(nlist, n // 39))
    if nlist < 1 or nlist > n:
        raise ArgumentError(f"nlist {nlist} must be between 1 and the number of vectors ({n})")
    if pq is not None:
        if pq < 1 or dim % pq:
            raise ArgumentError(f"--pq {pq}: the number of sub-quantisers must divide the dimension {dim}")
        codes, pq_m = "pq", pq
    elif not sq8 and n >= PQ_MIN_VECTORS and dim % 8 == 0:
        codes, pq_m = "pq", dim // 8
    else:
        codes, pq_m = "sq8", 0
    if sample is None:
        sample = min(n, MAX_SAMPLE, max(64 * nlist, PQ_MIN_VECTORS if codes == "pq" else 0))
    sample = min(sample, n)
    floor = max(nlist, 256 if codes == "pq" else 1)
    if sample < floor:
        raise ArgumentError(f"a training sample of {sample} is too small for {nlist} lists"
                            f"{' and PQ (256 centroids per sub-space)' if codes == 'pq' else ''}: "
                            f"it needs >= {floor} vectors")
    if nprobe is None:
        nprobe = min(nlist, max(8, nlist // 64))
    return IndexParams(nlist, codes, pq_m, sample, max(1, min(nprobe, nlist)))
