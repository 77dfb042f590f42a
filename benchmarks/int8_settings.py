"""int8 against fp32, for every candidate quantization setting, side by side in one run.

    python benchmarks/int8_settings.py [--model DIR] [--threads 1] [--repeats 5] [--only NAME,...]

For each candidate of vggsim.export.int8_settings.CANDIDATES: quantize the fp32 model
(calibrated on half the sample photos), then time fp32 and int8 alternately (batch 1 and
batch 8, one process, fixed intra-op threads) and compare their embeddings on real photos
that took no part in calibration (the other sample photos and the photographs among
Pillow's test images, where ../shared/corpus exists). Writes JSON under benchmarks/results/
and prints a table. A model with random weights (the test model) has activations unlike
ImageNet VGG16's, so its cosines are a proxy for the real model's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PILLOW_IMAGES = ROOT.parent / "shared" / "corpus" / "pillow-test-images"
# Photographs among Pillow's test images (the rest are synthetic patterns, broken files or
# variants of these); each is used only if it decodes, and exact pixel duplicates once.
PILLOW_PHOTOS = ("flower.jpg", "flower2.jpg", "hopper.jpg", "pil_sample_rgb.jpg", "exif_gps.jpg", "ultrahdr.jpg",
                 "iptc.jpg", "photoshop-200dpi.jpg", "app13.jpg")
TARGET_RATIO, TARGET_COSINE = 0.5, 0.99


def real_photos(held_out: list[Path]) -> list[Path]:
    """Held-out sample photos, then Pillow's photographs that decode (pixel duplicates dropped)."""
    chosen, seen = [], set()
    for path in [*held_out, *(PILLOW_IMAGES / name for name in PILLOW_PHOTOS)]:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError, SyntaxError):
            continue
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        if min(rgb.size) >= 64 and digest not in seen:
            seen.add(digest)
            chosen.append(path)
    return chosen


