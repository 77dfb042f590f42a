"""The exported fp32 and int8 models in every runtime that installs from PyPI and reads ONNX.

    python benchmarks/runtime_parity.py [--model DIR] [--int8 DIR] [--threads 1] [--repeats 5]
    (pip install "vggsim[edge-bench]" brings OpenVINO and tract)

Each row is one runtime running one model: its error against onnxruntime's fp32 embeddings
(CPU) on real photos (max relative error per image, ``max|x - ref| / max|ref|``, and the
lowest cosine), its median batch-1 latency and its images/s at batch 8, all in one run. A
runtime that is not installed or cannot load or run a model is a row that says why. Without
--int8, the int8 variant is made first with this CPU's settings (vggsim.export.variants).
Writes JSON under benchmarks/results/ and prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from int8_settings import ROOT, cosines, load, machine, real_photos

Run = Callable[[np.ndarray], np.ndarray]
# A loader takes (model file, threads) and returns (runtime label, batch -> run function).
Loader = Callable[[Path, int], tuple[str, Callable[[int], Run]]]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def onnxruntime_loader(path: Path, threads: int) -> tuple[str, Callable[[int], Run]]:
    from vggsim.model.session import create_session

    session, provider = create_session(path, "cpu", threads=threads)
    name = session.get_inputs()[0].name
    run: Run = lambda x: np.asarray(session.run(None, {name: x})[0])
    return f"onnxruntime {_version('onnxruntime')} ({provider}, {threads} thread(s))", lambda batch: run


def openvino_loader(path: Path, threads: int, precision: str = "f32") -> tuple[str, Callable[[int], Run]]:
    """OpenVINO's CPU plugin at an explicit precision. Its default is bf16 on CPUs with AVX512_BF16 or
    AMX (4.6e-3 relative error against onnxruntime here), so parity asks for f32 by name; bf16 is
    the separate ``openvino-bf16`` row, a speed option measured with its accuracy."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                           "INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: what the plugin really runs
    actual = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data)

    return f"OpenVINO {_version('openvino')} (CPU, {threads} thread(s), precision hint {actual})", lambda batch: run


def openvino_bf16_loader(path: Path, threads: int) -> tuple[str, Callable[[int], Run]]:
    return openvino_loader(path, threads, "bf16")


def tract_loader(path: Path, threads: int) -> tuple[str, Callable[[int], Run]]:
    import tract

    # tract needs a concrete batch size here: with the symbolic one, the graph's slice up to
    # "end of axis" (a huge constant from tf2onnx) fails at run time. One plan per batch size.
    plans: dict[int, Any] = {}

    def for_batch(batch: int) -> Run:
        if batch not in plans:
            plans.clear()
            gc.collect()
            model = tract.onnx().load(str(path))
            model.set_input_fact(0, f"{batch},224,224,3,f32")
            plans[batch] = model.into_model().into_runnable()
        plan = plans[batch]
        return lambda x: np.asarray(plan.run([x])[0].to_numpy())

    for_batch(1)  # load errors surface here, as a row
    return f"tract {_version('tract')} (single thread)", for_batch


LOADERS: dict[str, Loader] = {"onnxruntime": onnxruntime_loader, "openvino": openvino_loader,
                              "openvino-bf16": openvino_bf16_loader, "tract": tract_loader}


