# ruff: noqa: E501, B023  (report strings and table rows read best on one line; loop lambdas are timed at once)
"""The GPU benchmark on a lent GPU, in one bounded run: every CUDA setting side by side at batch 1, 8,
64 and 256, each from GPU memory, from host memory (pageable, pinned, and pinned with the
copy of batch N+1 overlapped with batch N), with p50/p99, the fraction of the fp16 peak and
min cosine against exact fp32 on the CPU; the CUDA-optimised graphs' Cast/Transpose counts;
and JPEG decode on the machine's cores feeding the GPU against model-only throughput.

    python scripts/device/gpu_benchmark.py main FP32 FP16 FP16_UNPADDED OUT_DIR [--dry-run]
    python scripts/device/gpu_benchmark.py keras OUT_DIR [--dry-run]   # Keras 3 on JAX, same weights

``--dry-run`` runs everything on the CPU provider with tiny rounds (a check that the script
works before it spends device time). Every loop is bounded in rounds and seconds, and the
whole run stops starting new work once ``--budget-s`` is spent.
"""

from __future__ import annotations


import json
import multiprocessing
import os
import signal

import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from vggsim import l2_normalize, sample_photos
from vggsim.tools.bench import VGG16_GFLOP, gpu_name
from vggsim.model.cuda.runner import CudaRunner
from vggsim.model.session import CUDA_SETTINGS, CudaSetting, preload_cuda_libraries, resolve_providers, session_options, usable_cpus

