"""The on-disk index at several store sizes, one command: ``python index_workload.py scale DIR N [N ...]``.

Per size, each step in a fresh process (so VmHWM is that step's peak): make the synthetic
store (if missing), exact top-10 of 100 queries, build, search (one query at a time) and the
nprobe x rerank sweep. Writes benchmarks/results/index-scale.json and prints a markdown table.
10M is derived, not measured: a straight line through the two largest sizes measured, for
every column that grows with n (build time, index size, peaks, latency); recall is not
extrapolated. The build peak is also fitted over all sizes (peak = a + b * n) so its growth per
vector can be compared with the index's own bytes per vector.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "index-scale.json"
DERIVED_AT = 10_000_000


def run(script: str, *args: object) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(HERE / script), *map(str, args)], capture_output=True, text=True,
                         timeout=3600, cwd=HERE)
    if out.returncode:
        raise SystemExit(f"{script} {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def measure(store: Path, n: int) -> dict[str, Any]:
    if not (store / "commit.json").exists():
        run("collection_workload.py", "make", store, n)
    if not (store / "exact_q.npy").exists():
        run("index_workload.py", "exact", store, 100)
    built = run("index_workload.py", "build", store)
    found = run("index_workload.py", "search", store)
    swept = run("index_workload.py", "sweep", store)
    return {"vectors": n, "factory": built["factory"], "nprobe": built["nprobe"], "sample": built["sample"],
            "build_s": built["build_s"], "build_peak_mb": built["peak_mb"], "index_mb": built["index_mb"],
            "store_mb": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6),
            "recall_at_10": found["recall_at_10"], "ms_median": found["ms_per_query_median"],
            "ms_p95": found["ms_per_query_p95"], "ms_batched_with_paths": found["ms_per_query_batched_with_paths"],
            "search_peak_mb": found["peak_mb"], "sweep": swept["grid"],
            "load_average": {"build": built["load_average"], "search": found["load_average"]}}


def derive(rows: list[dict[str, Any]]) -> dict[str, Any]:
    (n1, a), (n2, b) = [(r["vectors"], r) for r in sorted(rows, key=lambda r: r["vectors"])[-2:]]
    out: dict[str, Any] = {"vectors": DERIVED_AT, "derived_from": [n1, n2], "factory": "(rule) IVF4096,PQ64"}
    for key in ("build_s", "build_peak_mb", "index_mb", "store_mb", "ms_median", "ms_p95", "search_peak_mb"):
        slope = (b[key] - a[key]) / (n2 - n1)
        out[key] = round(b[key] + slope * (DERIVED_AT - n2), 1)
    return out


def scale(folder: Path, sizes: list[int], keep: bool = False) -> None:
    from conftest import machine_line

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        store = folder / f"index-{n // 1000}k"
        started = time.perf_counter()
        rows.append(measure(store, n))
        rows[-1]["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "sweep"}), flush=True)
        if not keep:
            shutil.rmtree(store)
    fit: dict[str, Any] = {}
    if len(rows) >= 2:
        ns = np.array([r["vectors"] for r in rows], float)
        slope, intercept = np.polyfit(ns, [r["build_peak_mb"] for r in rows], 1)
        fit = {"build_peak_mb": f"{intercept:.0f} MB + {slope * 1e6:.1f} bytes/vector x n",
               "index_bytes_per_vector": round(rows[-1]["index_mb"] * 1e6 / rows[-1]["vectors"], 1)}
    report = {"machine": machine_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "measured": rows, "derived": derive(rows) if len(rows) >= 2 else None, "build_peak_fit": fit}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1))
    print(table(report))


def table(report: dict[str, Any]) -> str:
    lines = [f"machine: {report['machine']}; {report['date']}",
             "| vectors | index | build s | build peak MB | index MB | recall@10 | ms/query median / p95 | "
             "search peak MB | load (build; search) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["measured"]:
        lines.append(f"| {r['vectors'] / 1e6:g}M measured | {r['factory']}, nprobe {r['nprobe']} | {r['build_s']} | "
                     f"{r['build_peak_mb']} | {r['index_mb']} | {r['recall_at_10']:.3f} | {r['ms_median']} / "
                     f"{r['ms_p95']} | {r['search_peak_mb']} | {r['load_average']['build'][0]}; "
                     f"{r['load_average']['search'][0]} |")
    if report["derived"]:
        d = report["derived"]
        lines.append(f"| 10M derived (line through {d['derived_from'][0] / 1e6:g}M, {d['derived_from'][1] / 1e6:g}M) | "
                     f"{d['factory']} | {d['build_s']} | {d['build_peak_mb']} | {d['index_mb']} | not derived | "
                     f"{d['ms_median']} / {d['ms_p95']} | {d['search_peak_mb']} | |")
    if report["build_peak_fit"]:
        lines.append(f"build peak fit: {report['build_peak_fit']['build_peak_mb']} "
                     f"(the index itself: {report['build_peak_fit']['index_bytes_per_vector']} bytes/vector)")
    for r in report["measured"]:
        cells = ", ".join(f"{g['nprobe']}/{g['rerank']}: {g['recall_at_10']:.3f} {g['ms_median']} ms" for g in r["sweep"])
        lines.append(f"sweep {r['vectors'] / 1e6:g}M (nprobe/rerank: recall, median): {cells}")
    return "\n".join(lines)
