"""Peak resident memory of one embedding, new process each time: default against edge profile.

    python benchmarks/edge_memory.py [--model DIR] [--int8 DIR] [--image PATH] [--runs N] [--out JSON]

For the fp32 model (--model, default $VGGSIM_TEST_MODEL or models/vgg16) and its int8
variant (--int8, else made from --model with vggsim.export.variants.export_variant into
/tmp and reused), each row is a fresh Python that imports vggsim, builds an Embedder and
embeds one image; its peak resident memory is the kernel's VmHWM (file-backed pages of a
memory-mapped weights file count too). Rows: default, edge on its first start (it
optimises and saves the graph), edge (the saved graph: every later start), and edge with
one setting undone at a time, so each setting's share is measured, not assumed. Every
row's vector is compared with the default's, bit for bit. Writes JSON (default
benchmarks/results/edge-memory.json) and prints a table. Targets (x86-64):
edge peak <= 180 MB for fp32 and <= 120 MB for int8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MB = {"fp32": 180.0, "int8": 120.0}
RESULTS = Path(__file__).resolve().parent / "results"


def _status_mb(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the child: one process, one embedding ------------------------------------------------------

def child(spec: dict[str, Any]) -> None:
    """Import, build, embed once; print the peak after each step as one JSON line."""
    start = time.perf_counter()
    stages: dict[str, float] = {"python": _status_mb("VmHWM")}
    for module in ("numpy", "onnxruntime", "PIL.Image", "vggsim"):
        __import__(module)
        stages[f"import {module}"] = _status_mb("VmHWM")
    import warnings

    import numpy as np

    from vggsim import Embedder
    from vggsim.model.profiles import PROFILES, SessionProfile

    warnings.simplefilter("ignore")
    base = PROFILES[spec["profile"]]
    profile: str | SessionProfile = spec["profile"]
    if spec.get("change"):  # an ablation: the named profile with some fields changed
        change = dict(spec["change"])
        change["config"] = tuple(tuple(kv) for kv in change.get("config", ()))
        profile = dataclasses.replace(base, name=f"{base.name}*", **change)
    imported = time.perf_counter()
    embedder = Embedder(spec["model"], providers="cpu", profile=profile, threads=spec.get("threads"))
    stages["session"] = _status_mb("VmHWM")
    vector = embedder.embed([spec["image"]])
    done = time.perf_counter()
    stages["embed"] = _status_mb("VmHWM")
    np.save(spec["vector"], vector)
    print(json.dumps({"peak_mb": stages["embed"], "rss_after_mb": _status_mb("VmRSS"), "stages_peak_mb": stages,
                      # file-backed pages (the memory-mapped weights among them) the kernel may drop and reread
                      "rss_file_after_mb": _status_mb("RssFile"), "rss_anon_after_mb": _status_mb("RssAnon"),
                      "import_s": imported - start, "first_embedding_s": done - start}))


# -- the parent: rows, comparisons, table --------------------------------------------------------

def rows() -> list[tuple[str, dict[str, Any]]]:
    """(label, child spec fields): the profiles, then edge with one setting undone at a time."""
    return [
        ("default", {"profile": "default"}),
        ("edge, first start (saves graph)", {"profile": "edge", "fresh": True}),
        ("edge", {"profile": "edge"}),
        ("edge, no saved graph", {"profile": "edge", "change": {"cached_graph": False}}),
        ("edge, arena on", {"profile": "edge", "change": {"cpu_mem_arena": True}}),
        ("edge, memory patterns on", {"profile": "edge", "change": {"mem_pattern": True}}),
        ("edge, 1 thread", {"profile": "edge", "threads": 1}),
        ("edge + disable_prepacking", {"profile": "edge", "change": {"config": [["session.disable_prepacking", "1"]]}}),
    ]


def private_copy(model: Path, root: Path, name: str) -> Path:
    """The model folder as links, so the saved graph goes to a folder of this run's own."""
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.symlink((model / "model.onnx").resolve(), folder / "model.onnx")
    shutil.copy(model / "manifest.json", folder / "manifest.json")
    return folder


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"child failed ({result.returncode}): {result.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def measure(precision: str, model: Path, image: str, runs: int, root: Path) -> list[dict[str, Any]]:
    import numpy as np

    folder = private_copy(model, root, precision)
    reference: np.ndarray | None = None
    out = []
    for label, fields in rows():
        samples = []
        for _attempt in range(runs if not fields.get("fresh") else 1):
            if fields.get("fresh"):  # the first start: no saved graph yet
                folder = private_copy(model, root, precision)
            spec = {"model": str(folder), "image": image, "vector": str(root / "v.npy"),
                    **{k: v for k, v in fields.items() if k != "fresh"}}
            samples.append(run_child(spec))
            vector = np.load(root / "v.npy")
            if reference is None:
                reference = vector
            samples[-1]["equal_to_default"] = bool(np.array_equal(vector, reference))
            samples[-1]["max_abs_diff"] = float(np.max(np.abs(vector - reference)))
        peaks = [s["peak_mb"] for s in samples]
        out.append({"precision": precision, "row": label, **fields, "runs": len(samples),
                    "peak_mb_median": round(statistics.median(peaks), 1), "peak_mb_max": round(max(peaks), 1),
                    "first_embedding_s_median": round(statistics.median(s["first_embedding_s"] for s in samples), 3),
                    "equal_to_default": all(s["equal_to_default"] for s in samples),
                    "max_abs_diff": max(s["max_abs_diff"] for s in samples),
                    "stages_peak_mb": {k: round(v, 1) for k, v in samples[-1]["stages_peak_mb"].items()},
                    "rss_after_mb": round(samples[-1]["rss_after_mb"], 1),
                    "rss_file_after_mb": round(samples[-1]["rss_file_after_mb"], 1),
                    "rss_anon_after_mb": round(samples[-1]["rss_anon_after_mb"], 1)})
    return out


