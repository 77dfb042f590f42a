"""The Keras recipe's model: VGG16, ImageNet weights, no top, global max pooling, all frozen."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from vggsim.errors import MissingExtraError
from vggsim.model.manifest import sha256_file

from .errors import WeightsError

INPUT_SHAPE = (224, 224, 3)
NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
# The caffe-style mean Keras's VGG16 preprocess_input subtracts, in BGR order.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
NORMALIZATIONS = ("caffe", "none")


def import_keras() -> Any:
    """Import TensorFlow's Keras, or raise MissingExtraError with the pip command."""
    from vggsim.export.tf_logs import quiet_tensorflow_start

    for module in ("tensorflow", "tf2onnx", "onnx"):
        try:
            with quiet_tensorflow_start():  # TensorFlow's C++ start-up lines, which TF_CPP_MIN_LOG_LEVEL misses
                __import__(module)
        except ImportError as exc:
            raise MissingExtraError("export", "vggsim export", module) from exc
    import keras

    return keras


def _vgg16(keras: Any, weights: str | None) -> Any:
    return keras.applications.VGG16(
        weights=weights, include_top=False, pooling="max", input_shape=INPUT_SHAPE
    )


def _notop_origin() -> str:
    try:
        from keras.src.applications import vgg16 as keras_vgg16

        return str(keras_vgg16.WEIGHTS_PATH_NO_TOP)
    except (ImportError, AttributeError):  # older Keras layouts
        from keras.applications import vgg16 as keras_vgg16

        return str(keras_vgg16.WEIGHTS_PATH_NO_TOP)


def fetch_imagenet_weights(keras: Any) -> Path:
    """Keras's own download and cache of the notop weights file (~/.keras/models)."""
    origin = _notop_origin()
    try:
        path = keras.utils.get_file(NOTOP_FILE, origin, cache_subdir="models", file_hash=NOTOP_MD5)
    except Exception as exc:  # Keras raises a bare Exception for URL failures
        keras_home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
        # one line (the CLI prints errors on one line, with any newline escaped)
        raise WeightsError(
            f"could not download the ImageNet weights ({type(exc).__name__}: {exc}); Keras wanted {NOTOP_FILE} "
            f"(md5 {NOTOP_MD5}) from {origin}, cached in {os.path.join(keras_home, 'models')}: copy the file "
            f"there, or pass it with `vggsim export --weights /path/to/{NOTOP_FILE}`; for an offline smoke test "
            "(meaningless scores) use `--weights random --seed 0`"
        ) from None
    return Path(path)


def random_weights(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """He-normal kernels and zero biases from NumPy's PCG64: the same on every platform.

    NumPy alone, so a random-weight model can be rebuilt bit for bit without TensorFlow.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    weights = []
    for shape in shapes:
        if len(shape) == 4:
            fan_in = int(np.prod(shape[:3]))
            weights.append((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        else:
            weights.append(np.zeros(shape, dtype=np.float32))
    return weights


def random_vgg16(keras: Any, seed: int) -> tuple[Any, str]:
    """The recipe's VGG16 with :func:`random_weights` on any Keras 3 backend, and their sha256."""
    model = _vgg16(keras, None)
    weights = random_weights([tuple(w.shape) for w in model.get_weights()], seed)
    model.set_weights(weights)
    digest = hashlib.sha256()
    for value in weights:
        digest.update(value.tobytes())
    return model, digest.hexdigest()


def build_model(weights: str = "imagenet", seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """The recipe's frozen VGG16 and a description of its weights for the manifest.

    ``weights``: ``imagenet`` (Keras's download and cache), ``random`` (He-normal from
    ``seed``, for offline tests), or a path to any file ``VGG16(weights=PATH)`` loads.
    """
    keras = import_keras()
    if weights == "random":
        model, digest = random_vgg16(keras, seed)
        info: dict[str, Any] = {
            "source": "random", "seed": seed, "init": "he_normal kernels, zero biases, numpy PCG64",
            "sha256": digest,
        }
    else:
        path = fetch_imagenet_weights(keras) if weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise WeightsError(f"Weights file {path} does not exist. Pass the notop .h5 file "
                               f"({NOTOP_FILE}) or any file VGG16(weights=PATH) loads.")
        try:
            model = _vgg16(keras, os.fspath(path))
        except Exception as exc:
            raise WeightsError(
                f"{path}: VGG16(include_top=False) could not load these weights "
                f"({type(exc).__name__}: {exc}). Pass the notop file {NOTOP_FILE}."
            ) from None
        info = {"source": weights if weights == "imagenet" else "file", "file": path.name,
                "sha256": sha256_file(path)}
    for layer in model.layers:
        layer.trainable = False
    model.trainable = False
    return model, info


def keras_preprocess(batch: np.ndarray, normalization: str) -> np.ndarray:
    """What the recipe feeds ``model.predict``: Keras's own VGG16 ``preprocess_input``, or raw."""
    if normalization == "none":
        return batch
    from keras.applications.vgg16 import preprocess_input

    return np.asarray(preprocess_input(batch.copy()))  # preprocess_input works in place


def keras_embed(model: Any, batch: np.ndarray, normalization: str) -> np.ndarray:
    """The recipe's embedding: ``model.predict`` on the (preprocessed) batch."""
    return np.asarray(model.predict(keras_preprocess(batch, normalization), verbose=0), np.float32)
