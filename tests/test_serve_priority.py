"""Decode threads of the service are not niced (niced, they starved), and GPU sessions do not
spin-wait: on an H200 machine, niced decodes behind spinning onnxruntime
threads held 8 clients at 0.5 s a request (benchmarks/results/2026-11-27-h200-b)."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import pytest

from vggsim.session import session_options

pytest.importorskip("fastapi", reason="needs the serve extra")

from vggsim.serve.decoding import Decoder  # noqa: E402


def _decode_thread_nice(provider: str) -> int:
    embedder = SimpleNamespace(provider=provider)
    decoder = Decoder(embedder, 1, 1 << 20)  # type: ignore[arg-type]
    try:
        return decoder._executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    finally:
        decoder.close()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux-only")
def test_decode_threads_run_at_the_process_priority() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert _decode_thread_nice("CUDAExecutionProvider") == base
    assert _decode_thread_nice("CPUExecutionProvider") == base


def test_gpu_sessions_do_not_spin_wait() -> None:
    assert session_options(on_gpu=True).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # The CPU session keeps onnxruntime's default (spinning helps a CPU-bound model).
    with pytest.raises(RuntimeError):  # onnxruntime: no such entry
        session_options().get_session_config_entry("session.intra_op.allow_spinning")
