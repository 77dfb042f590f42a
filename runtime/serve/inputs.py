"""Reading request bodies: the size limit, and images from raw, multipart or JSON/base64 bodies."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vggsim.serve.problems import ApiError


@dataclass(frozen=True)
class Upload:
    name: str    # the part's file name, or "image N"; used in error messages
    data: bytes


@dataclass(frozen=True)
class Body:
    """A parsed request: its images, and the JSON object's other fields (empty for raw/multipart)."""

    uploads: list[Upload]
    fields: dict[str, Any]


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is over the {limit:,}-byte limit")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as more than ``limit`` bytes arrive (whatever Content-Length said)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form parser then reads this instead of the (spent) stream
    return body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def parse_images(request: Request, limit: int, max_images: int) -> Body:
    """Images from an ``image/*`` (or octet-stream) body, a multipart form, or JSON with base64.

    JSON: ``{"images": [b64, ...]}`` or ``{"image": b64}``, plus other fields the route reads.
    """
    kind = media_type(request)
    if kind.startswith("image/") or kind == "application/octet-stream":
        data = await read_body(request, limit)
        return Body([Upload("<body>", data)], {})
    if kind == "multipart/form-data":
        await read_body(request, limit)
        try:
            form = await request.form(max_files=max_images, max_fields=max_images + 16)
        except HTTPException as exc:  # Starlette's multipart limits and parse errors
            detail = str(exc.detail)
            if "too many files" in detail.lower():
                raise ApiError(413, "too_many_images", f"more than {max_images} images in one request") from None
            raise ApiError(400, "bad_multipart", detail) from None
        uploads = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append(Upload(value.filename or key, await value.read()))
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return Body(_bounded(uploads, max_images), fields)
    if kind == "application/json":
        # in a thread: parsing tens of MB of JSON takes seconds, which the event loop must not wait for
        return await asyncio.to_thread(from_json, await read_body(request, limit), max_images)
    raise ApiError(415, "unsupported_media_type", f"content type {kind or '(none)'!r} is not accepted: send image/*, "
                   "multipart/form-data or application/json")


def _bounded(uploads: list[Upload], max_images: int) -> list[Upload]:
    if len(uploads) > max_images:
        raise ApiError(413, "too_many_images", f"{len(uploads)} images in one request, over the limit of {max_images}")
    return uploads


#: the most arrays, objects and commas a /v1 JSON body needs (a 512-number vector, a few dozen images,
#: fields): checked before parsing, since each costs tens of bytes once parsed (a 31 MB body of "[],"
#: grew the service by 800 MB)
_MOST_JSON_ITEMS = 20_000


def from_json(body: bytes, max_images: int) -> Body:
    if body.count(b"[") + body.count(b"{") + body.count(b",") > _MOST_JSON_ITEMS:
        raise ApiError(400, "bad_json", f"the JSON body holds more than {_MOST_JSON_ITEMS:,} arrays, objects and "
                       "values: more than any request of this service needs")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    except RecursionError:  # a body of 100,000 nested brackets: within the size limit, past the parser's stack
        raise ApiError(400, "bad_json", "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the JSON body must be an object")
    encoded = data.pop("images", None)
    single = data.pop("image", None)
    if encoded is None:
        encoded = [] if single is None else [single]
    if not isinstance(encoded, list) or not all(isinstance(e, str) for e in encoded):
        raise ApiError(400, "bad_json", '"images" must be a list of base64 strings')
    _bounded([Upload("", b"")] * len(encoded), max_images)
    uploads = []
    for number, text in enumerate(encoded):
        try:
            uploads.append(Upload(f"image {number}", base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad_base64", f"image {number} is not valid base64") from None
    return Body(uploads, data)
