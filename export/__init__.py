"""Export the Keras VGG16 recipe to ONNX. Needs the ``export`` extra (TensorFlow, tf2onnx).

Importing this package does not import TensorFlow; :func:`export_model` does. The exporter,
its ONNX converter and the parity checker are imported on first use of their names (PEP 562),
so that ``vggsim`` commands that only need a constant of a submodule here (``--isa``'s choices
from ``int8_settings``) do not pay for them at start (~130 ms).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AccuracyError, ExportError, ParityError, WeightsError

if TYPE_CHECKING:
    from .exporter import ExportResult, export_model
    from .parity import ParityTolerance

_LAZY = {"export_model": "exporter", "ExportResult": "exporter", "ParityTolerance": "parity"}

__all__ = ["export_model", "ExportResult", "ExportError", "ParityError", "WeightsError",
           "AccuracyError", "ParityTolerance"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
