"""/v1/search latency of a real `vggsim serve` on a synthetic store: through the on-disk index and exact.

    python benchmarks/serve_search.py --model DIR [--n 1000000] [--queries 200] [--seconds 60] [--keep DIR]
                                      [--route search|duplicates] [--threshold 0.95]

1. A synthetic store of ``--n`` 512-d vectors (collection_workload.py's generator, the one
   index_workload.py measures), stamped with the model's identity so the service accepts it,
   and its on-disk index (`vggsim index build`, the default rule). Disk: about 2.1 KB per
   vector (1M: ~2.2 GB); refused above 10 GB. Removed at the end unless ``--keep DIR`` (which
   is also reused when it already holds a store of ``--n`` vectors and a current index).
2. `vggsim serve --store S --index auto` on a free loopback port: one client sends
   ``{"vector": [...], "k": 10}`` queries (stored vectors plus noise) one after another, at
   most ``--queries`` and ``--seconds``; p50/p95/p99 latency, the first (cold) query apart,
   the service's resident memory (RSS, anonymous and file-backed, and its peak).
3. The same with ``--index off`` (exact search of every vector), a fresh process.
4. recall@k of the index's answers against the exact ones, for the queries both answered.

``--route duplicates`` sends the same queries to /v1/duplicates with ``--threshold`` instead
(the index's growing batches against the exact scan): the agreement is the share of queries
whose set of duplicates is the same both ways, and the JSON has the matches per query.

Prints a table and writes JSON under benchmarks/results/ (or ``--out``). Traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collection_workload import make, queries  # noqa: E402  (the generator index_workload.py measures)
from serve_load import free_port, percentiles, stop_server, wait_ready  # noqa: E402

BYTES_PER_VECTOR = 2200  # 2,048 of float32 + records, index codes and ids mapping (measured: 1M -> ~2.2 GB)
DISK_LIMIT = 10 * 1000**3


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of ``pid`` in MB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def make_store(root: Path, n: int, model: str) -> dict[str, Any]:
    """collection_workload.make's vectors, in a store whose identity is the model's (the service checks it)."""
    import vggsim.store
    from vggsim import Embedder

    identity = vggsim.store.StoreIdentity.of(Embedder(model))
    if identity.dim != 512:
        raise SystemExit(f"{model}: the generator makes 512-d vectors, the model gives {identity.dim}")
    original = vggsim.store.StoreIdentity
    vggsim.store.StoreIdentity = lambda *_args, **_kwargs: identity  # type: ignore[misc,assignment]
    try:
        started = time.perf_counter()
        make(root, n)
    finally:
        vggsim.store.StoreIdentity = original  # type: ignore[misc]
    return {"make_s": round(time.perf_counter() - started, 1)}


def cli(*args: str, timeout: float = 3600) -> str:
    result = subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise SystemExit(f"vggsim {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def prepare(root: Path, n: int, model: str) -> dict[str, Any]:
    """The store and its index: reused when ``root`` already holds both for ``n`` vectors."""
    out: dict[str, Any] = {}
    from vggsim.store import Store

    if root.exists():
        store = Store.open(root)
        if store.count_ok() != n:
            raise SystemExit(f"{root} holds {store.count_ok()} vectors, not {n}: remove it or pass another --keep")
        out["reused_store"] = True
    else:
        out.update(make_store(root, n, model))
    if subprocess.run([sys.executable, "-m", "vggsim", "index", "info", "--store", str(root)],
                      capture_output=True, timeout=600).returncode != 0:
        built = json.loads(cli("index", "build", "--store", str(root), "--json"))
        out["index"] = {key: built[key] for key in ("factory", "nprobe", "vectors", "bytes", "seconds")}
    else:
        out["index"] = "reused"
    out["store_bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return out


def serve(model: str, root: Path, index: str, providers: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "vggsim", "serve", "--model", model, "--store", str(root),
                               "--index", index, "--port", str(port), "--providers", providers,
                               "--log-level", "warning"])
    wait_ready(server, url)
    return server, url


def measure(url: str, pid: int, wanted: np.ndarray, k: int, seconds: float, route: str = "search",
            threshold: float = 0.95) -> dict[str, Any]:
    """One client, queries one after another: the first apart (cold), then up to the count and time bounds."""
    import httpx

    times: list[float] = []
    found: list[list[int]] = []
    states: dict[str, int] = {}
    before = proc_status(pid)
    with httpx.Client(timeout=600) as client:
        end = time.perf_counter() + seconds
        for i, row in enumerate(wanted):
            if i > 1 and time.perf_counter() > end:
                break
            t = time.perf_counter()
            extra: dict[str, Any] = {"k": k} if route == "search" else {"threshold": threshold}
            r = client.post(url + "/v1/" + route, json={"vector": [float(x) for x in row], **extra})
            elapsed = time.perf_counter() - t
            if r.status_code != 200:
                raise SystemExit(f"/v1/{route} answered {r.status_code}: {r.text[:300]}")
            body = r.json()
            state = body["index"]["state"] + (" (used)" if body["index"]["used"] else "")
            states[state] = states.get(state, 0) + 1
            found.append([m["id"] for m in body["matches"]])
            times.append(elapsed)
    return {"queries": len(times), "first_ms": round(times[0] * 1000, 2), **percentiles(times[1:]),
            "mean_ms": round(float(np.mean(times[1:])) * 1000, 2) if len(times) > 1 else None,
            "index_states": states, "matches_per_query": [len(f) for f in found],
            "rss_mb_before": before, "rss_mb_after": proc_status(pid), "_found": found}


def recall(exact: list[list[int]], approx: list[list[int]], k: int) -> float | None:
    pairs = list(zip(exact, approx))
    if not pairs:
        return None
    return round(float(np.mean([len(set(e[:k]) & set(a[:k])) / max(1, len(e[:k])) for e, a in pairs])), 4)



def default_name(args: argparse.Namespace) -> str:
    """The current result file this run replaces: serve-search-100k.json, serve-duplicates-1m-t0.99.json."""
    n = args.n
    size = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    suffix = f"-t{args.threshold:g}" if args.route == "duplicates" else ""
    return f"serve-{args.route}-{size}{suffix}.json"

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL"))
    parser.add_argument("--n", type=int, default=1_000_000, help="stored vectors (100000 for a quick run)")
    parser.add_argument("--queries", type=int, default=200, help="most queries per mode")
    parser.add_argument("--seconds", type=float, default=60.0, help="most seconds of queries through the index")
    parser.add_argument("--exact-seconds", type=float, default=120.0,
                        help="most seconds of exact queries (seconds each at 1M on a small machine)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--keep", metavar="DIR", help="build the store here and keep it (reused by the next run)")
    parser.add_argument("--route", choices=("search", "duplicates"), default="search")
    parser.add_argument("--threshold", type=float, default=0.95, help="with --route duplicates (default 0.95)")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/serve-ROUTE-SIZE.json)")
    args = parser.parse_args()
    if not args.model:
        parser.error("--model (or $VGGSIM_TEST_MODEL) is required")
    if args.n * BYTES_PER_VECTOR > DISK_LIMIT:
        parser.error(f"--n {args.n} needs about {args.n * BYTES_PER_VECTOR / 1e9:.1f} GB of disk, over the 10 GB bound")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="serve2-search-", dir="/tmp"))
    root = work / "store" if args.keep is None else work
    if shutil.disk_usage(work.parent if args.keep else work).free < 2 * args.n * BYTES_PER_VECTOR:
        raise SystemExit(f"not enough free disk under {work} for {args.n} vectors")
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "config": {"n": args.n, "k": args.k, "queries": args.queries, "seconds": args.seconds,
                   "exact_seconds": args.exact_seconds, "route": args.route, "threshold": args.threshold,
                   "providers": args.providers, "client": "1, sequential, JSON vector queries"},
        "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        report["store"] = prepare(root, args.n, args.model)
        print(json.dumps(report["store"]), flush=True)
        wanted = queries(root, args.queries)
        results: dict[str, Any] = {}
        for mode in ("auto", "off"):
            server, url = serve(args.model, root, mode, args.providers)
            try:
                results[mode] = measure(url, server.pid, wanted, args.k,
                                        args.seconds if mode == "auto" else args.exact_seconds, args.route,
                                        args.threshold)
                results[mode]["load_average"] = [round(x, 2) for x in os.getloadavg()]
            finally:
                stop_server(server)
            print(json.dumps({mode: {k: v for k, v in results[mode].items() if k != "_found"}}), flush=True)
        report["index"] = {k: v for k, v in results["auto"].items() if k != "_found"}
        report["exact"] = {k: v for k, v in results["off"].items() if k != "_found"}
        both = min(len(results["auto"]["_found"]), len(results["off"]["_found"]))
        report["recall_at_k_index_vs_exact"] = recall(results["off"]["_found"][:both], results["auto"]["_found"][:both],
                                                      args.k)
        report["recall_queries"] = both
        if args.route == "duplicates":
            report["recall_at_k_index_vs_exact"] = None
            report["same_duplicates"] = round(float(np.mean([set(a) == set(e) for a, e in zip(
                results["auto"]["_found"][:both], results["off"]["_found"][:both])])), 4) if both else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / default_name(args)
    out.write_text(text + "\n")
    print(text)
    asked = f"k={args.k}" if args.route == "search" else f"threshold={args.threshold}"
    print(f"\n/v1/{args.route}, {args.n:,} vectors, {asked}, 1 client (load average {report['load_average_start']})")
    print(f"{'method':<8} {'queries':>7} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'RSS MB':>8} {'anon MB':>8} {'peak MB':>8}")
    for name in ("index", "exact"):
        r = report[name]
        mem = r["rss_mb_after"]
        print(f"{name:<8} {r['queries']:>7} {r['first_ms']:>9} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} "
              f"{mem.get('VmRSS', 0):>8} {mem.get('RssAnon', 0):>8} {mem.get('VmHWM', 0):>8}")
    if args.route == "duplicates":
        print(f"same duplicates by index and exactly: {report['same_duplicates']} of {report['recall_queries']} "
              f"queries; matches per query {report['index']['matches_per_query'][:10]}...; written to {out}")
    else:
        print(f"recall@{args.k} of the index against exact: {report['recall_at_k_index_vs_exact']} "
              f"({report['recall_queries']} queries); written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
