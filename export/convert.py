"""Keras model to ONNX with tf2onnx, the normalization folded into the graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .keras_model import CAFFE_MEAN_BGR, INPUT_SHAPE, NORMALIZATIONS

# Opset 17: every op VGG16 needs (Conv, Relu, MaxPool, ReduceMax, Slice, Sub) has been
# stable since long before it; onnxruntime has run it since 1.14, TensorRT 8.6 and
# OpenVINO 2023 read it, and tf2onnx 1.17 tests it. A newer opset gains this model nothing
# and loses older edge runtimes.
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
BATCH_DIM = "batch"


def to_onnx(model: Any, normalization: str, opset: int = DEFAULT_OPSET) -> Any:
    """Convert the frozen Keras model to an ONNX ModelProto that takes 0-255 RGB NHWC float32.

    ``caffe`` puts VGG16's ``preprocess_input`` (RGB to BGR, ImageNet mean subtracted) in
    front of the network; ``none`` feeds the raw pixels, as the recipe literally does.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_NAME)

    # tf2onnx's from_keras does not handle Keras 3 (tensorflow-onnx#2329); from_function
    # with an explicit signature does. Constants are made inside the function, or
    # tf2onnx would turn the captured tensor into an extra graph input.
    def embed(image: Any) -> Any:
        if normalization == "caffe":
            image = image[..., ::-1] - tf.constant(CAFFE_MEAN_BGR)
        return {OUTPUT_NAME: model(image, training=False)}

    # tf.function as a call, not a decorator: TensorFlow is untyped (Any) to mypy.
    function = tf.function(embed, input_signature=[spec])
    proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_DIM
    return proto


def finish(proto: Any, path: Path, metadata: dict[str, Any]) -> None:
    """Write the model with its metadata_props and run onnx's full checker on the file."""
    import onnx

    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    proto.producer_name = "vggsim"
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def onnx_embed(session: Any, batch: np.ndarray) -> np.ndarray:
    """Run an onnxruntime session on a float32 NHWC batch."""
    return np.asarray(session.run(None, {INPUT_NAME: np.ascontiguousarray(batch, np.float32)})[0])
