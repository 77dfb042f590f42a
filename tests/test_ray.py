"""Embedding on a real two-node Ray cluster (head + one more node, loopback only, started and
stopped here): the store equals a local run's, and killed workers or a killed driver lose and
duplicate nothing. Skipped, with the reason, when the ray extra is not installed."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

# Loopback only: on Linux Ray swaps 127.0.0.1 for the machine's address when connecting
# (services.resolve_ip_for_localhost), which a sandbox may not route; this switch (read when
# ray is imported, inherited by every node and worker started here) keeps it on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from vggsim import Embedder  # noqa: E402
from vggsim.collection import embed_into_store  # noqa: E402
from vggsim.ray.embed import embed_dataset  # noqa: E402
from vggsim.store import Store  # noqa: E402

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="needs the ray extra: pip install 'vggsim[ray]'")
NODE: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 150 * 1024 * 1024, "node_ip_address": "127.0.0.1"}
BOUND_S = 120  # every wait below is bounded


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and a second node on this machine, one CPU each: the actor holds one node's CPU,
    so decoding runs on the other and every image crosses between the nodes' object stores."""
    import ray
    from ray.cluster_utils import Cluster

    nodes: Any = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        nodes.add_node(**NODE)
        nodes.wait_for_nodes(timeout=BOUND_S)
        assert nodes.address.startswith("127.0.0.1:"), nodes.address
        ray.init(address=nodes.address, logging_level=logging.WARNING, log_to_driver=False)
        state: Any = ray
        assert len([n for n in state.nodes() if n["Alive"]]) == 2
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images of several modes and sizes, and files that fail in different ways."""
    root = tmp_path_factory.mktemp("ray-photos")
    rng = np.random.default_rng(7)
    for i in range(24):
        pixels = rng.integers(0, 256, (60 + 3 * i, 80 + 2 * i, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if i % 4 == 1:
            image.convert("L").save(root / f"{i:02d}.png")
        elif i % 4 == 2:
            image.convert("RGBA").save(root / f"{i:02d}.png")
        else:
            image.save(root / f"{i:02d}.jpg", quality=90)
    (root / "not-an-image.jpg").write_bytes(b"hello, not a jpeg")
    (root / "truncated.jpg").write_bytes((root / "00.jpg").read_bytes()[:300])
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def local_store(folder: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("ray-local") / "store"
    embed_into_store(Embedder(model_dir, providers="cpu"), [folder], store, batch_size=4)
    return store


def _records(store: Path) -> dict[str, Any]:
    return {r.path: r for r in Store.open(store).records()}


def _vectors(store: Path) -> dict[str, np.ndarray]:
    opened = Store.open(store)
    records = opened.records()
    ids = [i for i, r in enumerate(records) if r.status == "ok"]
    return {records[i].path: v for i, v in zip(ids, opened.vectors(ids))}


def _history_paths(store: Path) -> list[str]:
    return [str(p) for p in Store.open(store).history().column("path").to_pylist()]


def _assert_same_as_local(store: Path, local_store: Path) -> None:
    assert _records(store) == _records(local_store)  # same files, stats, hashes, error kinds and reasons
    ours, theirs = _vectors(store), _vectors(local_store)
    assert ours.keys() == theirs.keys() and len(ours) == 24
    assert max(float(np.abs(ours[p] - theirs[p]).max()) for p in ours) == 0.0


@needs_ray
def test_two_node_cluster_store_equals_local_run(cluster: Any, folder: Path, model_dir: Path, local_store: Path,
                                                  tmp_path: Path) -> None:
    summary = embed_dataset([folder], tmp_path / "store", model=model_dir, providers="cpu", batch_size=4, decode_rows=3)
    assert (summary.seen, summary.embedded, summary.failed) == (27, 24, 3)
    assert summary.failed_by_kind == _local_kinds(local_store)
    _assert_same_as_local(tmp_path / "store", local_store)
    again = embed_dataset([folder], tmp_path / "store", model=model_dir, providers="cpu")  # nothing to do: no Ray job
    assert (again.unchanged, again.embedded, again.still_failing) == (27, 0, 3)


def _local_kinds(store: Path) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for record in Store.open(store).records():
        if record.status == "error":
            kinds[str(record.error_kind)] = kinds.get(str(record.error_kind), 0) + 1
    return kinds


@needs_ray
def test_dataset_of_bytes_gives_the_same_vectors(cluster: Any, folder: Path, model_dir: Path, local_store: Path,
                                                 tmp_path: Path) -> None:
    import ray

    files = sorted(p for p in folder.iterdir() if p.is_file())
    dataset = ray.data.from_items([{"path": str(p), "bytes": p.read_bytes()} for p in files])
    summary = embed_dataset(dataset, tmp_path / "store", model=model_dir, providers="cpu", batch_size=4)
    assert (summary.embedded, summary.failed) == (24, 3)
    ours, theirs = _vectors(tmp_path / "store"), _vectors(local_store)
    assert max(float(np.abs(ours[p] - theirs[p]).max()) for p in theirs) == 0.0
    assert {r.path: r.error_kind for r in _records(tmp_path / "store").values()} == {
        r.path: r.error_kind for r in _records(local_store).values()}


def _embed_actor_pids() -> list[int]:
    """Ray titles an actor's worker process ``ray::MapWorker(MapBatches(EmbedActor))``."""
    psutil = pytest.importorskip("psutil", reason="needs psutil (the test extra) to find Ray's worker processes")
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if "EmbedActor" in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
            found.append(int(proc.pid))
    return found


