"""``vggsim bench``: latency, throughput and efficiency measured on the machine it runs on.

Every figure comes from this run: per-stage warm latencies (decode, resize, inference),
batch-size and thread sweeps, end-to-end throughput, cold start in a fresh process, and
the achieved GFLOP/s against a float32 matrix-multiply peak measured in the same run.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from vggsim.errors import RandomWeightsWarning
from vggsim.model.embedder import Embedder
from vggsim.model.timing import timed, timed_within
from vggsim.images.preprocess import prepare
from vggsim.model.session import usable_cpus

# VGG16 without its top at 224x224: 13 3x3 convolutions, (input channels, output channels, side).
VGG16_CONVS = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56),
                (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14),
                (512, 512, 14)]
VGG16_GFLOP = sum(2 * 9 * cin * cout * side * side for cin, cout, side in VGG16_CONVS) / 1e9


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds."""
    values = np.asarray(seconds) * 1000
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}


def matmul_peak_gflops(size: int = 2048, rounds: int = 5, threads: int | None = None, providers: str = "cpu") -> float:
    """Best float32 GFLOP/s of a square matrix multiply in onnxruntime, on the provider and
    with the thread and provider settings the model's sessions use (on the CPU MLAS, the
    engine that runs the model's convolutions; on CUDA cuBLAS, inputs and output kept on the GPU).

    NumPy's BLAS is not used: its speed depends on the BLAS build and on environment settings
    (OPENBLAS_CORETYPE) that have nothing to do with onnxruntime.
    """
    import onnxruntime as ort

    from vggsim.model.session import create_session

    session, provider = create_session(Path(__file__).with_name("bench_matmul.onnx"), providers, threads)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), np.float32) for _ in range(2))
    if provider == "CUDAExecutionProvider":
        binding = session.io_binding()
        for name, value in (("a", a), ("b", b)):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output("c", "cuda")
        run: Callable[[], Any] = lambda: session.run_with_iobinding(binding)
    else:
        run = lambda: session.run(None, {"a": a, "b": b})
    return 2 * size**3 / min(timed(run, rounds)) / 1e9


def matmul_peak(threads: int | None = None, providers: str = "cpu") -> dict[str, Any]:
    """The best of several square sizes: the reference for "fraction of peak"."""
    sizes = (1024, 2048, 3072) if providers == "cpu" else (2048, 4096, 8192)
    by_size = {str(size): round(matmul_peak_gflops(size, threads=threads, providers=providers), 1) for size in sizes}
    return {"gflops": max(by_size.values()), "by_size": by_size, "providers": providers}


def cold_start(model: str, photo: str, rounds: int = 3, providers: str = "cpu",
               profile: str = "default") -> dict[str, float]:
    """New process to first embedding, median of ``rounds`` fresh interpreters."""
    code = ("import time; t = time.perf_counter(); import warnings; warnings.simplefilter('ignore'); import vggsim; "
            f"vggsim.Embedder({model!r}, providers={providers!r}, profile={profile!r}).embed([{photo!r}]); "
            "print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  timeout=600).stdout.strip().splitlines()[-1]) for _ in range(rounds)]
    return {"seconds": round(statistics.median(times), 3)}


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, as nvidia-smi reports it, or None."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


# The instruction sets that decide which onnxruntime kernels run (int8 speed hangs on VNNI).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd",
              "asimddp")


def hardware() -> dict[str, Any]:
    """The machine a report's figures come from: CPU model and SIMD flags, CPUs, GPU."""
    model, flags = platform.processor(), list[str]()
    try:
        with open("/proc/cpuinfo") as fp:
            for line in fp:
                if line.startswith("model name") and not flags:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    return {"cpu": model, "simd": [f for f in SIMD_FLAGS if f in flags], "os_cpu_count": os.cpu_count(),
            "usable_cpus": usable_cpus(), "machine": platform.machine(), "python": platform.python_version(),
            "gpu": gpu_name()}


