"""Drive a running `vggsim serve` with KServe's own Python client (`kserve.InferenceRESTClient`).

Run by tests/test_serve_oip.py with the Python of a separate virtual environment that holds the
`kserve` package (scripts/test.sh makes it: .venv-kserve), never with the test environment's own:
kserve brings Kubernetes, pandas, gRPC tools and uvloop, which the rest of the suite must not see.

    python kserve_client_run.py URL OUT.npz IMAGE...

Writes to OUT.npz: "binary" and "json" (the embeddings of the images sent as BYTES with the binary
tensor extension, and as base64 text in plain JSON), "pixels" (the first image's pixels, as the
test passes them in pixels.npy beside OUT, sent as FP32), and "health" (live, ready, model ready,
an unknown model ready). Imports nothing from vggsim.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

MODEL = "vggsim"


def embeddings_of(response: object) -> np.ndarray:
    outputs = {o.name: o for o in response.outputs}  # type: ignore[attr-defined]
    return np.asarray(outputs["embeddings"].as_numpy(), dtype=np.float32)


async def main(url: str, out: Path, images: list[Path]) -> None:
    data = [p.read_bytes() for p in images]
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120, retries=0))
    try:
        binary = InferInput("images", [len(data)], "BYTES")
        binary.set_data_from_numpy(np.array(data, dtype=object), binary_data=True)
        binary_out = RequestedOutput("embeddings", parameters={"binary_data": True})
        by_binary = await client.infer(url, InferRequest(MODEL, [binary], request_outputs=[binary_out]),
                                       model_name=MODEL)

        text = InferInput("images", [len(data)], "BYTES")  # JSON carries images as base64 text
        text.set_data_from_numpy(np.array([base64.b64encode(d) for d in data], dtype=object), binary_data=False)
        by_json = await client.infer(url, InferRequest(MODEL, [text]), model_name=MODEL)

        pixels = np.load(out.with_name("pixels.npy")).astype(np.float32)
        tensor = InferInput("pixels", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=True)
        by_pixels = await client.infer(url, InferRequest(MODEL, [tensor], model_version="1"), model_name=MODEL)

        health = [await client.is_server_live(url), await client.is_server_ready(url),
                  await client.is_model_ready(url, MODEL), await client.is_model_ready(url, "no-such-model")]
    finally:
        await client.close()
    np.savez(out, binary=embeddings_of(by_binary), json=embeddings_of(by_json), pixels=embeddings_of(by_pixels),
             health=np.array(health, dtype=bool))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]))
