"""ServiceState: what every route reaches (``request.app.state.vggsim``): the model, the store,
the batcher, the decoder, the settings and the metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vggsim.collection import StoreReader
from vggsim.model.embedder import Embedder
from vggsim.postgres import PostgresSearch
from vggsim.store import Store, StoreIdentity
from vggsim.serve.batcher import Batcher, QueueFull
from vggsim.serve.config import ServeConfig
from vggsim.serve.decoding import Decoder
from vggsim.serve.metrics import Metrics
from vggsim.serve.problems import ApiError
from vggsim.serve.searching import StoreSearch


@dataclass
class ServiceState:
    config: ServeConfig
    embedder: Embedder
    store: StoreReader | None
    batcher: Batcher
    decoder: Decoder
    metrics: Metrics
    search: StoreSearch | None = None
    postgres: PostgresSearch | None = None  # --search-backend postgres: answers /v1/search and /v1/duplicates
    ready: bool = False
    admitted: int = 0  # images admitted (decoding or queued or running): bounded by config.queue_size
    started: float = field(default_factory=time.time)
    #: called with each store snapshot a search or duplicates check answers from (the page's thumbnails)
    snapshot_listeners: list[Callable[[Store], None]] = field(default_factory=list)

    @classmethod
    def build(cls, config: ServeConfig, embedder: Embedder) -> ServiceState:
        """Open the store (checked against the model) and set up batching, decoding and metrics."""
        store, search = None, None
        if config.store is not None:
            store = StoreReader(config.store)
            store.snapshot().require_compatible(StoreIdentity.of(embedder))
            search = StoreSearch(store, config.index)
            search.check_startup()
        postgres = None
        if config.search_backend == "postgres":
            if not config.postgres:
                raise ValueError("search_backend 'postgres' needs the postgres URI (--postgres)")
            postgres = PostgresSearch(config.postgres, StoreIdentity.of(embedder), config.postgres_table)
            postgres.info()  # refuse to start when the table is missing or holds another model's vectors
        elif config.search_backend != "store":
            raise ValueError(f"search_backend must be 'store' or 'postgres', got {config.search_backend!r}")
        metrics = Metrics(config.max_batch)
        holder: list[ServiceState] = []

        def coming() -> int:  # images admitted but not yet queued: decoding now, batchable soon
            state, b = holder[0], holder[0].batcher
            return state.admitted - b.depth - b.in_flight

        batcher = Batcher(embedder.run, config.max_batch, config.max_wait_ms / 1000.0, config.queue_size, metrics,
                          coming)
        decoder = Decoder(embedder, config.decode_workers, config.memory_budget, config.decode_timeout_s)
        holder.append(cls(config, embedder, store, batcher, decoder, metrics, search, postgres))
        return holder[0]

    def not_ready(self) -> str | None:
        """Why /health/ready answers 503 now, or None when the service takes work."""
        if not self.ready:
            return "the model is warming up or the service is shutting down"
        return self.decoder.blocked

    def admit(self, images: int) -> None:
        """Count ``images`` in, or refuse the request at once: 413 if it could never fit the queue,
        429 (with Retry-After) if the queue is full or if the images ahead would take most of the
        deadline (refusing now beats a 503 later, after the client has waited)."""
        limit = self.config.queue_size
        if images > limit:  # could never fit: retrying would not help
            raise ApiError(413, "too_many_images", f"{images} images in one request, over the queue size {limit}: "
                           "send fewer per request")
        per_image = self.metrics.seconds_per_image
        expected = (self.admitted + images) * per_image if per_image is not None else 0.0
        if self.admitted + images > limit or (self.admitted and expected > 0.8 * self.config.deadline_s):
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "busy", f"the service is busy ({self.admitted} images in progress, about "
                           f"{expected:.1f} s of work); retry later", {"Retry-After": str(self.retry_after())})
        self.admitted += images

    def release(self, images: int) -> None:
        self.admitted -= images

    def retry_after(self) -> int:
        """Seconds until the work in progress is likely done (1 s before any batch has run)."""
        return max(1, math.ceil(self.admitted * (self.metrics.seconds_per_image or 1.0)))

    async def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        try:
            return await self.batcher.submit(arrays)
        except QueueFull as exc:
            raise ApiError(429, "busy", str(exc), {"Retry-After": str(self.retry_after())}) from None
