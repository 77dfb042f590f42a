"""OpenVINO as a second runtime for the exported ONNX model: the CPU's matrix units by name.

``providers="openvino-bf16"`` runs the fp32 model in bfloat16 on CPUs with AMX or AVX512_BF16
(OpenVINO's CPU plugin, ``INFERENCE_PRECISION_HINT`` bf16); ``providers="openvino-cpu"`` asks
for f32 and, given the int8 model (``vggsim export --precision int8``), runs its int8 layers on
AMX or VNNI. Measured side by side with onnxruntime in one run, with their accuracy against
onnxruntime's fp32 (benchmarks/runtime_parity.py, docs/guide/edge.md): on an Intel Xeon with AMX,
batch-8 images/s were fp32 5.18, openvino-bf16 33.6 (min cosine 0.99998) and int8 model on
openvino-cpu 63.2 (min cosine 0.99971). On a CPU without bf16 units the bf16 hint falls back to
f32, and the provider string says what really runs.

The vectors of a bf16 setting differ from fp32 in the third or fourth significant digit (cosine
>= 0.999 to fp32, checked in tests/test_openvino.py), as ``cuda-tf32``'s do: a named setting,
reported in every answer's ``provider``, never the default. Needs the ``openvino`` extra.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from vggsim.errors import require

#: provider name -> OpenVINO CPU inference precision hint
OPENVINO_SETTINGS = {"openvino-cpu": "f32", "openvino-bf16": "bf16"}


class _Port:
    def __init__(self, name: str, shape: Sequence[Any]) -> None:
        self.name, self.shape = name, list(shape)


class OpenVinoSession:
    """An OpenVINO compiled model behind the part of onnxruntime's session interface the Embedder uses
    (``run``, ``get_inputs``, ``get_outputs``, ``get_providers``); thread-safe (one request at a time)."""

    def __init__(self, model_path: str | os.PathLike[str], setting: str, threads: int | None = None) -> None:
        require("openvino", "openvino", f"providers={setting!r}")
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_SETTINGS[setting]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        model = ov.Core().read_model(str(model_path))
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.provider = f"OpenVINO {ov.__version__.split('-')[0]} CPU ({self.precision})"
        self._inputs = [_Port(p.get_any_name(), p.get_partial_shape().to_string()) for p in model.inputs]
        self._outputs = [_Port(p.get_any_name(), p.get_partial_shape().to_string()) for p in model.outputs]

    def get_inputs(self) -> list[_Port]:
        return self._inputs

    def get_outputs(self) -> list[_Port]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [self.provider]

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (feed,) = feeds.values()
        with self._lock:
            self._request.infer({0: feed})
            return [np.array(self._request.get_output_tensor(0).data, dtype=np.float32)]


MATRIX_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni")


def matrix_units(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """This CPU's flags that bf16 and int8 settings run on (AMX, AVX512_BF16, VNNI); [] where unknown."""
    try:
        with open(cpuinfo) as fp:
            line = next((line for line in fp if line.startswith("flags")), "")
    except OSError:
        return []
    flags = set(line.split(":", 1)[-1].split())
    return [f for f in MATRIX_FLAGS if f in flags]


def settings_report(precision: str | None = None) -> dict[str, Any]:
    """For `vggsim doctor`: the CPU's matrix units, whether OpenVINO is installed, and the named setting that
    is fastest within tolerance here (measured: docs/guide/edge.md) for a model of ``precision``."""
    import importlib.util

    units = matrix_units()
    installed = importlib.util.find_spec("openvino") is not None
    bf16 = bool({"amx_bf16", "avx512_bf16"} & set(units))
    int8 = bool({"amx_int8", "avx512_vnni", "avx_vnni"} & set(units))
    if not installed:
        suggested = "pip install 'vggsim[openvino]' for the openvino-bf16 and openvino-cpu settings"
    elif precision == "int8" and int8:
        suggested = "--providers openvino-cpu (this int8 model's layers in int8 on the CPU's matrix units)"
    elif bf16:
        suggested = "--providers openvino-bf16 (bfloat16 on the CPU's matrix units; cosine >= 0.999 to fp32)"
    else:
        suggested = "none: this CPU has no bf16 units (openvino-bf16 would run f32)"
    return {"matrix_units": units, "openvino_installed": installed, "settings": list(OPENVINO_SETTINGS),
            "suggested": suggested}
