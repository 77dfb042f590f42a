"""The Embedder: one model, one session, images in, 512-d float32 embeddings out."""

from __future__ import annotations

import os
import warnings
from typing import Union
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vggsim.model.cuda.feed import DEFAULT_FIXED_BATCH, FixedBatchFeed, NonFiniteRow
from vggsim.images.decode import DEFAULT_MAX_PIXELS, ImageSource
from vggsim.errors import ImageError, RandomWeightsWarning
from vggsim.model.host_copy import first_non_finite
from vggsim.model.manifest import Manifest, read_manifest
from vggsim.images.preprocess import PreprocessSpec, load_image
from vggsim.model.session import CUDA_SETTINGS, ProviderRequest, Session, create_session
from vggsim.model.profiles import SessionProfile, session_profile
from vggsim.similarity import cosine

ImagesInput = Union[ImageSource, Iterable[Union[ImageSource, np.ndarray]], np.ndarray]


class Embedder:
    """VGG16 image embeddings on onnxruntime.

    >>> embedder = Embedder("models/vgg16")          # doctest: +SKIP
    >>> vectors = embedder.embed(["a.jpg", "b.jpg"])  # doctest: +SKIP
    >>> embedder.similarity("a.jpg", "b.jpg")         # doctest: +SKIP

    ``model`` is a folder made by ``vggsim export`` (default ``$VGGSIM_MODEL`` or
    ``models/vgg16``); its sha256 is checked against the manifest. ``providers`` is
    ``"auto"``, ``"cpu"``, ``"cuda"`` (exact float32), ``"cuda-tf32"`` (TF32 convolutions:
    faster, not bit-level parity) or an onnxruntime provider list; ``.provider`` says
    which one runs, and ``strict=True`` raises if it is not the one requested.
    ``spec`` overrides the manifest's preprocessing, for example
    ``spec=dataclasses.replace(read_manifest(model).preprocess, exif_transpose=True)``.
    ``max_pixels`` (a positive integer) is the decompression-bomb guard.
    ``cache_optimized=True`` saves onnxruntime's optimised graph beside the model on first
    use (keyed by model, onnxruntime version, provider and CPU) for faster cold starts.
    ``io_binding`` (default: on for CUDA) runs through onnxruntime's I/O binding, so the
    output is allocated once by the provider instead of copied through a Python list.
    ``fixed_batch`` pads every run to that many images and feeds it through page-locked host
    buffers and device buffers bound once (:mod:`vggsim.model.cuda.feed`): the only way to run the
    ``cuda-graph`` settings (one captured graph per batch shape), and the copy-overlapping
    ``cuda-overlap`` ones; those settings default it to 8. Use ``fixed_batch=1`` for the
    lowest single-image latency. An image's vector does not depend on the padding.
    ``profile`` names the session settings: ``"default"``, or ``"edge"`` for small devices
    (no arena, optimised graph saved once with memory-mapped weights; same vectors, less
    memory: :mod:`vggsim.model.profiles`).

    All of this is fixed at construction: ``spec``, ``max_pixels``, ``provider``, ``dim``,
    ``io_binding``, ``manifest`` and ``session`` are read-only, so an Embedder's vectors
    always match what a store recorded for it.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        providers: ProviderRequest = "auto",
        threads: int | None = None,
        strict: bool = False,
        spec: PreprocessSpec | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache_optimized: bool = False,
        io_binding: bool | None = None,
        fixed_batch: int | None = None,
        profile: str | SessionProfile = "default",
    ) -> None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        chosen_profile = session_profile(profile)  # an unknown name fails before the model is read
        self._profile = chosen_profile.name
        profile_cached_graph = chosen_profile.cached_graph
        manifest = read_manifest(model, verify=True)
        if manifest.random_weights:
            warnings.warn(
                f"{manifest.model_path} was exported with random weights "
                f"(seed {manifest.weights.seed}): its similarity scores "
                "are not meaningful. Export with ImageNet weights for real use.",
                RandomWeightsWarning,
                stacklevel=2,
            )
        # Everything below is fixed for the Embedder's life (read-only properties): a store
        # records the spec and model it was built with, so changing them afterwards would
        # silently mix vectors. Pass spec=dataclasses.replace(...) to the constructor instead.
        self._manifest = manifest
        self._spec: PreprocessSpec = spec or manifest.preprocess
        self._max_pixels = max_pixels
        setting = CUDA_SETTINGS.get(providers.lower()) if isinstance(providers, str) else None
        if fixed_batch is None and setting is not None and (setting.cuda_graph or setting.overlap):
            fixed_batch = DEFAULT_FIXED_BATCH
        if fixed_batch is not None and (isinstance(fixed_batch, bool) or not isinstance(fixed_batch, int)
                                        or fixed_batch < 1):
            raise ValueError(f"fixed_batch must be a positive integer or None, got {fixed_batch!r}")
        self._session, self._provider = create_session(
            manifest.model_path, providers, threads, strict,
            cache_key=manifest.model_sha256 if cache_optimized or profile_cached_graph else None,
            fixed_buffers=fixed_batch is not None, profile=chosen_profile,
        )
        height, width = self._spec.size[1], self._spec.size[0]
        self._feed = None if fixed_batch is None else FixedBatchFeed(
            self._session, fixed_batch, (height, width, 3), overlap=bool(setting and setting.overlap))
        self._io_binding = self._provider == "CUDAExecutionProvider" if io_binding is None else io_binding
        self._input_name = manifest.input_name
        self._dim = manifest.embedding_dim

    @property
    def manifest(self) -> Manifest:
        """The model's manifest (typed; see :mod:`vggsim.model.manifest`)."""
        return self._manifest

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing applied to every image: the manifest's, or the one passed in."""
        return self._spec

    @property
    def max_pixels(self) -> int:
        """Decompression-bomb guard: images with more pixels are refused before decoding."""
        return self._max_pixels

    @property
    def provider(self) -> str:
        """The onnxruntime provider actually running the model."""
        return self._provider

    @property
    def profile(self) -> str:
        """The session profile (``"default"`` or ``"edge"``); it never changes the vectors."""
        return self._profile

    @property
    def session(self) -> Session:
        return self._session

    @property
    def io_binding(self) -> bool:
        return self._io_binding

    @property
    def fixed_batch(self) -> int | None:
        """The batch every run is padded to (fixed buffers), or None for runs of any size."""
        return None if self._feed is None else self._feed.batch_size

    @property
    def dim(self) -> int:
        """Embedding length (512)."""
        return self._dim

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the images are resized to."""
        return self._spec.size

    @property
    def model_sha256(self) -> str:
        return self.manifest.model_sha256

    def load(self, image: ImageSource | np.ndarray) -> np.ndarray:
        """Decode and preprocess one image exactly as :meth:`embed` does; a preprocessed
        (224, 224, 3) array is checked and passed through (finite values checked by :meth:`run`)."""
        if isinstance(image, np.ndarray):
            width, height = self.input_size
            if image.shape != (height, width, 3):
                raise ImageError("<array>", "bad_array", f"a preprocessed image must have shape "
                                 f"({height}, {width}, 3), got {tuple(image.shape)}")
            return np.asarray(image, dtype=np.float32)
        return load_image(image, self.spec, self.max_pixels)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on an (N, H, W, 3) float32 batch of 0-255 RGB arrays (one image too
        needs the batch axis here: ``image[None]``; :meth:`embed` takes either)."""
        width, height = self.input_size
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != (height, width, 3):
            shape = tuple(batch.shape) if isinstance(batch, np.ndarray) else type(batch).__name__
            hint = " (one image: pass image[None], or use embed)" if shape == (height, width, 3) else ""
            raise ImageError(
                "<array>", "bad_array",
                f"run needs a batch of shape (N, {height}, {width}, 3), got {shape}{hint}",
            )
        return self._run(np.ascontiguousarray(batch, dtype=np.float32), check_finite=True)

    def _run(self, feed: np.ndarray, check_finite: bool) -> np.ndarray:
        # Images this Embedder decoded itself are uint8 made float: finite by construction, so
        # only arrays from the caller pay for the check (rows over threads: host_copy).
        if self._feed is not None:
            try:
                return self._feed.run(feed, check_finite)
            except NonFiniteRow as exc:
                raise _non_finite(exc.index) from None
        bad = first_non_finite(feed) if check_finite else None
        if bad is not None:
            raise _non_finite(bad)
        if self.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input(self._input_name, feed)
            binding.bind_output(self.manifest.output_name)
            self.session.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)
        output = self.session.run(None, {self._input_name: feed})[0]
        return np.asarray(output, dtype=np.float32)

    def embed(self, images: ImagesInput, batch_size: int = 8) -> np.ndarray:
        """Embeddings of ``images`` as a float32 (N, 512) array, in input order.

        ``images`` is one image or an iterable of them (paths, bytes, file objects, PIL
        images, preprocessed (224, 224, 3) arrays), or a preprocessed float32 array of shape
        (N, 224, 224, 3) or (224, 224, 3).
        The first input that cannot be read raises :class:`~vggsim.ImageError`; to go on past
        bad files, use :func:`vggsim.iter_embeddings`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(images, np.ndarray):
            batch = images[None, ...] if images.ndim == 3 else images
            if self._feed is not None:  # the feed cuts its own fixed-size chunks (and overlaps their copies)
                return self.run(batch)
            return np.concatenate(
                [self.run(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
                or [np.zeros((0, self.dim), np.float32)]
            )
        sources: list[ImageSource | np.ndarray] = [images] if _is_single(images) else list(images)  # type: ignore[list-item,arg-type]
        chunks = [self._run_loaded([self.load(s) for s in part], part) for part in _chunks(sources, batch_size)]
        result: np.ndarray = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return result

    def _run_loaded(self, arrays: list[np.ndarray], sources: Sequence[ImageSource | np.ndarray]) -> np.ndarray:
        """Run what :meth:`load` returned; only caller arrays among ``sources`` need the finite check."""
        caller_arrays = any(isinstance(source, np.ndarray) for source in sources)
        return self._run(np.stack(arrays), check_finite=caller_arrays)

    def embed_one(self, image: ImageSource | np.ndarray) -> np.ndarray:
        """The (512,) embedding of a single image."""
        vector: np.ndarray = self.embed([image])[0]
        return vector

    def similarity(self, a: ImageSource | np.ndarray, b: ImageSource | np.ndarray) -> float:
        """Cosine similarity of two images' embeddings, as the recipe computes it (either may
        be a preprocessed (224, 224, 3) array)."""
        vectors = self.embed([a, b], batch_size=2)
        return cosine(vectors[0], vectors[1])


def _non_finite(index: int) -> ImageError:
    return ImageError("<array>", "bad_array", f"the array holds NaN or infinite values (image {index} of the batch); "
                      "expected finite 0-255 RGB values")


def _is_single(images: object) -> bool:
    return isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or hasattr(
        images, "read"
    ) or type(images).__module__.startswith("PIL.")


def _chunks(items: Sequence[ImageSource | np.ndarray], size: int) -> Iterator[Sequence[ImageSource | np.ndarray]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
