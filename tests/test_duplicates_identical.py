"""Byte-identical files are duplicates at any threshold, 1 included: found by the stored content sha256.

Two embeddings of one file can differ in their last bits (another batch size, another runtime),
and their cosine then lands just under 1. The stores here hold such pairs: the same sha256 with
vectors a little apart, and a third file with another hash whose vector is the same direction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from vggsim import Embedder  # noqa: E402
from vggsim.collection import duplicates_of, find_duplicates  # noqa: E402
from vggsim.store import Record, Store, StoreIdentity, StoreWriter  # noqa: E402

DIM = 512
SHA = hashlib.sha256(b"the same bytes").hexdigest()


def _write(root: Path, embedder: Embedder, rows: list[tuple[str, str, np.ndarray]]) -> Path:
    with StoreWriter.open(root, StoreIdentity.of(embedder)) as writer:
        for path, digest, vector in rows:
            writer.add(Record(path, "ok", 10, 1, digest), vector.astype(np.float32))
    return root


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Embedder(model_dir, providers="cpu")


def _near(vector: np.ndarray, seed: int) -> np.ndarray:
    """``vector`` moved by float noise: the same file embedded once more, elsewhere."""
    scale = float(np.abs(vector).mean()) * 1e-3  # relative: embeddings of a random-weight model can be large
    return vector + np.random.default_rng(seed).standard_normal(vector.shape).astype(np.float32) * scale


def test_find_duplicates_at_threshold_one_groups_byte_identical_files(embedder: Embedder, tmp_path: Path) -> None:
    base = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    other = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    store = _write(tmp_path / "store", embedder, [
        ("a.png", SHA, base), ("b.png", "f" * 64, other), ("copy-of-a.png", SHA, _near(base, 2))])
    groups = find_duplicates(str(store), 1.0)
    assert [[(m.path, m.score) for m in g.members] for g in groups] == [[("a.png", 1.0), ("copy-of-a.png", 1.0)]]


def test_duplicates_of_with_the_content_hash_finds_the_identical_file(embedder: Embedder, tmp_path: Path) -> None:
    base = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    store = Store.open(_write(tmp_path / "store", embedder, [("a.png", SHA, _near(base, 3)), ("b.png", "", base)]))
    assert [m.path for m in duplicates_of(store, base, 1.0)] in ([], ["b.png"])  # the cosine alone may round
    found = duplicates_of(store, base, 1.0, sha256=SHA)
    assert found[0].path == "a.png" and found[0].score == 1.0


pytest.importorskip("fastapi", reason="the service test needs the serve extra")
pytest.importorskip("httpx", reason="the service test needs httpx")

import httpx  # noqa: E402
from support import Server, image_bytes, run_cli  # noqa: E402


@pytest.fixture(scope="module", params=["exact", "index"])
def served(request: pytest.FixtureRequest, model_dir: Path, embedder: Embedder,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, bytes]]:
    """A service over a store holding a copy of the upload (its vector a little off) and unrelated vectors;
    searched exactly, or through a current on-disk index (--index require)."""
    upload = image_bytes(7)
    vector = embedder.embed([upload])[0]
    rng = np.random.default_rng(5)
    others = [(f"other-{i}.png", f"{i:064x}", rng.standard_normal(DIM) * float(np.abs(vector).mean()))
              for i in range(40)]
    store = _write(tmp_path_factory.mktemp("identical") / "store", embedder, [
        ("stored-copy.png", hashlib.sha256(upload).hexdigest(), _near(vector, 4)), *others])
    flags = ["--index", "off"]
    if request.param == "index":
        pytest.importorskip("faiss", reason="the index path needs the ann extra")
        built = run_cli("index", "build", "--store", str(store))
        assert built.returncode == 0, built.stderr
        flags = ["--index", "require"]
    server = Server(model_dir, "--store", str(store), *flags)
    yield server, upload
    server.stop()


def test_service_duplicates_at_threshold_one_finds_the_stored_copy(served: tuple[Server, bytes]) -> None:
    server, upload = served
    answer = httpx.post(server.url + "/v1/duplicates?threshold=1", content=upload,
                        headers={"content-type": "image/png"}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["is_duplicate"] is True
    assert [(m["path"], m["score"]) for m in body["matches"]] == [("stored-copy.png", 1.0)]
    assert body["index"]["used"] is (body["index"]["mode"] == "require"), body["index"]
