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
    start, cpu_start = time.perf_counter(), time.process_time()
    import onnxruntime

    from vggsim import Embedder

    embedder = Embedder(model, providers="cpu")
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    vectors = embedder.embed(photos, batch_size=1)
    done, cpu_done = time.perf_counter(), time.process_time()
    np.save(out, vectors)
    print(json.dumps({
        "machine": platform.machine(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
        "photos": len(photos), "load_s": round(loaded - start, 2), "embed_s": round(done - loaded, 2),
        # CPU seconds of all threads: on a shared host they say more than wall seconds do.
        "load_cpu_s": round(cpu_loaded - cpu_start, 2), "embed_cpu_s": round(cpu_done - cpu_loaded, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
