"""Speed work side by side in one run: efficiency, int8 against fp32, large JPEGs against Keras.

Run: bash scripts/bench.sh benchmarks/suites/test_bench_speed.py
Targets (CPU): fp32 at batch 1 and 8 >= 85% of the measured matrix-multiply peak; int8
latency <= 0.55 x fp32 with min cosine >= 0.99; 12-megapixel JPEGs end to end with int8 and
the JPEG draft decode >= 3x the Keras recipe's images per second, min cosine >= 0.99
against the exact fp32 pipeline.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import RESULTS
from vggsim import Embedder, PreprocessSpec, l2_normalize, sample_photos
from vggsim.tools.bench import VGG16_GFLOP, matmul_peak, timed
from vggsim.ingest.pipeline import iter_embeddings


@pytest.fixture(scope="module")
def int8_model(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vggsim.export.variants import export_variant

    return export_variant(models["caffe"], tmp_path_factory.mktemp("int8") / "int8", "int8")


@pytest.mark.parametrize("batch", [1, 8])
def test_fp32_fraction_of_matmul_peak(models: dict[str, Path], batch: int) -> None:
    embedder = Embedder(models["caffe"], providers="cpu")
    x = np.random.default_rng(0).uniform(0, 255, (batch, 224, 224, 3)).astype(np.float32)
    peak = matmul_peak()["gflops"]
    median = statistics.median(timed(lambda: embedder.run(x), 8 if batch == 1 else 3))
    achieved = batch * VGG16_GFLOP / median
    RESULTS[f"fp32 batch {batch}: GFLOP/s / sgemm peak"] = f"{achieved:.1f} / {peak:.1f} = {achieved / peak:.0%}"
    assert achieved >= 0.85 * peak


def test_int8_against_fp32(models: dict[str, Path], int8_model: Path) -> None:
    fp32, int8 = Embedder(models["caffe"], providers="cpu"), Embedder(int8_model, providers="cpu")
    photos = sample_photos()
    x = np.stack([fp32.load(p) for p in photos])
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(6):  # interleaved
        for name, embedder in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            embedder.run(x[:1])
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(times["int8"]) / statistics.median(times["fp32"])
    cosines = np.sum(l2_normalize(fp32.embed(x)) * l2_normalize(int8.embed(x)), axis=1)
    RESULTS["int8 / fp32 batch-1 latency; min cosine"] = (
        f"{statistics.median(times['int8']) * 1000:.1f} / {statistics.median(times['fp32']) * 1000:.1f} ms = "
        f"{ratio:.2f}; {cosines.min():.5f} on {len(photos)} photos")
    assert ratio <= 0.55 and cosines.min() >= 0.99


def _large_jpegs(root: Path, count: int = 4) -> list[Path]:
    files = []
    for n, photo in enumerate(sample_photos()[:count]):
        path = root / f"large{n}.jpg"
        Image.open(photo).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
        files.append(path)
    return files


def test_12_megapixel_jpegs_against_the_keras_recipe(keras_model: Any, models: dict[str, Path], int8_model: Path,
                                                     tmp_path: Path) -> None:
    from keras.applications.vgg16 import preprocess_input
    from keras.utils import img_to_array

    files = _large_jpegs(tmp_path)

    def keras_recipe() -> None:
        for path in files:
            x = np.expand_dims(img_to_array(Image.open(path).resize((224, 224))), axis=0)
            keras_model.predict(preprocess_input(x), verbose=0)

    fast = Embedder(int8_model, providers="cpu", spec=PreprocessSpec(jpeg_draft=True))

    def vggsim_fast() -> list[Any]:
        return list(iter_embeddings(fast, files, batch_size=len(files)))

    rates: dict[str, list[float]] = {"keras": [], "vggsim": []}
    keras_recipe(), vggsim_fast()  # warm-up
    for _ in range(3):
        for name, run in (("keras", keras_recipe), ("vggsim", vggsim_fast)):
            start = time.perf_counter()
            run()
            rates[name].append(len(files) / (time.perf_counter() - start))
    keras_rate, ours = statistics.median(rates["keras"]), statistics.median(rates["vggsim"])
    exact = Embedder(models["caffe"], providers="cpu").embed(files)
    fast_vectors = np.stack([r.vector for r in sorted(vggsim_fast(), key=lambda r: r.path)])
    cosines = np.sum(l2_normalize(exact) * l2_normalize(fast_vectors), axis=1)
    RESULTS["12 MP JPEG img/s: keras / vggsim int8+draft"] = (
        f"{keras_rate:.2f} / {ours:.2f} = {ours / keras_rate:.1f}x; min cosine vs exact fp32 {cosines.min():.5f}")
    assert ours >= 3 * keras_rate and cosines.min() >= 0.99


@pytest.mark.parametrize("megapixels", [1, 3, 12, 24])
def test_jpeg_draft_fidelity_and_decode_gain_by_size(models: dict[str, Path], tmp_path: Path, megapixels: int) -> None:
    from vggsim import load_image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    files = []
    for n, photo in enumerate(sample_photos()[:4]):
        path = tmp_path / f"p{n}.jpg"
        Image.open(photo).convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(path, quality=90)
        files.append(path)
    draft_spec = PreprocessSpec(jpeg_draft=True)
    exact_s = statistics.median(timed(lambda: [load_image(f) for f in files], 3)) / len(files)
    draft_s = statistics.median(timed(lambda: [load_image(f, draft_spec) for f in files], 3)) / len(files)
    embedder = Embedder(models["caffe"], providers="cpu")
    exact = embedder.embed(np.stack([load_image(f) for f in files]))
    draft = embedder.embed(np.stack([load_image(f, draft_spec) for f in files]))
    cosine = float(np.sum(l2_normalize(exact) * l2_normalize(draft), axis=1).min())
    RESULTS[f"jpeg draft {megapixels} MP ({width}x{height}): decode+resize ms exact / draft; min cos"] = (
        f"{exact_s * 1000:.1f} / {draft_s * 1000:.1f} ({exact_s / draft_s:.1f}x); {cosine:.5f}")
    assert cosine >= 0.99
