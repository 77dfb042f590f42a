"""Carry a random-weight model to another machine as a few kilobytes, and rebuild it there bit for bit.

A model exported with ``--weights random --seed N`` holds kernels that NumPy alone can
regenerate (``vggsim.export.keras_model.random_weights``), so the model file is sent with
those kernels zeroed (it then compresses to almost nothing) and the kernels are written
back into the same bytes on arrival. The rebuilt file must match the manifest's sha256,
so a wrong rebuild cannot pass as the model.

    python scripts/device/model_skeleton.py pack MODEL_DIR OUT_DIR     # here
    python scripts/device/model_skeleton.py unpack OUT_DIR MODEL_DIR   # there, needs vggsim and NumPy only
"""

from __future__ import annotations

import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

from vggsim.tools.bench import VGG16_CONVS
from vggsim.export.keras_model import random_weights
from vggsim.model.manifest import read_manifest, sha256_file


def _kernels_as_onnx_bytes(seed: int) -> list[bytes]:
    """The random kernels in Keras order (HWIO), laid out as tf2onnx stores them (OIHW)."""
    kernels = random_weights([(3, 3, cin, cout) for cin, cout, _ in VGG16_CONVS], seed)
    return [np.ascontiguousarray(k.transpose(3, 2, 0, 1)).astype("<f4").tobytes() for k in kernels]


def pack(model_dir: Path, out: Path) -> None:
    manifest = read_manifest(model_dir)
    weights = manifest.weights
    if not weights.random or weights.seed is None:
        sys.exit(f"{model_dir} was not exported with random weights: nothing to regenerate")
    data = bytearray(manifest.model_path.read_bytes())
    offsets = []
    for kernel in _kernels_as_onnx_bytes(weights.seed):
        offset = data.find(kernel)
        if offset < 0:
            sys.exit("a kernel was not found in the model file: not a vggsim random-weight VGG16 export")
        data[offset:offset + len(kernel)] = bytes(len(kernel))
        offsets.append(offset)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.zeroed.onnx.xz").write_bytes(lzma.compress(bytes(data), preset=9))
    shutil.copy(model_dir / "manifest.json", out / "manifest.json")
    (out / "kernels.json").write_text(json.dumps({"seed": weights.seed, "offsets": offsets}) + "\n")
    print(f"packed {manifest.model_path} ({len(data) / 1e6:.1f} MB) into "
          f"{sum(f.stat().st_size for f in out.iterdir()) / 1e3:.0f} kB")


def unpack(packed: Path, model_dir: Path) -> None:
    recipe = json.loads((packed / "kernels.json").read_text())
    data = bytearray(lzma.decompress((packed / "model.zeroed.onnx.xz").read_bytes()))
    for offset, kernel in zip(recipe["offsets"], _kernels_as_onnx_bytes(recipe["seed"])):
        data[offset:offset + len(kernel)] = kernel
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(packed / "manifest.json", model_dir / "manifest.json")
    manifest = json.loads((packed / "manifest.json").read_text())
    target = model_dir / manifest["model"]["file"]
    target.write_bytes(bytes(data))
    if sha256_file(target) != manifest["model"]["sha256"]:
        sys.exit(f"rebuilt {target} does not match the manifest's sha256")
    print(f"rebuilt {target}: sha256 matches the manifest")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(Path(sys.argv[2]), Path(sys.argv[3]))
