"""CUDA provider settings side by side, in one run: parity of each against the CPU on the
sample photos, and latency at batch 8 and 64 with the batch in host memory (what
``Embedder.run`` does) and already on the GPU (the convolutions alone). With Keras 3 and a
GPU backend installed, the Keras recipe with the same weights too.

    python scripts/device/cuda_options.py FP32_MODEL_DIR FP16_MODEL_DIR OUT.json
"""

from __future__ import annotations

import json
import statistics
import sys
from itertools import combinations
from typing import Any

import numpy as np
import onnxruntime as ort

from vggsim import Embedder, l2_normalize, sample_photos
from vggsim.model.timing import timed

ROUNDS = 20
VARIANTS = [  # (model, label, CUDA provider options beyond vggsim's search setting)
    ("fp32", "default (TF32 off)", {"use_tf32": "0"}),
    ("fp32", "TF32 on", {"use_tf32": "1"}),
    ("fp32", "NHWC", {"use_tf32": "0", "prefer_nhwc": "1"}),
    ("fp32", "TF32 on + NHWC", {"use_tf32": "1", "prefer_nhwc": "1"}),
    ("fp16", "default", {"use_tf32": "0"}),
    ("fp16", "NHWC", {"use_tf32": "0", "prefer_nhwc": "1"}),
]


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    a, b = l2_normalize(reference), l2_normalize(candidate)
    score_diff = max(abs(float(a[i] @ a[j]) - float(b[i] @ b[j])) for i, j in combinations(range(len(a)), 2))
    return {"min_cosine": round(float(np.sum(a * b, axis=1).min()), 8),
            "max_relative_error": float(np.max(np.abs(candidate - reference)) / np.max(np.abs(reference))),
            "max_score_difference": score_diff}


def median_ms(fn: Any) -> float:
    return round(statistics.median(timed(fn, ROUNDS, warmup=3)) * 1000, 2)


def on_gpu_ms(embedder: Embedder, batch: np.ndarray) -> float:
    binding = embedder.session.io_binding()
    binding.bind_ortvalue_input(embedder.manifest.input_name, ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
    binding.bind_output(embedder.manifest.output_name, "cuda")
    return median_ms(lambda: embedder.session.run_with_iobinding(binding))


def keras_entry(inputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    import keras
    from keras.applications.vgg16 import preprocess_input

    from vggsim.export.keras_model import random_vgg16

    model, _ = random_vgg16(keras, 0)  # the test model's weights
    entry: dict[str, Any] = parity(reference, np.asarray(model.predict(preprocess_input(inputs.copy()), verbose=0)))
    entry["backend"] = f"keras {keras.__version__} ({keras.backend.backend()})"
    for size in (8, 64):
        batch = preprocess_input(np.resize(inputs, (size, *inputs.shape[1:])).copy())
        entry[f"batch{size}_host_ms"] = median_ms(lambda: model.predict(batch, verbose=0))  # noqa: B023
    return entry


def main(fp32: str, fp16: str, out: str) -> None:
    photos = sample_photos()
    cpu = Embedder(fp32, providers="cpu")
    inputs = np.stack([cpu.load(p) for p in photos])
    reference = cpu.embed(inputs)
    report: dict[str, Any] = {"photos": len(photos), "onnxruntime": ort.__version__, "rounds": ROUNDS, "variants": []}
    for precision, label, extra in VARIANTS:
        options = {"cudnn_conv_algo_search": "EXHAUSTIVE", **extra}
        gpu = Embedder(fp32 if precision == "fp32" else fp16, providers=[("CUDAExecutionProvider", options)],
                       strict=True)
        entry: dict[str, Any] = {"model": precision, "label": label, "options": extra, **parity(reference, gpu.embed(inputs))}
        for size in (8, 64):
            batch = np.ascontiguousarray(np.resize(inputs, (size, *inputs.shape[1:])))
            entry[f"batch{size}_host_ms"] = median_ms(lambda: gpu.run(batch))  # noqa: B023
            entry[f"batch{size}_on_gpu_ms"] = on_gpu_ms(gpu, batch)
        report["variants"].append(entry)
        print(json.dumps(entry))
    try:
        report["keras"] = keras_entry(inputs, reference)
        print(json.dumps(report["keras"]))
    except ImportError as exc:
        print(f"no Keras here: {exc}")
    with open(out, "w") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
