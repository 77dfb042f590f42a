"""The command line, end to end in subprocesses: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


def vggsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vggsim", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_compare_prints_the_score(model_dir: Path, photos: list[Path], embedder) -> None:  # type: ignore[no-untyped-def]
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(embedder.similarity(photos[0], photos[1]), abs=1e-6)
    assert "random weights" in result.stderr


def test_compare_json_and_plot(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    plot = tmp_path / "pair.png"
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(model_dir),
                    "--json", "--plot", str(plot), "--providers", "cpu")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"score", "a", "b", "provider", "model_sha256"}
    assert data["provider"] == "CPUExecutionProvider"
    with Image.open(plot) as image:
        assert image.width > 2 * 256 and image.format == "PNG"


def test_bad_input_is_one_line_and_exit_1(model_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_text("no pixels here")
    for target in (str(tmp_path / "missing.jpg"), str(broken)):
        result = vggsim("compare", str(photos[0]), target, "--model", str(model_dir))
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if "warning" not in line]
        assert len(errors) == 1 and Path(target).name in errors[0]
        assert "Traceback" not in result.stderr


def test_missing_model_is_exit_1_with_advice(tmp_path: Path, photos: list[Path]) -> None:
    result = vggsim("compare", str(photos[0]), str(photos[1]), "--model", str(tmp_path / "none"))
    assert result.returncode == 1 and "vggsim export" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert vggsim().returncode == 2
    assert vggsim("compare", "only-one.jpg").returncode == 2
    assert vggsim("export", "--normalization", "tf").returncode == 2


def test_export_without_the_extra_prints_the_pip_command(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['tensorflow'] = None\n")
    result = vggsim("export", "--weights", "random", "--out", str(tmp_path / "m"),
                    env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert "pip install 'vggsim[export]'" in result.stderr and "Traceback" not in result.stderr


def test_doctor_reports_the_model(model_dir: Path) -> None:
    result = vggsim("doctor", "--model", str(model_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["sha256_ok"] and report["model"]["provider_running"] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in report["providers_available"] and report["cpus"]["usable"] >= 1


def test_console_script_is_installed() -> None:
    import shutil

    script = shutil.which("vggsim", path=str(Path(sys.executable).parent))
    assert script is not None
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout.startswith("vggsim ")
