"""Throughput of the Open Inference Protocol route against /v1/embed, on one service, in one run.

    python benchmarks/serve_oip.py --model DIR [--clients 32] [--seconds 15] [--rounds 3] [--out FILE.json]

One `vggsim serve` child process on a free 127.0.0.1 port. Closed loops of ``--clients``
concurrent clients, one image per request: ``/v1/embed`` with the JPEG as the raw body, and
``/v2/models/vggsim/infer`` with the same JPEG as a BYTES tensor in the binary tensor extension
(the way tritonclient sends it, built here so the client's own cost is the same on both sides).
The two alternate for ``--rounds`` rounds so that a shared machine's load drifts on both alike;
the ratio (target >= 0.9) is OIP images/s over /v1 images/s, summed over the rounds. Every
loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402
from serve_load import child_env, free_port, photo_bytes, wait_ready  # noqa: E402


def oip_body(image: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(image) + 4}}],
                         "outputs": [{"name": "embeddings", "parameters": {"binary_data": True}}]}).encode()
    return header + len(image).to_bytes(4, "little") + image, {
        "inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"}


async def closed_loop(url: str, protocol: str, images: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    if protocol == "oip":
        result = await serve_load.closed_loop(url, images, clients, seconds, "/v2/models/vggsim/infer",
                                              [oip_body(image) for image in images])
    else:
        result = await serve_load.closed_loop(url, images, clients, seconds)
    return {"protocol": protocol, **{k: v for k, v in result.items() if k != "clients"}}


def main() -> int:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("VGGSIM_TEST_MODEL") or os.environ.get("VGGSIM_MODEL"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="per protocol and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not args.model:
        parser.error("--model DIR is needed (or VGGSIM_TEST_MODEL)")
    sys.path.insert(0, str(Path(__file__).resolve().parent / "suites"))
    from conftest import machine_line

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "vggsim", "serve", "--model", args.model, "--port", str(port),
                               "--queue-size", str(args.queue_size), "--log-level", "warning"], env=child_env())
    try:
        wait_ready(server, url)
        images = photo_bytes(8)
        asyncio.run(closed_loop(url, "v1", images, args.clients, 3.0))  # warm-up, not counted
        runs = []
        for round_number in range(args.rounds):
            for protocol in (("v1", "oip") if round_number % 2 == 0 else ("oip", "v1")):
                runs.append({"round": round_number, **asyncio.run(
                    closed_loop(url, protocol, images, args.clients, args.seconds))})
                print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait(60)

    def rate(protocol: str) -> float:
        mine = [r for r in runs if r["protocol"] == protocol]
        return sum(r["requests_ok"] for r in mine) / sum(r["seconds"] for r in mine)

    report = {"machine": machine_line(), "platform": platform.platform(), "clients": args.clients,
              "seconds_per_run": args.seconds, "rounds": args.rounds, "runs": runs,
              "v1_images_per_s": round(rate("v1"), 3), "oip_images_per_s": round(rate("oip"), 3),
              "ratio_oip_to_v1": round(rate("oip") / rate("v1"), 3), "target_ratio": 0.9,
              "command": " ".join(["python", "benchmarks/serve_oip.py", *sys.argv[1:]])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["ratio_oip_to_v1"] >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
