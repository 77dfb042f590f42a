"""ServiceState: what every route reaches (``request.app.state.vggsim``): the model, the store,
the batcher, the decoder, the settings and the metrics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..collection import StoreReader
from ..embedder import Embedder
from ..store import StoreIdentity
from .batcher import Batcher, QueueFull
from .config import ServeConfig
from .decoding import Decoder
from .metrics import Metrics
from .problems import ApiError


@dataclass
class ServiceState:
    config: ServeConfig
    embedder: Embedder
    store: StoreReader | None
    batcher: Batcher
    decoder: Decoder
    metrics: Metrics
    ready: bool = False
    admitted: int = 0  # images admitted (decoding or queued or running): bounded by config.queue_size
    started: float = field(default_factory=time.time)

    @classmethod
    def build(cls, config: ServeConfig, embedder: Embedder) -> ServiceState:
        """Open the store (checked against the model) and set up batching, decoding and metrics."""
        store = None
        if config.store is not None:
            store = StoreReader(config.store)
            store.snapshot().require_compatible(StoreIdentity.of(embedder))
        metrics = Metrics(config.max_batch)
        holder: list[ServiceState] = []

        def coming() -> int:  # images admitted but not yet queued: decoding now, batchable soon
            state, b = holder[0], holder[0].batcher
            return state.admitted - b.depth - b.in_flight

        batcher = Batcher(embedder.run, config.max_batch, config.max_wait_ms / 1000.0, config.queue_size, metrics,
                          coming)
        decoder = Decoder(embedder, config.decode_workers, config.memory_budget)
        holder.append(cls(config, embedder, store, batcher, decoder, metrics))
        return holder[0]

    def admit(self, images: int) -> None:
        """Count ``images`` in, or refuse the request with 429 (and a Retry-After) when full."""
        if images > self.config.queue_size:  # could never fit: retrying would not help
            raise ApiError(413, "too_many_images", f"{images} images in one request, over the queue size "
                           f"{self.config.queue_size}: send fewer per request")
        if self.admitted + images > self.config.queue_size:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "busy", f"the service is busy ({self.admitted} images in progress, limit "
                           f"{self.config.queue_size}); retry later", {"Retry-After": str(self.retry_after())})
        self.admitted += images

    def release(self, images: int) -> None:
        self.admitted -= images

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: batches ahead times a batch's mean time."""
        batches = math.ceil(self.admitted / self.config.max_batch)
        return max(1, math.ceil(batches * self.metrics.mean_batch_seconds()))

    async def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        try:
            return await self.batcher.submit(arrays)
        except QueueFull as exc:
            raise ApiError(429, "busy", str(exc), {"Retry-After": str(self.retry_after())}) from None
