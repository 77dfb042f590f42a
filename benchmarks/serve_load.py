"""Load benchmark of `vggsim serve` against Embedder.embed in the same run (127.0.0.1 only).

    python benchmarks/serve_load.py --model DIR [--seconds 20] [--overload-seconds 30] [--out FILE.json]
    python benchmarks/serve_load.py --model DIR --providers cuda --duration-s 90   # the whole run in ~90-100 s
    python benchmarks/serve_load.py --model DIR --compare-python OLD/.venv/bin/python  # overhead before/after

1. Baseline: ``Embedder.embed`` of the test images in batches of ``--max-batch`` (decode
   included, in this process, before the server starts): images/s.
2. Per-request floor: median of decode + ``Embedder.run`` of one image (in process).
3. The server (``python -m vggsim serve``, a child process) at 1, 8 and 32 concurrent clients
   (closed loop, each for ``--seconds``): throughput, p50/p95/p99; ratio to the baseline
   (target >= 0.85 at 32 clients). Overhead at 1 client (target <= 5 ms), three ways: p50 -
   floor (noisy: both are dominated by inference time), in the service (its own metrics:
   request time less decode and inference, so body reading, queueing, JSON), and the bare
   HTTP round trip (GET /health/live).
4. Overload: requests arriving at twice the measured capacity for ``--overload-seconds``
   (open loop, in-flight bounded): only 2xx and 429 allowed; the server's resident memory
   sampled every 0.5 s; afterwards /health/ready and one embed must succeed.

5. Overhead at 1 client, paired (the figure to read; ``--pairs``): image by image, decode +
   ``Embedder.run`` in this process, then the same image through the service; the
   per-request overhead is the median of the differences, each pair taken within a second so
   the load of a shared machine weighs on both sides alike. With ``--compare-python PY``
   a second service, started by another Python (whose vggsim is, say, the previous commit),
   joins the pairs, so before and after come from one run.

``--providers`` goes to the service and to the in-process baseline alike (cpu, cuda, ...);
the child processes get this process's import path, so a site folder given by PYTHONPATH
(a GPU machine without an install) serves both. ``--duration-s`` bounds the whole run: each
phase, when it starts, gets its share of the time left (model loads and start-ups included,
as they happen), and a phase whose share would be under a second is skipped and named in
the JSON's ``skipped``. SIGTERM or SIGINT stops the services this script started and removes
its probe folder; the services also die with this process (PR_SET_PDEATHSIG) if it is killed.

Every loop is bounded in time and count. The clients share the machine with the server: on
a small box they take CPU from it, which this script reports (the client's CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# The client drops an idle connection after 2 s, before uvicorn's keep-alive timeout (5 s)
# closes it: with both at 5 s (httpx's default), a request sent on a connection the server
# was closing at that moment failed with ReadError (about 1 in 2,000 overload requests).
KEEPALIVE_S = 2.0


def photo_bytes(count: int) -> list[bytes]:
    """JPEG photos of a realistic size (640x480): real sample photos when installed, else synthetic."""
    from PIL import Image

    try:
        from vggsim import sample_photos

        sources = [Image.open(p).convert("RGB") for p in sample_photos()[:count]]
    except Exception:
        sources = []
    rng = np.random.default_rng(0)
    while len(sources) < count:
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        sources.append(Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC))
    out = []
    for image in sources:
        buffer = io.BytesIO()
        image.resize((640, 480), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    values = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return {"p50_ms": round(float(values[0]), 2), "p95_ms": round(float(values[1]), 2),
            "p99_ms": round(float(values[2]), 2)}


_EMBEDDERS: dict[tuple[str, str], Any] = {}


def embedder_for(model: str, providers: str) -> Any:
    """One in-process Embedder per (model, providers), made once: a GPU session takes seconds to start."""
    from vggsim import Embedder

    key = (model, providers)
    if key not in _EMBEDDERS:
        wanted: Any = [p.strip() for p in providers.split(",")] if "," in providers else providers
        _EMBEDDERS[key] = Embedder(model, providers=wanted)
    return _EMBEDDERS[key]


def child_env() -> dict[str, str]:
    """This process's environment, with the folder vggsim was imported from first on PYTHONPATH:
    the services import the same vggsim and packages as the baseline, installed or not."""
    import vggsim

    folder = str(Path(vggsim.__file__).resolve().parent.parent)
    paths = [folder] if Path(folder, "vggsim").is_dir() else []  # a laid-out site folder (not an editable install)
    current = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([current] if current else []))}


def baseline(model: str, images: list[bytes], batch: int, seconds: float, providers: str = "cpu") -> dict[str, Any]:
    embedder = embedder_for(model, providers)
    embedder.embed(images[:batch], batch_size=batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds and done < 100_000:
        chunk = [images[(done + i) % len(images)] for i in range(batch)]  # the images the clients send, in turn
        embedder.embed(chunk, batch_size=batch)
        done += batch
    rate = done / (time.perf_counter() - started)
    floors: list[float] = []
    floors_end = time.perf_counter() + max(1.0, seconds / 3)  # bounded in time too: CPU runs take ~0.5 s each
    for i in range(min(15, len(images))):
        if len(floors) >= 3 and time.perf_counter() > floors_end:
            break
        t = time.perf_counter()
        embedder.run(embedder.load(images[i])[None])
        floors.append(time.perf_counter() - t)
    return {"embed_images_per_s": round(rate, 3), "floor_decode_run_1_ms": round(1000 * float(np.median(floors)), 2),
            "provider": embedder.provider}


#: A pause before each request of the pairs: onnxruntime's threads spin for a while after a run,
#: and on a small machine the spinning of the run before would slow the next one's thread trips.
GAP_S = 0.05


def overhead_pairs(servers: dict[str, str], model: str, providers: str, images: list[bytes], count: int,
                   seconds: float) -> dict[str, Any]:
    """Per-request overhead at 1 client: decode + run in process, then the same image through each
    service, in turn; the medians of the differences (see the module docstring, step 5)."""
    import httpx

    embedder = embedder_for(model, providers)
    diffs: dict[str, list[float]] = {name: [] for name in servers}
    floors: list[float] = []
    with httpx.Client(timeout=120) as client:
        for url in servers.values():  # warm: connection, first request
            client.post(url + "/v1/embed", content=images[0], headers={"content-type": "image/jpeg"})
        end = time.perf_counter() + seconds
        for i in range(count):
            if i >= 3 and time.perf_counter() > end:
                break
            data = images[i % len(images)]
            order = list(servers.items()) if i % 2 == 0 else list(servers.items())[::-1]
            t = time.perf_counter()
            embedder.run(embedder.load(data)[None])
            floor = time.perf_counter() - t
            floors.append(floor)
            for name, url in order:
                time.sleep(GAP_S)
                t = time.perf_counter()
                r = client.post(url + "/v1/embed", content=data, headers={"content-type": "image/jpeg"})
                elapsed = time.perf_counter() - t
                if r.status_code == 200:
                    diffs[name].append(elapsed - floor)
            time.sleep(GAP_S)
    out: dict[str, Any] = {"pairs": len(floors), "floor_ms_median": round(1000 * float(np.median(floors)), 2)}
    for name, values in diffs.items():
        q = np.percentile(np.asarray(values) * 1000, [25, 50, 75]) if values else [float("nan")] * 3
        out[name] = {"overhead_ms_median": round(float(q[1]), 2), "overhead_ms_p25": round(float(q[0]), 2),
                     "overhead_ms_p75": round(float(q[2]), 2)}
    return out


def scrape(url: str) -> dict[str, float]:
    """The service's own timings so far: request, decode and inference seconds and the request count."""
    import httpx

    wanted = {'vggsim_request_seconds_sum{route="/v1/embed"}': "request_s",
              'vggsim_request_seconds_count{route="/v1/embed"}': "requests",
              'vggsim_stage_seconds_sum{stage="decode"}': "decode_s",
              'vggsim_stage_seconds_sum{stage="inference"}': "inference_s"}
    out = dict.fromkeys(wanted.values(), 0.0)
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def http_roundtrip_ms(url: str, count: int = 50) -> float:
    """Median time of GET /health/live: the HTTP round trip with no work behind it."""
    import httpx

    with httpx.Client(timeout=10) as client:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            client.get(url + "/health/live")
            times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def closed_loop(url: str, images: list[bytes], clients: int, seconds: float, path: str = "/v1/embed",
                      bodies: list[tuple[bytes, dict[str, str]]] | None = None) -> dict[str, Any]:
    """``clients`` concurrent clients, each posting one image per request to ``path`` until ``seconds`` pass.

    ``bodies`` (content and headers per image) replaces the raw JPEG bodies for another protocol.
    """
    import httpx

    requests = bodies or [(image, {"content-type": "image/jpeg"}) for image in images]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 4, keepalive_expiry=KEEPALIVE_S)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker(number: int) -> None:
            i = number
            while time.perf_counter() < end and len(latencies) < 100_000:
                content, headers = requests[i % len(requests)]
                t = time.perf_counter()
                r = await client.post(url + path, content=content, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {"clients": clients, "requests_ok": len(latencies), "seconds": round(elapsed, 2), "statuses": statuses,
            "images_per_s": round(len(latencies) / elapsed, 3), **percentiles(latencies)}


async def overload(url: str, images: list[bytes], rate: float, seconds: float, pid: int) -> dict[str, Any]:
    import httpx

    statuses: dict[str, int] = {}
    rss: list[float] = []
    in_flight = 0
    # Requests in flight from this client are bounded (cap), over several connection pools of
    # 64: httpcore assigns requests to connections in O(requests x connections), and one pool
    # of 1,024 spent the client's CPU there instead of sending (the run stalled, and
    # connections left idle past the server's keep-alive ended in ReadErrors; seen here and
    # on the H200). Transport errors are kept with their time and message, not only counted.
    cap, per_pool = 256, 64
    errors: list[str] = []
    started = time.perf_counter()

    async with contextlib.AsyncExitStack() as stack:
        pools = [await stack.enter_async_context(
            httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=per_pool, keepalive_expiry=KEEPALIVE_S)))
            for _ in range(cap // per_pool)]
        client = pools[0]

        async def one(i: int) -> None:
            nonlocal in_flight
            in_flight += 1
            try:
                r = await pools[i % len(pools)].post(url + "/v1/embed", content=images[i % len(images)],
                                                     headers={"content-type": "image/jpeg"})
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                if len(errors) < 10:
                    errors.append(f"{time.perf_counter() - started:.2f} s: {key}: {exc!r}"[:300])
            finally:
                in_flight -= 1
            statuses[key] = statuses.get(key, 0) + 1

        async def sample() -> None:
            while True:
                rss.append(rss_mb(pid))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        tasks, started, sent = [], time.perf_counter(), 0
        while (now := time.perf_counter() - started) < seconds and sent < 1_000_000:
            due = int(now * rate) + 1
            while sent < due and in_flight < cap:
                tasks.append(asyncio.create_task(one(sent)))
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
        sampler.cancel()
        ready = (await client.get(url + "/health/ready")).status_code
        after = (await client.post(url + "/v1/embed", content=images[0], headers={"content-type": "image/jpeg"})).status_code
    return {"rate_per_s": round(rate, 2), "seconds": seconds, "sent": sent, "statuses": statuses,
            "only_2xx_and_429": set(statuses) <= {"200", "429"}, "rss_mb_start": round(rss[0], 1),
            "rss_mb_max": round(max(rss), 1), "rss_mb_end": round(rss[-1], 1), "ready_after": ready,
            "embed_after": after, "transport_errors": errors}


PROBE_FLAG = "--probe-serve"


def probe_serve(out: str, cli_args: list[str]) -> int:
    """Run ``vggsim serve`` with timing probes; at exit write to ``out`` the intervals of every
    /v1/embed request, every decode and every ``Embedder.run`` (perf_counter seconds).

    The probes wrap what every version of the service has (``create_app``'s app, the decoder's
    ``decode_sync``, ``Embedder.run``), so one measure serves the code before and after a change:
    per request, its time less the decode and inference work that ran inside it."""
    import atexit
    import threading

    import vggsim.model.embedder
    import vggsim.serve.app
    import vggsim.serve.decoding

    spans: dict[str, list[tuple[float, float]]] = {"request": [], "decode": [], "run": []}
    lock = threading.Lock()

    def timed(kind: str, function: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                with lock:
                    spans[kind].append((started, time.perf_counter()))
        return wrapper

    vggsim.serve.decoding.Decoder.decode_sync = timed("decode", vggsim.serve.decoding.Decoder.decode_sync)
    vggsim.model.embedder.Embedder.run = timed("run", vggsim.model.embedder.Embedder.run)
    create_app = vggsim.serve.app.create_app

    def probed_app(*a: Any, **k: Any) -> Any:
        app = create_app(*a, **k)

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope.get("path") != "/v1/embed":
                return await app(scope, receive, send)
            started = time.perf_counter()
            try:
                await app(scope, receive, send)
            finally:
                with lock:
                    spans["request"].append((started, time.perf_counter()))
        return asgi

    vggsim.serve.app.create_app = probed_app
    atexit.register(lambda: Path(out).write_text(json.dumps(spans)))
    from vggsim.cli import main as vggsim_main

    return int(vggsim_main(cli_args) or 0)


def probe_overhead(path: Path, first: int = 0, last: int | None = None) -> dict[str, Any]:
    """From a probe file: per request (from the ``first``-th on), its time less the decodes and runs
    inside it: the service's own overhead (HTTP, parsing, queueing, thread trips, JSON)."""
    spans = json.loads(path.read_text())
    over, decode, run = [], [], []
    for start, end in spans["request"][first:last]:
        inside = {kind: [(a, b) for a, b in spans[kind] if start <= a and b <= end] for kind in ("decode", "run")}
        if len(inside["decode"]) != 1 or len(inside["run"]) != 1:
            continue  # not a lone request (1 client: every request should be one)
        d, r = (inside[kind][0][1] - inside[kind][0][0] for kind in ("decode", "run"))
        over.append(end - start - d - r)
        decode.append(d)
        run.append(r)
    if not over:
        return {"requests": 0}
    q = np.percentile(np.asarray(over) * 1000, [25, 50, 75])
    return {"requests": len(over), "overhead_ms_median": round(float(q[1]), 2), "overhead_ms_p25": round(float(q[0]), 2),
            "overhead_ms_p75": round(float(q[2]), 2), "decode_ms_median": round(1000 * float(np.median(decode)), 2),
            "run_ms_median": round(1000 * float(np.median(run)), 2)}


class Plan:
    """``--duration-s`` as a real bound: a phase gets, when it starts, its weight's share of the time
    left (None: under a second, skip it); without ``--duration-s``, the default it is given."""

    def __init__(self, total: float | None, weights: float) -> None:
        self.end = None if total is None else time.monotonic() + total
        self.weights = weights

    def take(self, weight: float, default: float) -> float | None:
        if self.end is None:
            return default
        left = self.end - time.monotonic()
        share = left * weight / max(self.weights, weight)
        self.weights -= weight
        return None if share < 1.0 else share


def _libc() -> Any:
    """libc, loaded in this process (never in a forked child, where an import could deadlock), or None."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except (OSError, ImportError):
        return None


_LIBC = _libc() if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In a started service (preexec_fn: only a call, no import or allocation): SIGTERM when this script
    dies, even of SIGKILL (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


def _stop_on_signal(number: int, _frame: Any) -> None:
    raise SystemExit(128 + number)  # unwinds through main's finally blocks: the services are stopped


def start_server(python: str, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m vggsim serve`` on a free loopback port, once /health/ready answers (bounded wait)."""

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    probe = [str(Path(__file__).resolve()), PROBE_FLAG, str(args.probe_dir / f"{port}.json")] if args.probe_dir else [
        "-m", "vggsim"]
    server = subprocess.Popen([python, *probe, "serve", "--model", args.model, "--port", str(port),
                               "--max-batch", str(args.max_batch), "--queue-size", str(args.queue_size),
                               "--providers", args.providers, "--log-level", "warning"],
                              env=child_env() if python == sys.executable else None,
                              preexec_fn=_die_with_parent if _LIBC is not None else None)
    wait_ready(server, url, f"{python} -m vggsim serve")
    server.probe_file = args.probe_dir / f"{port}.json" if args.probe_dir else None  # type: ignore[attr-defined]
    return server, url


def wait_ready(server: subprocess.Popen[bytes], url: str, what: str = "vggsim serve", seconds: float = 300) -> None:
    """Until ``url``/health/ready answers 200 (bounded); SystemExit naming ``what`` if it exits or never does."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{what} exited {server.returncode}")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{what} was not ready in {seconds:g} s")


def stop_server(server: subprocess.Popen[bytes]) -> int | str:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)
        return "killed"


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == PROBE_FLAG:  # this script as the probed service (start_server)
        return probe_serve(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level and for the baseline")
    parser.add_argument("--overload-seconds", type=float, default=30.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--providers", default="cpu", help="for the service and the in-process baseline alike: "
                        "cpu, cuda, cuda-tf32, auto or onnxruntime provider names")
    parser.add_argument("--duration-s", type=float, default=None, metavar="SECONDS",
                        help="fit the whole run into about this many seconds (sets --seconds, --overload-seconds and "
                        "the pairs' time; 15 s of it are kept for the model loads)")
    parser.add_argument("--pairs", type=int, default=40, help="most paired overhead samples (step 5; 0: skip)")
    parser.add_argument("--compare-python", metavar="PY", help="also start a service with this Python (its own "
                        "vggsim, e.g. the previous commit's venv) and measure its overhead in the same pairs")
    parser.add_argument("--no-probe", action="store_true", help="start the services plainly, without the timing "
                        "probes of the overhead measure (step 5)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop_on_signal)
    args.probe_dir = None if args.no_probe else Path(tempfile.mkdtemp(prefix="serve-load-probe-"))
    try:
        return run(args)
    finally:
        if args.probe_dir:
            shutil.rmtree(args.probe_dir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    levels_wanted = [int(c) for c in args.clients.split(",")]
    # baseline, pairs, paired baseline + run per level, overload, baseline after
    plan = Plan(args.duration_s, 1 + (1 if args.pairs else 0) + 1.5 * len(levels_wanted)
                + (1 if args.overload_seconds > 0 else 0) + 1)
    skipped: list[str] = []
    images = photo_bytes(16)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "config": {"max_batch": args.max_batch, "queue_size": args.queue_size,
                                         "image": "640x480 JPEG", "providers": args.providers,
                                         "seconds": round(args.seconds, 1), "overload_seconds": args.overload_seconds,
                                         "compare_python": args.compare_python},
                              "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    report["skipped"] = skipped
    report["baseline"] = baseline(args.model, images, args.max_batch, plan.take(1, args.seconds) or 1.0, args.providers)
    print(json.dumps(report["baseline"]), flush=True)
    server, url = start_server(sys.executable, args)
    other = start_server(args.compare_python, args) if args.compare_python else None
    try:
        report["http_roundtrip_ms"] = http_roundtrip_ms(url)
        pair_seconds = plan.take(1, args.seconds) if args.pairs else None
        if args.pairs and pair_seconds is None:
            skipped.append("pairs")
        if pair_seconds is not None:
            servers = {"service": url, **({"compare": other[1]} if other else {})}
            report["overhead_paired"] = overhead_pairs(servers, args.model, args.providers, images, args.pairs,
                                                       pair_seconds)
            print(json.dumps(report["overhead_paired"]), flush=True)
        if other is not None:
            stop_server(other[0])
            if "overhead_paired" in report and args.probe_dir:
                report["overhead_probed"] = {"compare": probe_overhead(other[0].probe_file, 1,  # type: ignore[attr-defined]
                                                                       1 + report["overhead_paired"]["pairs"])}
            other = None
        levels = []
        for clients in levels_wanted:
            level_seconds = plan.take(1.5, args.seconds * 1.5)
            if level_seconds is None:
                skipped.append(f"{clients} clients")
                continue
            # Paired: the baseline again right before each level (the server idle), since the load
            # of a shared machine drifts over minutes; the paired ratio is the one to read.
            paired = baseline(args.model, images, args.max_batch, level_seconds / 3, args.providers)
            before = scrape(url)
            result = asyncio.run(closed_loop(url, images, clients, level_seconds * 2 / 3))
            after = scrape(url)
            delta = {key: after[key] - before[key] for key in after}
            if delta["requests"]:  # in the service: everything but decoding and inference, per request
                # (at 1 client the service's own overhead; with more, mostly waiting for the batches ahead)
                result["service_less_compute_ms"] = round(
                    1000 * (delta["request_s"] - delta["decode_s"] - delta["inference_s"]) / delta["requests"], 2)
            result["ratio_to_embed"] = round(result["images_per_s"] / report["baseline"]["embed_images_per_s"], 3)
            result["paired_embed_images_per_s"] = paired["embed_images_per_s"]
            result["paired_floor_ms"] = paired["floor_decode_run_1_ms"]
            result["ratio_to_embed_paired"] = round(result["images_per_s"] / paired["embed_images_per_s"], 3)
            levels.append(result)
            print(json.dumps(result), flush=True)
        report["levels"] = levels
        one = next((lv for lv in levels if lv["clients"] == 1), None)
        if one is not None:
            report["overhead_1_client_ms"] = {
                "p50_minus_floor": round(one["p50_ms"] - one["paired_floor_ms"], 2),
                "in_service": one.get("service_less_compute_ms"), "http_roundtrip": report["http_roundtrip_ms"]}
        pairs = report.get("overhead_paired")
        if pairs:
            report.setdefault("overhead_1_client_ms", {})["paired_median"] = pairs["service"]["overhead_ms_median"]
            if "compare" in pairs:
                report["overhead_1_client_ms"]["paired_median_compare"] = pairs["compare"]["overhead_ms_median"]
        overload_seconds = plan.take(1, args.overload_seconds) if args.overload_seconds > 0 else None
        if args.overload_seconds > 0 and (overload_seconds is None or not levels):
            skipped.append("overload")
        elif overload_seconds is not None:
            capacity = max(lv["images_per_s"] for lv in levels)
            report["overload"] = asyncio.run(overload(url, images, 2 * capacity, overload_seconds, server.pid))
            print(json.dumps(report["overload"]), flush=True)
        report["server_rss_mb_final"] = round(rss_mb(server.pid), 1)
    finally:
        if other is not None:
            stop_server(other[0])
        report["server_exit"] = stop_server(server)
    if args.probe_dir and "overhead_paired" in report:
        probed = probe_overhead(server.probe_file, 1, 1 + report["overhead_paired"]["pairs"])  # type: ignore[attr-defined]
        report["overhead_probed"] = {"service": probed, **report.get("overhead_probed", {})}
        report["overhead_1_client_ms"]["probed_median"] = probed.get("overhead_ms_median")
        if "compare" in report["overhead_probed"]:
            report["overhead_1_client_ms"]["probed_median_compare"] = report["overhead_probed"]["compare"].get(
                "overhead_ms_median")
        print(json.dumps(report["overhead_probed"]), flush=True)
    # The baseline again, now that the server is gone: on a shared machine the load changes over
    # minutes, so the ratios use the mean of the runs before and after.
    again = baseline(args.model, images, args.max_batch, plan.take(1, args.seconds) or 1.0, args.providers)
    report["baseline_after"] = again
    mean = (report["baseline"]["embed_images_per_s"] + again["embed_images_per_s"]) / 2
    for level in report.get("levels", []):
        level["ratio_to_embed_mean"] = round(level["images_per_s"] / mean, 3)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["client_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    print(f"\nvggsim serve, {report['config']['providers']} ({report['baseline'].get('provider')}), "
          f"{report['machine']['cpus']} CPUs, load average {report['load_average_start']} -> {report['load_average_end']}")
    print(f"Embedder.embed: {report['baseline']['embed_images_per_s']} -> {report['baseline_after']['embed_images_per_s']}"
          " images/s (before, after)")
    print(f"{'clients':>7} {'images/s':>9} {'ratio':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for level in report.get("levels", []):
        print(f"{level['clients']:>7} {level['images_per_s']:>9} {level['ratio_to_embed_paired']:>6} "
              f"{level['p50_ms']:>8} {level['p95_ms']:>8} {level['p99_ms']:>8}")
    for key, value in report.get("overhead_1_client_ms", {}).items():
        print(f"overhead at 1 client, {key}: {value} ms")
    if "overload" in report:
        o = report["overload"]
        print(f"overload {o['rate_per_s']}/s for {o['seconds']} s: {o['statuses']}, RSS {o['rss_mb_start']} -> "
              f"max {o['rss_mb_max']} MB, ready after: {o['ready_after']}")


if __name__ == "__main__":
    raise SystemExit(main())