def bench_model(model: str, photos: Sequence[Path], batch_sizes: Sequence[int], threads: Sequence[int],
                rounds: int, providers: str = "auto", profile: str = "default") -> dict[str, Any]:
    """Every figure for one model folder."""
    embedder = Embedder(model, providers=providers, profile=profile)
    data = photos[0].read_bytes()
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    stages = {
        "decode": timed(lambda: Image.open(io.BytesIO(data)).load(), rounds),
        "resize": timed(lambda: prepare(decoded, embedder.spec), rounds),
        "inference": timed(lambda: embedder.run(embedder.load(photos[0])[None]), rounds),
    }
    arrays = np.stack([embedder.load(p) for p in photos])
    batches = {}
    for size in batch_sizes:
        batch = np.resize(arrays, (size, *arrays.shape[1:]))
        median = statistics.median(timed_within(lambda: embedder.run(batch), rounds))  # noqa: B023 (called now)
        batches[str(size)] = {"ms": round(median * 1000, 2), "images_per_s": round(size / median, 2),
                              "gflops": round(size * VGG16_GFLOP / median, 1)}
    sweep = {}
    for count in threads:
        with warnings.catch_warnings():  # the first Embedder above said it: once per model, not once per session
            warnings.simplefilter("ignore", RandomWeightsWarning)
            single = Embedder(model, providers=providers, threads=count, profile=profile)
        sweep[str(count)] = round(statistics.median(timed(lambda: single.run(arrays[:1]), max(3, rounds // 2))) * 1000, 2)  # noqa: B023
    from vggsim.ingest.pipeline import iter_embeddings

    files = [photos[i % len(photos)] for i in range(max(16, 2 * max(batch_sizes)))]
    start = time.perf_counter()
    done = sum(r.ok for r in iter_embeddings(embedder, files, batch_size=8))
    end_to_end = done / (time.perf_counter() - start)
    return {
        "model": model, "precision": embedder.manifest.precision, "provider": embedder.provider,
        "profile": embedder.profile, "random_weights": bool(embedder.manifest.random_weights),
        "model_sha256": embedder.model_sha256, "stages_ms": {k: percentiles(v) for k, v in stages.items()},
        "batch": batches, "threads_batch1_ms": sweep,
        "end_to_end_batch8_images_per_s": round(end_to_end, 2),
        "cold_start": cold_start(model, str(photos[0]), providers=providers, profile=profile),
    }


def run_bench(models: Sequence[str], photos: Sequence[Path], batch_sizes: Sequence[int], threads: Sequence[int],
              rounds: int, keras: bool, providers: str = "auto", profile: str = "default") -> dict[str, Any]:
    """The whole report, as ``vggsim bench --json`` writes it."""
    from importlib import metadata

    import onnxruntime

    versions = {"onnxruntime (imported)": onnxruntime.__version__}
    for name in ("vggsim", "onnxruntime", "onnxruntime-gpu", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    report: dict[str, Any] = {"hardware": hardware(), "versions": versions, "vgg16_gflop_per_image": round(VGG16_GFLOP, 2)}
    report["models"] = [bench_model(m, photos, batch_sizes, threads, rounds, providers, profile) for m in models]
    report["random_weights"] = any(entry["random_weights"] for entry in report["models"])
    # The peak is measured where the models ran: cuBLAS for a CUDA run, MLAS on the CPU.
    on_gpu = report["models"][0]["provider"] == "CUDAExecutionProvider"
    report["matmul_peak"] = matmul_peak(providers="cuda" if on_gpu else "cpu")
    report["matmul_peak_gflops"] = report["matmul_peak"]["gflops"]
    for entry in report["models"]:
        for figures in entry["batch"].values():
            figures["fraction_of_matmul_peak"] = round(figures["gflops"] / report["matmul_peak_gflops"], 3)
    if keras:  # Keras (and TensorFlow, if that is its backend) is imported only here
        from vggsim.export.keras_bench import keras_figures

        report["keras"] = keras_figures(batch_sizes, rounds, photos[0])
    return report


def _gpu_used(report: dict[str, Any]) -> str | None:
    """The GPU's name when a model ran on CUDA, else None."""
    on_gpu = any(m["provider"] == "CUDAExecutionProvider" for m in report["models"])
    return report["hardware"].get("gpu") if on_gpu else None


def _machine(report: dict[str, Any]) -> str:
    gpu, hw = _gpu_used(report), report["hardware"]
    cpu = f"{hw['cpu']} [{' '.join(hw.get('simd') or []) or 'SIMD unknown'}]"
    return f"{gpu} + {cpu}" if gpu else cpu


def write_plot(report: dict[str, Any], out: str) -> None:
    """Latency per image against batch size, one line per model (and Keras)."""
    from vggsim.errors import require

    require("matplotlib", "plot", "The bench plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    lines = [(f"{Path(m['model']).name} ({m['precision']}, {m['provider'].replace('ExecutionProvider', '')})", m["batch"])
             for m in report["models"]]
    if "keras" in report:
        lines.append((f"Keras model.predict, {report['keras']['backend']}", report["keras"]["batch"]))
    for label, batches in lines:
        sizes = sorted(int(s) for s in batches)
        axis.plot(sizes, [batches[str(s)]["ms"] / s for s in sizes], marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("ms per image")
    axis.set_title(f"vggsim bench on {(_gpu_used(report) or report['hardware']['cpu'])[:56]}")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The human-readable table `vggsim bench` prints."""
    lines = [f"{_machine(report)} ({report['hardware']['usable_cpus']} usable CPUs); "
             f"matmul peak {report['matmul_peak_gflops']} GFLOP/s; VGG16 {report['vgg16_gflop_per_image']} GFLOP/image"]
    for m in report["models"]:
        lines.append(f"{m['model']} [{m['precision']}, {m['provider']}]: cold start {m['cold_start']['seconds']} s, "
                     f"end to end {m['end_to_end_batch8_images_per_s']} img/s")
        lines.append("  stages ms p50/p95/p99: " + ", ".join(
            f"{k} {v['p50']}/{v['p95']}/{v['p99']}" for k, v in m["stages_ms"].items()))
        unit = "GFLOP/s" if m["precision"] == "fp32" else "fp32-equivalent GFLOP/s"
        for size, b in m["batch"].items():
            lines.append(f"  batch {size:>3}: {b['ms']:9.1f} ms  {b['images_per_s']:7.2f} img/s  "
                         f"{b['gflops']:7.1f} {unit} ({b['fraction_of_matmul_peak']:.0%} of matmul peak)")
        lines.append("  threads (batch 1 ms): " + ", ".join(f"{t}: {ms}" for t, ms in m["threads_batch1_ms"].items()))
    if "keras" in report:
        k = report["keras"]
        lines.append(f"keras model.predict [{k['backend']}]: cold start {k['cold_start']['seconds']} s; " + ", ".join(
            f"batch {s}: {b['ms']} ms" for s, b in k["batch"].items()))
    return lines


def report_json(report: dict[str, Any], out: str) -> None:
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
