"""Reduced-precision variants of an exported fp32 model: int8 (settings per instruction set, see
.int8_settings) and fp16.

Both use the ONNX ecosystem's own tools (onnxruntime.quantization, onnxconverter-common)
and keep float32 input and output, so callers do not change. Each variant's manifest
records its accuracy against the fp32 model of the same weights, measured on held-out real
photos; an export whose min cosine falls below the bound fails with AccuracyError.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageOps

from vggsim.errors import require
from vggsim.model.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    ModelFile,
    VariantAccuracy,
    VariantOf,
    read_manifest,
    sha256_file,
)
from vggsim.images.preprocess import PreprocessSpec, load_image
from vggsim.images.samples import sample_photos
from vggsim.model.session import create_session
from vggsim.similarity import l2_normalize

from .calibrate import NEAR_DUPLICATE_EDITS
from .errors import AccuracyError, ExportError
from .int8_settings import Int8Settings, choose, detect_isa, tuning_record

PRECISIONS = ("fp16", "int8")
MIN_COSINE_BOUND = 0.99
CALIBRATION_METHOD = "MinMax"


def split_photos(calibration: Sequence[Path] | None) -> tuple[list[Path], list[Path]]:
    """(calibration, held-out) photos: a named folder calibrates and the samples are held out;
    otherwise the sample photos are split alternately, so no photo is in both."""
    samples = sample_photos()
    if calibration:
        held_out = [p for p in samples if p not in set(calibration)]
        return list(calibration), held_out
    return samples[0::2], samples[1::2]


def _arrays(photos: Sequence[Path], spec: PreprocessSpec) -> Iterator[np.ndarray]:
    for path in photos:
        image = Image.open(path).convert("RGB")
        for variant in (image, ImageOps.mirror(image)):
            yield load_image(variant, spec)[None]


def quantize_int8(fp32: Path, target: Path, calibration: Sequence[Path], spec: PreprocessSpec, input_name: str,
                  settings: Int8Settings | None = None, pre_process: bool = True) -> dict[str, Any]:
    """Quantize ``fp32`` into ``target`` with ``settings`` (this CPU's row of
    :data:`.int8_settings.SETTINGS_BY_ISA` by default); returns the manifest's method block.
    ``pre_process=False`` when ``fp32`` has already been through onnxruntime's quant_pre_process
    (a benchmark quantizing one model many ways does it once)."""
    require("sympy", "export", "The int8 export")
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_dynamic, quantize_static)

    chosen = settings if settings is not None else choose()[1].settings
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = _arrays(calibration, spec)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx" if pre_process else fp32
        if pre_process:
            quant_pre_process(str(fp32), str(prepared))
        if chosen.method == "dynamic":
            quantize_dynamic(str(prepared), str(target), per_channel=chosen.per_channel,
                             reduce_range=chosen.reduce_range, weight_type=types[chosen.weights])
        else:
            quantize_static(str(prepared), str(target), Reader(), quant_format=getattr(QuantFormat, chosen.quant_format),
                            per_channel=chosen.per_channel, reduce_range=chosen.reduce_range,
                            activation_type=types[chosen.activations], weight_type=types[chosen.weights],
                            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD))
    method: dict[str, Any] = {
        "tool": f"onnxruntime.quantization.quantize_{chosen.method}", "format": chosen.quant_format,
        "per_channel": chosen.per_channel, "reduce_range": chosen.reduce_range,
        "activations": chosen.activations if chosen.method == "static" else "uint8 (at run time)",
        "weights": chosen.weights}
    if chosen.method == "static":
        method.update({"calibration_method": CALIBRATION_METHOD, "calibration_images": [p.name for p in calibration],
                       "calibration_augment": "each photo and its mirror"})
    return method


FP16_FIRST_CONV_CHANNELS = 8


def pad_first_conv_channels(model: Any, channels: int = FP16_FIRST_CONV_CHANNELS) -> int:
    """Give the convolutions that read the 3-channel image ``channels`` input channels: the
    input is zero-padded (one Pad node) and the kernel gets zero weights for the new
    channels, so the output is unchanged. Meant for cuDNN's fp16 NHWC tensor-core kernels,
    which want a channel count that is a multiple of 8; on an H200 with the ``cuda-tf32``
    setting it made no measurable difference (11,638 against 11,828 images/s at batch 64; docs: GPU
    benchmarks): what had made fp16 NHWC slow was ``use_tf32=0``.
    Returns how many convolutions were padded."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    padded = 0
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        kernel = numpy_helper.to_array(initializers[node.input[1]])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if kernel.ndim != 4 or kernel.shape[1] != 3 or group != 1:
            continue
        wide = np.zeros((kernel.shape[0], channels, *kernel.shape[2:]), kernel.dtype)
        wide[:, :3] = kernel
        initializers[node.input[1]].CopyFrom(numpy_helper.from_array(wide, node.input[1]))
        pads_name, padded_name = f"{node.name}__channel_pads", f"{node.input[0]}__padded{channels}"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, 0, 0, 0, channels - 3, 0, 0], np.int64), pads_name))
        graph.node.insert(list(graph.node).index(node),
                          helper.make_node("Pad", [node.input[0], pads_name], [padded_name],
                                           name=f"{node.name}__channel_pad", mode="constant"))
        node.input[0] = padded_name
        padded += 1
    return padded


