"""Shared fixtures: real photos from installed packages and random-weight models exported once."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggsim import RandomWeightsWarning, sample_photos
from support import CORPUS, HAS_TENSORFLOW  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    # scripts/test.sh runs each default test once: against the installed wheel where that
    # environment can run it (--record-passed), then the rest in the full one (--leave-out).
    # Tests marked full_env are never listed: what they check shows only in the full environment.
    parser.addoption("--record-passed", metavar="FILE",
                     help="write the node ids of the tests that passed into FILE, one per line")
    parser.addoption("--leave-out", metavar="FILE",
                     help="deselect the tests whose node ids FILE lists (as --record-passed wrote them)")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)


_PASSED: list[str] = []  # node ids, in the order they passed (one pytest session per process)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "full_env" not in report.keywords:
        _PASSED.append(report.nodeid)
    elif report.when == "teardown" and report.failed and report.nodeid in _PASSED:
        _PASSED.remove(report.nodeid)  # its teardown failed: not a pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = config.getoption("--leave-out")
    if not listed:
        return
    done = set(Path(listed).read_text(encoding="utf-8").splitlines())
    kept = [item for item in items if item.nodeid not in done]
    left_out = [item for item in items if item.nodeid in done]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = session.config.getoption("--record-passed")
    # under pytest-xdist the controller hears every worker's reports; a worker's list is partial
    if out and not hasattr(session.config, "workerinput"):
        Path(out).write_text("".join(f"{nodeid}\n" for nodeid in _PASSED), encoding="utf-8")


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    found = sample_photos()
    if len(found) < 2:
        pytest.skip("needs scikit-learn or scikit-image for real sample photos")
    return found


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front what this run can and cannot cover, so no skip goes unexplained."""
    lines = [f"vggsim test model: {os.environ.get('VGGSIM_TEST_MODEL') or 'exported once for this session'}"]
    if CORPUS.is_dir():
        lines.append(f"Pillow corpus: {CORPUS} (the corpus test runs)")
    else:
        lines.append(f"Pillow corpus: NOT FOUND at {CORPUS}: tests/test_corpus.py is skipped "
                     "(set VGGSIM_CORPUS or check out ../shared beside the repository)")
    if not HAS_TENSORFLOW:
        lines.append("TensorFlow: not installed: export tests are skipped (runtime-only environment)")
    return lines


def _export(root: Path, normalization: str) -> Path:
    """Export in a child process: TensorFlow's gigabytes are freed when it exits, not kept in the test run."""
    out = root / f"random-{normalization}"
    result = subprocess.run([sys.executable, "-m", "vggsim", "export", "--weights", "random", "--seed", "0",
                             "--normalization", normalization, "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight caffe model: $VGGSIM_TEST_MODEL if set, else exported for this session."""
    preset = os.environ.get("VGGSIM_TEST_MODEL")
    if preset:
        return Path(preset)
    if not HAS_TENSORFLOW:
        pytest.skip("needs the export extra or VGGSIM_TEST_MODEL")
    return _export(tmp_path_factory.mktemp("models"), "caffe")


@pytest.fixture(scope="session")
def model_dir_none(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_TENSORFLOW:
        pytest.skip("needs the export extra")
    return _export(tmp_path_factory.mktemp("models"), "none")


@pytest.fixture(scope="session")
def embedder(model_dir: Path):  # type: ignore[no-untyped-def]
    from vggsim import Embedder

    return Embedder(model_dir, providers="cpu")


@pytest.fixture
def rgb_image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real PostgreSQL 16 with pgvector, from the pgserver wheel, on a Unix socket in a temporary folder;
    stopped at the end of the session."""
    pytest.importorskip("psycopg", reason="needs the postgres extra (psycopg)")
    pytest.importorskip("pgvector", reason="needs the postgres extra (pgvector)")
    pgserver = pytest.importorskip("pgserver", reason="needs the test extra (pgserver: PostgreSQL 16 with pgvector)")
    server = pgserver.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def postgres_uri(postgres_server, request: pytest.FixtureRequest) -> str:  # type: ignore[no-untyped-def]
    """The URI of a new, empty database on the session's PostgreSQL, one per test."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return str(postgres_server.get_uri(name))
