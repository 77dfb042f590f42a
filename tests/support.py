"""Helpers the test files share: a real `vggsim serve` process, the CLI as a child process, made-up
images and stores. One module, so test files never import each other."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import os
import socket
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from vggsim import Embedder
from vggsim.search.ivf import choose
from vggsim.search.ivf.params import IndexParams
from vggsim.store import Record, Store, StoreIdentity, StoreWriter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOKEN = "s3cret-token"


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (96, 72)) -> bytes:
    """A smooth random image (different per seed), encoded."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The one error shape, with no traceback anywhere."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "kind", "message"}
    assert body["error"]["code"] == status
    assert "Traceback" not in response.text
    return dict(body["error"])


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening TCP socket on ``port``."""
    import psutil

    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    except psutil.Error:
        return False


class Server:
    """`python -m vggsim serve ...` in a child process, ready when /health/ready says so.

    A free port is free only until somebody binds it: another pytest-xdist worker's server may take it
    between ``free_port()`` and this server's bind, and then answer this one's readiness probe. So the
    server counts as ready only once it holds the port itself; one that lost the port is started again
    on another (three tries)."""

    def __init__(self, model: Path, *args: str, env: dict[str, str] | None = None) -> None:
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            fd, log = tempfile.mkstemp(prefix=f"serve-test-{self.port}-", suffix=".log")
            os.close(fd)
            self.log = open(log, "w+b")  # noqa: SIM115 (closed in stop)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vggsim", "serve", "--model", str(model), "--port", str(self.port),
                 "--log-level", "warning", *args], stdout=self.log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})})
            if self._ready():
                return
        raise AssertionError(f"three servers in a row found their port taken: {self.output()}")

    def _ready(self) -> bool:
        """True once this server answers /health/ready on its own port; False if another process took
        the port first (this server stopped); an AssertionError for any other failure."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "cannot listen on" in self.output():  # the port went to another process
                    self.stop()
                    return False
                raise AssertionError(f"server exited {self.process.returncode}: {self.output()}")
            try:
                # a 200 from another process's server: this one finds the port taken and exits (above)
                ready = httpx.get(self.url + "/health/ready", timeout=2).status_code == 200
                if ready and listens_on(self.process.pid, self.port):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server not ready in 60 s: {self.output()}")

    def output(self) -> str:
        if self.log.closed:
            return self._tail
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self.log.closed:
            self._tail = self.output()  # kept for messages after stop(); the file goes
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
        return self.process.returncode


def run_cli(*args: str, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True, timeout=timeout, **kw)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares a huge size, with (almost) no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def synthetic_store(root: Path, embedder: Embedder, vectors: np.ndarray) -> Store:
    """A store of made-up vectors under the embedder's identity (no model runs)."""
    with StoreWriter.open(root, StoreIdentity.of(embedder)) as writer:
        for n, vector in enumerate(vectors):
            writer.add(Record(f"/synthetic/{n}.jpg", "ok", 1, 1), vector)
    return Store.open(root)


def make_store(root: Path, vectors: np.ndarray, identity: StoreIdentity | None = None, per_commit: int = 700) -> Store:
    """A store of made-up vectors, several shards (one per commit)."""
    with StoreWriter.open(root, identity or StoreIdentity("synthetic", {}, vectors.shape[1])) as writer:
        for n, vector in enumerate(vectors):
            writer.add(Record(f"/synthetic/{n:05d}.jpg", "ok", 1, 1), vector)
            if n % per_commit == per_commit - 1:
                writer.commit()
    return Store.open(root)


HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


needs_tensorflow = pytest.mark.skipif(not HAS_TENSORFLOW, reason="needs the export extra")


CORPUS = Path(os.environ.get("VGGSIM_CORPUS", Path(__file__).resolve().parents[2] / "shared/corpus/pillow-test-images"))


def full_probe(n: int, dim: int) -> IndexParams:
    """Index parameters for ``n`` vectors of ``dim`` that scan every list at search time: the
    candidates are then the codes' best, which re-ranking makes exact."""
    params = choose(n, dim, sq8=True)
    return IndexParams(params.nlist, params.codes, params.pq_m, params.sample, params.nlist)


def png_files(folder: Path, seeds: range) -> list[Path]:
    """One small PNG per seed (``q{seed}.png``, from :func:`image_bytes`) written into ``folder``."""
    paths = []
    for seed in seeds:
        path = folder / f"q{seed}.png"
        path.write_bytes(image_bytes(seed))
        paths.append(path)
    return paths


def indexed_store(root: Path, model_dir: Path, images: list[Path]) -> Path:
    """A store of ``images`` embedded by the CLI with ``model_dir``, and its index built."""
    result = run_cli("embed", *map(str, images), "--store", str(root), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    built = run_cli("index", "build", "--store", str(root))
    assert built.returncode == 0, built.stderr
    return root


def fill_disk_at(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the index's writes of the file called ``name`` fail with ENOSPC after 100 bytes (faiss's writes
    too, which go through Python's), as a full disk would."""
    from vggsim.search.ivf import build, files, merge

    real = build.atomic_write

    def full_disk(path: Path, write: Any) -> Any:
        if path.name != name:
            return real(path, write)

        class Full:
            def __init__(self, fp: Any) -> None:
                self.fp, self.written = fp, 0

            def write(self, data: Any) -> int:
                self.written += len(memoryview(data).cast("B"))
                if self.written > 100:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return int(self.fp.write(data))

            def __getattr__(self, attribute: str) -> Any:
                return getattr(self.fp, attribute)

        return real(path, lambda fp: write(Full(fp)))

    for module in (build, files, merge):
        monkeypatch.setattr(module, "atomic_write", full_disk)


BROWSERS = ("chromium", "chromium-browser")
DRIVERS = ("chromedriver",)


def browser_missing() -> str | None:
    """Why a web page test cannot run here (the serve extra, selenium, Debian's chromium and chromedriver), or None."""
    import shutil

    absent = [m for m in ("fastapi", "uvicorn", "multipart", "prometheus_client")
              if importlib.util.find_spec(m) is None]
    if absent:
        return f"needs the serve extra (pip install 'vggsim[serve]'): {', '.join(absent)} not installed"
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium (pip install selenium) to drive Chromium"
    if not any(shutil.which(b) for b in BROWSERS):
        return "needs Chromium (Debian: apt-get install chromium)"
    if not any(shutil.which(d) for d in DRIVERS):
        return "needs chromedriver (Debian: apt-get install chromium-driver)"
    return None


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by selenium through Debian's chromedriver (nothing downloaded)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(p for p in map(shutil.which, BROWSERS) if p)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,900", "--no-proxy-server"):
        options.add_argument(flag)
    # The driver path is given, so selenium never looks for (or downloads) a browser or a driver.
    driver = webdriver.Chrome(service=Service(next(p for p in map(shutil.which, DRIVERS) if p)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
