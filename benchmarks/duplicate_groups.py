"""Duplicate groups at scale: 100k groups through `vggsim dedup --page` and the service's paginated route.

    python benchmarks/duplicate_groups.py --model DIR [--groups 100000] [--threshold 0.99]
                                          [--out benchmarks/results/duplicate-groups-100k.json]

Makes a store of ``2 * groups`` synthetic 512-d vectors with the model's identity (so the service
accepts it): each group is a vector and a near copy (cosine about 0.9988), random otherwise
(cosine near 0), each file with its own sha256, size and resolution for the keeper rule. Then:

- ``vggsim dedup --page 1 --page-size 100 --json`` in a child process: wall time, peak memory,
  and that it found every group;
- a real ``vggsim serve --store`` process: ``GET /v1/duplicates/groups`` answers 202 while the
  groups are found in the background (the slowest of those answers is the figure that says no
  request waits for the pass), then pages 1, the middle one and the last (their latency).

Every loop is bounded in count and time. Prints the report and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, stop_server, wait_ready  # noqa: E402  (the load benchmark's service helpers)

DIM = 512
PAGE = 100


def make_store(root: Path, model: Path, groups: int) -> None:
    from vggsim import Embedder
    from vggsim.store import Record, StoreIdentity, StoreWriter

    with warnings.catch_warnings():  # a random-weight test model says so once per load; the vectors here are synthetic
        warnings.simplefilter("ignore")
        identity = StoreIdentity.of(Embedder(model, providers="cpu"))
    rng = np.random.default_rng(0)
    with StoreWriter.open(root, identity) as writer:
        for start in range(0, groups, 25_000):
            count = min(25_000, groups - start)
            base = rng.standard_normal((count, DIM)).astype(np.float32)
            near = base + 0.05 * rng.standard_normal((count, DIM)).astype(np.float32)
            for offset in range(count):
                n = start + offset
                for copy, vector in (("a", base[offset]), ("b", near[offset])):
                    name = f"/bench/{n:07d}{copy}.jpg"
                    writer.add(Record(name, "ok", 200_000 + n % 997, 1_700_000_000_000_000_000 + n, hashlib.sha256(
                        name.encode()).hexdigest(), 1024 if copy == "a" else 800, 768 if copy == "a" else 600), vector)
            writer.commit()


def cli_pass(store: Path, threshold: float, groups: int) -> dict[str, object]:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "vggsim", "dedup", "--store", str(store), "--threshold", str(threshold),
                          "--page", "1", "--page-size", str(PAGE), "--json"], capture_output=True, text=True,
                         timeout=3600)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"vggsim dedup failed: {run.stderr[-2000:]}")
    body = json.loads(run.stdout)
    if body["total_groups"] != groups:
        raise SystemExit(f"vggsim dedup found {body['total_groups']} groups, expected {groups}")
    return {"seconds": round(seconds, 1), "total_groups": body["total_groups"],
            "peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def service_pass(model: Path, store: Path, threshold: float, groups: int) -> dict[str, object]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(f"/tmp/duplicate-groups-serve-{port}.log", "w+b")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "vggsim", "serve", "--model", str(model), "--store", str(store),
                               "--index", "off", "--port", str(port), "--log-level", "warning"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(server, url, seconds=120)
        query = {"threshold": threshold, "page_size": PAGE}
        started = time.perf_counter()
        waits: list[float] = []
        body: dict[str, object] = {}
        for _ in range(3600):  # at most an hour, one request a second
            t0 = time.perf_counter()
            answer = httpx.get(url + "/v1/duplicates/groups", params={**query, "page": 1}, timeout=60)
            waits.append(time.perf_counter() - t0)
            if answer.status_code == 200:
                body = answer.json()
                break
            if answer.status_code != 202:
                raise SystemExit(f"GET /v1/duplicates/groups: {answer.status_code} {answer.text[:500]}")
            time.sleep(1)
        else:
            raise SystemExit("the groups were not found in an hour")
        ready_s = time.perf_counter() - started
        if body["total_groups"] != groups:
            raise SystemExit(f"the service found {body['total_groups']} groups, expected {groups}")
        pages = {}
        last = -(-groups // PAGE)
        for page in sorted({1, max(1, last // 2), last}):
            t0 = time.perf_counter()
            answer = httpx.get(url + "/v1/duplicates/groups", params={**query, "page": page}, timeout=60)
            pages[str(page)] = round((time.perf_counter() - t0) * 1000, 1)
            if answer.status_code != 200 or len(answer.json()["groups"]) == 0:
                raise SystemExit(f"page {page}: {answer.status_code} {answer.text[:300]}")
        return {"groups_found_s": round(ready_s, 1), "requests_while_computing": len(waits) - 1,
                "slowest_202_ms": round(max(waits[:-1] or [0.0]) * 1000, 1), "page_ms": pages,
                "pages": last, "page_size": PAGE}
    finally:
        stop_server(server)
        log.close()
        os.unlink(log.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.99)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent / "suites"))
    from conftest import machine_line

    with tempfile.TemporaryDirectory(prefix="vggsim-groups-") as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        make_store(store, args.model, args.groups)
        made = time.perf_counter() - t0
        report = {"machine": machine_line(), "date": time.strftime("%Y-%m-%d"), "files": 2 * args.groups,
                  "groups": args.groups, "threshold": args.threshold, "store_made_s": round(made, 1),
                  "cli": cli_pass(store, args.threshold, args.groups),
                  "service": service_pass(args.model, store, args.threshold, args.groups),
                  "command": f"python benchmarks/duplicate_groups.py --model DIR --groups {args.groups}"}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
