"""The Keras side of ``vggsim bench --keras``: the recipe's own ``model.predict``, timed on the
same machine as the ONNX models. Imported by :mod:`vggsim.tools.bench` only when asked for, so the
runtime never loads Keras or TensorFlow otherwise.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.model.timing import timed_within
from vggsim.errors import MissingExtraError

from .keras_model import build_model, random_vgg16


def keras_vgg16() -> tuple[Any, str]:
    """The recipe's model with vggsim's deterministic random weights, and Keras's backend.

    With the export extra this is TensorFlow's Keras, as the recipe runs it; without
    TensorFlow, any Keras 3 backend that is installed (``KERAS_BACKEND=jax`` or ``torch``).
    """
    try:
        model, _ = build_model("random", 0)
    except MissingExtraError:
        try:
            import keras
        except ImportError:
            raise MissingExtraError("export", "vggsim bench --keras", "keras") from None
        model, _ = random_vgg16(keras, 0)
    import keras

    return model, f"keras {keras.__version__} ({keras.backend.backend()})"


def keras_figures(batch_sizes: Sequence[int], rounds: int, photo: Path) -> dict[str, Any]:
    """The Keras recipe side by side. Weights do not change speed, so the model gets
    vggsim's deterministic random weights and needs no download."""
    model, backend = keras_vgg16()
    batches = {}
    for size in batch_sizes:
        batch = np.random.default_rng(0).uniform(0, 255, (size, 224, 224, 3)).astype(np.float32)
        median = statistics.median(timed_within(lambda: model.predict(batch, verbose=0), rounds))  # noqa: B023
        batches[str(size)] = {"ms": round(median * 1000, 2), "images_per_s": round(size / median, 2)}
    code = ("import time; t = time.perf_counter(); import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; "
            "import numpy as np; from PIL import Image; import keras; "
            "m = keras.applications.VGG16(weights=None, include_top=False, pooling='max', input_shape=(224, 224, 3)); "
            f"m.predict(np.expand_dims(keras.utils.img_to_array(Image.open({str(photo)!r}).resize((224, 224))), 0), "
            "verbose=0); print(time.perf_counter() - t)")
    cold = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 timeout=600).stdout.strip().splitlines()[-1]) for _ in range(3)]
    return {"backend": backend, "batch": batches, "cold_start": {"seconds": round(statistics.median(cold), 3)}}
