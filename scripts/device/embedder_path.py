# ruff: noqa: E501  (report strings and table rows read best on one line)
"""GPU benchmark, the library's own path: what ``Embedder.run`` gives from a caller's host array
(pageable memory, as a user has it) for the settings people pick, at batch 1, 8 and 64, with
and without the fixed-batch feed (pinned staging, fixed device buffers, CUDA graphs), and
``Embedder.embed`` over many batches of preprocessed arrays (the copy overlap).

    python scripts/device/embedder_path.py FP32_DIR FP16_DIR OUT_DIR [--dry-run]

Writes OUT_DIR/embedder.json; gpu_benchmark.py's summary prints it. Every loop is bounded in
rounds and seconds. ``--dry-run`` runs on the CPU provider with tiny rounds.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vggsim import Embedder, l2_normalize
from vggsim.tools.bench import VGG16_GFLOP

FP16_PEAK_TFLOPS = 989.4
CASES = [  # (label, model key, provider setting, fixed_batch: None = Embedder's default for the setting)
    ("fp16 cuda-graph, fixed_batch=b", "fp16", "cuda-graph", "b"),
    ("fp16 cuda-graph-overlap, fixed_batch=b", "fp16", "cuda-graph-overlap", "b"),
    ("fp16 cuda-tf32, fixed_batch=b", "fp16", "cuda-tf32", "b"),
    ("fp16 cuda-tf32 (no fixed batch)", "fp16", "cuda-tf32", None),
    ("fp32 cuda exact (no fixed batch)", "fp32", "cuda", None),
]


def bounded(fn: Any, rounds: int, seconds: float, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < rounds or (time.perf_counter() - start < seconds and len(times) < 10 * rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def figures(times: list[float], batch: int) -> dict[str, Any]:
    p50 = float(np.percentile(times, 50))
    return {
        "p50_ms": round(p50 * 1000, 3),
        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 3),
        "images_per_s": round(batch / p50, 1),
        "fraction_of_fp16_peak": round(batch / p50 * VGG16_GFLOP / (FP16_PEAK_TFLOPS * 1000), 4),
        "rounds": len(times),
    }


def main(fp32: str, fp16: str, out: Path, dry: bool) -> None:
    from vggsim import sample_photos

    warnings.simplefilter("ignore")
    models = {"fp32": fp32, "fp16": fp16}
    reference_embedder = Embedder(fp32, providers="cpu")
    photos = sample_photos()
    inputs = np.stack([reference_embedder.load(p) for p in photos])
    rounds, seconds = (2, 0.0) if dry else (60, 0.8)
    report: dict[str, Any] = {"dry_run": dry, "photos": len(photos), "cases": []}
    for label, key, setting, fixed in CASES:
        for batch in (1, 2) if dry else (1, 8, 64):
            entry: dict[str, Any] = {"label": label.replace("=b", f"={batch}"), "setting": setting, "batch": batch}
            report["cases"].append(entry)
            try:
                embedder = Embedder(models[key], providers="cpu" if dry else setting, strict=not dry,
                                    fixed_batch=batch if fixed == "b" else None)
                entry["fixed_batch"] = embedder.fixed_batch
                rows = np.arange(batch) % len(inputs)
                host = np.ascontiguousarray(inputs[rows])  # pageable, as a caller has it
                got = embedder.run(host)
                want = reference_embedder.run(host)
                entry["min_cosine"] = round(float(np.sum(l2_normalize(got) * l2_normalize(want), axis=1).min()), 8)
                entry["run"] = figures(bounded(lambda e=embedder, h=host: e.run(h), rounds, seconds), batch)
                many = np.ascontiguousarray(inputs[np.arange(batch * (2 if dry else 8)) % len(inputs)])
                embedder.embed(many[:batch], batch_size=batch)  # warm
                start = time.perf_counter()
                embedder.embed(many, batch_size=batch)
                entry["embed_many_images_per_s"] = round(len(many) / (time.perf_counter() - start), 1)
                print(f"{entry['label']:42s} b{batch:<3d} run p50 {entry['run']['p50_ms']:.3f} ms, "
                      f"{entry['run']['images_per_s']:>9.1f}/s | embed x{len(many)} {entry['embed_many_images_per_s']:>9.1f}/s | cos {entry['min_cosine']}",
                      flush=True)
            except Exception as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"[:1000]
                print(f"{entry['label']} b{batch}: FAILED {entry['error']}", flush=True)
    (out / "embedder.json").write_text(json.dumps(report, indent=2) + "\n")


def summary(report: dict[str, Any]) -> list[str]:
    lines = ["", "Through the library (`Embedder.run` from a pageable host array; `embed` over 8 batches):", "",
             "| Embedder | batch | run p50 / p99 ms | run img/s | embed img/s | min cosine |", "|---|---|---|---|---|---|"]
    for entry in report["cases"]:
        if "run" not in entry:
            lines.append(f"| {entry['label']} | {entry['batch']} | {entry.get('error', '')} | | | |")
            continue
        run = entry["run"]
        lines.append(f"| {entry['label']} | {entry['batch']} | {run['p50_ms']:.3f} / {run['p99_ms']:.3f} | {run['images_per_s']:,.0f} | "
                     f"{entry['embed_many_images_per_s']:,.0f} | {entry['min_cosine']:.6f} |")
    return lines


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(__doc__)
    main(args[0], args[1], Path(args[2]), "--dry-run" in sys.argv)
