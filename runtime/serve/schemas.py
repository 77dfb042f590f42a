"""Response and request shapes, for the OpenAPI schema (routes answer with plain JSON of these shapes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: int
    kind: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelFacts(BaseModel):
    model_sha256: str
    provider: str
    random_weights: bool


class EmbedResponse(ModelFacts):
    dim: int
    normalized: bool
    embeddings: list[list[float]] = Field(description="float32 values, one row per image, in request order")


class SimilarityResponse(ModelFacts):
    score: float = Field(description="cosine similarity, as `vggsim compare` prints it")


class MatchOut(BaseModel):
    path: str
    score: float
    id: int


class IndexOut(BaseModel):
    mode: str = Field(description="the service's --index: auto, off or require")
    used: bool = Field(description="true: the on-disk index was searched; false: the store was searched exactly")
    state: str = Field(description="current, missing, stale (built for another snapshot), damaged (a file of the "
                       "index changed or was cut), unavailable (no faiss), empty or off")
    message: str | None = Field(None, description="why the index was not used, and what to do; or that more lists "
                                "were searched to find k matches")
    vectors: int | None = None
    nprobe: int | None = None
    nprobe_used: int | None = Field(None, description="lists searched for this query when its nprobe lists held "
                                    "fewer than k candidates")
    factory: str | None = None


class SearchResponse(ModelFacts):
    generation: int = Field(description="the store commit generation searched")
    snapshot: str = Field(description="the snapshot searched, by generation and content (name it to "
                          "/v1/thumbnail): another store in the same folder can reach the same generation")
    k: int
    index: IndexOut
    matches: list[MatchOut]


class DuplicatesResponse(ModelFacts):
    generation: int
    snapshot: str
    threshold: float
    is_duplicate: bool
    index: IndexOut
    matches: list[MatchOut]


def body_doc(json_schema: dict[str, Any], files: int | None = None) -> dict[str, Any]:
    """openapi_extra for a route that takes an image body: image/*, multipart (``files`` parts), or JSON."""
    multipart: dict[str, Any] = {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1,
                 **({"maxItems": files} if files else {})}}, "required": ["file"]}
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": multipart},
        "application/json": {"schema": json_schema},
    }
    if files == 1:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


B64_LIST = {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}
