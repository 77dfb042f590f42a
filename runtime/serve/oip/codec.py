"""Open Inference Protocol (KServe v2 / Triton) bodies: an infer request in, an infer response out.

A request is a JSON object, or with the binary tensor extension a JSON header of
``Inference-Header-Content-Length`` bytes followed by the tensors' raw bytes, in input order,
for each input whose ``parameters.binary_data_size`` says how many. BYTES elements are
raw in binary (each a 4-byte little-endian length, then the bytes) and base64 strings in JSON
(an encoded image is not text); FP32 is little-endian in binary and numbers in JSON.
Nothing here touches the model: :func:`parse_infer` gives the images or pixels, and
:func:`encode_infer` the answer; vggsim.serve.oip.routes does the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggsim.serve.problems import ApiError

#: the model's one output, and the two inputs it takes (exactly one per request)
OUTPUT, IMAGES, PIXELS = "embeddings", "images", "pixels"
#: most images whose FP32 pixels a request may carry as JSON numbers (about 0.3 s of parsing on the event
#: loop's GIL); more go in the binary tensor extension, which costs no parsing
JSON_PIXEL_IMAGES = 4
HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: encoded images (BYTES) or decoded pixels (FP32 [n, h, w, 3])."""

    id: str | None
    images: list[bytes] | None
    pixels: np.ndarray | None
    binary_output: bool

    @property
    def count(self) -> int:
        return len(self.images) if self.images is not None else len(self.pixels)  # type: ignore[arg-type]


def bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def parse_infer(body: bytes, header_length: str | None, input_size: tuple[int, int], max_images: int) -> InferRequest:
    """The request in ``body``; ``header_length`` is the Inference-Header-Content-Length header, if sent."""
    if header_length is None:
        head, rest = body, b""
    else:
        # 12 digits at most: int() refuses strings of over 4,300 digits, and no longer length fits a body
        if not (header_length.isascii() and header_length.isdigit() and len(header_length) <= 12
                and int(header_length) <= len(body)):
            raise bad(f"Inference-Header-Content-Length {header_length!r} is not a length within the "
                      f"{len(body):,}-byte body")
        head, rest = body[:int(header_length)], body[int(header_length):]
    # Before parsing: json.loads holds the GIL (a thread does not help), and each value or list costs tens
    # of bytes once parsed: a 31 MB body of "[]," stalled every route for 8 s and grew the service by 800 MB
    # an object key or an object costs several times a number: weighed so
    if head.count(b",") + head.count(b"[") + 4 * (head.count(b":") + head.count(b"{")) > _most_json_items(input_size):
        raise bad(f"the JSON holds more values than {JSON_PIXEL_IMAGES} images' pixels: send more pixels in the "
                  "binary tensor extension (binary_data_size), or images as BYTES")
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad(f"the inference header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise bad('the request must be a JSON object with an "inputs" list')
    inputs = request["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f'send exactly one input: "{IMAGES}" (BYTES [-1], encoded images) or "{PIXELS}" '
                  f"(FP32 [-1,{input_size[1]},{input_size[0]},3])")
    tensor = inputs[0]
    shape = _shape(tensor)
    raw = _binary_part(tensor, rest)
    name, datatype = tensor.get("name"), tensor.get("datatype")
    if name == IMAGES and datatype == "BYTES":
        images = _bytes_elements(tensor, raw, shape)
        pixels = None
    elif name == PIXELS and datatype == "FP32":
        images, pixels = None, _fp32(tensor, raw, shape, input_size)
    else:
        raise bad(f"unknown input {name!r} of type {datatype!r}: this model takes \"{IMAGES}\" (BYTES) or "
                  f'"{PIXELS}" (FP32)')
    count = len(images) if images is not None else len(pixels)  # type: ignore[arg-type]
    if count == 0:
        raise bad("the input holds no image")
    if count > max_images:
        raise ApiError(413, "too_many_images", f"{count} images in one request, over the limit of {max_images}")
    ident = request.get("id")
    return InferRequest(ident if isinstance(ident, str) else None, images, pixels, _binary_output(request))


def _shape(tensor: dict[str, Any]) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        raise bad('"shape" must be a list of whole numbers')
    return shape


def _binary_part(tensor: dict[str, Any], rest: bytes) -> bytes | None:
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        if rest:
            raise bad("binary data follows the header, but the input has no binary_data_size")
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size != len(rest):
        raise bad(f"binary_data_size {size!r} does not match the {len(rest):,} bytes after the header")
    return rest


def _bytes_elements(tensor: dict[str, Any], raw: bytes | None, shape: list[int]) -> list[bytes]:
    elements: list[bytes] = []
    if raw is not None:
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise bad(f"BYTES element {len(elements)} is cut off in its length prefix")
            length = int.from_bytes(raw[offset:offset + 4], "little")
            offset += 4
            if offset + length > len(raw):
                raise bad(f"BYTES element {len(elements)} says {length:,} bytes, past the end of the data")
            elements.append(raw[offset:offset + length])
            offset += length
    else:
        for number, text in enumerate(_flat(tensor.get("data"))):
            if not isinstance(text, str):
                raise bad(f"BYTES element {number} must be a base64 string in JSON (or send it binary)")
            try:
                elements.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise bad(f"BYTES element {number} is not valid base64") from None
    if len(shape) != 1 or shape[0] != len(elements):
        raise bad(f"shape {shape} does not match the {len(elements)} BYTES elements sent (use [n])")
    return elements


def _fp32(tensor: dict[str, Any], raw: bytes | None, shape: list[int], input_size: tuple[int, int]) -> np.ndarray:
    width, height = input_size
    if len(shape) != 4 or shape[1:] != [height, width, 3]:
        raise bad(f"FP32 input shape must be [n,{height},{width},3] (RGB pixels, 0-255), got {shape}")
    if raw is not None:
        if len(raw) != math.prod(shape) * 4:
            raise bad(f"FP32 data holds {len(raw):,} bytes, shape {shape} needs {math.prod(shape) * 4:,}")
        pixels = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        values = _flat(tensor.get("data"))
        if len(values) != math.prod(shape) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise bad(f"FP32 data must be {math.prod(shape):,} numbers for shape {shape}")
        try:
            pixels = np.asarray(values, dtype=np.float64).astype(np.float32)
        except (OverflowError, ValueError):  # an integer of 400 digits is valid JSON, but no float
            raise bad("FP32 data holds values out of range (pixels are 0-255)") from None
    # RGB values as the model was exported for: out of range, the embedding can overflow to NaN
    if not (np.all(np.isfinite(pixels)) and pixels.min(initial=0.0) >= 0.0 and pixels.max(initial=0.0) <= 255.0):
        raise bad("FP32 pixels must be finite RGB values from 0 to 255")
    return pixels.reshape(shape)


def _most_json_items(input_size: tuple[int, int]) -> int:
    """Values and lists in JSON_PIXEL_IMAGES images' pixels nested as [n][h][w][3], and some slack."""
    width, height = input_size
    return JSON_PIXEL_IMAGES * (height * width * 4 + height + 1) + 4096


def _flat(data: Any) -> list[Any]:
    """OIP allows "data" nested like the shape or flat: flattened, iteratively (no recursion limit)."""
    if not isinstance(data, list):
        raise bad('the input needs "data" (a list), or binary data with binary_data_size')
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            out.append(item)
    return out


def _binary_output(request: dict[str, Any]) -> bool:
    outputs = request.get("outputs")
    parameters = request.get("parameters")
    binary = bool(parameters.get("binary_data_output", False)) if isinstance(parameters, dict) else False
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise bad('"outputs" must be a list of objects')
    for output in outputs:
        if output.get("name") != OUTPUT:
            raise bad(f"unknown output {output.get('name')!r}: this model has one output, \"{OUTPUT}\"")
        own = output.get("parameters")
        if isinstance(own, dict):
            binary = bool(own.get("binary_data", binary))
    return binary


def encode_infer(request: InferRequest, vectors: np.ndarray, model: str, version: str,
                 parameters: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or JSON then the float32 bytes (binary extension)."""
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(vectors.shape)}
    raw = b""
    if request.binary_output:
        raw = vectors.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        output["data"] = vectors.astype(np.float32).ravel().tolist()
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "parameters": parameters,
                              "outputs": [output]}
    if request.id is not None:
        answer["id"] = request.id
    head = json.dumps(answer, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    if not raw:
        return head, {"content-type": "application/json"}
    return head + raw, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
