"""Typed export errors, after optimum's exporter: each says which check failed and by how much."""

from __future__ import annotations

from vggsim.errors import VggsimError


class ExportError(VggsimError, RuntimeError):
    """The export could not be completed."""


class WeightsError(ExportError):
    """The requested weights could not be fetched or loaded."""


class ParityError(ExportError):
    """The ONNX model does not reproduce the Keras model within the tolerances.

    ``failures`` lists each failed check as (metric, measured value, bound).
    """

    def __init__(self, failures: list[tuple[str, float, float]], report: dict[str, object]) -> None:
        self.failures = failures
        self.report = report
        lines = [f"  {metric}: measured {value:.3g}, bound {bound:.3g}" for metric, value, bound in failures]
        super().__init__("ONNX model failed the parity check against Keras:\n" + "\n".join(lines))


class AccuracyError(ExportError):
    """A reduced-precision variant drifted too far from the fp32 model."""
