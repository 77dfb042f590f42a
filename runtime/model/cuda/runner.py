"""Fixed device buffers for CUDA: CUDA graphs, pinned host memory, copies overlapped with compute.

The named settings ``cuda-graph``, ``cuda-overlap`` and ``cuda-graph-overlap`` in
:mod:`vggsim.model.session` need input and output bound to buffers that never move; this runner
owns them. It drives the CUDA runtime that onnxruntime-gpu already loaded (through ctypes),
so it needs no extra package. Measured on an H200: see the README's GPU section.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

class _HostCopies:
    """Copies between host and device memory for :class:`CudaRunner`, through the CUDA
    runtime that onnxruntime-gpu loaded (ctypes; no other GPU package), or plain memory
    copies when the session runs on the CPU (so the runner can be checked anywhere)."""

    H2D, D2D = 1, 3

    def __init__(self, on_cuda: bool) -> None:
        self.cudart: Any = _load_cudart() if on_cuda else None
        self.stream = None
        if self.cudart is not None:
            import ctypes

            stream = ctypes.c_void_p()
            self._check(self.cudart.cudaStreamCreateWithFlags(ctypes.byref(stream), 1))  # non-blocking
            self.stream = stream

    def _check(self, code: int) -> None:
        if code != 0:
            name = self.cudart.cudaGetErrorString
            name.restype = __import__("ctypes").c_char_p
            raise RuntimeError(f"CUDA runtime error {code}: {name(code).decode()}")

    def pinned(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 host array in page-locked memory (plain memory on the CPU)."""
        if self.cudart is None:
            return np.empty(shape, np.float32)
        import ctypes

        nbytes = int(np.prod(shape)) * 4
        pointer = ctypes.c_void_p()
        self._check(self.cudart.cudaHostAlloc(ctypes.byref(pointer), ctypes.c_size_t(nbytes), 0))
        buffer = (ctypes.c_float * int(np.prod(shape))).from_address(int(pointer.value or 0))
        array: np.ndarray = np.ctypeslib.as_array(buffer).reshape(shape)
        return array

    def pin(self, array: np.ndarray) -> bool:
        """Page-lock an existing host array in place (cudaHostRegister); False where impossible."""
        if self.cudart is None:
            return False
        import ctypes

        return int(self.cudart.cudaHostRegister(ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes), 0)) == 0

    def copy_async(self, destination: int, source: int, nbytes: int, kind: int) -> None:
        import ctypes

        if self.cudart is None:
            ctypes.memmove(destination, source, nbytes)
            return
        self._check(self.cudart.cudaMemcpyAsync(ctypes.c_void_p(destination), ctypes.c_void_p(source),
                                                ctypes.c_size_t(nbytes), kind, self.stream))

    def copy(self, destination: int, source: int, nbytes: int, kind: int) -> None:
        self.copy_async(destination, source, nbytes, kind)
        self.sync()

    def sync(self) -> None:
        if self.cudart is not None:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))


def _load_cudart() -> Any:
    """The CUDA runtime library onnxruntime-gpu uses (already loaded by its preload, or found
    beside the nvidia-* wheels)."""
    import ctypes
    import glob

    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    try:
        import nvidia

        for folder in nvidia.__path__:
            for path in sorted(glob.glob(os.path.join(folder, "**", "libcudart.so*"), recursive=True)):
                return ctypes.CDLL(path)
    except (ImportError, OSError):
        pass
    raise RuntimeError("the CUDA runtime library (libcudart) was not found")


class CudaRunner:
    """Feeds one session fixed-shape batches through device buffers bound once, the way the
    ``cuda-graph`` and ``cuda-overlap`` settings need (see :data:`vggsim.model.cuda.settings.CUDA_SETTINGS`).

    - :meth:`run_device`: the batch already sits in the bound device buffer (the model alone).
    - :meth:`run_host`: copy a host batch in, run, copy the embeddings out.
    - :meth:`run_stream`: a sequence of host batches (pinned: :meth:`pinned`), the copy of
      batch N+1 on a second stream while batch N computes. With a CUDA graph the graph's
      input address is fixed, so the next batch lands in a staging buffer and moves into
      place by a device-to-device copy (about 10 us per 38 MB).
    On the CPU provider the same code runs with plain memory copies.
    """

    def __init__(self, session: Any, batch_size: int, image_shape: tuple[int, int, int] = (224, 224, 3)) -> None:
        import onnxruntime as ort

        self.session = session
        self.on_cuda = session.get_providers()[0] == "CUDAExecutionProvider"
        device = "cuda" if self.on_cuda else "cpu"
        self.shape = (batch_size, *image_shape)
        self.nbytes = int(np.prod(self.shape)) * 4
        output = session.get_outputs()[0]
        dim = output.shape[-1] if isinstance(output.shape[-1], int) else 512
        self.copies = _HostCopies(self.on_cuda)
        self.inputs = [ort.OrtValue.ortvalue_from_shape_and_type(self.shape, np.float32, device, 0) for _ in range(2)]
        self.output = ort.OrtValue.ortvalue_from_shape_and_type((batch_size, dim), np.float32, device, 0)
        options = session.get_provider_options().get("CUDAExecutionProvider", {})
        self.cuda_graph = options.get("enable_cuda_graph") == "1"
        self.bindings = []
        for value in self.inputs:
            binding = session.io_binding()
            binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
            binding.bind_ortvalue_output(output.name, self.output)
            self.bindings.append(binding)

    def pinned(self, batch: np.ndarray | None = None) -> np.ndarray:
        array = self.copies.pinned(self.shape)
        if batch is not None:
            np.copyto(array, batch)
        return array

    def _load(self, slot: int, batch: np.ndarray) -> None:
        if batch.shape != self.shape or batch.dtype != np.float32 or not batch.flags.c_contiguous:
            raise ValueError(f"expected a C-contiguous float32 batch of shape {self.shape}")
        self.copies.copy(self.inputs[slot].data_ptr(), batch.ctypes.data, self.nbytes, _HostCopies.H2D)

    def run_device(self, slot: int = 0) -> Any:
        """Run on what the device buffer holds; the output stays on the device (an OrtValue)."""
        self.session.run_with_iobinding(self.bindings[0 if self.cuda_graph else slot])
        return self.output

    def run_host(self, batch: np.ndarray) -> np.ndarray:
        self._load(0, batch)
        self.run_device(0)
        return np.array(self.output.numpy(), copy=True)  # on the CPU, numpy() is a view of the bound buffer

    def run_stream(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embeddings of every batch, copies overlapped with compute."""
        if not batches:
            return []
        results = []
        self._load(0, batches[0])
        for index in range(len(batches)):
            current = 0 if self.cuda_graph else index % 2
            following = 1 if self.cuda_graph else (index + 1) % 2
            if index + 1 < len(batches):
                source = batches[index + 1]
                self.copies.copy_async(self.inputs[following].data_ptr(), source.ctypes.data, self.nbytes,
                                       _HostCopies.H2D)
            self.run_device(current)
            results.append(np.array(self.output.numpy(), copy=True))
            self.copies.sync()
            if self.cuda_graph and index + 1 < len(batches):
                self.copies.copy(self.inputs[0].data_ptr(), self.inputs[1].data_ptr(), self.nbytes, _HostCopies.D2D)
        return results
