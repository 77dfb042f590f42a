"""The service's duplicate check through the on-disk index against an exact scan, in process.

    python benchmarks/serve_search.py --model DIR --n 1000000 --keep /tmp/s1m   # the store and its index, once
    python benchmarks/duplicates_check.py --store /tmp/s1m [--queries 6] [--thresholds 0.99,0.95]
                                          [--rerank 1,4,10,100]

For each threshold and each ``--rerank`` (index candidates re-scored per match wanted; the
service uses ``vggsim.collection.queries.DUPLICATE_RERANK``), ``StoreSearch.duplicates`` (the
code under ``/v1/duplicates``, which runs the library's ``duplicates_through_index``) is run on
``--queries`` queries (stored vectors plus noise, the generator of collection_workload.py) and
compared with ``duplicates_of`` (the exact scan): the duplicates each missed, whether ids, scores
and order are identical, whether the index was used, and the time a query. Prints one JSON line
per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collection_workload import queries  # noqa: E402  (stored vectors plus noise)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store with a current index (serve_search.py --keep)")
    parser.add_argument("--queries", type=int, default=6)
    parser.add_argument("--thresholds", default="0.99,0.95")
    parser.add_argument("--rerank", default="", help="comma-separated values to try (default: the service's own)")
    args = parser.parse_args()

    from vggsim.collection import StoreReader, queries as library
    from vggsim.collection.queries import duplicates_of
    from vggsim.serve import searching

    reader = StoreReader(args.store)
    store = reader.snapshot()
    search = searching.StoreSearch(reader)
    rows = queries(args.store, args.queries)
    reranks = [int(r) for r in args.rerank.split(",") if r] or [library.DUPLICATE_RERANK]
    for threshold in (float(t) for t in args.thresholds.split(",")):
        exact = [duplicates_of(store, row, threshold) for row in rows]
        for rerank in reranks:
            library.DUPLICATE_RERANK = rerank
            started = time.perf_counter()
            found = [search.duplicates(store, row, threshold) for row in rows]
            seconds = (time.perf_counter() - started) / len(rows)
            print(json.dumps({
                "threshold": threshold, "rerank": rerank, "ms_per_query": round(seconds * 1000, 1),
                "duplicates": [len(e) for e in exact],
                "missed": [len({m.id for m in e} - {m.id for m in f}) for (f, _), e in zip(found, exact)],
                "identical": [[(m.id, m.score) for m in f] == [(m.id, m.score) for m in e]
                              for (f, _), e in zip(found, exact)],
                "index_used": [state.used for _, state in found]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