@needs_ray
def test_killed_inference_actor_loses_and_duplicates_nothing(cluster: Any, folder: Path, model_dir: Path,
                                                             local_store: Path, tmp_path: Path) -> None:
    killed: list[int] = []

    def kill_once(progress: Any) -> None:  # mid-run: after the first results reached the driver
        if not killed and progress.done - progress.unchanged >= 2:
            pids = _embed_actor_pids()
            assert pids, "no live EmbedActor to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = embed_dataset([folder], tmp_path / "store", model=model_dir, providers="cpu", batch_size=2,
                            decode_rows=2, commit_rows=4, progress=kill_once)
    assert killed and (summary.embedded, summary.failed) == (24, 3)
    history = _history_paths(tmp_path / "store")
    assert len(history) == len(set(history)) == 27  # each file committed exactly once
    _assert_same_as_local(tmp_path / "store", local_store)


DRIVER = textwrap.dedent("""
    import sys, time, ray
    from vggsim.ray.embed import embed_dataset
    ray.init(address=sys.argv[1], logging_level="WARNING", log_to_driver=False)
    embed_dataset([sys.argv[2]], sys.argv[3], model=sys.argv[4], providers="cpu", batch_size=1, decode_rows=1,
                  commit_rows=2, progress=lambda p: time.sleep(0.5))  # slow, so the kill lands mid-run
""")


@needs_ray
def test_killed_driver_then_rerun_resumes(cluster: Any, folder: Path, model_dir: Path, local_store: Path,
                                          tmp_path: Path) -> None:
    store = tmp_path / "store"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(folder), str(store), str(model_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + BOUND_S
        committed = 0
        while time.monotonic() < deadline and driver.poll() is None:
            if (store / "commit.json").exists():
                committed = Store.open(store).count_ok()
                if committed >= 4:
                    break
            time.sleep(0.2)
        assert driver.poll() is None, f"the driver ended before it was killed: {driver.stderr.read()[-2000:]!r}"  # type: ignore[union-attr]
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    rerun = embed_dataset([folder], store, model=model_dir, providers="cpu", batch_size=4)
    assert rerun.unchanged >= committed >= 4  # committed (and journaled) records are not embedded again
    assert rerun.unchanged + rerun.embedded + rerun.failed == 27
    history = _history_paths(store)
    assert len(history) == len(set(history)) == 27
    _assert_same_as_local(store, local_store)


@needs_ray
def test_cli_embed_on_the_cluster(cluster: Any, folder: Path, model_dir: Path, local_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = subprocess.run([sys.executable, "-m", "vggsim", "embed", str(folder), "--store", str(store), "--model",
                             str(model_dir), "--providers", "cpu", "--json", f"--ray={cluster.address}"],
                            capture_output=True, text=True, timeout=BOUND_S)
    assert result.returncode == 1, result.stderr[-2000:]  # three files fail, as in a local run
    summary = json.loads(result.stdout)
    assert (summary["embedded"], summary["failed"]) == (24, 3)
    _assert_same_as_local(store, local_store)


def test_missing_ray_extra_names_the_pip_command(folder: Path, model_dir: Path, tmp_path: Path) -> None:
    hide_ray = ("import sys, runpy; sys.modules['ray'] = None; sys.argv = ['vggsim'] + sys.argv[1:]; "
                "runpy.run_module('vggsim', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hide_ray, "embed", str(folder), "--store", str(tmp_path / "s"),
                             "--model", str(model_dir), "--ray"], capture_output=True, text=True, timeout=BOUND_S)
    assert result.returncode == 2, result.stderr[-2000:]
    from vggsim.errors import pip_command

    assert pip_command("ray") in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()  # refused before any work


@needs_ray
def test_killed_decode_worker_loses_and_duplicates_nothing(cluster: Any, model_dir: Path, tmp_path: Path) -> None:
    """A watcher SIGKILLs the first worker process it sees running a decode task; the task is
    retried and the store equals a local run's, each file committed once."""
    import threading

    psutil = pytest.importorskip("psutil", reason="needs psutil (the test extra) to find Ray's worker processes")
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(10):  # large enough that a decode task runs for a while (~0.1 s)
        Image.fromarray(rng.integers(0, 256, (1800, 2400, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
    embed_into_store(Embedder(model_dir, providers="cpu"), [folder], tmp_path / "local")
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + BOUND_S
        while not stop.is_set() and not killed and time.monotonic() < deadline:
            for proc in psutil.process_iter(["cmdline"]):
                if "decode_batch" in " ".join(proc.info["cmdline"] or []) and proc.pid != os.getpid():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = embed_dataset([folder], tmp_path / "store", model=model_dir, providers="cpu", batch_size=2, decode_rows=1)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert killed, "the watcher saw no decode task to kill"
    assert (summary.embedded, summary.failed) == (10, 0)
    history = _history_paths(tmp_path / "store")
    assert len(history) == len(set(history)) == 10
    assert _records(tmp_path / "store") == _records(tmp_path / "local")
    ours, theirs = _vectors(tmp_path / "store"), _vectors(tmp_path / "local")
    assert max(float(np.abs(ours[p] - theirs[p]).max()) for p in theirs) == 0.0
