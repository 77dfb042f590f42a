"""Export: the ONNX model is the Keras recipe's model, proven against Keras itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import needs_tensorflow
from vggsim import Embedder, cosine_similarity
from vggsim.model.manifest import read_manifest

pytestmark = [needs_tensorflow, pytest.mark.export]


def test_manifest_records_every_fact(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    from vggsim.model.manifest import sha256_file

    assert manifest["model"]["sha256"] == sha256_file(model_dir / "model.onnx")
    assert manifest["embedding_dim"] == 512 and manifest["opset"] == 17
    assert manifest["input"] == {"name": "image", "shape": ["batch", 224, 224, 3], "dtype": "float32",
                                 "layout": "NHWC", "range": "0-255 RGB"}
    assert manifest["preprocess"]["resample"] == "bicubic" and manifest["preprocess"]["exif_transpose"] is False
    assert manifest["weights"]["source"] == "random" and len(manifest["weights"]["sha256"]) == 64
    for name in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"):
        assert manifest["versions"][name]
    parity = manifest["parity"]
    assert parity["passed"] and parity["preprocess_bit_identical"]
    assert parity["min_cosine"] >= 0.99999 and parity["max_score_diff"] <= 1e-5
    assert parity["max_rel_error"] <= 1e-4
    typed = read_manifest(model_dir)  # what the exporter wrote is what the schema reads back
    assert typed.to_dict() == manifest and typed.parity is not None and typed.parity.passed
    assert typed.dedup is None or -1 <= typed.dedup.threshold <= 1


def test_onnx_graph_is_checked_named_and_dynamic(model_dir: Path) -> None:
    import onnx

    model = onnx.load(str(model_dir / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["embedding"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["vggsim.normalization"] == "caffe"


def _recipe_scores(weights_file: Path, photos: list[Path], normalization: str) -> np.ndarray:
    """The Keras recipe, line for line, with sklearn's cosine_similarity."""
    import keras
    from keras.applications.vgg16 import preprocess_input
    from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

    vgg16 = keras.applications.VGG16(weights=str(weights_file), include_top=False, pooling="max",
                                     input_shape=(224, 224, 3))
    for layer in vgg16.layers:
        layer.trainable = False
    embeddings = []
    for path in photos:
        x = np.expand_dims(keras.utils.img_to_array(Image.open(path).resize((224, 224))), axis=0)
        if normalization == "caffe":
            x = preprocess_input(x)
        embeddings.append(vgg16.predict(x, verbose=0)[0])
    return np.asarray(sk_cosine(np.stack(embeddings)))


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["caffe", "none"])
def test_recipe_and_vggsim_agree_given_the_same_weights_file(
    tmp_path: Path, photos: list[Path], normalization: str
) -> None:
    from vggsim.export import export_model
    from vggsim.export.keras_model import build_model

    model, _ = build_model("random", seed=7)
    if normalization == "caffe":  # the legacy layout Keras distributes the notop file in
        import h5py
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

        weights_file = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
        with h5py.File(weights_file, "w") as handle:
            save_weights_to_hdf5_group(handle, model)
    else:  # the Keras 3 weights format
        weights_file = tmp_path / "vgg16_notop.weights.h5"
        model.save_weights(str(weights_file))
    out = tmp_path / normalization
    result = export_model(out=out, weights=str(weights_file), normalization=normalization)
    assert result.manifest.weights.source == "file" and result.manifest.weights.file == weights_file.name
    assert result.manifest == read_manifest(out) and result.manifest.parity and result.manifest.parity.passed
    rgb = [p for p in photos if Image.open(p).mode == "RGB"][:5]
    expected = _recipe_scores(weights_file, rgb, normalization)
    ours = cosine_similarity(Embedder(out, providers="cpu").embed(rgb))
    assert np.abs(expected - ours).max() <= 1e-5


def test_normalization_none_is_a_different_model(model_dir: Path, model_dir_none: Path, photos: list[Path]) -> None:
    caffe = Embedder(model_dir, providers="cpu").embed(photos[:2])
    raw = Embedder(model_dir_none, providers="cpu").embed(photos[:2])
    assert json.loads((model_dir_none / "manifest.json").read_text())["parity"]["passed"]
    assert not np.allclose(caffe, raw)


@pytest.mark.slow  # TensorFlow in the test process: gigabytes that stay until it exits
def test_parity_failure_is_typed_and_writes_nothing(tmp_path: Path, photos: list[Path]) -> None:
    from vggsim.export import ParityError, ParityTolerance, export_model

    out = tmp_path / "strict"
    with pytest.raises(ParityError) as info:
        export_model(out=out, weights="random", tolerance=ParityTolerance(min_cosine=1.0 + 1e-9))
    assert info.value.failures[0][0] == "min_cosine"
    assert not (out / "model.onnx").exists() and not (out / "manifest.json").exists()


def test_failed_imagenet_download_explains_the_offline_route(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from vggsim.export import WeightsError
    from vggsim.export.keras_model import NOTOP_FILE, build_model

    def no_network(*args: object, **kwargs: object) -> str:
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(WeightsError) as info:
        build_model("imagenet")
    message = str(info.value)
    assert NOTOP_FILE in message and "--weights /path/to/" in message and "Traceback" not in message


def test_weights_file_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    from vggsim.export import WeightsError
    from vggsim.export.keras_model import build_model

    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="bogus.h5"):
        build_model(str(bogus))
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(str(tmp_path / "absent.h5"))
