"""vggsim: the Keras VGG16 image-similarity recipe on onnxruntime, Pillow and NumPy alone."""

from __future__ import annotations

from vggsim.collection import (
    DuplicateGroup,
    EmbedProgress,
    EmbedSummary,
    Match,
    StoreReader,
    embed_into_store,
    find_duplicates,
    search_images,
    search_store,
)
from vggsim.images.decode import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS
from vggsim.model.embedder import Embedder
from vggsim.errors import (
    ImageError,
    MissingExtraError,
    ModelError,
    ProviderError,
    RandomWeightsWarning,
    StoreError,
    VggsimError,
)
from vggsim.model.manifest import Manifest, read_manifest
from vggsim.ingest.pipeline import EmbedResult, iter_embeddings
from vggsim.images.preprocess import DEFAULT_SPEC, PreprocessSpec, load_image, to_rgb
from vggsim.images.samples import sample_photos
from vggsim.model.session import available_providers, usable_cpus
from vggsim.version import __version__
from vggsim.similarity import cosine, cosine_similarity, l2_normalize


__all__ = [
    "ALLOWED_FORMATS", "DEFAULT_MAX_PIXELS", "DEFAULT_SPEC", "EmbedResult", "Embedder", "ImageError",
    "Manifest", "MissingExtraError", "ModelError", "PreprocessSpec", "ProviderError",
    "RandomWeightsWarning", "StoreError", "VggsimError", "available_providers", "cosine",
    "cosine_similarity", "l2_normalize", "load_image", "read_manifest", "sample_photos",
    "iter_embeddings", "to_rgb", "usable_cpus", "__version__",
    # the collection library (pyarrow, the store extra, is imported only when a store is used)
    "DuplicateGroup", "EmbedProgress", "EmbedSummary", "Match", "StoreReader", "embed_into_store",
    "find_duplicates", "search_images", "search_store",
]
