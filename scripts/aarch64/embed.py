"""Embed photos with one model and save the vectors: run by the emulated arm64 Python and the host alike.

Standalone on purpose (only vggsim, NumPy and onnxruntime): the emulated interpreter has nothing else.
Usage: embed.py MODEL_DIR OUT.npy PHOTO [PHOTO ...]; prints one JSON line with the timings.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: embed.py MODEL_DIR OUT.npy PHOTO [PHOTO ...]", file=sys.stderr)
        return 2
    model, out, photos = argv[0], argv[1], argv[2:]
    start = time.perf_counter()
    import onnxruntime

    from vggsim import Embedder

    embedder = Embedder(model, providers="cpu")
    loaded = time.perf_counter()
    vectors = embedder.embed(photos, batch_size=1)
    done = time.perf_counter()
    np.save(out, vectors)
    print(json.dumps({
        "machine": platform.machine(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
        "photos": len(photos), "load_s": round(loaded - start, 2), "embed_s": round(done - loaded, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
