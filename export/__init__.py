"""Export the Keras VGG16 recipe to ONNX. Needs the ``export`` extra (TensorFlow, tf2onnx).

Importing this package does not import TensorFlow; :func:`export_model` does.
"""

from .errors import AccuracyError, ExportError, ParityError, WeightsError
from .exporter import ExportResult, export_model
from .parity import ParityTolerance

__all__ = ["export_model", "ExportResult", "ExportError", "ParityError", "WeightsError",
           "AccuracyError", "ParityTolerance"]
