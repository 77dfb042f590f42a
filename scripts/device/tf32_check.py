"""The fp32 model on CUDA with TF32 off (vggsim's default) and on: parity against the CPU
on the sample photos, and latency at batch 8 and 64, measured in one run.

    python scripts/device/tf32_check.py MODEL_DIR OUT.json
"""

from __future__ import annotations

import json
import statistics
import sys
from itertools import combinations

import numpy as np

from vggsim import Embedder, l2_normalize, sample_photos
from vggsim.bench import timed


def figures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    a, b = l2_normalize(reference), l2_normalize(candidate)
    pairs = list(combinations(range(len(a)), 2))
    score_diff = max(abs(float(a[i] @ a[j]) - float(b[i] @ b[j])) for i, j in pairs)
    return {"min_cosine": float(np.sum(a * b, axis=1).min()),
            "max_relative_error": float(np.max(np.abs(candidate - reference)) / np.max(np.abs(reference))),
            "max_score_difference": score_diff}


def main(model: str, out: str) -> None:
    photos = sample_photos()
    cpu = Embedder(model, providers="cpu")
    inputs = np.stack([cpu.load(p) for p in photos])
    reference = cpu.embed(inputs)
    report: dict[str, object] = {"photos": len(photos)}
    for label, tf32 in (("tf32_off_default", "0"), ("tf32_on", "1")):
        options = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": tf32}
        gpu = Embedder(model, providers=[("CUDAExecutionProvider", options)], strict=True)
        entry: dict[str, object] = figures(reference, gpu.embed(inputs))
        for size in (8, 64):
            batch = np.resize(inputs, (size, *inputs.shape[1:]))
            entry[f"batch{size}_ms"] = round(statistics.median(timed(lambda: gpu.run(batch), 20, warmup=3)) * 1000, 2)  # noqa: B023
        report[label] = entry
        print(label, json.dumps(entry))
    with open(out, "w") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
