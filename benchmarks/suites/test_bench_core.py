"""Parity and speed of vggsim against the Keras recipe, measured side by side in one run.

Run: bash scripts/bench.sh   (or: .venv/bin/pytest benchmarks/suites/test_bench_core.py)
Targets: warm batch-1 latency <= 0.75 x Keras model.predict; cold start <= 1/5 of Keras;
peak resident memory <= 1/2 of Keras.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from conftest import RESULTS
from vggsim import Embedder, cosine_similarity, sample_photos

PHOTOS = [p for p in sample_photos() if Image.open(p).mode == "RGB"]


def _recipe_embeddings(keras_model: Any, normalization: str) -> np.ndarray:
    from keras.applications.vgg16 import preprocess_input
    from keras.utils import img_to_array

    out = []
    for path in PHOTOS:
        x = np.expand_dims(img_to_array(Image.open(path).resize((224, 224))), axis=0)
        out.append(keras_model.predict(preprocess_input(x) if normalization == "caffe" else x, verbose=0)[0])
    return np.stack(out)


@pytest.mark.parametrize("normalization", ["caffe", "none"])
def test_parity_with_the_recipe(keras_model: Any, models: dict[str, Path], normalization: str) -> None:
    keras_vectors = _recipe_embeddings(keras_model, normalization)
    ours = Embedder(models[normalization], providers="cpu").embed(PHOTOS)
    cosines = np.sum(keras_vectors * ours, axis=1) / (
        np.linalg.norm(keras_vectors, axis=1) * np.linalg.norm(ours, axis=1))
    score_diff = np.abs(cosine_similarity(keras_vectors) - cosine_similarity(ours)).max()
    RESULTS[f"parity {normalization}: min cosine / max score diff"] = (
        f"{cosines.min():.8f} / {score_diff:.2e} on {len(PHOTOS)} photos")
    assert cosines.min() >= 0.99999 and score_diff <= 1e-5


def _median_seconds(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.parametrize("batch", [1, 8])
def test_warm_latency_side_by_side(benchmark: Any, keras_model: Any, models: dict[str, Path], batch: int) -> None:
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(0, 255, (batch, 224, 224, 3)).astype(np.float32)
    embedder = Embedder(models["none"], providers="cpu")
    graph_fn = tf.function(lambda t: keras_model(t, training=False))
    rounds = 10 if batch == 1 else 4
    timings = {
        "keras predict": _median_seconds(lambda: keras_model.predict(x, verbose=0), rounds),
        "keras tf.function": _median_seconds(lambda: graph_fn(tf.constant(x)).numpy(), rounds),
        "vggsim cpu": _median_seconds(lambda: embedder.embed(x, batch_size=batch), rounds),
    }
    benchmark.extra_info.update({k: round(v * 1000, 2) for k, v in timings.items()})
    benchmark.pedantic(embedder.embed, args=(x,), kwargs={"batch_size": batch}, rounds=rounds, iterations=1)
    ratio = timings["vggsim cpu"] / timings["keras predict"]
    RESULTS[f"warm batch {batch} ms (predict / tf.function / vggsim)"] = (
        " / ".join(f"{v * 1000:.1f}" for v in timings.values()) + f"  ratio vggsim/predict {ratio:.2f}")
    if batch == 1:
        assert ratio <= 0.75, f"vggsim batch-1 latency is {ratio:.2f} x Keras predict (target 0.75)"


# Peak resident memory of the process itself: VmHWM resets at exec, whereas ru_maxrss
# carries over the (large) high-water mark of the pytest process that forked it.
_HWM = ("def _hwm_kb():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'): return int(line.split()[1])\n")

_COLD = {
    "vggsim": (
        "import time, json; t = time.perf_counter()\n" + _HWM +
        "import vggsim\n"
        "e = vggsim.Embedder({model!r}, providers='cpu'); v = e.embed([{photo!r}])\n"
        "print(json.dumps([time.perf_counter() - t, _hwm_kb()]))"
    ),
    "keras": (
        "import time, json, os; t = time.perf_counter()\n" + _HWM +
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import numpy as np; from PIL import Image\n"
        "from tensorflow.keras.applications import VGG16\n"
        "from tensorflow.keras.preprocessing import image\n"
        "m = VGG16(weights={weights!r}, include_top=False, pooling='max', input_shape=(224, 224, 3))\n"
        "x = np.expand_dims(image.img_to_array(Image.open({photo!r}).resize((224, 224))), axis=0)\n"
        "v = m.predict(x, verbose=0)\n"
        "print(json.dumps([time.perf_counter() - t, _hwm_kb()]))"
    ),
}


def _cold(kind: str, **fields: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _COLD[kind].format(**fields)], capture_output=True,
                         text=True, check=True, timeout=600)
    seconds, peak_kb = json.loads(out.stdout.strip().splitlines()[-1])
    return float(seconds), float(peak_kb) / 1024


def test_cold_start_and_peak_memory(models: dict[str, Path], weights_file: Path) -> None:
    fields = {"model": str(models["none"]), "photo": str(PHOTOS[0]), "weights": str(weights_file)}
    runs: dict[str, list[tuple[float, float]]] = {"vggsim": [], "keras": []}
    for _ in range(5):  # interleaved, so drift hits both alike
        for kind in runs:
            runs[kind].append(_cold(kind, **fields))
    seconds = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    memory = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    RESULTS["cold start s (keras / vggsim)"] = (
        f"{seconds['keras']:.2f} / {seconds['vggsim']:.2f}  ratio {seconds['vggsim'] / seconds['keras']:.3f}")
    RESULTS["peak RSS MB (keras / vggsim)"] = (
        f"{memory['keras']:.0f} / {memory['vggsim']:.0f}  ratio {memory['vggsim'] / memory['keras']:.3f}")
    assert seconds["vggsim"] <= seconds["keras"] / 5
    assert memory["vggsim"] <= memory["keras"] / 2
