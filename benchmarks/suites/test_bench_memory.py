"""Peak resident memory of ``vggsim embed``: bounded by the decode memory budget, not by workers.

Run: VGGSIM_TEST_MODEL=/path/to/model .venv/bin/python -m pytest -p no:cacheprovider -q -rA -s \
     benchmarks/suites/test_bench_memory.py
(without VGGSIM_TEST_MODEL a random-weight model is exported, which needs TensorFlow).
Targets: 8 legal ~81 MP images (RGBA PNG and 16-bit TIFF) peak under 1.5 GB with default
settings; the Pillow test corpus (../shared/corpus/pillow-test-images) under 1 GB; the peak
with --workers 4 at most 1.15x the peak with --workers 1. The images are generated once and
cached in .cache/bench-memory (about 1 GB of disk). Figures depend on the machine and on what
else runs on it: report them with the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import RESULTS

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VGGSIM_BENCH_CACHE", REPO / ".cache" / "bench-memory"))
CORPUS = REPO.parent / "shared" / "corpus" / "pillow-test-images"
SIDE = 9000  # 81 MP, under the default 89.5 MP pixel limit

# Runs the command and prints the peak resident size of its process tree (the wrapper is
# fresh, so RUSAGE_CHILDREN holds only this command).
_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _image(kind: str, seed: int) -> Image.Image:
    """Smooth gradients with a little noise: realistic file sizes, different pixels per file."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:SIDE, :SIDE]
    if kind == "tiff16":
        wave = (np.sin(x / (300 + seed)) * np.cos(y / (200 + seed)) + 1) * 32000
        values = (wave + rng.integers(0, 1000, (SIDE, 1))).astype(np.uint16)
        return Image.fromarray(values)
    rgba = np.empty((SIDE, SIDE, 4), np.uint8)
    rgba[..., 0] = (x * 255 // SIDE + seed) % 256
    rgba[..., 1] = (y * 255 // SIDE) % 256
    rgba[..., 2] = ((x + y) // 64 % 256).astype(np.uint8)
    rgba[..., 3] = (((x // 500 + y // 500) % 2) * 155 + 100).astype(np.uint8)
    return Image.fromarray(rgba)


def big_folder() -> Path:
    folder = CACHE / "81mp"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(8):
        kind = "tiff16" if n % 2 else "rgba"
        path = folder / (f"{n}.tif" if kind == "tiff16" else f"{n}.png")
        if not path.exists():
            partial = path.with_suffix(".part")
            _image(kind, n).save(partial, format="TIFF" if kind == "tiff16" else "PNG", compress_level=1)
            partial.rename(path)
    return folder


def peak_mb(model: Path, folder: Path, store: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "vggsim", "embed", str(folder), "--store", str(store),
               "--model", str(model), "--quiet", "--all-files", *extra]
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True, timeout=3000)
    rc, kb = out.stdout.split()[-2:]
    assert rc in ("0", "1"), out.stderr[-2000:]  # 1: some corpus files are bad on purpose
    return int(kb) / 1024


@pytest.fixture(scope="module")
def model() -> Path:
    preset = os.environ.get("VGGSIM_TEST_MODEL")
    if preset:
        return Path(preset)
    pytest.importorskip("tensorflow")
    from vggsim.export import export_model

    out = CACHE / "random-caffe"
    if not (out / "manifest.json").exists():
        export_model(out=out, weights="random", seed=0, normalization="caffe")
    return out


def test_81_megapixel_images_peak_under_1_5_gb_and_not_with_workers(model: Path, tmp_path: Path) -> None:
    folder = big_folder()
    peaks = {"default": peak_mb(model, folder, tmp_path / "s0")}
    for workers in (1, 4):
        peaks[f"workers {workers}"] = peak_mb(model, folder, tmp_path / f"s{workers}", "--workers", str(workers))
    RESULTS["peak MB, 8 x 81 MP (default / 1 / 4 workers)"] = " / ".join(f"{v:.0f}" for v in peaks.values())
    print(json.dumps({"81mp_peak_mb": peaks}))
    assert peaks["default"] < 1500
    assert peaks["workers 4"] <= 1.15 * peaks["workers 1"]


def test_pillow_corpus_peaks_under_1_gb(model: Path, tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the Pillow corpus is not at {CORPUS} (../shared relative to the repository)")
    peak = peak_mb(model, CORPUS, tmp_path / "store")
    RESULTS["peak MB, Pillow corpus"] = f"{peak:.0f}"
    print(json.dumps({"corpus_peak_mb": peak}))
    assert peak < 1000
