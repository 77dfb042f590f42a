"""vggsim.config owns the environment: no other module reads a VGGSIM_ variable itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vggsim import config

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


#: reads that are reports, not configuration: `vggsim doctor` shows what CUDA will see
REPORTS = {"tools/doctor.py"}


def test_only_config_reads_the_environment() -> None:
    readers = [f"{path.relative_to(RUNTIME)}:{n}" for path in sorted(RUNTIME.rglob("*.py"))
               if path.relative_to(RUNTIME).as_posix() not in {"config.py", *REPORTS}
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if re.search(r"\b(os\.environ|getenv)\b", line)]
    assert readers == []


def test_config_lists_every_variable_it_reads() -> None:
    named = set(re.findall(r'"(VGGSIM_[A-Z_]+)"', (RUNTIME / "config.py").read_text(encoding="utf-8")))
    assert named == set(config.VARIABLES)


def test_the_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*config.VARIABLES, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.model_dir() == Path("models/vgg16") and config.token() is None and not config.debug()
    assert config.cache_dir() == tmp_path / ".cache" / "vggsim"
    monkeypatch.setenv(config.MODEL, "/m")
    monkeypatch.setenv(config.CACHE_DIR, "/c")
    monkeypatch.setenv(config.TOKEN, "t")
    monkeypatch.setenv(config.DEBUG, "0")
    assert (config.model_dir(), config.cache_dir(), config.token(), config.debug()) == (Path("/m"), Path("/c"), "t", False)
    monkeypatch.setenv(config.DEBUG, "1")
    assert config.debug()
