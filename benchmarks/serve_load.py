"""Load benchmark of `vggsim serve` against Embedder.embed in the same run (127.0.0.1 only).

    python benchmarks/serve_load.py --model DIR [--seconds 20] [--overload-seconds 30] [--out FILE.json]

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

Every loop is bounded in time and count. The clients share the machine with the server: on
a small box they take CPU from it, which this script reports (the client's CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


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


def baseline(model: str, images: list[bytes], batch: int, seconds: float) -> dict[str, Any]:
    from vggsim import Embedder

    embedder = Embedder(model)
    embedder.embed(images[:batch], batch_size=batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds and done < 100_000:
        chunk = [images[(done + i) % len(images)] for i in range(batch)]  # the images the clients send, in turn
        embedder.embed(chunk, batch_size=batch)
        done += batch
    rate = done / (time.perf_counter() - started)
    floors = []
    for i in range(min(15, len(images))):
        t = time.perf_counter()
        embedder.run(embedder.load(images[i])[None])
        floors.append(time.perf_counter() - t)
    return {"embed_images_per_s": round(rate, 3), "floor_decode_run_1_ms": round(1000 * float(np.median(floors)), 2)}


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


async def closed_loop(url: str, images: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    end = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients + 4)) as client:
        async def worker(number: int) -> None:
            i = number
            while time.perf_counter() < end and len(latencies) < 100_000:
                t = time.perf_counter()
                r = await client.post(url + "/v1/embed", content=images[i % len(images)],
                                      headers={"content-type": "image/jpeg"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {"clients": clients, "requests_ok": len(latencies), "statuses": statuses,
            "images_per_s": round(len(latencies) / elapsed, 3), **percentiles(latencies)}


async def overload(url: str, images: list[bytes], rate: float, seconds: float, pid: int) -> dict[str, Any]:
    import httpx

    statuses: dict[str, int] = {}
    rss: list[float] = []
    in_flight = 0
    cap = 1024  # bound on requests in flight from this client

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=cap)) as client:
        async def one(i: int) -> None:
            nonlocal in_flight
            in_flight += 1
            try:
                r = await client.post(url + "/v1/embed", content=images[i % len(images)],
                                      headers={"content-type": "image/jpeg"})
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
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
            "embed_after": after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level and for the baseline")
    parser.add_argument("--overload-seconds", type=float, default=30.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    images = photo_bytes(16)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "config": {"max_batch": args.max_batch, "queue_size": args.queue_size,
                                         "image": "640x480 JPEG", "providers": args.providers}}
    report["baseline"] = baseline(args.model, images, args.max_batch, args.seconds)
    print(json.dumps(report["baseline"]), flush=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "vggsim", "serve", "--model", args.model, "--port", str(port),
                               "--max-batch", str(args.max_batch), "--queue-size", str(args.queue_size),
                               "--providers", args.providers, "--log-level", "warning"])
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        report["http_roundtrip_ms"] = http_roundtrip_ms(url)
        levels = []
        for clients in (int(c) for c in args.clients.split(",")):
            # Paired: the baseline again right before each level (the server idle), since the load
            # of a shared machine drifts over minutes; the paired ratio is the one to read.
            paired = baseline(args.model, images, args.max_batch, args.seconds / 2)
            before = scrape(url)
            result = asyncio.run(closed_loop(url, images, clients, args.seconds))
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
        capacity = max(lv["images_per_s"] for lv in levels)
        if args.overload_seconds > 0:
            report["overload"] = asyncio.run(overload(url, images, 2 * capacity, args.overload_seconds, server.pid))
            print(json.dumps(report["overload"]), flush=True)
        report["server_rss_mb_final"] = round(rss_mb(server.pid), 1)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            report["server_exit"] = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            report["server_exit"] = "killed"
    # The baseline again, now that the server is gone: on a shared machine the load changes over
    # minutes, so the ratios use the mean of the runs before and after.
    again = baseline(args.model, images, args.max_batch, args.seconds)
    report["baseline_after"] = again
    mean = (report["baseline"]["embed_images_per_s"] + again["embed_images_per_s"]) / 2
    for level in report.get("levels", []):
        level["ratio_to_embed_mean"] = round(level["images_per_s"] / mean, 3)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["client_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
