"""Ray embedding against the local pipeline on the same cores, and the driver's store write rate.

Run: .venv/bin/python -m pytest benchmarks/suites/test_bench_ray.py -q -s -p no:cacheprovider
(with VGGSIM_TEST_MODEL set, or the benchmark models exported by benchmarks/suites/conftest.py).
Targets: Ray throughput >= 0.8 x the local pipeline's on the same CPUs (a local Ray with
``num_cpus`` = this process's CPUs: one inference actor, decode tasks on the rest); the
overhead per image is (Ray seconds - local seconds) / images. The driver's write rate says
how many images per second one driver can commit (where writing through it stops scaling).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import RESULTS
from vggsim import Embedder, sample_photos
from vggsim.collection import embed_into_store
from vggsim.model.session import usable_cpus
from vggsim.store import Record, Store, StoreIdentity, StoreWriter

pytest.importorskip("ray", reason="needs the ray extra: pip install 'vggsim[ray]'")
IMAGES = 96


@pytest.fixture
def bench_model(request: pytest.FixtureRequest) -> Path:
    preset = os.environ.get("VGGSIM_TEST_MODEL")
    return Path(preset) if preset else Path(request.getfixturevalue("models")["caffe"])


def _folder(root: Path, count: int) -> Path:
    photos = sample_photos()
    root.mkdir()
    for n in range(count):
        shutil.copy(photos[n % len(photos)], root / f"{n:04d}{photos[n % len(photos)].suffix}")
    return root


def test_ray_throughput_against_local(bench_model: Path, tmp_path: Path) -> None:
    import ray

    from vggsim.ray.embed import embed_dataset

    cpus = usable_cpus()
    folder, warm = _folder(tmp_path / "photos", IMAGES), _folder(tmp_path / "warm", 8)
    embedder = Embedder(bench_model, providers="cpu")
    embed_into_store(embedder, [warm], tmp_path / "warm-local")  # warm-up: page cache, onnxruntime
    local = embed_into_store(embedder, [folder], tmp_path / "local")
    ray.init(num_cpus=cpus, object_store_memory=400 * 1024 * 1024, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)
    try:
        options: dict[str, Any] = {"model": bench_model, "providers": "cpu", "actors": 1, "actor_cpus": 1}
        startup = embed_dataset([warm], tmp_path / "warm-ray", **options)  # actor start + model load
        remote = embed_dataset([folder], tmp_path / "ray", **options)
    finally:
        ray.shutdown()
    assert local.embedded == remote.embedded == IMAGES
    result = {
        "cpus": cpus, "images": IMAGES,
        "local_img_s": round(IMAGES / local.seconds, 2), "ray_img_s": round(IMAGES / remote.seconds, 2),
        "efficiency": round(local.seconds / remote.seconds, 3),
        "overhead_ms_per_image": round(1000 * (remote.seconds - local.seconds) / IMAGES, 1),
        "ray_run_with_8_images_s": startup.seconds,
    }
    RESULTS["ray_throughput"] = result
    print("\nray vs local:", result)
    assert result["efficiency"] >= 0.8, result


def test_driver_store_write_rate(tmp_path: Path) -> None:
    """Records with 512-d vectors through StoreWriter, committed every 1024 as embed does."""
    identity = StoreIdentity.from_dict({"model_sha256": "0" * 64, "preprocess": {"size": [224, 224]}, "dim": 512})
    rows = 20_000
    vectors = np.random.default_rng(0).standard_normal((rows, 512)).astype(np.float32)
    start = time.perf_counter()
    with StoreWriter.open(tmp_path / "store", identity) as writer:
        for i in range(rows):
            writer.add(Record(f"/photos/{i:08d}.jpg", "ok", 100_000, 1_700_000_000_000_000_000 + i, "ab" * 32, 640, 480),
                       vectors[i])
            if i % 8 == 7:
                writer.flush()
            if i % 1024 == 1023:
                writer.commit()
    seconds = time.perf_counter() - start
    RESULTS["ray_driver_write"] = {"rows": rows, "rows_per_s": round(rows / seconds)}
    print("\ndriver write:", RESULTS["ray_driver_write"])
    assert Store.open(tmp_path / "store").count_ok() == rows