def _convert_fp16(fp32: Path, target: Path) -> dict[str, Any]:
    require("onnxconverter_common", "fp16", "The fp16 export")
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32))
    padded = pad_first_conv_channels(model)
    with warnings.catch_warnings():  # it warns for every tiny weight it rounds to fp16's range
        warnings.simplefilter("ignore", UserWarning)
        # keep_io_types: one Cast after the float32 input and one before the float32 output;
        # everything between (channel flip, mean subtraction, layout change, convolutions,
        # pooling) runs in fp16.
        model = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(target))
    return {"tool": "onnxconverter_common.float16.convert_float_to_float16", "keep_io_types": True,
            "first_conv_input_channels": FP16_FIRST_CONV_CHANNELS if padded else 3,
            "graph_ops": graph_op_counts(model)}


def graph_op_counts(model: Any) -> dict[str, int]:
    """How many nodes of each type a graph holds (``Cast`` and ``Transpose`` are the ones to watch)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _held_out_set(held_out: Sequence[Path], spec: PreprocessSpec) -> np.ndarray:
    """Held-out photos and five near-duplicate edits of each: a small retrieval set."""
    arrays = []
    for path in held_out:
        image = Image.open(path).convert("RGB")
        arrays.append(load_image(image, spec))
        arrays.extend(load_image(edit(image), spec) for edit in NEAR_DUPLICATE_EDITS.values())
    return np.stack(arrays)


def accuracy(run_fp32: Callable[[np.ndarray], np.ndarray], run_variant: Callable[[np.ndarray], np.ndarray],
             inputs: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Min and mean cosine between fp32 and variant embeddings, and top-k retrieval agreement."""
    reference = l2_normalize(np.concatenate([run_fp32(inputs[i:i + 8]) for i in range(0, len(inputs), 8)]))
    candidate = l2_normalize(np.concatenate([run_variant(inputs[i:i + 8]) for i in range(0, len(inputs), 8)]))
    cosines = np.sum(reference * candidate, axis=1)
    k = min(k, len(inputs) - 1)
    top_reference = np.argsort(-(reference @ reference.T), axis=1)[:, 1:k + 1]
    top_candidate = np.argsort(-(candidate @ candidate.T), axis=1)[:, 1:k + 1]
    agreement = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_reference, top_candidate)])
    return {"images": int(len(inputs)), "min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean()),
            f"top{k}_agreement": float(agreement), "bound_min_cosine": MIN_COSINE_BOUND}


def variant_manifest(base: Manifest, precision: str, model_path: Path, method: Mapping[str, Any],
                     measured: VariantAccuracy) -> Manifest:
    """The fp32 manifest with the variant's model, method and accuracy; the fp32 parity is
    kept as ``fp32_parity`` (the variant itself was not compared with Keras)."""
    return dataclasses.replace(
        base, precision=precision, quantization=method, accuracy_vs_fp32=measured,
        model=ModelFile(model_path.name, sha256_file(model_path), model_path.stat().st_size),
        variant_of=VariantOf(base.model_sha256, base.precision), parity=None, fp32_parity=base.parity, path=None)


def export_variant(fp32_dir: Path, out: Path, precision: str, calibration: Sequence[Path] | None = None,
                   log: Callable[[str], None] = lambda m: None, isa: str | None = None) -> Path:
    """Derive the ``precision`` variant of the fp32 model in ``fp32_dir`` into ``out``.

    An int8 variant is quantized with the settings of instruction set ``isa`` (one of
    :data:`.int8_settings.ISAS`; this CPU's by default), recorded in ``quantization.tuning``."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    base = read_manifest(fp32_dir)
    if base.precision != "fp32":
        raise ExportError(f"{fp32_dir} holds a {base.precision} model: variants are made from the fp32 export")
    spec = base.preprocess
    calibration_photos, held_out = split_photos(calibration)
    if len(held_out) < 2 or (precision == "int8" and not calibration_photos):
        raise ExportError("variants need real photos: install scikit-learn and scikit-image (they ship "
                          "the sample photos) or pass --calibration DIR")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".variant-", dir=out))
    try:
        target = staging / MODEL_FILE
        log(f"making the {precision} variant")
        if precision == "int8":
            try:
                isa_name, choice = choose(isa)
            except ValueError as exc:
                raise ExportError(f"--isa: {exc}") from None
            log(f"int8 settings for {isa_name}: {choice.settings.name} "
                f"({'measured' if choice.measured else 'not measured here'})")
            method = quantize_int8(base.model_path, target, calibration_photos, spec, base.input_name, choice.settings)
            method["tuning"] = tuning_record(isa_name, choice, detect_isa())
        else:
            method = _convert_fp16(base.model_path, target)
        fp32_session, _ = create_session(base.model_path, "cpu")
        try:
            variant_session, _ = create_session(target, "auto")
        except Exception as exc:  # fp16 kernels are missing on some CPU builds
            raise ExportError(f"onnxruntime cannot run the {precision} model here ({exc})") from None
        name = base.input_name
        measured = accuracy(lambda x: fp32_session.run(None, {name: x})[0],
                            lambda x: variant_session.run(None, {name: x})[0], _held_out_set(held_out, spec))
        measured["held_out_photos"] = [p.name for p in held_out]
        log(f"{precision} against fp32: min cosine {measured['min_cosine']:.5f}, mean {measured['mean_cosine']:.5f}")
        if measured["min_cosine"] < MIN_COSINE_BOUND:
            raise AccuracyError(f"the {precision} model drifts from fp32: min cosine {measured['min_cosine']:.5f} "
                                f"< {MIN_COSINE_BOUND} on held-out photos; nothing was written")
        variant_manifest(base, precision, target, method, VariantAccuracy.from_dict(measured)).write(
            staging / MANIFEST_FILE)
        os.replace(target, out / MODEL_FILE)
        os.replace(staging / MANIFEST_FILE, out / MANIFEST_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
