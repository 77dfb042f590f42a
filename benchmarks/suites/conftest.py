"""Benchmark fixtures: one weights file, exported once, that Keras and vggsim both load.

Weights: $VGGSIM_BENCH_WEIGHTS (imagenet or a notop .h5 path) if set, else deterministic
random weights written to an .h5 file (speed does not depend on the weights' values).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# the suites call the benchmark commands beside this folder (index_scale, collection_workload, ...)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tensorflow")
    chosen = os.environ.get("VGGSIM_BENCH_WEIGHTS")
    if chosen == "imagenet":
        import keras

        from vggsim.export.keras_model import fetch_imagenet_weights

        return fetch_imagenet_weights(keras)
    if chosen:
        return Path(chosen)
    from vggsim.export.keras_model import build_model

    model, _ = build_model("random", seed=0)
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    model.save_weights(str(path))
    return path


def _export(root: Path, weights: Path, normalization: str) -> Path:
    from vggsim.export import export_model

    out = root / normalization
    export_model(out=out, weights=str(weights), normalization=normalization, verify=False)
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, weights_file: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-models")
    return {n: _export(root, weights_file, n) for n in ("caffe", "none")}


@pytest.fixture(scope="session")
def keras_model(weights_file: Path) -> Any:
    import keras

    model = keras.applications.VGG16(weights=str(weights_file), include_top=False, pooling="max",
                                     input_shape=(224, 224, 3))
    for layer in model.layers:
        layer.trainable = False
    return model


def machine_line() -> str:
    """The CPU these figures came from, with the SIMD flags that decide onnxruntime's kernels."""
    from vggsim.tools.bench import hardware

    found = hardware()
    return f"{found['cpu']}, {found['usable_cpus']} usable CPUs, SIMD: {' '.join(found['simd']) or 'unknown'}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("vggsim side-by-side results")
    terminalreporter.write_line(f"{'machine':48} {machine_line()}")
    for key, value in RESULTS.items():
        terminalreporter.write_line(f"{key:48} {value}")