def measure(for_batch: Callable[[int], Run], inputs: np.ndarray, reference: np.ndarray, repeats: int,
            batch8_repeats: int) -> dict[str, Any]:
    one = for_batch(1)
    got = np.concatenate([one(inputs[i:i + 1]) for i in range(len(inputs))])
    diff = np.abs(got - reference).max(axis=1) / np.abs(reference).max(axis=1)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        one(inputs[:1])
        times.append(time.perf_counter() - started)
    eight, batch = for_batch(8), np.resize(inputs, (8, *inputs.shape[1:]))
    eight(batch)  # warm-up
    times8 = []
    for _ in range(batch8_repeats):
        started = time.perf_counter()
        eight(batch)
        times8.append(time.perf_counter() - started)
    return {"max_rel_error": float(diff.max()), "min_cosine": float(cosines(reference, got).min()),
            "b1_ms": statistics.median(times) * 1000, "b8_images_per_s": 8 / statistics.median(times8)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL"), help="fp32 model folder")
    parser.add_argument("--int8", default=None, help="int8 model folder (default: made from --model first)")
    parser.add_argument("--threads", type=int, default=1, help="threads of onnxruntime and OpenVINO (tract runs on one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs at batch 1")
    parser.add_argument("--batch8-repeats", type=int, default=2, help="timed runs at batch 8")
    parser.add_argument("--photos", type=int, default=0, help="use only the first N real photos (default all)")
    parser.add_argument("--runtimes", default=",".join(LOADERS), help=f"comma-separated, from {', '.join(LOADERS)}")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/runtime-parity.json)")
    args = parser.parse_args(argv)

    from vggsim.export.variants import export_variant, split_photos
    from vggsim.model.manifest import read_manifest, resolve_model_dir
    from vggsim.images.preprocess import load_image

    fp32 = read_manifest(args.model)
    started_load = load()
    with tempfile.TemporaryDirectory(prefix="runtime-parity-") as tmp:
        int8_dir = Path(args.int8) if args.int8 else export_variant(resolve_model_dir(args.model), Path(tmp) / "int8", "int8")
        int8 = read_manifest(int8_dir)
        photos = real_photos(split_photos(None)[1])[:args.photos or None]
        if len(photos) < 2:
            print("needs the sample photos: install scikit-learn and scikit-image", file=sys.stderr)
            return 2
        inputs = np.stack([load_image(p, fp32.preprocess) for p in photos])
        _, ort_fp32 = onnxruntime_loader(fp32.model_path, args.threads)
        reference = np.concatenate([ort_fp32(1)(inputs[i:i + 1]) for i in range(len(inputs))])
        del ort_fp32
        rows: list[dict[str, Any]] = []
        for runtime in args.runtimes.split(","):
            for label, manifest in (("fp32", fp32), ("int8", int8)):
                row: dict[str, Any] = {"runtime": runtime, "model": label, "load_average_before": load()}
                if runtime not in LOADERS:
                    row["error"] = f"unknown runtime: use one of {', '.join(LOADERS)}"
                    rows.append(row)
                    print(format_row(row), file=sys.stderr)
                    continue
                try:
                    row["runtime"], for_batch = LOADERS[runtime](manifest.model_path, args.threads)
                    row.update(measure(for_batch, inputs, reference, args.repeats, args.batch8_repeats))
                except Exception as exc:  # not installed, cannot read or run the model: a row saying why
                    first = (str(exc).strip().splitlines() or [""])[0][:160]
                    row["error"] = f"{type(exc).__name__}: {first}"
                finally:
                    for_batch = None
                    gc.collect()
                rows.append(row)
                print(format_row(row), file=sys.stderr)
        report = {"command": "python benchmarks/runtime_parity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "machine": machine(args.threads), "load_average_start": started_load, "load_average_end": load(),
                  "photos": [p.name for p in photos], "reference": "onnxruntime fp32, CPU",
                  "fp32_model": {"sha256": fp32.model_sha256, "random_weights": fp32.weights.random},
                  "int8_model": {"sha256": int8.model_sha256, "quantization": dict(int8.quantization or {})},
                  "rows": rows}
    out = args.out or ROOT / "benchmarks" / "results" / "runtime-parity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(table(report))
    print(f"\nwritten {out}")
    return 0


def format_row(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"| {row['runtime']} | {row['model']} | could not run: {row['error']} | | | |"
    return (f"| {row['runtime']} | {row['model']} | {row['max_rel_error']:.2e} | {row['min_cosine']:.5f} | "
            f"{row['b1_ms']:.0f} | {row['b8_images_per_s']:.2f} |")


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    head = (f"{m['cpu']} ({m['isa']}; {m['cpus']} CPUs), {len(report['photos'])} real photos, "
            f"load average {report['load_average_start']} -> {report['load_average_end']}\n\n"
            "| runtime | model | max rel. error vs onnxruntime fp32 | min cosine | batch 1 ms (median) | batch 8 images/s |\n"
            "|---|---|---|---|---|---|")
    return "\n".join([head, *(format_row(r) for r in report["rows"])])


if __name__ == "__main__":
    sys.exit(main())