FP16_PEAK_TFLOPS = 989.4  # H100 SXM / H200 dense fp16 tensor cores, datasheet
START = time.perf_counter()
ARGS: dict[str, Any] = {"dry": False, "budget": 330.0, "only": [], "no_pipeline": False}
PIPELINE_RESERVE_S = 75.0  # of the budget, kept for the decode pipeline
SETTINGS = [  # (label, model key, named setting), most wanted first: a spent budget skips the last
    ("fp16 NHWC (cuda-tf32)", "fp16", "cuda-tf32"),
    ("fp16 cuda-graph (NHWC)", "fp16", "cuda-graph"),
    ("fp32 cuda-tf32", "fp32", "cuda-tf32"),
    ("fp16 NHWC, TF32 flag off", "fp16", "nhwc-tf32-off"),
    ("fp16 NCHW (cuda)", "fp16", "cuda"),
    ("fp16 as before, NHWC (cuda-tf32)", "fp16old", "cuda-tf32"),
    ("fp16 as before, NCHW (cuda)", "fp16old", "cuda"),
    ("fp32 exact (cuda)", "fp32", "cuda"),
    ("fp32 cuda-graph (TF32)", "fp32", "cuda-graph"),
]
# Settings measured for comparison only (no name in vggsim): on the H200, fp16 NHWC with
# use_tf32=0 ran batch 8 and 64 at a tenth of its speed with use_tf32=1.
COMPARISONS = {
    "nhwc-tf32-off": CudaSetting("nhwc-tf32-off", {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0", "prefer_nhwc": "1"})
}


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def over_budget(reserve: float = 0.0) -> bool:
    """True once the run's budget, less ``reserve`` seconds kept for later sections, is spent."""
    return time.perf_counter() - START > ARGS["budget"] - reserve


def bounded(fn: Any, rounds: int, seconds: float, warmup: int = 2) -> list[float]:
    """Per-call seconds: ``warmup`` untimed calls, then up to ``rounds`` (at least 3) within ``seconds``."""
    for _ in range(0 if ARGS["dry"] else warmup):
        fn()
    times: list[float] = []
    while len(times) < rounds and (len(times) < min(3, rounds) or sum(times) < seconds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def figures(times: list[float], batch: int) -> dict[str, Any]:
    ms = np.asarray(times) * 1000
    per_s = batch / float(np.mean(times))
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "images_per_s": round(per_s, 1),
        "rounds": len(times),
        "fraction_of_fp16_peak": round(per_s * VGG16_GFLOP / (FP16_PEAK_TFLOPS * 1000), 4),
    }


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    a, b = l2_normalize(reference), l2_normalize(candidate)
    n = min(len(a), 24)
    diff = max((abs(float(a[i] @ a[j]) - float(b[i] @ b[j])) for i, j in combinations(range(n), 2)), default=0.0)
    return {
        "min_cosine": round(float(np.sum(a * b, axis=1).min()), 8),
        "max_score_difference": diff,
        "finite": bool(np.isfinite(candidate).all()),
    }


def accuracy_inputs(limit: int | None) -> np.ndarray:
    """The sample photos and five near-duplicate edits of each (as the fp16 export checks)."""
    from vggsim.export.variants import _held_out_set
    from vggsim.images.preprocess import DEFAULT_SPEC

    return _held_out_set(sample_photos()[:limit], DEFAULT_SPEC)


def provider_request(setting: str) -> Any:
    return "cpu" if ARGS["dry"] else setting


def make_session(model: str, setting: str, dump: str | None = None) -> Any:
    import onnxruntime as ort

    request = provider_request(setting)
    if request in COMPARISONS:
        request = [COMPARISONS[request].provider]
    providers = resolve_providers(request, fixed_buffers=True)
    if not ARGS["dry"]:
        preload_cuda_libraries()
    options = session_options(4 if ARGS["dry"] else None)
    if dump:
        options.optimized_model_filepath = dump
    session = ort.InferenceSession(os.path.join(model, "model.onnx"), options, providers=providers)
    running = session.get_providers()[0]
    if not ARGS["dry"] and running != "CUDAExecutionProvider":
        raise RuntimeError(f"{setting}: CUDA did not start ({running} runs)")
    return session


def graph_ops(path: str) -> dict[str, Any]:
    """Node counts of a saved optimised graph, and the convolutions' element types."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "ops": dict(sorted(counts.items())),
        "cast": sum(v for k, v in counts.items() if k.endswith("Cast")),
        "transpose": sum(v for k, v in counts.items() if k.endswith("Transpose")),
        "memcpy": sum(v for k, v in counts.items() if "Memcpy" in k),
    }


def embedder_path(session: Any, batch: np.ndarray) -> np.ndarray:
    """What Embedder.run does today with the CUDA provider: pageable host batch, I/O binding."""
    binding = session.io_binding()
    binding.bind_cpu_input(session.get_inputs()[0].name, batch)
    binding.bind_output(session.get_outputs()[0].name)
    session.run_with_iobinding(binding)
    return np.asarray(binding.copy_outputs_to_cpu()[0])


def bench_cell(session: Any, batch: int, inputs: np.ndarray, reference: np.ndarray, graph: bool) -> dict[str, Any]:
    rounds, seconds = (1, 0.0) if ARGS["dry"] else (40, 0.8)
    runner = CudaRunner(session, batch)
    rows = np.arange(batch) % len(inputs)
    host = np.ascontiguousarray(inputs[rows])
    cell: dict[str, Any] = {}
    out = runner.run_host(host)  # the first run: cuDNN's search, and the CUDA graph's capture
    cell["accuracy"] = agreement(reference[rows], out)
    cell["gpu"] = figures(bounded(runner.run_device, rounds, seconds), batch)
    cell["host_pageable"] = figures(bounded(lambda: runner.run_host(host), rounds, seconds), batch)
    streams = [runner.pinned(np.ascontiguousarray(inputs[(rows + 7 * k) % len(inputs)])) for k in range(3)]
    cell["host_pinned"] = figures(bounded(lambda: runner.run_host(streams[0]), rounds, seconds), batch)
    # Overlapped: batches cycle through 3 pinned buffers, each of different images; every
    # output is checked against its own reference (a stale graph input or a race shows here).
    count = 2 if ARGS["dry"] else max(6, min(60, int(4096 / batch)))
    sequence = [streams[k % 3] for k in range(count)]
    if not ARGS["dry"]:
        runner.run_stream(sequence[:3])
    start = time.perf_counter()
    outputs = runner.run_stream(sequence)
    elapsed = time.perf_counter() - start
    cell["host_overlap"] = {
        "images_per_s": round(batch * count / elapsed, 1),
        "ms_per_batch": round(elapsed / count * 1000, 3),
        "batches": count,
        "fraction_of_fp16_peak": round(batch * count / elapsed * VGG16_GFLOP / (FP16_PEAK_TFLOPS * 1000), 4),
        "min_cosine": min(
            agreement(reference[(rows + 7 * (k % 3)) % len(inputs)], o)["min_cosine"] for k, o in enumerate(outputs)
        ),
    }
    if not graph:  # the library's own path (a CUDA graph needs fixed buffers, which Embedder.run does not bind)
        cell["embedder_run"] = figures(bounded(lambda: embedder_path(session, host), rounds, seconds), batch)
    cell["host_over_gpu"] = round(cell["host_overlap"]["images_per_s"] / cell["gpu"]["images_per_s"], 3)
    return cell  # the pinned buffers (a few hundred MB at most) are freed with the process


def run_settings(models: dict[str, str], report: dict[str, Any], work: Path) -> None:
    inputs = report["_inputs"]
    reference = report["_reference"]
    batches = (1, 2) if ARGS["dry"] else (1, 8, 64, 256)
    chosen = [s for s in SETTINGS if not ARGS["only"] or s[0] in ARGS["only"]]
    for label, key, setting in [chosen[i] for i in (1, 3) if i < len(chosen)] if ARGS["dry"] and not ARGS["only"] else chosen:
        if over_budget(0.0 if ARGS["no_pipeline"] else PIPELINE_RESERVE_S):
            report["settings"].append({"label": label, "skipped": "time budget spent"})
            continue
        named = CUDA_SETTINGS.get(setting) or COMPARISONS[setting]
        graph = named.cuda_graph
        entry: dict[str, Any] = {"label": label, "model": key, "setting": setting, "options": named.options, "batch": {}}
        report["settings"].append(entry)
        try:
            dump = str(work / f"opt-{key}-{setting}.onnx")
            session = make_session(models[key], setting, dump)
            try:
                entry["optimized_graph"] = graph_ops(dump)
            except Exception as exc:  # a graph in onnxruntime's internal NHWC domain may not reload
                entry["optimized_graph"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            for batch in batches:
                if over_budget(0.0 if ARGS["no_pipeline"] else PIPELINE_RESERVE_S):
                    entry["batch"][str(batch)] = {"skipped": "time budget spent"}
                    continue
                # A session per batch shape: one captured graph per session, and on the first
                # H200 run an fp16 NHWC session reused across shapes ran batch 8 and 64 at a
                # seventh of the speed a fresh session gives (an early H200 run).
                if batch != batches[0]:
                    session = make_session(models[key], setting)
                start = time.perf_counter()
                entry["batch"][str(batch)] = cell = bench_cell(session, batch, inputs, reference, graph)
                cell["seconds"] = round(time.perf_counter() - start, 2)
                log(
                    f"{label:36s} b{batch:<3d} gpu {cell['gpu']['images_per_s']:>9.1f}/s p50 {cell['gpu']['p50_ms']:.3f} ms"
                    f" | overlap {cell['host_overlap']['images_per_s']:>9.1f}/s | pinned {cell['host_pinned']['images_per_s']:>9.1f}/s"
                    f" | pageable {cell['host_pageable']['images_per_s']:>9.1f}/s | cos {cell['accuracy']['min_cosine']:.6f}"
                )
            del session
            report["_save"]()
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            log(f"{label}: FAILED {entry['error']}")
            traceback.print_exc()


# ---- decode on the CPU cores feeding the GPU -------------------------------------------

_SHM: dict[str, Any] = {}


def _attach(name: str, shape: tuple[int, ...]) -> None:
    from multiprocessing import shared_memory

    memory = shared_memory.SharedMemory(name=name)
    _SHM.update(memory=memory, view=np.ndarray(shape, np.float32, memory.buf))


def _decode(task: tuple[int, int, list[str], bool]) -> int:
    from vggsim.images.preprocess import PreprocessSpec, load_image

    slot, row, paths, draft = task
    spec = PreprocessSpec(jpeg_draft=draft)
    for offset, path in enumerate(paths):
        _SHM["view"][slot, row + offset] = load_image(path, spec)
    return len(paths)


def make_jpegs(folder: Path, size: tuple[int, int], count: int) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, photo in enumerate(sample_photos()[:count]):
        image = Image.open(photo).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        path = folder / f"{index}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


class DecodeRing:
    """``workers`` processes decoding JPEGs into a shared ring of batch slots (page-locked
    when a CUDA runner is given, so the GPU copies straight from where the workers wrote)."""

    slots = 4

    def __init__(self, workers: int, batch: int, runner: CudaRunner) -> None:
        from multiprocessing import shared_memory

        self.workers, self.batch, self.runner = workers, batch, runner
        self.shape = (self.slots, batch, 224, 224, 3)
        self.memory = shared_memory.SharedMemory(create=True, size=int(np.prod(self.shape)) * 4)
        self.view = np.ndarray(self.shape, np.float32, self.memory.buf)
        self.pinned = runner.copies.pin(self.view)
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds a CUDA context
        self.pool = context.Pool(workers, initializer=_attach, initargs=(self.memory.name, self.shape))
        self.pool.map(_decode, [(0, 0, [], False)] * workers)  # every worker started

    def run(self, paths: list[str], draft: bool, batches: int, gpu: bool, seconds: float) -> dict[str, Any]:
        batch, chunk = self.batch, max(1, self.batch // (2 * self.workers))
        pending: deque[tuple[int, list[Any]]] = deque()
        images = submitted = 0
        start = time.perf_counter()
        while True:
            if submitted < batches and len(pending) < self.slots - 1 and time.perf_counter() - start < seconds:
                slot = submitted % self.slots
                tasks = [
                    (
                        slot,
                        row,
                        [paths[(submitted * batch + row + k) % len(paths)] for k in range(min(chunk, batch - row))],
                        draft,
                    )
                    for row in range(0, batch, chunk)
                ]
                pending.append((slot, [self.pool.apply_async(_decode, (task,)) for task in tasks]))
                submitted += 1
                continue
            if not pending:
                break
            slot, jobs = pending.popleft()
            images += sum(job.get(timeout=120) for job in jobs)
            if gpu:
                self.runner.run_host(self.view[slot])
        elapsed = time.perf_counter() - start
        return {
            "workers": self.workers,
            "draft": draft,
            "batch": batch,
            "with_gpu": gpu,
            "pinned_slots": self.pinned,
            "images": images,
            "seconds": round(elapsed, 3),
            "images_per_s": round(images / elapsed, 1),
        }

    def close(self) -> None:
        self.pool.terminate()
        if self.pinned:
            import ctypes

            self.runner.copies.cudart.cudaHostUnregister(ctypes.c_void_p(self.view.ctypes.data))
        del self.view
        self.memory.close()
        self.memory.unlink()


def run_pipeline(models: dict[str, str], report: dict[str, Any], work: Path) -> None:
    if over_budget():
        report["pipeline"] = {"skipped": "time budget spent"}
        return
    cores = usable_cpus()
    batch, batches, seconds = (4, 2, 5.0) if ARGS["dry"] else (64, 24, 3.0)
    pipeline: dict[str, Any] = {"cores": cores, "batch": batch, "runs": []}
    report["pipeline"] = pipeline
    rings: list[DecodeRing] = []
    try:
        session = make_session(models["fp16"], "cuda-graph")
        runner = CudaRunner(session, batch)
        host = np.ascontiguousarray(np.resize(report["_inputs"], runner.shape))
        runner.run_host(host)
        pipeline["model_only_images_per_s"] = figures(bounded(runner.run_device, 20, 0.5), batch)["images_per_s"]
        pinned = runner.pinned(host)
        pipeline["model_from_pinned_host_images_per_s"] = figures(bounded(lambda: runner.run_host(pinned), 20, 0.5), batch)[
            "images_per_s"
        ]
        sets = {"640x480": (640, 480), "2048x1536": (2048, 1536)}
        jpegs = {name: make_jpegs(work / name, size, 11) for name, size in sets.items()}
        for name, paths in jpegs.items():
            pipeline[f"jpeg_bytes_{name}"] = int(np.mean([os.path.getsize(p) for p in paths]))
        for workers in (1, 2) if ARGS["dry"] else (1, cores):
            if over_budget():
                break
            rings.append(ring := DecodeRing(workers, batch, runner))
            plan = [(False, False)] if workers == 1 else [(False, False), (True, False), (False, True), (True, True)]
            for name, paths in jpegs.items():
                for draft, gpu in plan:
                    if over_budget():
                        break
                    run = ring.run(paths, draft, 2 if workers == 1 else batches, gpu, seconds)
                    run["jpegs"] = name
                    pipeline["runs"].append(run)
                    log(
                        f"pipeline {name} workers {workers:2d} draft {draft!s:5s} gpu {gpu!s:5s}: {run['images_per_s']:8.1f} images/s"
                    )
            ring.close()
            rings.pop()
        # What draft mode changes: embeddings of the large JPEGs, full decode against draft.
        from vggsim.images.preprocess import PreprocessSpec, load_image

        paths = jpegs["2048x1536"]
        full = np.stack([load_image(p) for p in paths])
        drafted = np.stack([load_image(p, PreprocessSpec(jpeg_draft=True)) for p in paths])

        def embed(x: np.ndarray) -> np.ndarray:
            parts = [np.resize(x[i : i + batch], runner.shape).astype(np.float32) for i in range(0, len(x), batch)]
            return np.concatenate([runner.run_host(np.ascontiguousarray(part)) for part in parts])[: len(x)]

        pipeline["draft_vs_full_decode"] = agreement(embed(full), embed(drafted))
    except Exception as exc:
        pipeline["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        log(f"pipeline FAILED: {pipeline['error']}")
        traceback.print_exc()
    finally:
        for ring in rings:
            ring.close()


def torch_fp16_peak() -> dict[str, Any]:
    """Dense fp16 matrix-product rate through PyTorch (cuBLAS), in a separate process."""
    code = (
        "import torch, time\n"
        "a = torch.randn(8192, 8192, device='cuda', dtype=torch.float16); b = torch.randn_like(a)\n"
        "for _ in range(3): a @ b\n"
        "torch.cuda.synchronize(); best = 1e9\n"
        "for _ in range(5):\n"
        "    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)\n"
        "    s.record(); [a @ b for _ in range(10)]; e.record(); torch.cuda.synchronize(); best = min(best, s.elapsed_time(e) / 10)\n"
        "print(2 * 8192 ** 3 / (best / 1000) / 1e12)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
        return {"tflops": round(float(done.stdout.strip().splitlines()[-1]), 1), "how": "torch fp16 8192^3 matmul, best of 5x10"}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def main(fp32: str, fp16: str, fp16_unpadded: str, out: Path) -> None:
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_benchmark-"))
    models = {"fp32": fp32, "fp16": fp16, "fp16old": fp16_unpadded}
    report: dict[str, Any] = {
        "gpu": None if ARGS["dry"] else gpu_name(),
        "dry_run": ARGS["dry"],
        "onnxruntime": ort.__version__,
        "cores": usable_cpus(),
        "vgg16_gflop_per_image": round(VGG16_GFLOP, 2),
        "fp16_peak_tflops_datasheet": FP16_PEAK_TFLOPS,
        "settings": [],
    }
    for key, folder in models.items():
        try:
            report.setdefault("models", {})[key] = json.loads(Path(folder, "manifest.json").read_text()).get("quantization")
        except OSError:
            pass
    if not ARGS["dry"]:
        report["fp16_peak_measured"] = torch_fp16_peak()
        log(f"fp16 matmul peak: {report['fp16_peak_measured']}")
    inputs = accuracy_inputs(2 if ARGS["dry"] else None)
    cpu = make_session(fp32, "cpu") if ARGS["dry"] else _cpu_session(fp32)
    reference = np.concatenate(
        [cpu.run(None, {cpu.get_inputs()[0].name: inputs[i : i + 8]})[0] for i in range(0, len(inputs), 8)]
    )
    report.update(_inputs=inputs, _reference=reference, accuracy_images=len(inputs))
    log(f"CPU fp32 reference: {len(inputs)} images")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # `timeout` still gets the JSON written
    report["_save"] = lambda: save(report, out)
    try:
        run_settings(models, report, work)
        if not ARGS["no_pipeline"]:
            run_pipeline(models, report, work)
    finally:
        save(report, out)
    for line in summary(report):
        print(line)


def save(report: dict[str, Any], out: Path) -> None:
    report["seconds"] = round(time.perf_counter() - START, 1)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (out / "gpu_benchmark.json").write_text(json.dumps(public, indent=2) + "\n")


def _cpu_session(model: str) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(os.path.join(model, "model.onnx"), session_options(), providers=["CPUExecutionProvider"])


def summary(report: dict[str, Any], keras: dict[str, Any] | None = None) -> list[str]:
    """The markdown table the README takes: images/s from GPU memory and from host memory
    (overlapped), p50/p99 from GPU memory, fraction of fp16 peak, min cosine."""
    lines = [
        f"GPU: {report.get('gpu')}; onnxruntime {report['onnxruntime']}; {report.get('accuracy_images')} images against exact fp32 on the CPU",
        "",
        "| setting | batch | GPU memory img/s (p50 / p99 ms) | host, overlapped img/s | host pinned / pageable img/s | host/GPU | fp16 peak | min cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["settings"]:
        if "error" in entry or "skipped" in entry:
            lines.append(f"| {entry['label']} | | {entry.get('error') or entry.get('skipped')} | | | | | |")
            continue
        for batch, cell in entry["batch"].items():
            if "gpu" not in cell:
                continue
            g, o = cell["gpu"], cell["host_overlap"]
            lines.append(
                f"| {entry['label']} | {batch} | {g['images_per_s']:,.0f} ({g['p50_ms']:.3f} / {g['p99_ms']:.3f}) | "
                f"{o['images_per_s']:,.0f} | {cell['host_pinned']['images_per_s']:,.0f} / {cell['host_pageable']['images_per_s']:,.0f} | "
                f"{cell['host_over_gpu']:.2f} | {g['fraction_of_fp16_peak']:.1%} | {min(cell['accuracy']['min_cosine'], o['min_cosine']):.6f} |"
            )
    if keras:
        for mode in ("predict", "jit_host", "jit_gpu"):
            for batch, cell in keras.get(mode, {}).items():
                lines.append(
                    f"| Keras {keras.get('backend')} {mode} | {batch} | {cell['images_per_s']:,.0f} ({cell['p50_ms']:.3f} / {cell['p99_ms']:.3f}) "
                    f"| | | | {cell['fraction_of_fp16_peak']:.1%} | {keras.get('accuracy', {}).get('min_cosine', '')} |"
                )
    lines.append("")
    lines.append(
        "Optimised graphs (CUDA): "
        + "; ".join(
            f"{e['label']}: Cast {e['optimized_graph'].get('cast')}, Transpose {e['optimized_graph'].get('transpose')}, Memcpy {e['optimized_graph'].get('memcpy')}"
            for e in report["settings"]
            if "optimized_graph" in e
        )
    )
    pipeline = report.get("pipeline", {})
    if pipeline.get("runs"):
        lines.append(
            f"Pipeline ({pipeline['cores']} cores, batch {pipeline['batch']}, fp16 cuda-graph): model only {pipeline.get('model_only_images_per_s')} img/s, "
            f"from pinned host {pipeline.get('model_from_pinned_host_images_per_s')} img/s"
        )
        for run in pipeline["runs"]:
            lines.append(
                f"  {run['jpegs']} JPEG, {run['workers']} workers, draft {run['draft']}, "
                f"{'decode + GPU' if run['with_gpu'] else 'decode only'}: {run['images_per_s']} img/s"
            )
        lines.append(f"  draft against full decode: {pipeline.get('draft_vs_full_decode')}")
    return lines


def keras_main(out: Path) -> None:
    """Keras 3 (JAX on the GPU) with the test model's weights: model.predict from host memory
    (the recipe), and the same model jit-compiled (stateless_call) from host and GPU memory."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    from keras.applications.vgg16 import preprocess_input

    from vggsim.export.keras_model import random_vgg16

    model, _ = random_vgg16(keras, 0)
    on_jax = keras.backend.backend() == "jax"
    result: dict[str, Any] = {"backend": f"keras {keras.__version__} ({keras.backend.backend()})"}
    if on_jax:
        import jax

        result.update(backend=result["backend"] + f", jax {jax.__version__}", devices=[str(d) for d in jax.devices()])
    inputs = accuracy_inputs(2 if ARGS["dry"] else None)
    reference_file = out / "reference.npy"
    if reference_file.exists():
        reference = np.load(reference_file)
        result["accuracy"] = agreement(
            reference, np.asarray(model.predict(np.ascontiguousarray(preprocess_input(inputs.copy())), verbose=0))
        )
        log(f"keras accuracy: {result['accuracy']}")
    rounds, seconds = (2, 0.0) if ARGS["dry"] else (30, 0.8)
    for batch in (1, 2) if ARGS["dry"] else (1, 8, 64, 256):
        if over_budget():
            break
        host = np.ascontiguousarray(preprocess_input(np.resize(inputs, (batch, 224, 224, 3)).copy()))
        result.setdefault("predict", {})[str(batch)] = figures(
            bounded(lambda: model.predict(host, verbose=0), rounds, seconds), batch
        )  # noqa: B023
        line = f"keras b{batch}: predict {result['predict'][str(batch)]['images_per_s']}/s"
        if on_jax:
            try:  # the same model compiled once by XLA, without predict's per-call overhead
                trainable = [v.value for v in model.trainable_variables]
                fixed = [v.value for v in model.non_trainable_variables]
                forward = jax.jit(lambda t, f, x: model.stateless_call(t, f, x, training=False)[0])
                device = jax.device_put(host)
                result.setdefault("jit_host", {})[str(batch)] = figures(
                    bounded(lambda: forward(trainable, fixed, host).block_until_ready(), rounds, seconds), batch
                )  # noqa: B023
                result.setdefault("jit_gpu", {})[str(batch)] = figures(
                    bounded(lambda: forward(trainable, fixed, device).block_until_ready(), rounds, seconds), batch
                )  # noqa: B023
                line += f", jit host {result['jit_host'][str(batch)]['images_per_s']}/s, jit gpu {result['jit_gpu'][str(batch)]['images_per_s']}/s"
            except Exception as exc:
                result["jit_error"] = f"{type(exc).__name__}: {exc}"[:500]
                on_jax = False
        log(line)
    (out / "keras.json").write_text(json.dumps(result, indent=2) + "\n")


def save_reference(fp32: str, out: Path) -> None:
    session = _cpu_session(fp32)
    inputs = accuracy_inputs(2 if ARGS["dry"] else None)
    np.save(
        out / "reference.npy",
        np.concatenate([session.run(None, {"image": inputs[i : i + 8]})[0] for i in range(0, len(inputs), 8)]),
    )


def print_summary(out: Path) -> None:
    keras = json.loads((out / "keras.json").read_text()) if (out / "keras.json").exists() else None
    lines = summary(json.loads((out / "gpu_benchmark.json").read_text()), keras) if (out / "gpu_benchmark.json").exists() else []
    if (out / "embedder.json").exists():
        from embedder_path import summary as embedder_summary  # scripts/device/, beside this script

        lines += embedder_summary(json.loads((out / "embedder.json").read_text()))
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    ARGS["dry"] = "--dry-run" in sys.argv
    for flag in sys.argv[1:]:
        if flag.startswith("--budget-s="):
            ARGS["budget"] = float(flag.split("=", 1)[1])
        if flag.startswith("--only="):  # labels, separated by ';'
            ARGS["only"] = flag.split("=", 1)[1].split(";")
    ARGS["no_pipeline"] = "--no-pipeline" in sys.argv
    if argv[:1] == ["main"] and len(argv) == 5:
        main(argv[1], argv[2], argv[3], Path(argv[4]))
    elif argv[:1] == ["keras"] and len(argv) == 2:
        keras_main(Path(argv[1]))
    elif argv[:1] == ["reference"] and len(argv) == 3:
        save_reference(argv[1], Path(argv[2]))
    elif argv[:1] == ["summary"] and len(argv) == 2:
        print_summary(Path(argv[1]))
    else:
        sys.exit(__doc__)