def int8_model(fp32: Path) -> Path:
    """The int8 variant of ``fp32``, made once into /tmp (keyed by the fp32 model's sha256)."""
    from vggsim.model.manifest import read_manifest

    sha = read_manifest(fp32, verify=False).model_sha256
    out = Path(tempfile.gettempdir()) / f"vggsim-edge-int8-{sha[:12]}"
    if not (out / "manifest.json").is_file():
        from vggsim.export.variants import export_variant

        print(f"making the int8 variant of {fp32} into {out} (once)", file=sys.stderr)
        export_variant(fp32, out, "int8")
    return out


def default_image(root: Path) -> str:
    from vggsim.images.samples import sample_photos

    photos = sample_photos()
    if photos:
        return str(photos[0])
    import numpy as np
    from PIL import Image

    path = root / "noise.jpg"  # no sample photos installed: a fixed 640x480 image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'model':5} {'row':34} {'peak MB':>8} {'max':>6} {'target':>7} {'1st emb s':>9} {'same vector':>11} "
             f"{'file/anon MB after':>18}"]
    for r in results:
        target = TARGET_MB[r["precision"]] if r["row"] == "edge" else None
        mark = "" if target is None else f"{'<=' if r['peak_mb_max'] <= target else '>'}{target:.0f}"
        lines.append(f"{r['precision']:5} {r['row']:34} {r['peak_mb_median']:8.1f} {r['peak_mb_max']:6.1f} {mark:>7} "
                     f"{r['first_embedding_s_median']:9.2f} {'bitwise' if r['equal_to_default'] else r['max_abs_diff']:>11} "
                     f"{r['rss_file_after_mb']:8.1f}/{r['rss_anon_after_mb']:<9.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL")
                        or "models/vgg16", help="fp32 model folder")
    parser.add_argument("--int8", help="int8 model folder (default: made from --model once, into /tmp)")
    parser.add_argument("--image", help="the image to embed (default: the first sample photo)")
    parser.add_argument("--runs", type=int, default=3, help="processes per row (the first-start row: 1)")
    parser.add_argument("--out", default=str(RESULTS / "edge-memory.json"), help="JSON report")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    from vggsim.tools.bench import hardware

    root = Path(tempfile.mkdtemp(prefix="vggsim-edge-memory-"))
    try:
        fp32 = Path(args.model)
        int8 = Path(args.int8) if args.int8 else int8_model(fp32)
        image = args.image or default_image(root)
        load_before = os.getloadavg()
        results = measure("fp32", fp32, image, args.runs, root) + measure("int8", int8, image, args.runs, root)
        import onnxruntime

        report = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "hardware": hardware(),
                  "onnxruntime": onnxruntime.__version__, "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), "image": image, "models": {"fp32": str(fp32), "int8": str(int8)},
                  "targets_mb": TARGET_MB, "peak": "VmHWM of a new process: import vggsim, Embedder, embed one image",
                  "results": results}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    hw = report["hardware"]
    print(f"{hw['cpu']} [{' '.join(hw['simd'])}], onnxruntime {report['onnxruntime']}, "
          f"load average {load_before[0]:.1f} -> {report['load_average_after'][0]:.1f}")
    print("\n".join(table(results)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
