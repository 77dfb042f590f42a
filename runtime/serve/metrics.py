"""Prometheus metrics of one service (its own registry, so two apps in one process never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from vggsim.serve.batcher import BatchObserver

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics(BatchObserver):
    """Requests by route and status, latency per stage, batch sizes, queue depth."""

    def __init__(self, max_batch: int) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output and say nothing here
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vggsim_requests", "HTTP requests by route and status", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("vggsim_request_seconds", "Whole-request latency by route", ["route"],
                                 buckets=_STAGE_BUCKETS, registry=r)
        self.stage = Histogram("vggsim_stage_seconds", "Latency per stage: decode (per image), queue_wait (per image), "
                               "inference (per batch), search (per request)", ["stage"], buckets=_STAGE_BUCKETS,
                               registry=r)
        self.batch_size = Histogram("vggsim_batch_size", "Images per inference batch",
                                    buckets=tuple(float(b) for b in range(1, max_batch + 1)), registry=r)
        self.queue_depth = Gauge("vggsim_queue_depth", "Images waiting for inference", registry=r)
        self.images = Counter("vggsim_images", "Images embedded", registry=r)
        self.images_dropped = Counter("vggsim_images_dropped", "Queued images dropped before inference because "
                                      "their request gave up first (its client disconnected, or its deadline passed)",
                                      registry=r)
        self.seconds_per_image: float | None = None  # moving average of inference time per image
        self.search = Histogram("vggsim_search_seconds", "Store search time per request, by method: index (the "
                                "on-disk IVF index) or exact", ["method"], buckets=_STAGE_BUCKETS, registry=r)
        self.search_fallbacks = Counter("vggsim_search_exact_fallbacks", "Searches answered exactly because the "
                                        "on-disk index was missing, stale or unavailable (--index auto), by state",
                                        ["state"], registry=r)
        self.rejected = Counter("vggsim_rejected", "Requests refused before work, by reason", ["reason"], registry=r)
        for reason in REJECT_REASONS:  # every series from the start: alerts and rate() need no first refusal
            self.rejected.labels(reason)

    # BatchObserver
    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.stage.labels("inference").observe(seconds)
        self.images.inc(size)
        sample = seconds / max(1, size)  # recent batches weigh most: the machine's load changes
        self.seconds_per_image = sample if self.seconds_per_image is None else 0.8 * self.seconds_per_image + 0.2 * sample

    def waited(self, seconds: float) -> None:
        self.stage.labels("queue_wait").observe(seconds)

    def depth(self, images: int) -> None:
        self.queue_depth.set(images)

    def dropped(self, images: int) -> None:
        self.images_dropped.inc(images)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)

    def searched(self, method: str, seconds: float, fallback: str | None = None) -> None:
        self.stage.labels("search").observe(seconds)
        self.search.labels(method).observe(seconds)
        if fallback is not None:
            self.search_fallbacks.labels(fallback).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST

        return generate_latest(self.registry), str(CONTENT_TYPE_LATEST)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        # a client may send any token as its method: one label value each would grow /metrics without bound
        self.requests.labels(route, method if method in METHODS else "OTHER", str(status)).inc()
        self.latency.labels(route).observe(seconds)


#: why a request was refused: 429 queue full or body budget spent, 503 past its deadline
REJECT_REASONS = ("queue_full", "body_budget", "deadline")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def route_label(scope: dict[str, Any]) -> str:
    """The route's template (``/v1/embed``), never the raw path: raw paths would grow the label set without bound."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # refused before routing (the body budget): the route it was for, when the path is one of the schema's
    # fixed paths (a template with a parameter never takes a body); any other raw path stays unlabelled
    app, raw = scope.get("app"), scope.get("path")
    if app is not None and hasattr(app, "openapi") and isinstance(raw, str):
        fixed = getattr(app.state, "fixed_paths", None)
        if fixed is None:
            fixed = frozenset(p for p in app.openapi().get("paths", {}) if "{" not in p)
            app.state.fixed_paths = fixed
        if raw in fixed:
            return raw
    return "<unmatched>"
