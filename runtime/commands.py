"""Handlers of ``vggsim export``, ``compare`` and ``doctor``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from .decode import DEFAULT_MAX_PIXELS
from .embedder import Embedder
from .errors import VggsimError
from .manifest import read_manifest
from .preprocess import PreprocessSpec
from .session import available_providers, resolve_providers, usable_cpus


def _log(message: str) -> None:
    print(f"vggsim: {message}", file=sys.stderr)


def embedder_from_args(args: argparse.Namespace) -> Embedder:
    """An Embedder configured from the shared --model/--providers/--threads/--strict flags."""
    providers: Any = args.providers
    if "," in providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    spec = None
    if getattr(args, "exif_transpose", False):
        spec = dataclasses.replace(read_manifest(args.model, verify=False).preprocess, exif_transpose=True)
    return Embedder(args.model, providers=providers, threads=args.threads, strict=args.strict, spec=spec,
                    max_pixels=getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS,
                    cache_optimized=getattr(args, "cache_optimized", False))


def _photos_in(folder: str | None) -> list[Path] | None:
    if not folder:
        return None
    root = Path(folder)
    if not root.is_dir():
        raise VggsimError(f"--photos {folder}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model
    from .export.convert import DEFAULT_OPSET

    out = Path(args.out or ("models/vgg16" if args.precision == "fp32" else f"models/vgg16-{args.precision}"))
    spec = PreprocessSpec(exif_transpose=args.exif_transpose, jpeg_draft=args.jpeg_draft)
    options = dict(weights=args.weights, seed=args.seed, normalization=args.normalization,
                   opset=args.opset or DEFAULT_OPSET, verify=not args.no_verify,
                   photos=_photos_in(args.photos), spec=spec, log=_log)
    if args.precision == "fp32":
        export_model(out=out, **options)
    else:
        import tempfile

        from .export.variants import export_variant

        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=out.parent) as fp32_dir:
            export_model(out=fp32_dir, **options)
            export_variant(Path(fp32_dir), out, args.precision, _photos_in(args.calibration), log=_log)
        _log(f"wrote the {args.precision} model to {out}")
    if args.weights == "random":
        _log("warning: random weights: scores from this model are not meaningful")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    embedder = embedder_from_args(args)
    score = embedder.similarity(args.a, args.b)
    if args.plot:
        from .plot import contact_sheet

        contact_sheet([[(args.a, Path(args.a).name), (args.b, Path(args.b).name)]], args.plot,
                      title=f"cosine similarity {score:.4f}  ({embedder.provider})")
    if args.json:
        print(json.dumps({"score": score, "a": args.a, "b": args.b, "provider": embedder.provider,
                          "model_sha256": embedder.model_sha256}))
    else:
        print(f"{score:.6f}")
    return 0


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def doctor_report(model: str | None) -> dict[str, Any]:
    """What `vggsim doctor` prints: enough to answer "why is it slow / on the CPU / failing"."""
    report: dict[str, Any] = {
        "vggsim": _version("vggsim"), "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {n: _version(n) for n in ("onnxruntime", "onnxruntime-gpu", "numpy", "pillow",
                                              "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx",
                                              "pyarrow", "tqdm", "faiss-cpu")},
        "providers_available": available_providers(),
        "providers_auto": [p if isinstance(p, str) else p[0] for p in resolve_providers("auto")],
        "cpus": {"os_cpu_count": os.cpu_count(), "usable": usable_cpus()},
        "gpu": {"nvidia_smi": shutil.which("nvidia-smi"),
                "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")},
    }
    try:
        embedder = Embedder(model, providers="auto")
        manifest = embedder.manifest
        report["model"] = {
            "path": str(manifest.model_path), "sha256": manifest.model_sha256, "sha256_ok": True,
            "provider_running": embedder.provider, "normalization": manifest.normalization,
            "precision": manifest.precision, "weights": manifest.data.get("weights", {}).get("source"),
            "opset": manifest.data.get("opset"), "preprocess": manifest.data.get("preprocess"),
            "parity_min_cosine": (manifest.data.get("parity") or {}).get("min_cosine"),
        }
    except VggsimError as exc:
        report["model"] = {"error": str(exc)}
    return report


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report(args.model)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"vggsim {report['vggsim']} on Python {report['python']} ({report['platform']})")
    for name, version in report["packages"].items():
        print(f"  {name:16} {version or '-'}")
    print(f"providers available: {', '.join(report['providers_available'])}")
    print(f"providers for auto:  {', '.join(report['providers_auto'])}")
    cpus = report["cpus"]
    print(f"CPUs: {cpus['usable']} usable of {cpus['os_cpu_count']}")
    gpu = report["gpu"]
    print(f"GPU: nvidia-smi {'found' if gpu['nvidia_smi'] else 'not found'}; "
          f"CUDA_VISIBLE_DEVICES={gpu['CUDA_VISIBLE_DEVICES']}")
    model = report["model"]
    if "error" in model:
        print(f"model: {model['error']}")
        return 1
    for key, value in model.items():
        print(f"model {key}: {value}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import report_json, run_bench, summary_lines, write_plot
    from .errors import require
    from .samples import sample_photos
    from .session import usable_cpus

    if args.plot:  # say so before minutes of measuring, not after
        require("matplotlib", "plot", "The bench plot")
    photos = _photos_in(args.images) or sample_photos()
    if not photos:
        raise VggsimError("bench needs images: pass --images DIR or install scikit-learn (it ships sample photos)")
    try:
        sizes = [int(v) for v in args.batch_sizes.split(",")]
        threads = [int(v) for v in args.threads.split(",")] if args.threads else sorted({1, usable_cpus()})
    except ValueError:
        raise VggsimError("--batch-sizes and --threads take comma-separated whole numbers") from None
    models = args.model or [os.environ.get("VGGSIM_MODEL", "models/vgg16")]
    report = run_bench(models, photos, sizes, threads, args.rounds, args.keras, args.providers)
    if args.json:
        report_json(report, args.json)
    if args.plot:
        write_plot(report, args.plot)
    print("\n".join(summary_lines(report)))
    return 0


__all__ = ["cmd_export", "cmd_compare", "cmd_doctor", "cmd_bench", "embedder_from_args"]
