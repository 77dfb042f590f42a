"""Decode threads of the service are not niced (niced, they starved), and GPU sessions do not
spin-wait: on an H200 machine, niced decodes behind spinning onnxruntime
threads held 8 clients at 0.5 s a request (the GPU benchmark's service load run)."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import pytest

from vggsim.model.session import session_options

pytest.importorskip("fastapi", reason="needs the serve extra")

from vggsim.serve.decoding import Decoder  # noqa: E402


def _decode_thread_nice(provider: str) -> int:
    embedder = SimpleNamespace(provider=provider)
    decoder = Decoder(embedder, 1, 1 << 20)  # type: ignore[arg-type]
    try:
        threads = [t for t in threading.enumerate() if t.name == "vggsim-decode" and t.native_id is not None]
        assert threads, "the decoder started no decode thread"
        return max(os.getpriority(os.PRIO_PROCESS, t.native_id) for t in threads)  # type: ignore[arg-type]
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


def test_serving_pads_every_batch_on_cuda_and_only_there() -> None:
    from vggsim.serve.app import with_serving_batch

    def maker(provider: str) -> tuple[list[int | None], object]:
        calls: list[int | None] = []
        return calls, lambda fixed: (calls.append(fixed), SimpleNamespace(provider=provider, fixed_batch=fixed))[1]

    calls, make = maker("CUDAExecutionProvider")
    assert with_serving_batch(make, "cuda-tf32", 32).fixed_batch == 32 and calls == [32]  # type: ignore[arg-type, attr-defined]
    calls, make = maker("CUDAExecutionProvider")  # "auto" that found a GPU: built again, padded
    assert with_serving_batch(make, "auto", 16).fixed_batch == 16 and calls == [None, 16]  # type: ignore[arg-type, attr-defined]
    calls, make = maker("CPUExecutionProvider")
    assert with_serving_batch(make, "auto", 16).fixed_batch is None and calls == [None]  # type: ignore[arg-type, attr-defined]


def test_vggsim_serve_builds_its_embedder_through_the_serving_batch_rule(monkeypatch: pytest.MonkeyPatch,
                                                                        model_dir: object) -> None:
    # The CLI built its Embedder without the CUDA padding (only create_app's own loader had
    # it), so `vggsim serve --providers cuda-tf32` ran batches of every size.
    import vggsim.serve.app as app
    from vggsim.cli import main

    seen: list[object] = []

    class Stop(Exception):
        pass

    def record(make: object, providers: object, max_batch: int) -> None:
        seen.append((providers, max_batch))
        raise Stop

    monkeypatch.setattr(app, "with_serving_batch", record)
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: (_ for _ in ()).throw(Stop()))  # never listen here
    main(["serve", "--model", str(model_dir), "--providers", "cpu", "--max-batch", "12"])  # stops at Stop
    assert seen == [("cpu", 12)]
