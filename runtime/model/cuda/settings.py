"""The named CUDA settings: onnxruntime provider options, and how batches must be fed.

:mod:`vggsim.model.session` resolves a provider request against these (the one provider policy);
this module only names them, so the policy and its data stay small enough to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vggsim.errors import ProviderError

# cuDNN tries every convolution algorithm once per shape and keeps the fastest: VGG16 has
# few distinct shapes, so the search pays for itself after the first batch. TF32 is off:
# the fp32 model stays a float32 model on Ampere and later GPUs (parity is the product;
# with TF32 on an H100 the score moved by 1.3e-5, over the 1e-5 export bound).
CUDA_DEFAULT: tuple[str, dict[str, Any]] = (
    "CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0"})
# "cuda-tf32": TF32 convolutions in NHWC layout, the fastest setting measured on an H100
# (3.8x the exact setting at batch 64), at the cost of bit-level parity.
CUDA_TF32: tuple[str, dict[str, Any]] = (
    "CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1", "prefer_nhwc": "1"})


@dataclass(frozen=True)
class CudaSetting:
    """A named CUDA setting: onnxruntime provider options, and how batches must be fed.

    ``cuda_graph``: onnxruntime captures the whole model as one CUDA graph and replays it,
    so the caller must bind input and output to device buffers of a fixed shape whose
    addresses never change (one graph per batch shape). ``overlap``: the caller keeps the
    batches in pinned host buffers and copies batch N+1 to the GPU on a second stream while
    batch N computes. Both are honoured by :class:`vggsim.model.cuda.runner.CudaRunner`.
    """

    name: str
    options: dict[str, Any]
    cuda_graph: bool = False
    overlap: bool = False
    note: str = ""

    @property
    def provider(self) -> tuple[str, dict[str, Any]]:
        return ("CUDAExecutionProvider", self.options)


_FAST = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "1", "prefer_nhwc": "1"}
CUDA_SETTINGS: dict[str, CudaSetting] = {s.name: s for s in (
    CudaSetting("cuda", CUDA_DEFAULT[1], note="exact float32: TF32 off, cuDNN's exhaustive search"),
    # Also the fp16 model's setting: on an H200 (onnxruntime-gpu 1.31.1) the fp16 model in
    # NHWC ran batch 64 at 11,620 images/s with use_tf32=1 and 1,357 with use_tf32=0, with
    # the same optimised graph (docs: GPU benchmarks).
    CudaSetting("cuda-tf32", CUDA_TF32[1], note="TF32 convolutions in NHWC layout; for fp16 models, fp16 tensor cores"),
    CudaSetting("cuda-graph", {**_FAST, "enable_cuda_graph": "1"}, cuda_graph=True,
                note="cuda-tf32 replayed as one CUDA graph per fixed batch shape, I/O bound to device buffers"),
    CudaSetting("cuda-overlap", dict(_FAST), overlap=True,
                note="cuda-tf32 with pinned host buffers, copy of batch N+1 overlapped with compute of batch N"),
    CudaSetting("cuda-graph-overlap", {**_FAST, "enable_cuda_graph": "1"}, cuda_graph=True, overlap=True,
                note="cuda-graph and cuda-overlap together"),
)}


def cuda_setting(name: str) -> CudaSetting:
    """The named CUDA setting (``cuda``, ``cuda-tf32``, ``cuda-graph``, ``cuda-overlap``, ...)."""
    try:
        return CUDA_SETTINGS[name.lower()]
    except KeyError:
        raise ProviderError(f"Unknown CUDA setting {name!r}: use one of {sorted(CUDA_SETTINGS)}") from None