def held_out_inputs(preprocess: Any) -> tuple[list[Path], list[Path], np.ndarray] | None:
    """The calibration photos, the held-out real photos and their model inputs; None (after saying
    why on stderr) without the sample photos."""
    from vggsim.export.variants import split_photos
    from vggsim.images.preprocess import load_image

    calibration, held_out = split_photos(None)
    photos = real_photos(held_out)
    if not calibration or len(photos) < 2:
        print("needs the sample photos: install scikit-learn and scikit-image", file=sys.stderr)
        return None
    return calibration, photos, np.stack([load_image(p, preprocess) for p in photos])


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime

    from vggsim.export.int8_settings import cpu_flags, detect_isa

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
    return {"cpu": model, "machine": platform.machine(), "cpus": os.cpu_count(), "isa": detect_isa(),
            "flags": sorted(f for f in cpu_flags() if f in wanted), "onnxruntime": onnxruntime.__version__,
            "threads": threads, "python": platform.python_version()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(run: Callable[[np.ndarray], Any], batch: np.ndarray) -> float:
    started = time.perf_counter()
    run(batch)
    return time.perf_counter() - started


def side_by_side(runs: dict[str, Callable[[np.ndarray], Any]], inputs: np.ndarray, repeats: int,
                 batch8_repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of each run at batch 1 and batch 8, the runs alternating so that a
    change of load hits all of them alike. One untimed warm-up each first."""
    one, eight = inputs[:1], np.resize(inputs, (8, *inputs.shape[1:]))
    for run in runs.values():
        run(one)
    times: dict[str, dict[str, list[float]]] = {name: {"b1": [], "b8": []} for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name]["b1"].append(timed(run, one))
    for _ in range(batch8_repeats):
        for name, run in runs.items():
            times[name]["b8"].append(timed(run, eight))
    return {name: {"b1_ms": statistics.median(t["b1"]) * 1000, "b8_images_per_s": 8 / statistics.median(t["b8"])}
            for name, t in times.items()}


def cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL"), help="fp32 model folder")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every session (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs at batch 1 per model")
    parser.add_argument("--batch8-repeats", type=int, default=2, help="timed runs at batch 8 per model")
    parser.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/int8-settings-ISA.json)")
    args = parser.parse_args(argv)

    from onnxruntime.quantization import quant_pre_process

    from vggsim.export.int8_settings import CANDIDATES, SAME_SPEED_BAND, SETTINGS_BY_ISA, detect_isa, pick
    from vggsim.export.variants import quantize_int8
    from vggsim.model.manifest import read_manifest
    from vggsim.model.session import create_session

    base = read_manifest(args.model)
    wanted = [c for c in CANDIDATES if not args.only or c.name in args.only.split(",")]
    if not wanted:
        print(f"--only {args.only!r} names no candidate; choose from {', '.join(c.name for c in CANDIDATES)}",
              file=sys.stderr)
        return 2
    found = held_out_inputs(base.preprocess)
    if found is None:
        return 2
    calibration, photos, inputs = found
    name = base.input_name
    fp32, _ = create_session(base.model_path, "cpu", threads=args.threads)
    run_fp32 = lambda x: fp32.run(None, {name: x})[0]
    reference = np.concatenate([run_fp32(inputs[i:i + 1]) for i in range(len(inputs))])
    report: dict[str, Any] = {
        "command": "python benchmarks/int8_settings.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(args.threads), "load_average_start": load(), "model": str(base.model_path),
        "fp32_bytes": base.model_path.stat().st_size, "random_weights": base.weights.random,
        "calibration_photos": [p.name for p in calibration], "accuracy_photos": [p.name for p in photos],
        "targets": {"int8_over_fp32_latency": TARGET_RATIO, "min_cosine": TARGET_COSINE}, "candidates": []}
    if base.weights.random:
        report["note"] = ("random-weight model: its activations differ from ImageNet VGG16's, "
                          "so the cosines are a proxy for the real model's")
    with tempfile.TemporaryDirectory(prefix="int8-settings-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(base.model_path), str(prepared))
        for settings in wanted:
            target = Path(tmp) / f"{settings.name}.onnx"
            row: dict[str, Any] = {"name": settings.name, "settings": settings.to_dict(), "load_average_before": load()}
            started = time.perf_counter()
            try:
                quantize_int8(prepared, target, calibration, base.preprocess, name, settings, pre_process=False)
                row["quantize_s"] = round(time.perf_counter() - started, 1)
                int8, _ = create_session(target, "cpu", threads=args.threads)
            except Exception as exc:  # a candidate onnxruntime cannot make or run is a row, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                report["candidates"].append(row)
                print(f"{settings.name}: {row['error']}", file=sys.stderr)
                continue
            run_int8 = lambda x, s=int8: s.run(None, {name: x})[0]
            got = np.concatenate([run_int8(inputs[i:i + 1]) for i in range(len(inputs))])
            cos = cosines(reference, got)
            speed = side_by_side({"fp32": run_fp32, "int8": run_int8}, inputs, args.repeats, args.batch8_repeats)
            row.update({
                "bytes": target.stat().st_size, "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                "fp32_b1_ms": speed["fp32"]["b1_ms"], "int8_b1_ms": speed["int8"]["b1_ms"],
                "fp32_b8_images_per_s": speed["fp32"]["b8_images_per_s"],
                "int8_b8_images_per_s": speed["int8"]["b8_images_per_s"],
                "ratio_b1": speed["int8"]["b1_ms"] / speed["fp32"]["b1_ms"],
                "ratio_b8": speed["fp32"]["b8_images_per_s"] / speed["int8"]["b8_images_per_s"],
                "load_average_after": load()})
            row["meets_targets"] = bool(max(row["ratio_b1"], row["ratio_b8"]) <= TARGET_RATIO
                                        and row["min_cosine"] >= TARGET_COSINE)
            report["candidates"].append(row)
            del int8
            target.unlink()
            print(f"{settings.name}: ratio b1 {row['ratio_b1']:.3f} b8 {row['ratio_b8']:.3f}, "
                  f"min cosine {row['min_cosine']:.5f}, load {row['load_average_after']}", file=sys.stderr)
    isa = detect_isa()
    report["choice"] = {"isa": isa, "rule": (
        f"min cosine >= {TARGET_COSINE}; within {SAME_SPEED_BAND}x of the fastest (geometric mean of the batch-1 and "
        "batch-8 ratios); then the most accurate (4 decimals); then the order of the candidates"),
                        "picked": pick(report["candidates"], TARGET_COSINE),
                        "table_has": SETTINGS_BY_ISA[isa].settings.name, "table_measured": SETTINGS_BY_ISA[isa].measured}
    report["load_average_end"] = load()
    out = args.out or ROOT / "benchmarks" / "results" / f"int8-settings-{isa}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    print(f"\nwritten {out}")
    return 0


def table(report: dict[str, Any]) -> str:
    from vggsim.export.int8_settings import SAME_SPEED_BAND

    m = report["machine"]
    lines = [f"{m['cpu']} ({m['isa']}; {m['cpus']} CPUs), onnxruntime {m['onnxruntime']}, {m['threads']} thread(s), "
             f"load average {report['load_average_start']} -> {report['load_average_end']}",
             "", "| settings | int8/fp32 b1 | int8/fp32 b8 | fp32 b1 ms | int8 b1 ms | fp32 b8 img/s | int8 b8 img/s "
                 "| min cosine | mean cosine | MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["candidates"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |")
            continue
        lines.append(f"| {r['name']} | {r['ratio_b1']:.2f} | {r['ratio_b8']:.2f} | {r['fp32_b1_ms']:.0f} | "
                     f"{r['int8_b1_ms']:.0f} | {r['fp32_b8_images_per_s']:.2f} | {r['int8_b8_images_per_s']:.2f} | "
                     f"{r['min_cosine']:.5f} | {r['mean_cosine']:.5f} | {r['bytes'] / 1e6:.1f} |")
    choice = report["choice"]
    lines.append(f"\npicked (min cosine >= {TARGET_COSINE}, within {SAME_SPEED_BAND}x of the fastest, then most "
                 f"accurate): {choice['picked']}; "
                 f"SETTINGS_BY_ISA[{choice['isa']}] = {choice['table_has']} (measured: {choice['table_measured']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
