"""Embedding on a Ray cluster into the same store format: Ray Data tasks decode, actors infer.

The driver (this process) does what the local ``embed_into_store`` does around the
pipeline, with the same code: it opens the store for writing, lists the inputs and applies
the incremental rules (:mod:`vggsim.collection.incremental`), and writes every result through
the same committer (a flush per batch, a commit every ``commit_rows`` rows or
``commit_seconds`` seconds). Only decoding and inference move to Ray:

- decoding: ``map_batches`` tasks on CPUs, through :func:`vggsim.ingest.reading.read_file` (the
  local pipeline's function), so the same bytes give the same array and the same error kinds;
- inference: an actor pool (``compute=ActorPoolStrategy(size=actors)``), one
  :class:`~vggsim.model.embedder.Embedder` per actor, a GPU per actor when the cluster has GPUs.

Faults: a decode task whose worker dies is retried (Ray's default ``max_retries`` of 3 for
system failures), a killed actor is restarted and its batch retried (Ray Data's defaults for
actor pools: ``max_restarts=-1``, ``max_task_retries=-1``; the deprecated ``**ray_remote_args``
are not used); Ray Data emits a block only once it is
complete, and the driver adds each path at most once, so nothing is lost or written twice.
A killed driver leaves its committed records (and its journal, which the next writer
recovers): running the same embed again skips them by the incremental rules.

Ray is imported only when a function here runs (``pip install 'vggsim[ray]'``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggsim import validate
from vggsim.collection.incremental import plan
from vggsim.collection.results import EmbedSummary
from vggsim.collection.run import EmbedRun, ProgressCallback
from vggsim.images.decode import DEFAULT_MAX_PIXELS
from vggsim.errors import require
from vggsim.model.manifest import read_manifest
from vggsim.images.preprocess import PreprocessSpec
from vggsim.ray.stages import EmbedActor, decode_batch
from vggsim.ingest.reading import DEFAULT_MAX_BYTES
from vggsim.ingest.sources import iter_inputs
from vggsim.store import Record, StoreIdentity


@dataclass(frozen=True)
class _ModelInfo:
    """What StoreIdentity.of reads from an Embedder, from the manifest alone (the driver loads no model)."""

    model_sha256: str
    spec: PreprocessSpec
    dim: int


def import_ray() -> Any:
    """Ray and Ray Data, or MissingExtraError naming ``pip install 'vggsim[ray]'`` (exit 2 in the CLI)."""
    ray = require("ray", "ray", "Embedding on Ray")
    require("ray.data", "ray", "Embedding on Ray")
    return ray


def _record(batch: dict[str, Any], i: int, path: str) -> tuple[Record, np.ndarray | None]:
    """The store record of one result row: exactly what the local ``_record`` builds."""
    size, mtime = int(batch["size"][i]), int(batch["mtime_ns"][i])
    if bool(batch["ok"][i]):
        pixels = str(batch["pixel_sha256"][i]) if "pixel_sha256" in batch else ""
        return (Record(path, "ok", size, mtime, str(batch["sha256"][i]), int(batch["width"][i]), int(batch["height"][i]),
                       pixel_sha256=pixels or None), np.asarray(batch["vector"][i], np.float32))
    return (Record(path, "error", None if size < 0 else size, None if mtime < 0 else mtime, None, None, None,
                   str(batch["error_kind"][i]), str(batch["error"][i])), None)


def _paths_of(dataset: Any) -> Iterator[str]:
    for batch in dataset.select_columns(["path"]).iter_batches(batch_format="numpy", batch_size=4096):
        for raw in batch["path"]:
            yield os.fsdecode(raw if isinstance(raw, (bytes, str)) else bytes(raw))


def _cluster_gpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def embed_dataset(
    source: Any,
    store: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    spec: PreprocessSpec | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    providers: Any = "auto",
    threads: int | None = None,
    address: str | None = None,
    ray_init: dict[str, Any] | None = None,
    actors: int | None = None,
    actor_cpus: float = 1.0,
    list_file: str | None = None,
    all_files: bool = False,
    prune: bool = False,
    retry_errors: bool = False,
    batch_size: int = 8,
    decode_rows: int = 16,
    max_bytes: int = DEFAULT_MAX_BYTES,
    float16: bool = False,
    commit_rows: int = 1024,
    commit_seconds: float = 30.0,
    progress: ProgressCallback | None = None,
) -> EmbedSummary:
    """Embed ``source`` into the store at ``store`` on Ray; returns the same summary as a local run.

    ``source`` is files, folders and globs (listed by the driver as ``vggsim embed`` lists
    them), or a ``ray.data.Dataset`` with a ``path`` column (str or bytes): the paths are
    collected by the driver and the incremental rules applied to them. A Dataset that also
    has a ``bytes`` column is decoded from those bytes (no file is read on the workers; an
    optional ``mtime_ns`` column is recorded) and embedded in full: without a file to stat
    nothing can be skipped.

    ``address`` is a Ray address (``"auto"``, ``"HOST:6379"``, ``"ray://..."``); without one,
    a Ray already initialised in this process is used, else ``ray.init(**ray_init)`` starts
    a local one (shut down at the end). ``actors`` inference actors (default: one per GPU
    when the cluster has GPUs, else 1) each hold one Embedder on ``actor_cpus`` CPUs (or a
    GPU) with ``threads`` onnxruntime threads; decoding runs as tasks, ``decode_rows`` files
    each, one CPU each. Every node needs the model folder at the same path and, for path
    inputs, the files at the same paths (a shared file system).
    """
    ray = import_ray()
    batch_size = validate.positive_int("batch_size", batch_size)
    decode_rows = validate.positive_int("decode_rows", decode_rows)
    commit_rows = validate.positive_int("commit_rows", commit_rows)
    commit_seconds = validate.positive_float("commit_seconds", commit_seconds)
    manifest = read_manifest(model, verify=True)
    info = _ModelInfo(manifest.model_sha256, spec or manifest.preprocess, manifest.embedding_dim)
    started = time.perf_counter()  # the summary's seconds include starting (and stopping) a local Ray, as wall time does
    started_ray = False
    if not ray.is_initialized():
        ray.init(address=address, **({"logging_level": "WARNING", "log_to_driver": False} | (ray_init or {})))
        started_ray = True
    identity = StoreIdentity.of(info, "float16" if float16 else "float32")
    run = EmbedRun(store, identity, flush_rows=batch_size, commit_rows=commit_rows, commit_seconds=commit_seconds,
                   progress=progress)
    run.started = started  # the summary's seconds count from before ray.init, as the user's wall clock does
    duplicates = 0
    try:
        from_bytes = _is_dataset(ray, source) and "bytes" in source.columns()
        raw = [] if _is_dataset(ray, source) else [os.fspath(i) for i in source]  # read once: it may be an iterator
        if from_bytes:
            dataset, listed = source, None
        else:
            paths: Iterable[str | os.PathLike[str]] = (_paths_of(source) if _is_dataset(ray, source)
                                    else iter_inputs(raw, list_file, all_files, on_error=run.unreadable_folder))
            listed = plan(paths, run.known, retry_errors)
            dataset = ray.data.from_items([{"path": os.fsencode(p)} for p in listed.todo]) if listed.todo else None
        if prune:  # the named inputs (a Dataset names none): nothing under a missing or empty one is pruned
            run.prune(inputs=[os.fsdecode(r) for r in raw])
        seen = (listed.seen if listed else 0) + len(run.failures)  # unlistable folders, unprunable records
        unchanged = listed.unchanged if listed else 0
        run.begin(seen, unchanged, listed.still_failing if listed else 0)
        done: set[str] = set()
        if dataset is not None:
            gpus = _cluster_gpus(ray)
            pool = actors or (max(1, int(gpus)) if gpus else 1)
            ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            decoded = dataset.map_batches(
                decode_batch, batch_format="numpy", batch_size=decode_rows, num_cpus=1,
                fn_kwargs={"spec": info.spec.to_dict(), "max_pixels": max_pixels, "max_bytes": max_bytes})
            vectors = decoded.map_batches(
                EmbedActor, batch_format="numpy", batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_gpus=1 if gpus else 0, num_cpus=actor_cpus,
                fn_constructor_kwargs={"model": str(manifest.model_path.parent), "model_sha256": info.model_sha256,
                                       "spec": info.spec.to_dict(), "max_pixels": max_pixels,
                                       "providers": providers, "threads": threads})
            for batch in vectors.iter_batches(batch_format="numpy", batch_size=None):
                for i, raw in enumerate(batch["path"]):
                    path = os.fsdecode(raw if isinstance(raw, (bytes, str)) else bytes(raw))
                    if path in done:  # never write a file twice, whatever a retry delivers
                        duplicates += 1
                        continue
                    done.add(path)
                    run.add(*_record(batch, i, path))
        if from_bytes:
            seen = len(done)
        elif listed is not None:
            for path in listed.todo:  # not expected: Ray delivers every row or raises; never drop one silently
                if path not in done:
                    reason = "Ray returned no result for this file; a later embed retries it"
                    run.add(Record(path, "error", None, None, None, None, None, "internal", reason))
    finally:
        run.close()
        if started_ray:
            ray.shutdown()
    if duplicates:
        run.notes.append(f"{duplicates} duplicate results from Ray retries were dropped")
    return run.summary(seen=seen, unchanged=unchanged, still_failing=listed.still_failing if listed else 0,
                       provider=f"ray:{providers}", random_weights=bool(manifest.random_weights))


def _is_dataset(ray: Any, source: Any) -> bool:
    return isinstance(source, ray.data.Dataset)
