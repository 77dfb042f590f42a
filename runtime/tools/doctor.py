"""What `vggsim doctor` reports: enough to answer "why is it slow / on the CPU / failing"."""

from __future__ import annotations

import os
import platform
import shutil
from importlib import metadata as importlib_metadata
from typing import Any

from vggsim.errors import VggsimError
from vggsim.model.manifest import Manifest
from vggsim.model.openvino import settings_report
from vggsim.model.session import available_providers, resolve_providers, usable_cpus

PACKAGES = ("onnxruntime", "onnxruntime-gpu", "numpy", "pillow", "tensorflow", "tensorflow-cpu", "tf2onnx",
            "onnx", "pyarrow", "tqdm", "faiss-cpu", "matplotlib", "openvino")


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _dedup_block(manifest: Manifest) -> dict[str, Any] | None:
    """The manifest's calibrated dedup threshold and how it was measured, JSON-ready."""
    return None if manifest.dedup is None else manifest.dedup.to_dict()


def doctor_report(model: str | None, profile: str = "default") -> dict[str, Any]:
    """Versions, providers, CPUs, GPU, and the model found (with its dedup calibration)."""
    from vggsim.model.embedder import Embedder

    report: dict[str, Any] = {
        "vggsim": _version("vggsim"), "python": platform.python_version(), "platform": platform.platform(),
        "packages": {n: _version(n) for n in PACKAGES},
        "providers_available": available_providers(),
        "providers_auto": [p if isinstance(p, str) else p[0] for p in resolve_providers("auto")],
        "cpus": {"os_cpu_count": os.cpu_count(), "usable": usable_cpus()},
        "gpu": {"nvidia_smi": shutil.which("nvidia-smi"), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")},
    }
    try:
        import warnings

        from vggsim.errors import RandomWeightsWarning

        with warnings.catch_warnings():  # the report says it in its own field
            warnings.simplefilter("ignore", RandomWeightsWarning)
            embedder = Embedder(model, providers="auto", profile=profile)
        manifest = embedder.manifest
        report["model"] = {
            "path": str(manifest.model_path), "sha256": manifest.model_sha256, "sha256_ok": True,
            "provider_running": embedder.provider, "profile": embedder.profile, "normalization": manifest.normalization,
            "precision": manifest.precision, "weights": manifest.weights.source,
            "random_weights": manifest.random_weights, "opset": manifest.opset,
            "preprocess": manifest.preprocess.to_dict(),
            "parity_min_cosine": None if manifest.parity is None else manifest.parity.min_cosine,
            "dedup": _dedup_block(manifest),
        }
    except VggsimError as exc:
        report["model"] = {"error": str(exc)}
    report["cpu_settings"] = settings_report(report["model"].get("precision"))
    return report


def dedup_lines(block: dict[str, Any] | None) -> list[str]:
    """The dedup calibration in words, as `vggsim doctor` prints it."""
    if not block or block.get("threshold") is None:
        return ["dedup: no calibrated threshold in this model's manifest (pass --threshold T to vggsim dedup)"]
    lines = [f"dedup threshold: {block['threshold']} (the default of `vggsim dedup` with this model)"]
    how = []
    if block.get("photos") is not None:
        how.append(f"{block['photos']} sample photos against edits of themselves")
    if block.get("near_duplicate_min") is not None:
        how.append(f"lowest near-duplicate score {float(block['near_duplicate_min']):.4f}")
    if block.get("distinct_max") is not None:
        how.append(f"highest distinct-pair score {float(block['distinct_max']):.4f}")
    if block.get("separable") is not None:
        how.append("separable" if block["separable"] else "NOT separable on these photos (expect some errors)")
    if how:
        lines.append("  calibrated on " + "; ".join(how))
    for edit, score in (block.get("near_duplicate_min_by_edit") or {}).items():
        lines.append(f"  {edit:16} lowest {float(score):.4f}")
    return lines
